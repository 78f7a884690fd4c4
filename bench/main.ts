import { execFileSync } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { parseDurationMs } from '../lib/duration.js';
import { Skip, type BenchOptions, type Ctx, type Scenario, type ScenarioResult } from './lib/context.js';
import { databaseReachable, DEFAULT_DATABASE_URL, dropSchemas } from './lib/pg.js';
import { machineInfo } from './lib/procfs.js';
import { evaluateTargets, markdown, type ReportMeta } from './lib/report.js';
import { killAllSync, ROOT, stopAll } from './lib/spawn.js';
import { agentScenario } from './scenarios/agent.js';
import { detectionScenario } from './scenarios/detection.js';
import { detectionEtcdScenario } from './scenarios/detection-etcd.js';
import { fleetScenario } from './scenarios/fleet.js';
import { redisScenario } from './scenarios/redis.js';
import { sizeScenario } from './scenarios/size.js';
import { etcdStream, hiveStream, hiveStreamMinimal, hiveUnary, noopStream, noopStreamMinimal, noopUnary, profileHive } from './scenarios/throughput.js';

// npm run bench [-- --quick] [--repeat N] [--only a,b] [--out dir] [--profile]
// Starts and stops its own servers, measures them from a separate load
// generator process, and writes results.json and results.md. See bench/README.md.

const SCENARIOS: Scenario[] = [
  sizeScenario,
  noopStream,
  etcdStream,
  hiveStream,
  noopStreamMinimal,
  hiveStreamMinimal,
  noopUnary,
  hiveUnary,
  fleetScenario,
  agentScenario,
  detectionScenario,
  detectionEtcdScenario,
  redisScenario,
  profileHive,
];
const EXTRAS = ['noop-stream-minimal', 'hive-stream-minimal'];

const USAGE = `usage: npm run bench -- [options]
  --quick               1-minute subset: ${SCENARIOS.filter((s) => s.quick).map((s) => s.name).join(', ')}; 3 s windows
  --repeat N            repetitions of each measurement (default 2)
  --only a,b            only these scenarios (${SCENARIOS.map((s) => s.name).join(', ')})
  --out DIR             where results.json, results.md and profiles go (default bench/results)
  --profile             also profile the hive (and the floor) under the stream load (node --cpu-prof)
  --extras              also the informational runs with a minimal heartbeat (${EXTRAS.join(', ')})
  --window DUR          measurement window (default 10s, quick 3s)
  --warmup DUR          warm-up before each window (default 2s, quick 1s)
  --streams N           bidi streams (default 1000)
  --conns N             HTTP/2 connections they share (default 8)
  --unary-in-flight N   unary requests in flight (default 256)
  --watchers N          WatchWorkers subscribers during the hive stream load (default 1)
  --idle-threshold R    machine busy share under which it counts as idle (default 0.2)
  --idle-max-wait DUR   longest wait for an idle machine before a window (default 10s, quick 3s)
  --database-url URL    PostgreSQL for the hives (default ${DEFAULT_DATABASE_URL}, or BENCH_DATABASE_URL)
  --fleet-size N        registered workers of the memory / cold-start scenario (default 100000)
  --agent-window DUR    agent CPU window (default 30s, quick 10s)
  --detection-workers N workers of the detection-lag fleet (default 10000)
  --payload agent|full  heartbeats of the stream and unary loads: as the agent sends them (default:
                        full form first, compact after) or the full form every time`;

function parseOptions(argv: string[]): BenchOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean', default: false },
      repeat: { type: 'string' },
      only: { type: 'string', multiple: true },
      out: { type: 'string' },
      profile: { type: 'boolean', default: false },
      extras: { type: 'boolean', default: false },
      window: { type: 'string' },
      warmup: { type: 'string' },
      streams: { type: 'string' },
      conns: { type: 'string' },
      'unary-in-flight': { type: 'string' },
      watchers: { type: 'string' },
      'idle-threshold': { type: 'string' },
      'idle-max-wait': { type: 'string' },
      'database-url': { type: 'string' },
      'fleet-size': { type: 'string' },
      'agent-window': { type: 'string' },
      'detection-workers': { type: 'string' },
      payload: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  const problems: string[] = [];
  const int = (name: string, v: string | undefined, def: number, min = 1) => {
    if (v === undefined) return def;
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) problems.push(`--${name} must be a whole number >= ${min}`);
    return n;
  };
  const dur = (name: string, v: string | undefined, def: number) => {
    if (v === undefined) return def;
    try {
      return parseDurationMs(v);
    } catch (err) {
      problems.push(`--${name}: ${(err as Error).message}`);
      return def;
    }
  };
  const quick = values.quick!;
  const only = values.only?.flatMap((s) => s.split(',')).map((s) => s.trim()).filter(Boolean) ?? null;
  for (const name of only ?? []) if (!SCENARIOS.some((s) => s.name === name)) problems.push(`--only: no scenario "${name}"`);
  const payload = values.payload ?? 'agent';
  if (payload !== 'agent' && payload !== 'full') problems.push('--payload must be agent or full');
  const threshold = values['idle-threshold'] === undefined ? 0.2 : Number(values['idle-threshold']);
  if (!(threshold > 0 && threshold <= 1)) problems.push('--idle-threshold must be in (0, 1]');
  const opts: BenchOptions = {
    quick,
    repeat: int('repeat', values.repeat, 2),
    only,
    outDir: resolve(values.out ?? join(ROOT, 'bench/results')),
    profile: values.profile!,
    extras: values.extras!,
    windowMs: dur('window', values.window, quick ? 3000 : 10_000),
    warmupMs: dur('warmup', values.warmup, quick ? 1000 : 2000),
    streams: int('streams', values.streams, 1000),
    conns: int('conns', values.conns, 8),
    unaryInFlight: int('unary-in-flight', values['unary-in-flight'], 256),
    watchers: int('watchers', values.watchers, 1, 0),
    idleThreshold: threshold,
    idleMaxWaitMs: dur('idle-max-wait', values['idle-max-wait'], quick ? 3000 : 10_000),
    databaseUrl: values['database-url'] ?? process.env.BENCH_DATABASE_URL ?? DEFAULT_DATABASE_URL,
    fleetSize: int('fleet-size', values['fleet-size'], 100_000, 2000),
    agentWindowMs: dur('agent-window', values['agent-window'], quick ? 10_000 : 30_000),
    detectionWorkers: int('detection-workers', values['detection-workers'], 10_000, 100),
    payload: payload as 'agent' | 'full',
  };
  if (problems.length) {
    process.stderr.write(`bench: ${problems.join('; ')}\n${USAGE}\n`);
    process.exit(2);
  }
  return opts;
}

function commitOf(): string {
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'hive', 'lib', 'gen', 'worker-agent', 'monitor'], { cwd: ROOT, encoding: 'utf8' }).trimEnd();
    return dirty ? `${head} + uncommitted changes in ${[...new Set(dirty.split('\n').map((l) => l.slice(3).split('/')[0]))].join(', ')}` : head;
  } catch {
    return 'unknown';
  }
}

let databaseUrl = process.env.BENCH_DATABASE_URL ?? DEFAULT_DATABASE_URL;

async function main(): Promise<void> {
  const opts = parseOptions(process.argv.slice(2));
  databaseUrl = opts.databaseUrl;
  const started = Date.now();
  const log = (line: string) => process.stdout.write(`${line}\n`);
  const optedIn = (s: Scenario) => (s.name === 'profile' ? opts.profile : opts.extras && EXTRAS.includes(s.name));
  const selected = SCENARIOS.filter((s) => (opts.only ? opts.only.includes(s.name) : s.optIn ? optedIn(s) : !opts.quick || s.quick));
  const dbProblem = await databaseReachable(opts.databaseUrl);
  const ctx: Ctx = { opts, log, results: new Map() };
  await mkdir(opts.outDir, { recursive: true });
  log(`hive bench: ${selected.map((s) => s.name).join(', ')} (${opts.quick ? 'quick' : 'full'}, repeat ${opts.repeat}, ${opts.windowMs / 1000} s windows)`);

  const results: ScenarioResult[] = [];
  for (const s of selected) {
    const t0 = Date.now();
    log(`\n== ${s.name}: ${s.title}`);
    let r: ScenarioResult;
    try {
      const needsDb = !['size', 'noop-stream', 'noop-stream-minimal', 'etcd-stream', 'noop-unary'].includes(s.name);
      if (needsDb && dbProblem) throw new Skip(`skipped: PostgreSQL at ${opts.databaseUrl} is not reachable (${dbProblem})`);
      const out = await s.run(ctx);
      r = { name: s.name, title: s.title, durationMs: Date.now() - t0, ...out };
    } catch (err) {
      const skipped = err instanceof Skip;
      r = { name: s.name, title: s.title, status: skipped ? 'skipped' : 'failed', reason: (err as Error).message, values: {}, notes: [], durationMs: Date.now() - t0 };
      if (!skipped) log((err as Error).stack ?? String(err));
      await stopAll();
    }
    if (r.status !== 'ok') log(`  ${r.status === 'skipped' ? '' : 'failed: '}${r.reason}`);
    for (const [k, v] of Object.entries(r.values)) log(`  ${k}: ${Number.isFinite(v.value) ? +v.value.toFixed(2) : '-'} ${v.unit}`);
    log(`  (${((Date.now() - t0) / 1000).toFixed(0)} s)`);
    results.push(r);
    ctx.results.set(r.name, r);
  }

  const dropped = await dropSchemas(opts.databaseUrl).catch((err) => {
    log(`could not drop bench schemas: ${(err as Error).message}`);
    return [];
  });
  const targets = evaluateTargets(ctx.results);
  const finished = Date.now();
  const meta: ReportMeta = {
    startedAt: new Date(started).toISOString(),
    finishedAt: new Date(finished).toISOString(),
    durationSec: (finished - started) / 1000,
    machine: machineInfo(),
    commit: commitOf(),
    options: opts,
  };
  const profileMd = results.find((r) => r.name === 'profile')?.data?.profileMarkdown as string | undefined;
  const md = markdown(meta, results, targets, profileMd);
  await writeFile(join(opts.outDir, 'results.json'), `${JSON.stringify({ meta, targets, results, droppedSchemas: dropped }, null, 2)}\n`);
  await writeFile(join(opts.outDir, 'results.md'), md);
  if (profileMd) await writeFile(join(opts.outDir, 'profile-summary.md'), profileMd);
  log(`\n${md}`);
  log(`wrote ${join(opts.outDir, 'results.json')} and results.md (${Math.round((finished - started) / 1000)} s)`);
}

let interrupted = false;
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    process.stderr.write(`\nbench: ${sig}, stopping servers and dropping bench schemas\n`);
    killAllSync();
    void dropSchemas(databaseUrl).finally(() => process.exit(130));
  });
}

main().then(
  async () => {
    await stopAll();
    process.exit(0);
  },
  async (err) => {
    process.stderr.write(`bench: ${(err as Error).stack ?? err}\n`);
    killAllSync();
    await dropSchemas(databaseUrl).catch(() => undefined);
    process.exit(1);
  },
);
