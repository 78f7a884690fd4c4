import type { BenchOptions, ScenarioResult } from './context.js';
import type { MachineInfo } from './procfs.js';
import type { Spread } from './stats.js';

// The targets of the issue, evaluated on one run's results, and the two
// outputs: results.json (everything) and results.md (the tables).

export interface TargetResult {
  id: string;
  target: string;
  /** The measured value (a ratio, ms, bytes...). */
  value: number | null;
  /** Range of the value over the repetitions, where it has one. */
  min?: number;
  max?: number;
  unit: string;
  limit: string;
  status: 'pass' | 'fail' | 'skipped';
  detail: string;
}

const MB = 1e6;

function loadSpread(results: Map<string, ScenarioResult>, name: string, key: 'opsPerSec' | 'cpuUsPerOp'): Spread | null {
  const r = results.get(name);
  if (!r || r.status !== 'ok' || !r.load) return null;
  const s = r.load.summary[key];
  return Number.isFinite(s.median) ? s : null;
}

function value(results: Map<string, ScenarioResult>, name: string, key: string): { v: number; min?: number; max?: number } | null {
  const r = results.get(name);
  if (!r || r.status === 'skipped') return null;
  const v = r.values[key];
  return v && Number.isFinite(v.value) ? { v: v.value, min: v.min, max: v.max } : null;
}

function why(results: Map<string, ScenarioResult>, ...names: string[]): string {
  for (const n of names) {
    const r = results.get(n);
    if (!r) return `${n} not run`;
    if (r.status !== 'ok') return `${n}: ${r.reason ?? r.status}`;
  }
  return 'not measured';
}

export function evaluateTargets(results: Map<string, ScenarioResult>): TargetResult[] {
  const out: TargetResult[] = [];
  const ratio = (id: string, target: string, num: [string, 'opsPerSec' | 'cpuUsPerOp'], den: [string, 'opsPerSec' | 'cpuUsPerOp'], cmp: '>=' | '<=', limit: number) => {
    const a = loadSpread(results, ...num);
    const b = loadSpread(results, ...den);
    if (!a || !b) {
      out.push({ id, target, value: null, unit: 'x', limit: `${cmp === '>=' ? '≥' : '≤'} ${limit}x`, status: 'skipped', detail: why(results, num[0], den[0]) });
      return;
    }
    const v = a.median / b.median;
    const ok = cmp === '>=' ? v >= limit : v <= limit;
    out.push({
      id,
      target,
      value: v,
      min: a.min / b.max,
      max: a.max / b.min,
      unit: 'x',
      limit: `${cmp === '>=' ? '≥' : '≤'} ${limit}x`,
      status: ok ? 'pass' : 'fail',
      detail: `${fmt(a.median)} / ${fmt(b.median)}`,
    });
  };
  /** A ratio of two single values (one measurement each, no spread). */
  const valueRatio = (id: string, target: string, num: [string, string], den: [string, string], cmp: '>=' | '<=', limit: number) => {
    // Both runs must have held: a failed one's figure covers only part of its fleet.
    const ok = (name: string) => results.get(name)?.status === 'ok';
    const a = ok(num[0]) ? value(results, ...num) : null;
    const b = ok(den[0]) ? value(results, ...den) : null;
    const limitText = `${cmp === '>=' ? '≥' : '≤'} ${limit}x`;
    if (!a || !b) {
      out.push({ id, target, value: null, unit: 'x', limit: limitText, status: 'skipped', detail: why(results, num[0], den[0]) });
      return;
    }
    const v = a.v / b.v;
    out.push({ id, target, value: v, unit: 'x', limit: limitText, status: (cmp === '>=' ? v >= limit : v <= limit) ? 'pass' : 'fail', detail: `${fmt(a.v)} / ${fmt(b.v)}` });
  };
  const absolute = (id: string, target: string, scenario: string, key: string, cmp: '<=' | '>=', limit: number, unit: string, scale = 1, limitText?: string) => {
    const m = value(results, scenario, key);
    if (!m) {
      out.push({ id, target, value: null, unit, limit: limitText ?? `${cmp === '>=' ? '≥' : '≤'} ${limit} ${unit}`, status: 'skipped', detail: why(results, scenario) });
      return;
    }
    const v = m.v * scale;
    const ok = cmp === '<=' ? v <= limit : v >= limit;
    out.push({
      id,
      target,
      value: v,
      min: m.min === undefined ? undefined : m.min * scale,
      max: m.max === undefined ? undefined : m.max * scale,
      unit,
      limit: limitText ?? `${cmp === '>=' ? '≥' : '≤'} ${limit} ${unit}`,
      status: ok ? 'pass' : 'fail',
      detail: results.get(scenario)?.values[key]?.note ?? '',
    });
  };

  ratio('stream-throughput', 'HeartbeatStream throughput vs etcd LeaseKeepAlive', ['hive-stream', 'opsPerSec'], ['etcd-stream', 'opsPerSec'], '>=', 1.0);
  ratio('stream-cpu-etcd', 'HeartbeatStream server CPU per heartbeat vs etcd', ['hive-stream', 'cpuUsPerOp'], ['etcd-stream', 'cpuUsPerOp'], '<=', 0.8);
  ratio('stream-cpu-floor', 'HeartbeatStream server CPU per heartbeat vs no-op floor', ['hive-stream', 'cpuUsPerOp'], ['noop-stream', 'cpuUsPerOp'], '<=', 2.2);
  ratio('unary-throughput', 'Unary Heartbeat throughput vs no-op unary', ['hive-unary', 'opsPerSec'], ['noop-unary', 'opsPerSec'], '>=', 0.8);
  absolute('detection-p99', 'Detection lag p99 (10,000 workers at 1 s, under stream load)', 'detection', 'lagP99Ms', '<=', 100, 'ms');
  valueRatio('detection-etcd', 'Detection lag p99 vs etcd lease expiry p99 (the same fleet beside its own stream load)', ['detection', 'lagP99Ms'], ['detection-etcd', 'lagP99Ms'], '<=', 1.0);
  absolute('rss-per-worker', 'Hive RSS growth per live worker (100,000 workers)', 'fleet', 'rssPerLiveWorker', '<=', 2048, 'B', 1, '≤ 2 KB');
  absolute('cold-start', 'Cold start, 100,000 workers in PostgreSQL, to first heartbeat', 'fleet', 'coldStartMs', '<=', 3000, 'ms');
  absolute('agent-cpu', 'Agent CPU at a 1 s interval', 'agent', 'cpuPercent', '<=', 1, '% of a core');
  absolute('agent-rss', 'Agent RSS', 'agent', 'rssMiB', '<=', 60, 'MB', 2 ** 20 / MB, '≤ 60 MB');
  if (value(results, 'agent', 'heartbeatBytes')) absolute('heartbeat-bytes', "Encoded heartbeat with 8 GPUs (the agent's)", 'agent', 'heartbeatBytes', '<=', 200, 'B');
  else absolute('heartbeat-bytes', 'Encoded heartbeat with 8 GPUs (synthetic)', 'size', 'heartbeatBytes', '<=', 200, 'B');
  ratio('redis-replica', 'Redis replica mode throughput per replica vs memory mode', ['redis', 'opsPerSec'], ['hive-stream', 'opsPerSec'], '>=', 0.5);
  return out;
}

export function fmt(v: number | null | undefined, digits?: number): string {
  if (v === null || v === undefined || !Number.isFinite(v)) return '-';
  const a = Math.abs(v);
  const d = digits ?? (a >= 1000 ? 0 : a >= 100 ? 0 : a >= 10 ? 1 : a >= 1 ? 2 : 3);
  return v.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d });
}

function withRange(s: Spread, scale = 1, digits?: number): string {
  if (!Number.isFinite(s.median)) return '-';
  const m = fmt(s.median * scale, digits);
  if (s.values.length < 2) return m;
  return `${m} (${fmt(s.min * scale, digits)}–${fmt(s.max * scale, digits)})`;
}

export interface ReportMeta {
  startedAt: string;
  finishedAt: string;
  durationSec: number;
  machine: MachineInfo;
  commit: string;
  options: BenchOptions;
}

export function markdown(meta: ReportMeta, results: ScenarioResult[], targets: TargetResult[], profileMd?: string): string {
  const o = meta.options;
  const m = meta.machine;
  const lines: string[] = [
    `# hive benchmark — ${meta.startedAt.slice(0, 10)}`,
    '',
    `- **When**: ${meta.startedAt} (took ${Math.round(meta.durationSec)} s), ${o.quick ? '`--quick`' : 'full run'}`,
    `- **Machine**: ${m.cpuModel}, ${m.cores} cores, ${m.memoryGiB} GiB, Linux ${m.kernel}, Node ${m.node}${m.hostname ? `, host ${m.hostname}` : ''}`,
    `- **Code**: ${meta.commit}`,
    `- **Load**: ${o.streams} streams (or ${o.unaryInFlight} unary requests in flight) over ${o.conns} HTTP/2 connections, closed loop; ` +
      `heartbeats ${o.payload === 'full' ? 'in the full form every time' : 'as the agent sends them (full form first, then compact)'}; ` +
      `${o.windowMs / 1000} s windows after ${o.warmupMs / 1000} s warm-up, ${o.repeat} repetition(s), each after waiting for the machine to be under ${Math.round(o.idleThreshold * 100)}% busy (at most ${o.idleMaxWaitMs / 1000} s)`,
    '- Cells are `median (min–max)` over the repetitions.',
    '',
    '## Targets',
    '',
    '| target | measured | limit | result | from |',
    '|---|---:|---:|:---:|---|',
    ...targets.map((t) => {
      const v = t.value === null ? '-' : `${fmt(t.value, t.unit === 'x' ? 2 : undefined)}${t.unit === 'x' ? 'x' : ` ${t.unit}`}${t.min !== undefined && t.max !== undefined && o.repeat > 1 ? ` (${fmt(t.min, t.unit === 'x' ? 2 : undefined)}–${fmt(t.max, t.unit === 'x' ? 2 : undefined)})` : ''}`;
      const mark = t.status === 'pass' ? 'PASS' : t.status === 'fail' ? '**FAIL**' : 'skipped';
      return `| ${t.target} | ${v} | ${t.limit} | ${mark} | ${t.detail} |`;
    }),
    '',
    '## Throughput',
    '',
    '| scenario | ops/s | p50 ms | p99 ms | server CPU us/op | server cores | server RSS MiB | loadgen cores | other cores | machine before window |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---|',
  ];
  for (const r of results) {
    if (!r.load) continue;
    const s = r.load.summary;
    const idle = r.load.runs.map((x) => `${Math.round(x.idleBefore.busy * 100)}%${x.idleBefore.idle ? '' : '!'}`).join(', ');
    lines.push(
      `| ${r.title} | ${withRange(s.opsPerSec, 1, 0)} | ${withRange(s.p50Ms, 1, 1)} | ${withRange(s.p99Ms, 1, 1)} | ${withRange(s.cpuUsPerOp, 1, 1)} | ${withRange(s.serverCores, 1, 2)} | ${withRange(s.serverRssBytes, 1 / 2 ** 20, 0)} | ${withRange(s.loadgenCores, 1, 2)} | ${withRange(s.otherCores, 1, 2)} | ${idle} busy |`,
    );
  }
  lines.push('', '"other cores": machine CPU in the window besides the server and the load generator (PostgreSQL for the hive, other tenants). "machine before window": busy share of the last idle-wait second (`!` = still busy after the max wait).', '');
  const others = results.filter((r) => Object.keys(r.values).length > 0);
  if (others.length) {
    lines.push('## Other measurements', '');
    for (const r of others) {
      lines.push(`### ${r.title}`, '', '| measure | value | note |', '|---|---:|---|');
      for (const [k, v] of Object.entries(r.values)) {
        const range = v.min !== undefined && v.max !== undefined && v.min !== v.max ? ` (${fmt(v.min)}–${fmt(v.max)})` : '';
        lines.push(`| ${k} | ${fmt(v.value)}${range} ${v.unit} | ${v.note ?? ''} |`);
      }
      lines.push('');
    }
  }
  const notRun = results.filter((r) => r.status !== 'ok');
  if (notRun.length) {
    lines.push('## Skipped or failed', '');
    for (const r of notRun) lines.push(`- **${r.name}** (${r.status}): ${r.reason ?? ''}`);
    lines.push('');
  }
  lines.push('## Notes', '');
  for (const r of results) for (const n of r.notes) lines.push(`- ${r.name}: ${n}`);
  lines.push('');
  if (profileMd) lines.push('## Profile', '', profileMd, '');
  return lines.join('\n');
}
