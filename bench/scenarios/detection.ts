import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Skip, type Scenario } from '../lib/context.js';
import type { DerivedFleet } from '../lib/fleet.js';
import type { FleetResult, FleetSpec, LoadSpec, MeasureResult, SetupResult, StaleMark } from '../lib/ipc.js';
import { closeLoadgen, startLoadgen } from '../lib/measure.js';
import { insertFleet, migrateSchema, newSchemaName } from '../lib/pg.js';
import { processCpuSeconds, sleep } from '../lib/procfs.js';
import { startHive } from '../lib/servers.js';
import { freePort, ROOT, spawnNode } from '../lib/spawn.js';
import { percentile } from '../lib/stats.js';

// Detection lag under load: 10,000 workers heartbeat every second over
// streams (a second load generator process, timer-driven like agents) while
// the closed-loop stream load of the throughput scenario runs beside them;
// the monitor (bin/hive-monitor.mjs) watches the hive. Some workers go
// silent; a watch on STALE workers reports each mark, and its lag is read
// off the hive's clock: state_since - last_seen - 2 x interval.

/** BENCH_MONITOR_ENTRY runs another monitor entry point (same flags) instead of bin/hive-monitor.mjs. */
const MONITOR_ENTRY = process.env.BENCH_MONITOR_ENTRY || 'bin/hive-monitor.mjs';

export function monitorMissing(): string | null {
  if (process.env.BENCH_MONITOR_ENTRY) return existsSync(resolve(ROOT, MONITOR_ENTRY)) ? null : `monitor not available (BENCH_MONITOR_ENTRY=${MONITOR_ENTRY} does not exist)`;
  if (!existsSync(join(ROOT, 'monitor/main.ts'))) return 'monitor not available (monitor/main.ts does not exist yet)';
  return null;
}

/** The monitor's MarkStale answers so far, by answer (hive_monitor_stale_mark_calls_total); empty when /metrics cannot be read. */
async function markAnswers(port: number): Promise<Record<string, number>> {
  try {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const out: Record<string, number> = {};
    for (const m of text.matchAll(/^hive_monitor_stale_mark_calls_total\{answer="(\w+)"\} (\d+)/gm)) if (Number(m[2]) > 0) out[m[1]] = Number(m[2]);
    return out;
  } catch {
    return {};
  }
}

/** Unlabelled samples of a /metrics page by name (NaN where absent); empty when it cannot be read. */
async function scrape(port: number): Promise<(name: string) => number> {
  try {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const values = new Map<string, number>();
    for (const m of text.matchAll(/^([a-zA-Z_:][a-zA-Z0-9_:]*) (\S+)$/gm)) values.set(m[1], Number(m[2]));
    return (name) => values.get(name) ?? NaN;
  } catch {
    return () => NaN;
  }
}

/** The detection fleet's silences: 1 in 20 workers (at most 500), spread over the fleet, going quiet between 10 s and 15 s into the run. */
export function fleetSilences(n: number): Array<{ k: number; atMs: number }> {
  const count = Math.min(500, Math.floor(n / 20));
  return Array.from({ length: count }, (_, i) => ({ k: Math.floor((i * n) / count), atMs: 10_000 + Math.floor((i * 5000) / count) }));
}

/**
 * The lags of the silenced workers' marks, sorted, and the marks of
 * workers that were not silenced: false (their last heartbeat was sent
 * under 2 x interval before the mark) or rightly made (the load generator
 * itself, starved of CPU, sent nothing for that long).
 */
export function markStats(result: FleetResult, intervalMs: number) {
  const lateSender = (m: StaleMark) => (m.sinceSendMs ?? 0) > 2 * intervalMs;
  return {
    lags: result.marks.filter((m) => m.silenced).map((m) => m.lagMs).sort((a, b) => a - b),
    falseMarks: result.marks.filter((m) => !m.silenced && !lateSender(m)).length,
    lateSenderMarks: result.marks.filter((m) => !m.silenced && lateSender(m)).length,
  };
}

/** p50, p99 and the largest of sorted lags, as result values. */
export function lagValues(lags: number[], how: string) {
  return {
    lagP50Ms: { value: percentile(lags, 0.5), unit: 'ms' },
    lagP99Ms: { value: percentile(lags, 0.99), unit: 'ms', note: how },
    lagMaxMs: { value: lags.length ? lags[lags.length - 1] : NaN, unit: 'ms' },
  };
}

export const detectionScenario: Scenario = {
  name: 'detection',
  title: 'detection lag, 10,000 workers at 1 s under stream load',
  quick: false,
  async run(ctx) {
    const missing = monitorMissing();
    if (missing) throw new Skip(`skipped: ${missing}`);
    const n = ctx.opts.detectionWorkers;
    const url = ctx.opts.databaseUrl;
    const schema = newSchemaName();
    await migrateSchema(url, schema);
    const fleet: DerivedFleet = { prefix: 'bench-d-', seed: `${schema}d`, count: n };
    const loadFleet: DerivedFleet = { prefix: 'bench-l-', seed: `${schema}l`, count: ctx.opts.streams };
    await insertFleet(url, schema, fleet, 1000);
    await insertFleet(url, schema, loadFleet, 5000);
    // Per-worker series off: the scrapes below read the hive's own figures, and a page of 2,000 workers' series would be a long turn of its own.
    const hive = await startHive({ databaseUrl: url, schema, env: { HIVE_METRICS_PER_WORKER: 'false' } });
    const load = await startLoadgen('loadgen-stream');
    const fleetGen = await startLoadgen('loadgen-fleet');
    let monitor: ReturnType<typeof spawnNode> | null = null;
    try {
      const spec: LoadSpec = {
        target: 'hive',
        addr: hive.addr,
        mode: 'stream',
        concurrency: ctx.opts.streams,
        conns: ctx.opts.conns,
        hive: { adminToken: hive.adminToken, workers: { mode: 'derived', ...loadFleet }, watchers: 0 },
      };
      await load.call<SetupResult>({ type: 'setup', spec }, 300_000);
      await load.call({ type: 'resume', warmupMs: 1000 });
      const silence = fleetSilences(n);
      const fleetSpec: FleetSpec = { addr: hive.addr, adminToken: hive.adminToken, fleet, intervalMs: 1000, conns: 20, silence, settleMs: 10_000, runMs: 20_000 };
      const c0 = processCpuSeconds(hive.child.pid);
      const t0 = Date.now();
      const measuring = load.call<MeasureResult>({ type: 'measure', windowMs: 20_000 }, 120_000);
      const fleetRun = fleetGen.call<FleetResult>({ type: 'fleet', spec: fleetSpec }, 180_000);
      // The monitor starts on a registry in steady state: the stream load
      // runs and every worker of the fleet has heartbeated (first phases are
      // under one interval). Started before, it would rightly mark the
      // workers that were inserted long ago and had not yet spoken.
      await sleep(3000);
      // Resets the hive's event-loop delay histogram (prom-client starts it afresh at every scrape).
      const before = await scrape(hive.httpPort);
      const monitorPort = await freePort();
      monitor = spawnNode('monitor', MONITOR_ENTRY, ['--hive', hive.addr, '--token', hive.adminToken, '--http-addr', `127.0.0.1:${monitorPort}`], { env: { LOG_LEVEL: process.env.BENCH_MONITOR_LOG_LEVEL || 'warn' }, nodeArgs: process.env.BENCH_MONITOR_NODE_ARGS?.split(' ').filter(Boolean) });
      await sleep(2000);
      if (!monitor.alive()) throw new Skip(`skipped: monitor not available (${MONITOR_ENTRY} exited: ${monitor.tail().split('\n').slice(-3).join(' | ')})`);
      const result = await fleetRun;
      const after = await scrape(hive.httpPort);
      const answers = await markAnswers(monitorPort);
      const streamLoad = await measuring;
      const hiveCores = (processCpuSeconds(hive.child.pid) - c0) / ((Date.now() - t0) / 1000);
      await load.call({ type: 'pause' });
      const { lags, falseMarks, lateSenderMarks } = markStats(result, fleetSpec.intervalMs);
      if (result.missed > 0) ctx.log(`  monitor's last words: ${monitor.tail().split('\n').slice(-12).join(' | ')}`);
      // What bounds the lag: a mark is applied once the hive has read its
      // sockets up to the deadline, at least a turn of its event loop.
      const loopMs = (q: string) => after(`nodejs_eventloop_lag_${q}_seconds`) * 1000;
      const waits = after('hive_stale_mark_read_wait_seconds_count') - before('hive_stale_mark_read_wait_seconds_count');
      const waitMeanMs = !Number.isFinite(waits) ? NaN : waits > 0 ? ((after('hive_stale_mark_read_wait_seconds_sum') - before('hive_stale_mark_read_wait_seconds_sum')) / waits) * 1000 : 0;
      ctx.log(
        `  detection: ${lags.length}/${result.silenced} silent workers marked, p50 ${percentile(lags, 0.5).toFixed(0)} ms, p99 ${percentile(lags, 0.99).toFixed(0)} ms, ` +
          `${falseMarks} false marks (${lateSenderMarks} more of workers the load generator sent late), stream load ${Math.round(streamLoad.opsPerSec)} ops/s beside it, hive ${hiveCores.toFixed(2)} cores; ` +
          `mark calls: ${Object.entries(answers).map(([k, v]) => `${v} ${k}`).join(', ') || 'not read'}`,
      );
      ctx.log(`  the hive's event-loop delay over the run: p50 ${loopMs('p50').toFixed(0)} ms, p99 ${loopMs('p99').toFixed(0)} ms, max ${loopMs('max').toFixed(0)} ms; ${waits} waits of marks for it to read up to their deadline, ${waitMeanMs.toFixed(0)} ms on average`);
      return {
        status: result.missed > 0 || falseMarks > 0 ? 'failed' : 'ok',
        reason: result.missed > 0 || falseMarks > 0 ? `${result.missed} silent workers never marked stale, ${falseMarks} heartbeating workers marked stale` : undefined,
        values: {
          ...lagValues(lags, 'state_since - last_seen - 2 x interval (hive clock)'),
          marked: { value: lags.length, unit: `of ${result.silenced}` },
          falseMarks: { value: falseMarks, unit: 'workers', note: 'heartbeating workers marked stale: their last heartbeat was sent under 2 x interval before the mark' },
          lateSenderMarks: { value: lateSenderMarks, unit: 'workers', note: 'not silenced, but the load generator (starved of CPU) sent nothing for 2 x interval: rightly marked' },
          fleetBeatsPerSec: { value: result.beats / 20, unit: '/s' },
          streamLoadOpsPerSec: { value: streamLoad.opsPerSec, unit: 'ops/s', note: 'the closed-loop stream load running beside the fleet' },
          hiveCores: { value: hiveCores, unit: 'cores' },
          hiveLoopDelayP50Ms: { value: loopMs('p50'), unit: 'ms', note: "the hive's event-loop delay (prom-client, 10 ms timer) from the monitor's start to the fleet's end: about the length of a turn" },
          hiveLoopDelayP99Ms: { value: loopMs('p99'), unit: 'ms' },
          hiveLoopDelayMaxMs: { value: loopMs('max'), unit: 'ms' },
          marksWaitedForRead: { value: waits, unit: 'waits', note: 'waits of marks that came just past the deadline for the hive to read its sockets up to it (hive_stale_mark_read_wait_seconds; a mark refused meanwhile counts too)' },
          markReadWaitMeanMs: { value: waitMeanMs, unit: 'ms' },
          marksRefusedHeartbeated: { value: answers.heartbeated ?? NaN, unit: 'calls', note: 'MarkStale calls the hive refused for a heartbeat the monitor had not seen yet' },
        },
        notes: [
          `${n} workers at 1 s (±10% jitter, random phase) over 20 connections, ${silence.length} of them go silent (stream left open) between 10 s and 15 s.`,
          'The monitor starts 3 s after the fleet, beside the running stream load: it watches a registry in steady state.',
        ],
        data: { fleetErrors: result.errors, lastError: result.lastError },
      };
    } finally {
      await closeLoadgen(load);
      await closeLoadgen(fleetGen);
      await monitor?.stop();
      await hive.stop();
    }
  },
};
