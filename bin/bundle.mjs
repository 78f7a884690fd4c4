// Bundles a TypeScript entry point into one ES module under dist/ (esbuild),
// rebuilt whenever a source it may include is newer, so that it starts with
// plain node, without tsx's loader: tsx transpiles every file on load and
// routes every import (dependencies too) through loader hooks on another
// thread, ~0.6 s of a hive's start.
//
// The worker-agent's bundle holds its dependencies too: one module instead
// of ~200 files under node_modules keeps ~2-3 MB less resident (no per-file
// module records, package.json lookups and CommonJS wrappers). Because the
// dependencies are then part of the bundle, it is also rebuilt when
// package-lock.json changes. The hive's holds only its own code: its
// dependencies (PGlite's WebAssembly among them) load from node_modules as
// they are.
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { dirname, join, resolve, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

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
  // A dependency upgrade changes what the bundle embeds, and a change to
  // this file changes how it is built.
  return Math.max(newest, mtime(join(ROOT, 'package-lock.json')), mtime(fileURLToPath(import.meta.url)));
}

function mtime(path) {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return -1;
  }
}

/**
 * Our sources find files beside them (SQL migrations, the status page)
 * through import.meta: in the bundle each keeps its own file's location.
 */
const keepImportMeta = {
  name: 'keep-import-meta',
  setup(build) {
    build.onLoad({ filter: /\.ts$/ }, (args) => {
      if (args.path.includes(`${sep}node_modules${sep}`)) return undefined;
      const source = readFileSync(args.path, 'utf8');
      if (!source.includes('import.meta.')) return undefined;
      const contents = source
        .replaceAll('import.meta.url', JSON.stringify(pathToFileURL(args.path).href))
        .replaceAll('import.meta.dirname', JSON.stringify(dirname(args.path)));
      return { contents, loader: 'ts' };
    });
  },
};

/** The path of an up-to-date bundle of `entry` (relative to the repository root). */
export async function bundled(name, entry, sourceDirs, opts = {}) {
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
    logLevel: 'warning',
    plugins: [keepImportMeta],
    // Dependencies left to node_modules, or bundled too.
    packages: opts.ownCodeOnly ? 'external' : undefined,
    // Files whose exports replace globals of the same name in the bundled code only.
    inject: (opts.inject ?? []).map((p) => join(ROOT, p)),
    // CommonJS dependencies (pino, prom-client, commander) call require() for
    // node's built-in modules; an ES module has no require of its own.
    banner: { js: "import { createRequire as __bundleRequire } from 'node:module'; const require = __bundleRequire(import.meta.url);" },
  }).catch((err) => {
    // A failed build leaves no half-written file behind.
    rmSync(tmp, { force: true });
    throw err;
  });
  renameSync(tmp, out);
  return out;
}

/**
 * The worker-agent's bundle. Connect keeps its metadata in a small Headers
 * class instead of node's global (undici's), which would otherwise be loaded
 * for that alone: see worker-agent/bundle-headers.ts.
 */
export function bundledAgent() {
  return bundled('worker-agent', 'worker-agent/main.ts', ['worker-agent', 'lib', 'gen'], { inject: ['worker-agent/bundle-headers.ts'] });
}

/** The hive's bundle: its own code only (see above). */
export function bundledHive() {
  return bundled('hive', 'hive/main.ts', ['hive', 'lib', 'gen'], { ownCodeOnly: true });
}

/**
 * The module to import to start: the bundle, or, where dist/ cannot be
 * written (a read-only install), the sources through tsx.
 */
export async function startable(bundle, sourceEntry) {
  try {
    return pathToFileURL(await bundle()).href;
  } catch (err) {
    process.stderr.write(`no up-to-date bundle of ${sourceEntry} (${err.message.split('\n')[0]}): running the sources through tsx, which starts slower\n`);
    const { register } = await import('tsx/esm/api');
    register();
    return pathToFileURL(join(ROOT, sourceEntry)).href;
  }
}
