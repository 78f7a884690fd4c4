import { afterEach, describe, expect, it } from 'vitest';
import { watchLoopLag, type LoopLag } from '../../hive/loop-lag.js';

// The hive's own event-loop lag, read off a real loop that a test blocks:
// what a stale mark must wait past the deadline for an unread heartbeat.

let lag: LoopLag | undefined;
afterEach(() => lag?.stop());

const block = (ms: number) => {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    /* a long turn */
  }
};
const turn = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('watchLoopLag', () => {
  it('reports a long turn for the window it fell in and the next one, then forgets it', async () => {
    lag = watchLoopLag(1000);
    await turn(50);
    block(400);
    await turn(30); // t ~ 480 ms
    expect(lag.ms()).toBeGreaterThanOrEqual(350);
    await turn(620); // t ~ 1,100 ms: the next window remembers it
    expect(lag.ms()).toBeGreaterThanOrEqual(350);
    await turn(1000); // t ~ 2,100 ms: two windows on, forgotten
    expect(lag.ms()).toBeLessThan(350);
  });
});
