import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ROOT } from './spawn.js';

// Reads a V8 .cpuprofile (node --cpu-prof) and says where the time went:
// self time per function (functionName + url), inclusive time of our own
// functions, and self time per package. Only samples inside a wall-clock
// window count, so the start-up and the registration of the workers do not
// dilute the steady state.

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

export interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface FunctionTime {
  name: string;
  where: string;
  category: string;
  ms: number;
  /** Share of the non-idle time in the window. */
  share: number;
  /** Microseconds per operation (ops given). */
  usPerOp: number;
}

export interface ProfileSummary {
  windowMs: number;
  sampledMs: number;
  idleMs: number;
  busyMs: number;
  ops: number;
  busyUsPerOp: number;
  self: FunctionTime[];
  inclusiveOwn: FunctionTime[];
  categories: FunctionTime[];
}

const rootUrl = `file://${ROOT}/`;

export function shortUrl(url: string): string {
  if (url.startsWith(rootUrl)) {
    const rel = url.slice(rootUrl.length);
    return rel.startsWith('node_modules/') ? rel.slice('node_modules/'.length) : rel;
  }
  return url;
}

export function categoryOf(frame: CallFrame): string {
  const u = shortUrl(frame.url);
  if (!frame.url) {
    if (frame.functionName.startsWith('(')) return frame.functionName;
    return '(native / V8 builtins)';
  }
  if (u.startsWith('node:')) return 'node core';
  if (!frame.url.startsWith(rootUrl)) return 'other';
  if (frame.url.startsWith(`${rootUrl}node_modules/`)) {
    const parts = u.split('/');
    return parts[0].startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0];
  }
  const top = u.split('/')[0];
  return `${top}/ (ours)`;
}

/**
 * Our TypeScript runs through tsx, which hands V8 esbuild output with the
 * whitespace minified: every function of a file sits on line 1, told apart
 * by its column. Transforming the file again with tsx's esbuild options
 * gives the same code and its source map, which turns a column back into
 * the line of the .ts source. Returns null where that is not possible.
 */
export function sourceLineResolver(): (url: string, column: number) => number | null {
  type Esbuild = { transformSync(code: string, opts: Record<string, unknown>): { code: string; map: string } };
  let esbuild: Esbuild | null = null;
  try {
    esbuild = createRequire(join(ROOT, 'node_modules/tsx/package.json'))('esbuild') as Esbuild;
  } catch {
    return () => null;
  }
  const cache = new Map<string, Array<[number, number]> | null>();
  const segmentsOf = (url: string) => {
    if (cache.has(url)) return cache.get(url)!;
    let segs: Array<[number, number]> | null = null;
    try {
      const file = fileURLToPath(url);
      const out = esbuild!.transformSync(readFileSync(file, 'utf8'), {
        target: `node${process.versions.node}`,
        loader: 'ts',
        format: 'esm',
        sourcemap: true,
        minifyWhitespace: true,
        keepNames: true,
        sourcefile: file,
      });
      segs = firstLineSegments(JSON.parse(out.map).mappings as string);
    } catch {
      segs = null;
    }
    cache.set(url, segs);
    return segs;
  };
  return (url, column) => {
    if (!url.startsWith(rootUrl) || url.includes('/node_modules/') || !url.endsWith('.ts')) return null;
    const segs = segmentsOf(url);
    if (!segs?.length) return null;
    let lo = 0;
    let hi = segs.length - 1;
    if (segs[0][0] > column) return null;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (segs[mid][0] <= column) lo = mid;
      else hi = mid - 1;
    }
    return segs[lo][1] + 1;
  };
}

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

/** [generated column, original line (0-based)] of each segment of the first generated line. */
function firstLineSegments(mappings: string): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  const line = mappings.split(';')[0];
  let genCol = 0;
  let srcLine = 0;
  for (const seg of line.split(',')) {
    if (!seg) continue;
    const vals: number[] = [];
    let shift = 0;
    let value = 0;
    for (const ch of seg) {
      const digit = B64.indexOf(ch);
      value += (digit & 31) << shift;
      if (digit & 32) {
        shift += 5;
      } else {
        vals.push(value & 1 ? -(value >>> 1) : value >>> 1);
        value = 0;
        shift = 0;
      }
    }
    genCol += vals[0];
    if (vals.length >= 4) {
      srcLine += vals[2];
      out.push([genCol, srcLine]);
    }
  }
  return out;
}

const isOwn = (frame: CallFrame) => frame.url.startsWith(rootUrl) && !frame.url.startsWith(`${rootUrl}node_modules/`);

/**
 * fromMs/toMs: the window, in ms after the profile's start. The profile
 * starts when the process does; callers pass Date.now() offsets from spawn.
 */
export function summarizeProfile(p: CpuProfile, window: { fromMs: number; toMs: number } | null, ops: number, top = 25): ProfileSummary {
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const n of p.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  const keyOf = (f: CallFrame) => `${f.functionName || '(anonymous)'}\u0000${f.url}:${f.lineNumber}:${f.columnNumber}`;
  const resolveLine = sourceLineResolver();
  const whereOf = (f: CallFrame) => {
    if (!f.url) return '';
    const line = f.lineNumber === 0 ? resolveLine(f.url, f.columnNumber) : null;
    return `${shortUrl(f.url)}:${line ?? f.lineNumber + 1}`;
  };
  const self = new Map<string, { frame: CallFrame; ms: number }>();
  const incl = new Map<string, { frame: CallFrame; ms: number }>();
  const cats = new Map<string, number>();
  let t = 0;
  let sampledMs = 0;
  let idleMs = 0;
  for (let i = 0; i < p.samples.length; i++) {
    const dt = p.timeDeltas[i] ?? 0;
    t += dt;
    const ms = dt / 1000;
    const atMs = t / 1000;
    if (window && (atMs < window.fromMs || atMs > window.toMs)) continue;
    const node = byId.get(p.samples[i]);
    if (!node) continue;
    sampledMs += ms;
    const f = node.callFrame;
    if (f.functionName === '(idle)') {
      idleMs += ms;
      continue;
    }
    const k = keyOf(f);
    const s = self.get(k) ?? { frame: f, ms: 0 };
    s.ms += ms;
    self.set(k, s);
    const cat = categoryOf(f);
    cats.set(cat, (cats.get(cat) ?? 0) + ms);
    // Inclusive time of our own functions: each function once per sample.
    const seen = new Set<string>();
    for (let id: number | undefined = node.id; id !== undefined; id = parent.get(id)) {
      const fr = byId.get(id)!.callFrame;
      if (!isOwn(fr)) continue;
      const key = keyOf(fr);
      if (seen.has(key)) continue;
      seen.add(key);
      const e = incl.get(key) ?? { frame: fr, ms: 0 };
      e.ms += ms;
      incl.set(key, e);
    }
  }
  const busyMs = sampledMs - idleMs;
  const row = (frame: CallFrame, ms: number): FunctionTime => ({
    name: frame.functionName || '(anonymous)',
    where: whereOf(frame),
    category: categoryOf(frame),
    ms,
    share: busyMs > 0 ? ms / busyMs : 0,
    usPerOp: ops > 0 ? (ms * 1000) / ops : NaN,
  });
  return {
    windowMs: window ? window.toMs - window.fromMs : sampledMs,
    sampledMs,
    idleMs,
    busyMs,
    ops,
    busyUsPerOp: ops > 0 ? (busyMs * 1000) / ops : NaN,
    self: [...self.values()].sort((a, b) => b.ms - a.ms).slice(0, top).map((e) => row(e.frame, e.ms)),
    inclusiveOwn: [...incl.values()].sort((a, b) => b.ms - a.ms).slice(0, top).map((e) => row(e.frame, e.ms)),
    categories: [...cats.entries()]
      .sort((a, b) => b[1] - a[1])
      .map(([name, ms]) => ({ name, where: '', category: name, ms, share: busyMs > 0 ? ms / busyMs : 0, usPerOp: ops > 0 ? (ms * 1000) / ops : NaN })),
  };
}

export function profileMarkdown(title: string, s: ProfileSummary, topN = 20): string {
  const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
  const us = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : '-');
  const lines = [
    `### ${title}`,
    '',
    `Window ${(s.windowMs / 1000).toFixed(1)} s, ${s.ops} heartbeats; busy ${(s.busyMs / 1000).toFixed(2)} s of ${(s.sampledMs / 1000).toFixed(2)} s sampled ` +
      `(${us(s.busyUsPerOp)} us of sampled CPU per heartbeat, profiler overhead included).`,
    '',
    `Top ${topN} by self time:`,
    '',
    '| # | function | where | package | self ms | share | us/heartbeat |',
    '|---:|---|---|---|---:|---:|---:|',
    ...s.self.slice(0, topN).map((f, i) => `| ${i + 1} | \`${f.name}\` | ${f.where} | ${f.category} | ${f.ms.toFixed(0)} | ${pct(f.share)} | ${us(f.usPerOp)} |`),
    '',
    'Self time by package:',
    '',
    '| package | self ms | share | us/heartbeat |',
    '|---|---:|---:|---:|',
    ...s.categories.slice(0, 15).map((c) => `| ${c.name} | ${c.ms.toFixed(0)} | ${pct(c.share)} | ${us(c.usPerOp)} |`),
    '',
    'Our own functions by inclusive time (callees included):',
    '',
    '| function | where | incl. ms | share | us/heartbeat |',
    '|---|---|---:|---:|---:|',
    ...s.inclusiveOwn.slice(0, topN).map((f) => `| \`${f.name}\` | ${f.where} | ${f.ms.toFixed(0)} | ${pct(f.share)} | ${us(f.usPerOp)} |`),
    '',
  ];
  return lines.join('\n');
}

/** Self time per package, per heartbeat, of the hive against the floor: what the hive adds, and where. */
export function packageDiffMarkdown(hive: ProfileSummary, floor: ProfileSummary): string {
  const names = new Set([...hive.categories.map((c) => c.name), ...floor.categories.map((c) => c.name)]);
  const get = (s: ProfileSummary, n: string) => s.categories.find((c) => c.name === n)?.usPerOp ?? 0;
  const rows = [...names].map((n) => ({ n, h: get(hive, n), f: get(floor, n) })).sort((a, b) => b.h - b.f - (a.h - a.f));
  const us = (x: number) => x.toFixed(2);
  return [
    '### What the hive adds to the floor, by package (us of sampled CPU per heartbeat)',
    '',
    '| package | hive | no-op floor | difference |',
    '|---|---:|---:|---:|',
    ...rows.filter((r) => r.h > 0.05 || r.f > 0.05).map((r) => `| ${r.n} | ${us(r.h)} | ${us(r.f)} | ${us(r.h - r.f)} |`),
    `| **total (busy)** | ${us(hive.busyUsPerOp)} | ${us(floor.busyUsPerOp)} | ${us(hive.busyUsPerOp - floor.busyUsPerOp)} |`,
    '',
  ].join('\n');
}
