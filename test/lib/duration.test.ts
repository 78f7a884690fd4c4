import { describe, expect, it } from 'vitest';
import { parseDurationMs, formatDurationMs, msToDuration, durationToMs } from '../../lib/duration.js';
import { fullJitterBackoffMs } from '../../lib/backoff.js';

describe('parseDurationMs', () => {
  it('reads units and compounds', () => {
    expect(parseDurationMs('5s')).toBe(5000);
    expect(parseDurationMs('500ms')).toBe(500);
    expect(parseDurationMs('1m30s')).toBe(90_000);
    expect(parseDurationMs('2')).toBe(2000);
    expect(parseDurationMs('1.5s')).toBe(1500);
  });
  it('rejects garbage', () => {
    expect(() => parseDurationMs('5 parsecs')).toThrow(/not a duration/);
    expect(() => parseDurationMs('')).toThrow();
    expect(() => parseDurationMs('5sx')).toThrow();
  });
  it('round-trips through protobuf Duration', () => {
    expect(durationToMs(msToDuration(1500))).toBe(1500);
    expect(formatDurationMs(90_000)).toBe('90s');
    expect(formatDurationMs(120_000)).toBe('2m');
  });
});

describe('fullJitterBackoffMs', () => {
  it('stays within [0, min(cap, base*2^n)]', () => {
    expect(fullJitterBackoffMs(0, 100, 30_000, () => 0.999)).toBe(99);
    expect(fullJitterBackoffMs(10, 100, 30_000, () => 0.999)).toBe(29_970);
    expect(fullJitterBackoffMs(3, 100, 30_000, () => 0)).toBe(0);
  });
});
