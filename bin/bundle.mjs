// Bundles a TypeScript entry point into one ES module under dist/ (esbuild),
// rebuilt whenever a source it may include is newer. Used for the
// worker-agent, which runs beside every worker: the bundle starts with
// plain node, without tsx's loader (~30 MB of resident memory less).
import { mkdirSync, readdirSync, renameSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

function newestSource(dirs) {
  let newest = 0;
  const walk = (dir) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.ts')) newest = Math.max(newest, statSync(p).mtimeMs);
    }
  };
  for (const d of dirs) walk(join(ROOT, d));
  return newest;
}

function mtime(path) {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return -1;
  }
}

/** The path of an up-to-date bundle of `entry` (relative to the repository root). */
export async function bundled(name, entry, sourceDirs) {
  const out = join(ROOT, 'dist', `${name}.mjs`);
  if (mtime(out) >= newestSource(sourceDirs)) return out;
  mkdirSync(dirname(out), { recursive: true });
  // Written aside and renamed: two processes starting at once never see half a file.
  const tmp = `${out}.${process.pid}.tmp`;
  const { build } = await import('esbuild');
  await build({
    entryPoints: [join(ROOT, entry)],
    outfile: tmp,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    logLevel: 'warning',
  });
  renameSync(tmp, out);
  return out;
}
