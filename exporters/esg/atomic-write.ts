import { closeSync, fsyncSync, lstatSync, openSync, readlinkSync, renameSync, rmSync, writeSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';

/** Symbolic links followed at most (as Linux's MAXSYMLINKS): more is a loop. */
const MAX_LINKS = 40;

/**
 * Write a file so that readers see the old content or the whole new content, never a part:
 * write a temporary file beside it, flush it to disk, then rename it over the target. A path that
 * is a symbolic link is written through: the file it points to (even one not there yet) is
 * replaced and the link kept, where a rename onto the link would replace the link itself and
 * leave its target stale. Returns the path written.
 */
export function writeFileAtomic(path: string, content: string | Uint8Array): string {
  let target: string;
  try {
    target = linkTarget(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new Error(`cannot write ${path}: ${code ?? (error as Error).message}`, { cause: error });
  }
  const temp = join(dirname(target), `.${basename(target)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  let fd: number | null = null;
  try {
    fd = openSync(temp, 'wx', 0o644);
    const bytes = typeof content === 'string' ? Buffer.from(content, 'utf8') : content;
    for (let offset = 0; offset < bytes.length; ) offset += writeSync(fd, bytes, offset, bytes.length - offset);
    fsyncSync(fd);
    closeSync(fd);
    fd = null;
    renameSync(temp, target);
    return target;
  } catch (error) {
    if (fd !== null) closeSync(fd);
    rmSync(temp, { force: true });
    // Name the path the caller gave, not the hidden temporary file.
    const code = (error as NodeJS.ErrnoException).code;
    throw new Error(`cannot write ${path}${target === path ? '' : ` (a link to ${target})`}: ${code ?? (error as Error).message}`, { cause: error });
  }
}

/** The path a chain of symbolic links ends at (the path itself when it is not a link, or is not there). */
function linkTarget(path: string): string {
  let current = path;
  for (let links = 0; links <= MAX_LINKS; links += 1) {
    let isLink: boolean;
    try {
      isLink = lstatSync(current).isSymbolicLink();
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return current;
      throw error;
    }
    if (!isLink) return current;
    current = resolve(dirname(current), readlinkSync(current));
  }
  throw Object.assign(new Error('too many levels of symbolic links'), { code: 'ELOOP' });
}
