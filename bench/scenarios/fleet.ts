import type { Ctx, Scenario, Value } from '../lib/context.js';
import type { DerivedFleet } from '../lib/fleet.js';
import type { FirstBeatResult, OnceResult } from '../lib/ipc.js';
import { closeLoadgen, startLoadgen } from '../lib/measure.js';
import { insertFleet, migrateSchema, newSchemaName } from '../lib/pg.js';
import { processMemory, sleep, waitForIdle } from '../lib/procfs.js';
import { startHive } from '../lib/servers.js';
import { freePort } from '../lib/spawn.js';
import { spread } from '../lib/stats.js';

// A large registry: 100,000 workers in PostgreSQL (inserted as a previous
// hive run would have left them: HEALTHY, with stats and a token each).
// Cold start is spawn -> first acknowledged heartbeat; memory is the RSS of
// the hive once every worker has heartbeated once, compared with the same
// procedure at 1,000 workers, so per-worker growth excludes the fixed cost
// of a warm Node process.

const INTERVAL_MS = 10_000;

interface FleetRun {
  workers: number;
  coldStartMs: number[];
  portOpenMs: number[];
  insertMs: number;
  rssLoadedBytes: number;
  rssLiveBytes: number;
  peakRssBytes: number;
  heartbeatAll: OnceResult;
}

async function runFleet(ctx: Ctx, workers: number, coldStarts: number): Promise<FleetRun> {
  const schema = newSchemaName();
  await migrateSchema(ctx.opts.databaseUrl, schema);
  const fleet: DerivedFleet = { prefix: 'bench-f-', seed: schema, count: workers };
  const insertMs = await insertFleet(ctx.opts.databaseUrl, schema, fleet, INTERVAL_MS);
  ctx.log(`  ${workers} workers inserted in ${insertMs} ms`);
  const lg = await startLoadgen();
  const coldStartMs: number[] = [];
  const portOpenMs: number[] = [];
  try {
    for (let i = 0; i < coldStarts; i++) {
      await waitForIdle(ctx.opts.idleThreshold, ctx.opts.idleMaxWaitMs);
      const port = await freePort();
      // The prober polls the port from its own (already warm) process.
      const probe = lg.call<FirstBeatResult>({ type: 'first-heartbeat', port, fleet, timeoutMs: 120_000 }, 130_000);
      const hive = await startHive({ databaseUrl: ctx.opts.databaseUrl, schema, noWait: true, grpcPort: port });
      try {
        const first = await probe;
        coldStartMs.push(first.firstAckAt - hive.spawnedAt);
        portOpenMs.push(first.portOpenAt - hive.spawnedAt);
        ctx.log(`  ${workers} workers: cold start #${i + 1} ${first.firstAckAt - hive.spawnedAt} ms to the first acknowledged heartbeat (port open after ${first.portOpenAt - hive.spawnedAt} ms)`);
        if (i < coldStarts - 1) continue;
        await sleep(1000);
        const loaded = processMemory(hive.child.pid);
        const heartbeatAll = await lg.call<OnceResult>({ type: 'heartbeat-all', addr: hive.addr, fleet, inFlight: 256, conns: 8 }, 600_000);
        ctx.log(`  ${workers} workers: all heartbeated once in ${Math.round(heartbeatAll.ms)} ms (${heartbeatAll.errors} errors${heartbeatAll.lastError ? `: ${heartbeatAll.lastError}` : ''})`);
        // Let the write-behind flush run (every 2 s) and the heap settle.
        await sleep(5000);
        const live = processMemory(hive.child.pid);
        return { workers, coldStartMs, portOpenMs, insertMs, rssLoadedBytes: loaded.rssBytes, rssLiveBytes: live.rssBytes, peakRssBytes: live.peakRssBytes, heartbeatAll };
      } finally {
        await hive.stop();
      }
    }
    throw new Error('unreachable');
  } finally {
    await closeLoadgen(lg);
  }
}

export const fleetScenario: Scenario = {
  name: 'fleet',
  title: 'hive with 100,000 registered workers (memory, cold start)',
  quick: false,
  async run(ctx) {
    const big = ctx.opts.fleetSize;
    const small = await runFleet(ctx, 1000, 1);
    const large = await runFleet(ctx, big, ctx.opts.repeat);
    const perWorker = (large.rssLiveBytes - small.rssLiveBytes) / (big - 1000);
    const perWorkerLoaded = (large.rssLoadedBytes - small.rssLoadedBytes) / (big - 1000);
    const cold = spread(large.coldStartMs);
    const mib = (b: number) => b / 2 ** 20;
    const values: Record<string, Value> = {
      rssPerLiveWorker: { value: perWorker, unit: 'B', note: `(RSS at ${big} live workers - RSS at 1,000) / ${big - 1000}` },
      rssPerLoadedWorker: { value: perWorkerLoaded, unit: 'B', note: 'same, right after the cold start (before the heartbeats)' },
      rssLive: { value: mib(large.rssLiveBytes), unit: 'MiB', note: `${big} workers, each heartbeated once` },
      rssLiveSmall: { value: mib(small.rssLiveBytes), unit: 'MiB', note: '1,000 workers, each heartbeated once' },
      peakRss: { value: mib(large.peakRssBytes), unit: 'MiB' },
      coldStartMs: { value: cold.median, min: cold.min, max: cold.max, unit: 'ms', note: `spawn -> first acknowledged heartbeat, ${big} workers in PostgreSQL` },
      coldStartSmallMs: { value: small.coldStartMs[0], unit: 'ms', note: '1,000 workers' },
      portOpenMs: { value: spread(large.portOpenMs).median, unit: 'ms', note: 'spawn -> gRPC port accepting' },
      heartbeatAllPerSec: { value: (large.heartbeatAll.ok / large.heartbeatAll.ms) * 1000, unit: 'ops/s', note: 'unary, 256 in flight, each worker once (its own token)' },
      insertMs: { value: large.insertMs, unit: 'ms', note: 'bulk insert of workers and tokens (not the hive)' },
    };
    return {
      status: large.heartbeatAll.errors > 0 ? 'failed' : 'ok',
      reason: large.heartbeatAll.errors > 0 ? `${large.heartbeatAll.errors} heartbeats failed: ${large.heartbeatAll.lastError}` : undefined,
      values,
      notes: [
        'Workers are rows inserted into the bench schema (same columns as hive/store/migrations/001_init.sql): HEALTHY, last seen now, 8-GPU stats, one worker token each.',
        'RSS is sampled from /proc 5 s after the last heartbeat (the write-behind flush has run); no /metrics scrape happens (per-worker series would add memory).',
      ],
      data: { small, large },
    };
  },
};
