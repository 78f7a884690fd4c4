import { describe, expect, it } from 'vitest';
import { WorkerState } from '../../gen/hive/v1/registry_pb.js';
import { HEALTH_BANDS, PRESSURE_THRESHOLDS, healthBand, healthScore, pressureOf, pressureScore } from '../../hive/health-score.js';

const GIB = 1024n ** 3n;

describe('healthBand', () => {
  it('puts each boundary in the upper band, as the bands are written (>= 0.9, 0.7-0.89, 0.4-0.69, < 0.4)', () => {
    expect(healthBand(1)).toBe('healthy');
    expect(healthBand(0.9)).toBe('healthy');
    expect(healthBand(0.8999)).toBe('degraded');
    expect(healthBand(0.89)).toBe('degraded');
    expect(healthBand(0.7)).toBe('degraded');
    expect(healthBand(0.6999)).toBe('unhealthy');
    expect(healthBand(0.69)).toBe('unhealthy');
    expect(healthBand(0.4)).toBe('unhealthy');
    expect(healthBand(0.3999)).toBe('critical');
    expect(healthBand(0)).toBe('critical');
  });
});

describe('pressureScore', () => {
  const t = PRESSURE_THRESHOLDS.disk;

  it('is 1 up to and including the degraded threshold', () => {
    expect(pressureScore(0, t)).toBe(1);
    expect(pressureScore(0.5, t)).toBe(1);
    expect(pressureScore(t.degraded, t)).toBe(1);
  });

  it('crosses each band boundary exactly at its threshold', () => {
    expect(healthBand(pressureScore(t.degraded + 1e-6, t))).toBe('degraded');
    expect(pressureScore(t.unhealthy, t)).toBe(HEALTH_BANDS.degraded);
    expect(healthBand(pressureScore(t.unhealthy, t))).toBe('degraded');
    expect(healthBand(pressureScore(t.unhealthy + 1e-6, t))).toBe('unhealthy');
    expect(pressureScore(t.critical, t)).toBe(HEALTH_BANDS.unhealthy);
    expect(healthBand(pressureScore(t.critical, t))).toBe('unhealthy');
    expect(healthBand(pressureScore(t.critical + 1e-6, t))).toBe('critical');
    expect(pressureScore(1, t)).toBe(0);
  });

  it('falls monotonically and stays in 0..1, even past full', () => {
    let prev = 1;
    for (let u = 0.9; u <= 1.05; u += 0.0005) {
      const s = pressureScore(u, t);
      expect(s).toBeLessThanOrEqual(prev);
      expect(s).toBeGreaterThanOrEqual(0);
      prev = s;
    }
    expect(pressureScore(1.2, t)).toBe(0);
  });

  it('takes an unknown ratio (NaN) as no evidence', () => {
    expect(pressureScore(Number.NaN, t)).toBe(1);
  });
});

describe('healthScore', () => {
  it('scores each state inside its band when resources are fine', () => {
    expect(healthBand(healthScore(WorkerState.HEALTHY)!)).toBe('healthy');
    expect(healthBand(healthScore(WorkerState.DEGRADED)!)).toBe('degraded');
    expect(healthBand(healthScore(WorkerState.UNHEALTHY)!)).toBe('unhealthy');
    for (const s of [WorkerState.STALE, WorkerState.RESTARTING, WorkerState.FAILED]) expect(healthBand(healthScore(s)!)).toBe('critical');
    expect(healthScore(WorkerState.FAILED)).toBe(0);
  });

  it('does not score workers without a current report (PENDING) or gone cleanly (LEFT)', () => {
    expect(healthScore(WorkerState.PENDING)).toBeUndefined();
    expect(healthScore(WorkerState.LEFT)).toBeUndefined();
    expect(healthScore(WorkerState.UNSPECIFIED)).toBeUndefined();
  });

  it('is the worst of state and each resource', () => {
    const { vram, memory, disk } = PRESSURE_THRESHOLDS;
    expect(healthScore(WorkerState.HEALTHY, { vram: 0.9, memory: 0.5, disk: 0.5 })).toBe(1);
    // vLLM-style 90-95% VRAM reservation is normal, not degraded.
    expect(healthScore(WorkerState.HEALTHY, { vram: 0.95 })).toBe(1);
    expect(healthScore(WorkerState.HEALTHY, { vram: vram.unhealthy })).toBe(HEALTH_BANDS.degraded);
    expect(healthBand(healthScore(WorkerState.HEALTHY, { memory: memory.unhealthy + 0.001 })!)).toBe('unhealthy');
    expect(healthBand(healthScore(WorkerState.HEALTHY, { disk: disk.critical + 0.001 })!)).toBe('critical');
    // A degraded worker with a nearly full disk is as bad as the disk.
    expect(healthScore(WorkerState.DEGRADED, { disk: disk.critical })).toBe(HEALTH_BANDS.unhealthy);
    // A stale worker's resources cannot make it look better.
    expect(healthScore(WorkerState.STALE, { vram: 0, memory: 0, disk: 0 })).toBe(healthScore(WorkerState.STALE));
  });
});

describe('pressureOf', () => {
  it('takes the fullest GPU and the fullest disk, and skips what has no total', () => {
    const p = pressureOf({
      gpus: [
        { memoryUsedBytes: 10n * GIB, memoryTotalBytes: 80n * GIB },
        { memoryUsedBytes: 76n * GIB, memoryTotalBytes: 80n * GIB },
        { memoryUsedBytes: 0n, memoryTotalBytes: 0n },
      ],
      memoryUsedBytes: 32n * GIB,
      memoryTotalBytes: 64n * GIB,
      disks: [
        { freeBytes: 90n * GIB, totalBytes: 100n * GIB },
        { freeBytes: 3n * GIB, totalBytes: 100n * GIB },
      ],
    });
    expect(p.vram).toBeCloseTo(0.95);
    expect(p.memory).toBeCloseTo(0.5);
    expect(p.disk).toBeCloseTo(0.97);
    expect(healthBand(healthScore(WorkerState.HEALTHY, p)!)).toBe('degraded');
  });

  it('reports nothing for a worker without GPUs, memory or disks', () => {
    expect(pressureOf({ gpus: [], memoryUsedBytes: 0n, memoryTotalBytes: 0n, disks: [] })).toEqual({ vram: undefined, memory: undefined, disk: undefined });
  });
});
