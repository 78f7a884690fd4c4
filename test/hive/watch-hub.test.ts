import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../lib/clock.js';
import { WorkerChangeType, WorkerState } from '../../gen/hive/v1/registry_pb.js';
import { WatchHub } from '../../hive/watch-hub.js';
import type { LiveWorker } from '../../hive/worker.js';

// Heartbeat touches reach the watchers that asked for them; a subscriber
// of changes only (the dependency tracker) is not woken by each heartbeat.

const worker = (id: string, state = WorkerState.HEALTHY) => ({ workerId: id, state, labels: {} }) as unknown as LiveWorker;

describe('watch hub', () => {
  it('offers touches to watchers and changes to everyone', () => {
    const hub = new WatchHub(() => 0);
    const all = hub.subscribe(null);
    const changes = hub.subscribe(null, false);
    const w = worker('w1');
    hub.touch(w);
    expect(all.take(10).map((c) => c.worker.workerId)).toEqual(['w1']);
    expect(changes.pending.size).toBe(0);
    w.state = WorkerState.STALE;
    hub.publish(w, WorkerChangeType.UPDATED);
    expect(changes.take(10).map((c) => [c.worker.workerId, c.state])).toEqual([['w1', WorkerState.STALE]]);
    expect(all.take(10).map((c) => c.state)).toEqual([WorkerState.STALE]);
  });

  it('marks a pending change a heartbeat only while everything folded into it was one', () => {
    const hub = new WatchHub(() => 0);
    const sub = hub.subscribe(null);
    const [a, b, c, d] = ['a', 'b', 'c', 'd'].map((id) => worker(id));
    hub.touch(a);
    hub.touch(a);
    hub.touch(b);
    hub.publish(b, WorkerChangeType.UPDATED); // a label change after the heartbeat
    hub.publish(c, WorkerChangeType.ADDED);
    hub.touch(c); // registered, then heartbeated: the watcher has never seen c
    hub.touch(d);
    d.state = WorkerState.STALE;
    hub.publish(d, WorkerChangeType.UPDATED);
    hub.touch(d);
    expect(sub.take(10).map((ch) => [ch.worker.workerId, ch.type, WorkerState[ch.state], ch.touch])).toEqual([
      ['a', WorkerChangeType.UPDATED, 'HEALTHY', true],
      ['b', WorkerChangeType.UPDATED, 'HEALTHY', false],
      ['c', WorkerChangeType.ADDED, 'HEALTHY', false],
      ['d', WorkerChangeType.UPDATED, 'HEALTHY', false], // frozen before the state change: sent whole (a rare path)
      ['d', WorkerChangeType.UPDATED, 'STALE', false],
    ]);
  });

  it('a wait with an idle interval ends after it with nothing pending, or at the first change, which ends the timer', async () => {
    const clock = new ManualClock();
    const hub = new WatchHub(() => 0);
    const sub = hub.subscribe(null);
    const signal = new AbortController().signal;
    let woke = 0;
    void sub.waitForChanges(signal, { clock, ms: 50 }).then(() => woke++);
    await clock.advance(49);
    expect(woke).toBe(0);
    await clock.advance(1);
    expect(woke).toBe(1);
    expect(sub.pending.size).toBe(0); // a progress message is due

    void sub.waitForChanges(signal, { clock, ms: 50 }).then(() => woke++);
    expect(clock.pending).toBe(1);
    hub.touch(worker('w1'));
    await new Promise((r) => setImmediate(r));
    expect(woke).toBe(2);
    expect(clock.pending).toBe(0);
  });

  it('a change that lands as the idle timer fires does not strand the next wait', async () => {
    const clock = new ManualClock();
    const hub = new WatchHub(() => 0);
    const sub = hub.subscribe(null);
    const signal = new AbortController().signal;
    let woke = 0;
    // As the watch handler does: the next wait starts in the continuation of the last.
    void sub.waitForChanges(signal, { clock, ms: 50 }).then(() => {
      woke++;
      sub.take(10);
      void sub.waitForChanges(signal).then(() => woke++); // no idle timer: only a change ends it
    });
    hub.touch(worker('w1')); // its wake is queued for the end of the turn...
    await clock.advance(50); // ...the timer ends the wait first, and the queued wake runs after the next wait began
    expect(woke).toBe(1);
    hub.touch(worker('w2'));
    await new Promise((r) => setImmediate(r));
    expect(woke).toBe(2);
  });

  it('says how far a subscriber is complete: now with nothing pending, else the oldest pending change, a frozen one included', () => {
    let t = 1000;
    const hub = new WatchHub(() => t);
    const sub = hub.subscribe(null);
    expect(sub.completeThrough(t)).toBe(1000);
    const [a, b] = [worker('a'), worker('b')];
    hub.touch(a); // pending since 1000
    t = 1010;
    hub.touch(b); // since 1010
    hub.touch(a); // folds into a's change: still since 1000
    expect(sub.completeThrough(t)).toBe(1000);
    sub.take(1); // a's change is out; b's is left
    expect(sub.completeThrough(1020)).toBe(1010);
    t = 1030;
    b.state = WorkerState.STALE;
    hub.publish(b, WorkerChangeType.UPDATED); // freezes b's heartbeat (since 1010) behind a key of its own
    expect(sub.completeThrough(1040)).toBe(1010);
    expect(sub.take(10).map((c) => [c.state, c.since])).toEqual([
      [WorkerState.HEALTHY, 1010],
      [WorkerState.STALE, 1030],
    ]);
    expect(sub.completeThrough(1050)).toBe(1050);
  });
});
