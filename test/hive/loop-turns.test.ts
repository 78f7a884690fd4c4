import { afterEach, describe, expect, it } from 'vitest';
import { systemClock } from '../../lib/clock.js';
import { watchLoopTurns, type ReadThrough } from '../../hive/loop-turns.js';

// When the hive has read what reached its sockets by a moment: once a turn
// of the event loop that began at or after it has ended. On a real loop,
// which the test holds up with a long turn.

let turns: ReadThrough | undefined;
afterEach(() => turns?.stop());

const block = (ms: number) => {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    /* a long turn: every socket's backlog */
  }
};

describe('watchLoopTurns', () => {
  it('counts a moment as read once a turn begun after it has ended, not while the turn that saw it runs', async () => {
    turns = watchLoopTurns(systemClock, { tickMs: 5 });
    await new Promise((r) => setTimeout(r, 20));
    block(60); // this turn began before `at` and is still running
    const at = Date.now() - 1;
    expect(turns.readThrough(at)).toBe(false);
    let done = false;
    const read = turns.untilRead(at).then(() => (done = true));
    await new Promise((r) => setImmediate(r)); // the long turn ends; the next one begins after `at`
    expect(done).toBe(false);
    await read;
    expect(turns.readThrough(at)).toBe(true);
    expect(turns.readThrough(Date.now() + 1000)).toBe(false);
  });

  it('a wait ends once a turn begun after it has ended, even if the wall clock stepped back meanwhile', async () => {
    let wall = 1_000_000;
    turns = watchLoopTurns({ now: () => wall, sleep: systemClock.sleep }, { tickMs: 5 });
    await new Promise((r) => setTimeout(r, 20));
    wall += 1;
    const at = wall; // now: no turn has begun at or after it yet
    wall -= 60_000; // the clock is stepped back a minute
    let done = false;
    const read = turns.untilRead(at).then(() => (done = true));
    await new Promise((r) => setImmediate(r));
    expect(done).toBe(false);
    await read; // two ticks later, not a minute
    expect(turns.readThrough(at)).toBe(false);
  });

  it('tells how long each wait lasted on its clock, and nothing for a moment already read', async () => {
    let wall = 1_000_000;
    const waited: number[] = [];
    turns = watchLoopTurns({ now: () => wall, sleep: systemClock.sleep }, { tickMs: 5, onWaited: (ms) => waited.push(ms) });
    await new Promise((r) => setTimeout(r, 20));
    await turns.untilRead(wall - 10_000);
    expect(waited).toEqual([]);
    wall += 1;
    const read = turns.untilRead(wall);
    wall += 40; // the turns that read up to it take 40 ms by this clock
    await read;
    expect(waited).toEqual([40]);
  });

  it('lets go of every wait when stopped, and keeps none after', async () => {
    turns = watchLoopTurns(systemClock, { tickMs: 5 });
    const wait = turns.untilRead(Date.now() + 60_000);
    turns.stop();
    await expect(wait).resolves.toBeUndefined();
    // A mark decided during shutdown must not hang on a ticker that is gone.
    expect(turns.readThrough(Date.now() + 60_000)).toBe(true);
    await expect(turns.untilRead(Date.now() + 60_000)).resolves.toBeUndefined();
  });
});
