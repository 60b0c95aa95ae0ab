// Splits a captured nvidia-smi session (test/fixtures/nvidia-smi/*.txt) into its sections. Each
// section opens with a banner of '#', a "# <phase> :: <name>" line, an optional "# $ <command>"
// line and a closing banner; its body runs to the next banner.

const isBanner = (line) => /^#{40,}\s*$/.test(line);

/** @param {string} text */
export function readCapture(text) {
  const lines = text.split(/\r?\n/);
  const sections = [];
  let current = null;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (isBanner(line) && /^# .+ :: /.test(lines[i + 1] ?? '')) {
      const [phase, name] = lines[i + 1].slice(2).split(' :: ');
      let j = i + 2;
      let command = null;
      for (; j < lines.length && !isBanner(lines[j]); j++) {
        if (lines[j].startsWith('# $ ')) command = lines[j].slice(4).trim();
      }
      current = { phase: phase.trim(), name: name.trim(), command, body: [] };
      sections.push(current);
      i = j; // the closing banner
      continue;
    }
    if (current) current.body.push(line);
  }
  return sections.map((s) => {
    const body = [...s.body];
    while (body.length > 0 && body.at(-1).trim() === '') body.pop();
    return { phase: s.phase, name: s.name, command: s.command, body: body.join('\n') };
  });
}

/** The first section of `phase` whose name starts with `prefix`. */
export function findSection(sections, phase, prefix) {
  return sections.find((s) => s.phase === phase && s.name.startsWith(prefix)) ?? null;
}

/**
 * The captured `--query-gpu ... --format=csv` table of one phase: column names (without the
 * " [unit]" suffix), their units, and the data rows as cell arrays.
 */
export function capturedQueryTable(sections, phase) {
  const section = findSection(sections, phase, 'query-gpu');
  if (!section) return null;
  const [header, ...rows] = section.body.split('\n').filter((l) => l.trim() !== '');
  const heads = header.split(',').map((h) => h.trim());
  return {
    columns: heads.map((h) => h.replace(/\s*\[[^\]]*\]$/, '')),
    units: heads.map((h) => /\[([^\]]*)\]$/.exec(h)?.[1] ?? null),
    headers: heads,
    rows: rows.map((r) => r.split(',').map((c) => c.trim())),
  };
}
