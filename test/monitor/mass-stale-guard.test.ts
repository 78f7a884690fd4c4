import { describe, expect, it } from 'vitest';
import { MassStaleGuard, type GuardInfo } from '../../monitor/mass-stale-guard.js';

// The mass-stale guard: engage on a wave, release when heartbeats come
// back, then hand out restart slots at a limited rate.

function setup(o: Partial<ConstructorParameters<typeof MassStaleGuard>[0]> = {}) {
  let fleet = 10;
  const engaged: GuardInfo[] = [];
  const released: GuardInfo[] = [];
  const g = new MassStaleGuard({
    threshold: 0.5,
    minCount: 3,
    windowMs: null,
    resumeIntervalMs: 10_000,
    fleetSize: () => fleet,
    onEngage: (i) => engaged.push(i),
    onRelease: (i) => released.push(i),
    ...o,
  });
  return { g, engaged, released, setFleet: (n: number) => (fleet = n) };
}

describe('mass-stale guard', () => {
  it('engages when more than half the fleet goes stale within the window (2x interval)', () => {
    const { g, engaged } = setup();
    // Killed together, the workers go stale spread over one interval (1 s) plus jitter.
    for (const [i, at] of [0, 300, 600, 800, 1000].entries()) g.noteStale(`w${i}`, at, at, 1000);
    expect(g.engaged).toBe(false); // 5 of 10: half is not more than half
    g.noteStale('w5', 1100, 1100, 1000);
    expect(g.engaged).toBe(true); // 6 of 10 within 2 s
    expect(engaged).toEqual([{ stale: 6, fleet: 10, share: 0.6, recent: 6, windowMs: 2000 }]);
    g.noteStale('w6', 1200, 1200, 1000);
    expect(engaged).toHaveLength(1); // one alert per engagement
  });

  it('a slow trickle does not engage it, however many go stale in total', () => {
    const { g } = setup();
    for (let i = 0; i < 8; i++) g.noteStale(`w${i}`, i * 5000, i * 5000, 1000);
    expect(g.staleCount).toBe(8);
    expect(g.recentCount).toBe(1);
    expect(g.engaged).toBe(false);
  });

  it('needs at least minCount workers (a fleet of two losing both is not a mass event)', () => {
    const { g, setFleet } = setup();
    setFleet(2);
    g.noteStale('a', 0, 0, 1000);
    g.noteStale('b', 10, 10, 1000);
    expect(g.engaged).toBe(false);
  });

  it('workers that recover quickly do not count towards a wave', () => {
    const { g } = setup();
    for (let i = 0; i < 4; i++) {
      g.noteStale(`w${i}`, i * 100, i * 100, 1000);
      g.noteNotStale(`w${i}`, i * 100 + 50);
    }
    g.noteStale('w9', 500, 500, 1000);
    expect(g.engaged).toBe(false);
  });

  it('old marks from a snapshot do not make a wave', () => {
    const { g } = setup();
    for (let i = 0; i < 8; i++) g.noteStale(`w${i}`, -60_000 - i, 0, 1000);
    expect(g.staleCount).toBe(8);
    expect(g.engaged).toBe(false);
  });

  it('releases when the stale share falls below the threshold, then rations restarts', () => {
    const { g, released } = setup();
    for (let i = 0; i < 7; i++) g.noteStale(`w${i}`, 0, 0, 1000);
    expect(g.engaged).toBe(true);
    g.noteNotStale('w0', 5000); // 6 of 10 still stale: stays engaged
    expect(g.engaged).toBe(true);
    g.noteNotStale('w1', 6000); // 5 of 10: no longer more than half
    expect(g.engaged).toBe(false);
    expect(released).toHaveLength(1);
    expect(g.limiting).toBe(true);
    // Four held restarts ask at once: one slot per resume interval.
    expect([g.reserve(6000), g.reserve(6000), g.reserve(6000), g.reserve(6000)]).toEqual([6000, 16_000, 26_000, 36_000]);
    // Asking after its slot, a late caller gets the next free one.
    expect(g.reserve(20_000)).toBe(46_000);
    // A caller finding its slot free goes at once; the limit stays on...
    expect(g.reserve(56_000)).toBe(56_000);
    expect(g.limiting).toBe(true);
    // ...until a whole interval after the last slot passes with nobody asking.
    expect(g.reserve(76_000)).toBe(76_000);
    expect(g.limiting).toBe(false);
    expect(g.reserve(76_001)).toBe(76_001);
  });

  it('a fleet that shrinks (workers left) can release it too', () => {
    const { g, setFleet } = setup();
    for (let i = 0; i < 6; i++) g.noteStale(`w${i}`, 0, 0, 1000);
    expect(g.engaged).toBe(true);
    setFleet(20); // e.g. more workers joined
    g.maybeRelease(1000);
    expect(g.engaged).toBe(false);
  });

  it('handles a wave of 100k workers in linear time', () => {
    const { g, setFleet } = setup({ windowMs: 10_000 });
    setFleet(150_000);
    const t0 = performance.now();
    for (let i = 0; i < 100_000; i++) g.noteStale(`w${i}`, i / 20, i / 20, 1000);
    expect(g.engaged).toBe(true);
    for (let i = 0; i < 100_000; i++) g.noteNotStale(`w${i}`, 6000);
    expect(g.engaged).toBe(false);
    expect(performance.now() - t0).toBeLessThan(2000);
  });
});
