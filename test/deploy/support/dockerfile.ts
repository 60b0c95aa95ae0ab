/**
 * A small Dockerfile reader for structural checks (no Docker engine runs here): instructions with
 * line continuations and comments handled, stages split at FROM, ARG defaults substituted into FROM,
 * and a .dockerignore matcher with Docker's rules (last matching pattern wins, a matched directory
 * covers its contents, `!` re-includes).
 */

export interface Instruction {
  /** Upper-case keyword (FROM, RUN, COPY ...). */
  readonly keyword: string;
  /** Everything after the keyword, continuation lines joined. */
  readonly args: string;
  /** 1-based line where the instruction starts. */
  readonly line: number;
}

export interface Stage {
  readonly image: string;
  readonly name: string | undefined;
  readonly instructions: readonly Instruction[];
}

export function parseDockerfile(text: string): Instruction[] {
  const lines = text.split('\n');
  const out: Instruction[] = [];
  let buffer = '';
  let start = 0;
  lines.forEach((raw, i) => {
    const line = raw.trimEnd();
    if (buffer === '' && (line.trim() === '' || line.trimStart().startsWith('#'))) return;
    // Comment lines inside a continued instruction are dropped, as Docker does.
    if (buffer !== '' && line.trimStart().startsWith('#')) return;
    if (buffer === '') start = i + 1;
    if (line.endsWith('\\')) {
      buffer += `${line.slice(0, -1)} `;
      return;
    }
    buffer += line;
    const m = /^\s*([A-Za-z]+)\s*(.*)$/s.exec(buffer);
    if (!m) throw new Error(`line ${start}: not an instruction: ${buffer}`);
    out.push({ keyword: (m[1] ?? '').toUpperCase(), args: (m[2] ?? '').replace(/\s+/g, ' ').trim(), line: start });
    buffer = '';
  });
  if (buffer !== '') throw new Error(`line ${start}: continuation runs past the end of the file`);
  return out;
}

/** Splits at FROM, with global ARG defaults substituted into the image names. */
export function stages(instructions: readonly Instruction[]): Stage[] {
  const globals = new Map<string, string>();
  const result: { image: string; name: string | undefined; instructions: Instruction[] }[] = [];
  for (const ins of instructions) {
    if (ins.keyword === 'ARG' && result.length === 0) {
      const [key, value] = ins.args.split('=', 2);
      if (key !== undefined && value !== undefined) globals.set(key.trim(), value.trim());
      continue;
    }
    if (ins.keyword === 'FROM') {
      const parts = ins.args.split(' ').filter((p) => !p.startsWith('--'));
      const image = (parts[0] ?? '').replace(/\$\{(\w+)\}|\$(\w+)/g, (_, a: string | undefined, b: string | undefined) => globals.get(a ?? b ?? '') ?? '');
      const asIndex = parts.findIndex((p) => p.toUpperCase() === 'AS');
      result.push({ image, name: asIndex >= 0 ? parts[asIndex + 1] : undefined, instructions: [] });
      continue;
    }
    const current = result[result.length - 1];
    if (!current) throw new Error(`line ${ins.line}: ${ins.keyword} before the first FROM`);
    current.instructions.push(ins);
  }
  return result;
}

/** The JSON (exec) form of CMD/ENTRYPOINT/HEALTHCHECK CMD, or null for the shell form. */
export function execForm(args: string): string[] | null {
  const trimmed = args.trim();
  if (!trimmed.startsWith('[')) return null;
  const parsed: unknown = JSON.parse(trimmed);
  if (!Array.isArray(parsed) || !parsed.every((p) => typeof p === 'string')) throw new Error(`not a JSON string array: ${args}`);
  return parsed as string[];
}

function globToRegExp(pattern: string): RegExp {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i] ?? '';
    if (c === '*' && pattern[i + 1] === '*') {
      re += '.*';
      i++;
      if (pattern[i + 1] === '/') i++;
    } else if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

/** A .dockerignore: `ignored(path)` tells whether a context path stays out of the build. */
export function dockerignore(text: string): (path: string) => boolean {
  const rules = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => {
      const negated = l.startsWith('!');
      const pattern = (negated ? l.slice(1) : l).replace(/^\/+/, '').replace(/\/+$/, '');
      return { negated, re: globToRegExp(pattern) };
    });
  return (path: string) => {
    const parts = path.split('/');
    const prefixes = parts.map((_, i) => parts.slice(0, i + 1).join('/'));
    let ignored = false;
    for (const rule of rules) if (prefixes.some((p) => rule.re.test(p))) ignored = !rule.negated;
    return ignored;
  };
}
