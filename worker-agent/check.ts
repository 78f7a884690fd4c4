import { create } from '@bufbuild/protobuf';
import { HealthStatus, WorkerStatsSchema, type WorkerStats } from '../gen/hive/v1/registry_pb.js';
import type { Clock } from '../lib/clock.js';
import type { Collector } from './collectors/collector.js';
import { runCollectors } from './collectors/runner.js';
import type { HttpProbe } from './probe.js';

// What the agent answers to a CHECK command: the probe and every collector
// run at once, now, outside the heartbeat schedule and without touching
// the health evaluator's hysteresis (a check reports what it sees).

export interface CheckOutcome {
  probeStatus: HealthStatus;
  probeLatencySeconds: number;
  probeDetail: string;
  stats: WorkerStats;
}

export interface CheckDeps {
  clock: Clock;
  collectors: readonly Collector[];
  probe?: HttpProbe;
  collectorTimeoutMs?: number;
}

export function createCheck(deps: CheckDeps): () => Promise<CheckOutcome> {
  return async () => {
    const [run, probe] = await Promise.all([
      runCollectors(deps.collectors, { clock: deps.clock, timeoutMs: deps.collectorTimeoutMs ?? 10_000 }),
      deps.probe?.probe(),
    ]);
    return {
      probeStatus: probe?.status ?? HealthStatus.UNSPECIFIED,
      probeLatencySeconds: probe ? probe.latencyMs / 1000 : 0,
      probeDetail: probe?.detail ?? 'no probe configured',
      stats: create(WorkerStatsSchema, { ...run.stats, collectors: run.statuses }),
    };
  };
}
