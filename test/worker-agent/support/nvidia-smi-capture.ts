// The GPU fixtures are real captures of `nvidia-smi --query-gpu=<every field>
// --format=csv` (header, units). nvidia-smi answers a narrower query with the
// same values in the same ", "-separated form, minus the header (noheader) and
// the unit suffixes (nounits); this turns a capture into exactly that, the way
// nvidia_gpu_exporter's fake nvidia-smi replays the same captures.

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const fixturesDir = fileURLToPath(new URL('../../fixtures/', import.meta.url));

export function readFixture(relative: string): string {
  return readFileSync(fixturesDir + relative, 'utf8');
}

export function projectQueryGpu(capture: string, fields: readonly string[]): string {
  const [headerLine, ...rows] = capture.split('\n').filter((l) => l.trim() !== '');
  if (!headerLine) throw new Error('capture has no header');
  const header = headerLine.split(', ').map((h) => {
    const m = /^(.*?)(?: \[(.+)\])?$/.exec(h)!;
    return { name: m[1]!, unit: m[2] };
  });
  const out = rows.map((row, r) => {
    const values = row.split(', ');
    if (values.length !== header.length) {
      throw new Error(`capture row ${r + 1} has ${values.length} values for ${header.length} columns`);
    }
    return fields
      .map((field) => {
        const col = header.findIndex((h) => h.name === field);
        if (col < 0) throw new Error(`capture has no ${field} column`);
        const value = values[col]!;
        const unit = header[col]!.unit;
        return unit && value.endsWith(` ${unit}`) ? value.slice(0, -unit.length - 1) : value;
      })
      .join(', ');
  });
  return out.map((l) => l + '\n').join('');
}
