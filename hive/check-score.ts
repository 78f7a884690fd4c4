import { CheckOutcome, HealthBand } from '../gen/hive/v1/health_check_pb.js';
import { HealthStatus, WorkerState, type CheckReport } from '../gen/hive/v1/registry_pb.js';
import { healthBand, healthScore, pressureOf, type HealthBand as BandName } from './health-score.js';

// One worker's score in a health-check run, from the agent's answer. The
// probe's verdict sets the ceiling the way a reported status does in
// health-score.ts (healthy 1, degraded 0.8, unhealthy 0.55); resource
// pressure, failed collectors and a slow round trip to the hive can only
// lower it. No answer is 0. Pure.

/** A failed collector means part of the worker went unseen: at most the middle of the degraded band. */
export const FAILED_COLLECTOR_CEILING = 0.8;
/** A round trip to the hive slower than this is a connectivity problem. */
export const SLOW_RTT_SECONDS = 1;
export const SLOW_RTT_CEILING = 0.8;

const PROBE_STATE: Record<number, WorkerState> = {
  [HealthStatus.UNSPECIFIED]: WorkerState.HEALTHY,
  [HealthStatus.HEALTHY]: WorkerState.HEALTHY,
  [HealthStatus.DEGRADED]: WorkerState.DEGRADED,
  [HealthStatus.UNHEALTHY]: WorkerState.UNHEALTHY,
};

const BAND: Record<BandName, HealthBand> = {
  healthy: HealthBand.HEALTHY,
  degraded: HealthBand.DEGRADED,
  unhealthy: HealthBand.UNHEALTHY,
  critical: HealthBand.CRITICAL,
};

export function bandOf(score: number): HealthBand {
  return BAND[healthBand(score)];
}

export interface WorkerScore {
  outcome: CheckOutcome;
  score: number;
  band: HealthBand;
  reason: string;
}

export function scoreReport(report: CheckReport): WorkerScore {
  const reasons: string[] = [];
  const stats = report.stats;
  let score = healthScore(PROBE_STATE[report.probeStatus] ?? WorkerState.UNHEALTHY, stats ? pressureOf(stats) : {}) ?? 0;
  if (report.probeStatus === HealthStatus.UNHEALTHY || report.probeStatus === HealthStatus.DEGRADED) reasons.push(`probe: ${report.probeDetail}`);
  if (stats && score < 1 && reasons.length === 0) reasons.push('resource pressure (VRAM, memory or disk)');
  for (const c of stats?.collectors ?? []) {
    if (c.success) continue;
    score = Math.min(score, FAILED_COLLECTOR_CEILING);
    reasons.push(`collector ${c.name} failed: ${c.error}`);
  }
  if (report.hiveRttSeconds !== undefined && report.hiveRttSeconds > SLOW_RTT_SECONDS) {
    score = Math.min(score, SLOW_RTT_CEILING);
    reasons.push(`round trip to the hive ${Math.round(report.hiveRttSeconds * 1000)} ms`);
  }
  return { outcome: CheckOutcome.ANSWERED, score, band: bandOf(score), reason: reasons.join('; ') || 'ok' };
}

export function noAnswer(timeoutMs: number): WorkerScore {
  return { outcome: CheckOutcome.NO_ANSWER, score: 0, band: HealthBand.CRITICAL, reason: `no answer within ${formatSeconds(timeoutMs)}` };
}

/** A run's score: the mean of its workers' (a run without workers has nothing wrong: 1). */
export function runScore(scores: readonly number[]): number {
  if (scores.length === 0) return 1;
  return scores.reduce((a, b) => a + b, 0) / scores.length;
}

/** Below the degraded band, or no answer: what the run counts as failed. */
export function isFailed(r: { outcome: CheckOutcome; score: number }): boolean {
  return r.outcome === CheckOutcome.NO_ANSWER || r.score < 0.7;
}

function formatSeconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms} ms`;
}
