import { describe, expect, it } from 'vitest';
import { exponentialMs, fullJitterBackoffMs } from '../../lib/backoff.js';

// Reconnect backoff: full jitter (uniform in [0, ceiling)), the ceiling
// doubling from the base up to the cap.

describe('fullJitterBackoffMs', () => {
  it('is the random fraction of a ceiling that doubles from the base up to the cap', () => {
    const top = () => 0.99999;
    expect([0, 1, 2, 3, 4, 5, 6, 7, 20, 1000].map((n) => fullJitterBackoffMs(n, 500, 30_000, top))).toEqual([
      499, 999, 1999, 3999, 7999, 15_999, 29_999, 29_999, 29_999, 29_999,
    ]);
    expect([0, 3, 10].map((n) => fullJitterBackoffMs(n, 500, 30_000, () => 0.5))).toEqual([250, 2000, 15_000]);
    expect(fullJitterBackoffMs(9, 500, 30_000, () => 0)).toBe(0);
  });

  it('stays within [0, min(cap, base x 2^n)) for any random value', () => {
    let x = 7;
    const lcg = () => (x = (x * 48_271) % 2_147_483_647) / 2_147_483_647; // Park-Miller
    for (let n = 0; n < 64; n++) {
      const d = fullJitterBackoffMs(n, 500, 30_000, lcg);
      expect(Number.isInteger(d)).toBe(true);
      expect(d).toBeGreaterThanOrEqual(0);
      expect(d).toBeLessThan(Math.min(30_000, 500 * 2 ** n));
    }
  });
});

describe('exponentialMs', () => {
  it('doubles from the base and stops at the cap', () => {
    expect([0, 1, 2, 3, 4, 5, 100].map((n) => exponentialMs(n, 10_000, 300_000))).toEqual([10_000, 20_000, 40_000, 80_000, 160_000, 300_000, 300_000]);
  });
});
