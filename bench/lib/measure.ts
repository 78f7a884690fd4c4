import { performance } from 'node:perf_hooks';
import { cpus } from 'node:os';
import { RUN_NUMBERS, type Ctx, type LoadOutcome, type Run, type RunNumber } from './context.js';
import { loadgenHandle, type LoadgenHandle, type LoadSpec, type MeasureResult, type SetupResult } from './ipc.js';
import { busyShare, machineTicks, processCpuSeconds, processMemory, waitForIdle } from './procfs.js';
import { spawnNode } from './spawn.js';
import { spread, type Spread } from './stats.js';

// One load measurement: a load generator process drives the server; before
// each window the machine must be idle; server CPU comes from /proc over the
// window, ops and latency from the load generator over the same window.

export async function startLoadgen(name = 'loadgen'): Promise<LoadgenHandle> {
  // BENCH_LOADGEN_NODE_ARGS: node flags for the load generators (a profiler, an event-loop gap logger).
  const lg = loadgenHandle(spawnNode(name, 'bench/loadgen.ts', [], { ipc: true, nodeArgs: process.env.BENCH_LOADGEN_NODE_ARGS?.split(' ').filter(Boolean) }));
  await lg.call({ type: 'ping' }, 60_000);
  return lg;
}

export async function closeLoadgen(lg: LoadgenHandle): Promise<void> {
  await lg.call({ type: 'close' }, 10_000).catch(() => undefined);
  await lg.child.stop(3000);
}

export function summarize(runs: Run[]): Record<RunNumber, Spread> {
  return Object.fromEntries(RUN_NUMBERS.map((k) => [k, spread(runs.map((r) => r[k]))])) as Record<RunNumber, Spread>;
}

export interface MeasureOptions {
  /** Repetitions (default: ctx.opts.repeat). */
  repeat?: number;
  /** How the progress lines name this load. */
  label?: string;
}

/** Sets up the load against a running server process and measures it `repeat` times. */
export async function measureLoad(ctx: Ctx, serverPid: number, spec: LoadSpec, opts: MeasureOptions = {}): Promise<LoadOutcome> {
  const { windowMs, warmupMs, idleThreshold, idleMaxWaitMs } = ctx.opts;
  const repeat = opts.repeat ?? ctx.opts.repeat;
  const label = opts.label ?? `${spec.target} ${spec.mode}`;
  const lg = await startLoadgen();
  try {
    const setup = await lg.call<SetupResult>({ type: 'setup', spec }, 300_000);
    ctx.log(`  ${label}: set up in ${Math.round(setup.setupMs)} ms (${spec.concurrency} ${spec.mode === 'stream' ? 'streams' : 'in flight'} over ${spec.conns} connections)`);
    const runs: Run[] = [];
    for (let r = 0; r < repeat; r++) {
      const idle = await waitForIdle(idleThreshold, idleMaxWaitMs);
      await lg.call({ type: 'resume', warmupMs });
      const ncpu = cpus().length;
      const m0 = machineTicks();
      const c0 = processCpuSeconds(serverPid);
      const t0 = performance.now();
      const startedAt = Date.now();
      const res = await lg.call<MeasureResult>({ type: 'measure', windowMs }, windowMs + 60_000);
      const c1 = processCpuSeconds(serverPid);
      const t1 = performance.now();
      const m1 = machineTicks();
      const endedAt = Date.now();
      const mem = processMemory(serverPid);
      await lg.call({ type: 'pause' }, 60_000);
      const wallSec = (t1 - t0) / 1000;
      const serverCpu = c1 - c0;
      const serverCores = serverCpu / wallSec;
      const loadgenCores = res.loadgenCpuSec / (res.windowMs / 1000);
      const machineCores = busyShare(m0, m1) * ncpu;
      const run: Run = {
        opsPerSec: res.opsPerSec,
        p50Ms: res.p50Ms,
        p99Ms: res.p99Ms,
        // Scale the server's CPU to the load generator's window (they differ by an IPC hop at each end).
        cpuUsPerOp: res.ops > 0 ? (serverCpu * (res.windowMs / 1000 / wallSec) * 1e6) / res.ops : NaN,
        serverCores,
        serverRssBytes: mem.rssBytes,
        loadgenCores,
        otherCores: Math.max(0, machineCores - serverCores - loadgenCores),
        idleBefore: idle,
        ops: res.ops,
        errors: res.errors,
        lastError: res.lastError,
        mismatches: res.mismatches,
        watchMessages: res.watchMessages,
        startedAt,
        endedAt,
      };
      runs.push(run);
      ctx.log(
        `  ${label} #${r + 1}: ${Math.round(run.opsPerSec)} ops/s, p50 ${(run.p50Ms ?? NaN).toFixed(1)} ms, p99 ${(run.p99Ms ?? NaN).toFixed(1)} ms, ` +
          `server ${run.cpuUsPerOp.toFixed(1)} us/op (${run.serverCores.toFixed(2)} cores), loadgen ${run.loadgenCores.toFixed(2)} cores, ` +
          `other ${run.otherCores.toFixed(2)} cores, idle before ${(idle.busy * 100).toFixed(0)}% busy${idle.idle ? '' : ' (gave up waiting)'}` +
          (run.errors ? `, ${run.errors} errors (${run.lastError})` : '') +
          (run.mismatches ? `, ${run.mismatches} bad acks` : ''),
      );
    }
    return {
      setup,
      runs,
      summary: summarize(runs),
      spec: { target: spec.target, mode: spec.mode, concurrency: spec.concurrency, conns: spec.conns, windowMs, warmupMs, watchers: spec.hive?.watchers },
    };
  } finally {
    await closeLoadgen(lg);
  }
}
