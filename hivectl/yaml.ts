// YAML for `-o yaml`: JSON values (what protobuf's toJson gives) written as
// block-style YAML. A string stays plain only when it cannot be read back as
// anything else; otherwise it is double-quoted with JSON escapes, which YAML
// 1.2 double-quoted scalars accept. (The yaml package is a dev dependency;
// the CLI must not need it at run time.)

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

const PLAIN = /^[A-Za-z_/][A-Za-z0-9_./@+-]*$/;
const RESERVED = /^(true|false|yes|no|on|off|y|n|null|~)$/i;

export function scalar(v: string): string {
  return PLAIN.test(v) && !RESERVED.test(v) ? v : JSON.stringify(v);
}

function key(k: string): string {
  return scalar(k);
}

function leaf(v: Json): string | null {
  if (v === null) return 'null';
  if (typeof v === 'boolean' || typeof v === 'number') return Number.isFinite(v as number) || typeof v === 'boolean' ? String(v) : JSON.stringify(String(v));
  if (typeof v === 'string') return scalar(v);
  if (Array.isArray(v) && v.length === 0) return '[]';
  if (!Array.isArray(v) && Object.keys(v).length === 0) return '{}';
  return null;
}

function emit(v: Json, indent: string, out: string[]): void {
  if (Array.isArray(v)) {
    for (const item of v) {
      const l = leaf(item);
      if (l !== null) {
        out.push(`${indent}- ${l}`);
        continue;
      }
      // The first line of a nested block rides on the dash.
      const inner: string[] = [];
      emit(item, indent + '  ', inner);
      out.push(`${indent}- ${inner[0].slice(indent.length + 2)}`, ...inner.slice(1));
    }
    return;
  }
  for (const [k, item] of Object.entries(v as Record<string, Json>)) {
    const l = leaf(item);
    if (l !== null) out.push(`${indent}${key(k)}: ${l}`);
    else {
      out.push(`${indent}${key(k)}:`);
      emit(item, Array.isArray(item) ? indent : indent + '  ', out);
    }
  }
}

export function toYaml(value: unknown): string {
  const v = value as Json;
  const l = leaf(v);
  if (l !== null) return l + '\n';
  const out: string[] = [];
  emit(v, '', out);
  return out.join('\n') + '\n';
}
