import { describe, expect, it } from 'vitest';
import { attemptsInWindow, backoffMs, cleanRunResets, delayBeforeAttempt, mayAttempt } from '../../monitor/restart-schedule.js';

// The restart arithmetic: backoff schedule, attempt window, reset.

const P = { restartAfterMs: 1000, backoffInitialMs: 10_000, backoffMaxMs: 300_000, maxAttempts: 5, windowMs: 600_000 };
const mid = () => 0.5; // no jitter
const low = () => 0;
const high = () => 0.999999;

describe('backoff schedule', () => {
  it('doubles from backoff_initial per failed attempt up to backoff_max', () => {
    const schedule = [2, 3, 4, 5, 6, 7, 8, 9].map((n) => backoffMs(n, P, mid));
    expect(schedule).toEqual([10_000, 20_000, 40_000, 80_000, 160_000, 300_000, 300_000, 300_000]);
  });

  it('jitters each delay by ±20%, never above the cap', () => {
    expect(backoffMs(2, P, low)).toBe(8000);
    expect(backoffMs(2, P, high)).toBe(12_000);
    expect(backoffMs(8, P, low)).toBe(240_000);
    expect(backoffMs(8, P, high)).toBe(300_000);
    for (let i = 0; i < 1000; i++) {
      const d = backoffMs(3, P);
      expect(d).toBeGreaterThanOrEqual(16_000);
      expect(d).toBeLessThanOrEqual(24_000);
    }
  });

  it('the first attempt waits restart_after; later ones at least their backoff', () => {
    expect(delayBeforeAttempt(1, P, mid)).toBe(1000);
    expect(delayBeforeAttempt(2, P, mid)).toBe(10_000);
    expect(delayBeforeAttempt(3, P, mid)).toBe(20_000);
    expect(delayBeforeAttempt(2, { ...P, restartAfterMs: 60_000 }, mid)).toBe(60_000);
  });
});

describe('attempt window', () => {
  it('allows max_attempts within the window, sliding', () => {
    const t = 1_000_000;
    const attempts = [t - 700_000, t - 500_000, t - 400_000, t - 100_000, t - 1];
    expect(attemptsInWindow(attempts, t, P.windowMs)).toEqual([t - 500_000, t - 400_000, t - 100_000, t - 1]);
    expect(mayAttempt(attempts, t, P)).toBe(true); // 4 in the window
    expect(mayAttempt([...attempts, t], t, P)).toBe(false); // 5 in the window
    // An attempt ages out exactly one window after it was made.
    expect(mayAttempt([...attempts, t], t + 100_000, P)).toBe(true);
  });

  it('a clean run of a whole window resets', () => {
    expect(cleanRunResets(null, 10, 5)).toBe(false);
    expect(cleanRunResets(0, 599_999, P.windowMs)).toBe(false);
    expect(cleanRunResets(0, 600_000, P.windowMs)).toBe(true);
  });
});
