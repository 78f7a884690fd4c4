import { WorkerState } from '../gen/hive/v1/registry_pb.js';

// A worker's health as one number in 0..1, for dashboards and alerts. The
// bands are those of "core-vibe-hq health checks": healthy >= 0.9,
// degraded 0.7-0.89, unhealthy 0.4-0.69, critical < 0.4. The score is the
// worst of two views: the registry's state (which already folds in what the
// worker reports about itself) and the pressure on its VRAM, memory and
// disks. Pure: the hive computes it at scrape time.

export const HEALTH_BANDS = { healthy: 0.9, degraded: 0.7, unhealthy: 0.4 } as const;

export type HealthBand = 'healthy' | 'degraded' | 'unhealthy' | 'critical';

export function healthBand(score: number): HealthBand {
  if (score >= HEALTH_BANDS.healthy) return 'healthy';
  if (score >= HEALTH_BANDS.degraded) return 'degraded';
  if (score >= HEALTH_BANDS.unhealthy) return 'unhealthy';
  return 'critical';
}

/**
 * The highest score each state allows. A worker that is not heartbeating
 * (stale, restarting, failed) is critical whatever its last stats said.
 * PENDING (no heartbeat yet) and LEFT (clean shutdown) are not scored.
 */
export const STATE_CEILING: Partial<Record<WorkerState, number>> = {
  [WorkerState.HEALTHY]: 1,
  [WorkerState.DEGRADED]: 0.8,
  [WorkerState.UNHEALTHY]: 0.55,
  [WorkerState.RESTARTING]: 0.3,
  [WorkerState.STALE]: 0.2,
  [WorkerState.FAILED]: 0,
};

/**
 * Usage ratios (used / total) at which a resource alone makes a worker
 * degraded, unhealthy and critical. Memory and disk start at the agent's
 * own defaults (memory used > 95%, disk free < 5% = DEGRADED). VRAM starts
 * later: inference servers reserve most of it up front (vLLM: 90%), so only
 * the last per cents mean trouble.
 */
export interface PressureThresholds {
  degraded: number;
  unhealthy: number;
  critical: number;
}

export const PRESSURE_THRESHOLDS: Record<'vram' | 'memory' | 'disk', PressureThresholds> = {
  vram: { degraded: 0.98, unhealthy: 0.99, critical: 0.998 },
  memory: { degraded: 0.95, unhealthy: 0.98, critical: 0.995 },
  disk: { degraded: 0.95, unhealthy: 0.98, critical: 0.995 },
};

/**
 * Score of one resource from its usage ratio. Up to the degraded threshold
 * the resource is no concern (1). Above it the score walks down through the
 * bands, linearly, crossing each band boundary exactly at the next
 * threshold, and reaches 0 when the resource is full.
 */
export function pressureScore(used: number, t: PressureThresholds): number {
  if (!(used > t.degraded)) return 1; // also NaN: an unknown ratio is no evidence
  const u = Math.min(used, 1);
  // Written from the upper end so that a ratio exactly at a threshold lands
  // exactly on the band boundary (0.7, 0.4), never a rounding error below.
  const step = (from: number, to: number, lo: number, hi: number) => to + ((from - to) * (hi - u)) / (hi - lo);
  if (u <= t.unhealthy) return step(HEALTH_BANDS.healthy, HEALTH_BANDS.degraded, t.degraded, t.unhealthy);
  if (u <= t.critical) return step(HEALTH_BANDS.degraded, HEALTH_BANDS.unhealthy, t.unhealthy, t.critical);
  return step(HEALTH_BANDS.unhealthy, 0, t.critical, 1);
}

/** Usage ratios of the fullest GPU, of memory and of the fullest disk; absent when not reported. */
export interface Pressure {
  vram?: number;
  memory?: number;
  disk?: number;
}

/** The stats part of a heartbeat (or of the stored WorkerStats): only what pressure needs. */
export interface StatsLike {
  gpus: ReadonlyArray<{ memoryUsedBytes: bigint; memoryTotalBytes: bigint }>;
  memoryUsedBytes: bigint;
  memoryTotalBytes: bigint;
  disks: ReadonlyArray<{ freeBytes: bigint; totalBytes: bigint }>;
}

const ratio = (used: bigint, total: bigint): number | undefined => (total > 0n ? Number(used) / Number(total) : undefined);

function fullest(values: Array<number | undefined>): number | undefined {
  let max: number | undefined;
  for (const v of values) if (v !== undefined && (max === undefined || v > max)) max = v;
  return max;
}

export function pressureOf(stats: StatsLike): Pressure {
  return {
    vram: fullest(stats.gpus.map((g) => ratio(g.memoryUsedBytes, g.memoryTotalBytes))),
    memory: ratio(stats.memoryUsedBytes, stats.memoryTotalBytes),
    disk: fullest(stats.disks.map((d) => (d.totalBytes > 0n ? 1 - Number(d.freeBytes) / Number(d.totalBytes) : undefined))),
  };
}

/** The health score of a worker in 0..1, or undefined for states that are not scored (PENDING, LEFT). */
export function healthScore(state: WorkerState, pressure: Pressure = {}): number | undefined {
  const ceiling = STATE_CEILING[state];
  if (ceiling === undefined) return undefined;
  let score = ceiling;
  for (const key of ['vram', 'memory', 'disk'] as const) {
    const used = pressure[key];
    if (used !== undefined) score = Math.min(score, pressureScore(used, PRESSURE_THRESHOLDS[key]));
  }
  return score;
}
