import type { Clock } from '../lib/clock.js';
import type { Sample } from './agent.js';
import type { Collector } from './collectors/collector.js';
import { diskFreeRatio } from './collectors/disk.js';
import { memoryUsedRatio } from './collectors/memory.js';
import { runCollectors, type CollectorRun } from './collectors/runner.js';
import type { HealthEvaluator } from './health.js';
import type { LatencyPercentiles, LatencyWindow } from './latency-window.js';
import type { HttpProbe, ProbeResult } from './probe.js';
import type { Supervisor } from './supervisor.js';
import { boundText } from './wire-text.js';

// One heartbeat's content: run the collectors and the probe side by side,
// then let the health evaluator (with its hysteresis) decide the status.

export interface SamplerDeps {
  clock: Clock;
  collectors: readonly Collector[];
  health: HealthEvaluator;
  probe?: HttpProbe;
  latency?: LatencyWindow;
  supervisor?: Supervisor;
  collectorTimeoutMs?: number;
  /** Observes every run (agent metrics). */
  onSample?: (run: CollectorRun, probe: ProbeResult | undefined, window: LatencyPercentiles | undefined) => void;
}

export function createSampler(deps: SamplerDeps): () => Promise<Sample> {
  return async () => {
    const [run, probe] = await Promise.all([
      runCollectors(deps.collectors, { clock: deps.clock, timeoutMs: deps.collectorTimeoutMs ?? 10_000 }),
      deps.probe?.probe(),
    ]);
    // Only answers count towards latency: a timeout or a refused connection
    // says nothing about how fast the worker responds.
    if (probe?.httpStatus !== undefined) deps.latency?.add(probe.latencyMs);
    const pct = deps.latency?.percentiles();
    deps.onSample?.(run, probe, pct);
    const sup = deps.supervisor?.state();
    const verdict = deps.health.observe({
      probe,
      processExit: sup && !sup.running && sup.exitedAt !== null ? { exitCode: sup.exitCode, signal: sup.signal } : undefined,
      disks: run.stats.disks.flatMap((d) => {
        const freeRatio = diskFreeRatio(d);
        return freeRatio === undefined ? [] : [{ path: d.path, freeRatio }];
      }),
      memoryUsedRatio: memoryUsedRatio({ totalBytes: run.stats.memoryTotalBytes, usedBytes: run.stats.memoryUsedBytes }),
    });
    return {
      status: verdict.status,
      statusDetail: boundText(verdict.detail),
      gpus: run.stats.gpus,
      memoryUsedBytes: run.stats.memoryUsedBytes,
      memoryTotalBytes: run.stats.memoryTotalBytes,
      disks: run.stats.disks,
      load1: run.stats.load1,
      collectors: run.statuses,
      probeLatencyP50Seconds: pct ? pct.p50 / 1000 : undefined,
      probeLatencyP95Seconds: pct ? pct.p95 / 1000 : undefined,
      probeLatencyP99Seconds: pct ? pct.p99 / 1000 : undefined,
    };
  };
}
