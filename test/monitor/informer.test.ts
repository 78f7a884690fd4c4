import { afterEach, describe, expect, it } from 'vitest';
import { create } from '@bufbuild/protobuf';
import { HealthStatus, WorkerChangeType, WorkerSchema, WorkerState, type Worker } from '../../gen/hive/v1/registry_pb.js';
import { msToTimestamp } from '../../lib/duration.js';
import { flushMicrotasks, ManualClock } from '../../lib/clock.js';
import { HiveClock } from '../../monitor/hive-clock.js';
import { createInformer, type Informer, type SyncInfo } from '../../monitor/informer.js';
import { FakeHive, silentLog, T0, watchMsg, worker } from './support.js';

// The informer: snapshot then changes, a local view, resync with the
// difference delivered as changes, reconnect with backoff, hive restarts
// and outage gaps reported to the listeners.

const { ADDED, UPDATED, REMOVED, HEARTBEAT } = WorkerChangeType;

let informer: Informer | undefined;
afterEach(async () => {
  await informer?.stop();
  informer = undefined;
});

function setup() {
  const clock = new ManualClock(T0);
  const hive = new FakeHive({ now: () => clock.now() });
  const log: string[] = [];
  const syncs: SyncInfo[] = [];
  informer = createInformer({
    watch: (signal) => hive.watch(signal),
    clock,
    log: silentLog,
    random: () => 0.5,
    listeners: [
      {
        onSynced: (i) => {
          syncs.push(i);
          log.push(`synced first=${i.first} restarted=${i.hiveRestarted} gap=${i.gapMs}`);
        },
        onChange: (w: Worker, prev?: Worker) => log.push(`change ${w.workerId} ${prev ? WorkerState[prev.state] : '-'}->${WorkerState[w.state]}`),
        onRemove: (prev: Worker) => log.push(`remove ${prev.workerId}`),
        onDisconnected: () => log.push('disconnected'),
        onProgress: (t: number) => log.push(`complete through +${t - T0}`),
      },
    ],
  });
  informer.start();
  return { clock, hive, log, syncs, inf: informer };
}

describe('informer', () => {
  it('builds the view from the snapshot, then applies changes', async () => {
    const { clock, hive, log, inf } = setup();
    await flushMicrotasks();
    hive.stream.push(watchMsg([[ADDED, worker({ id: 'a' })]], { hiveTime: T0 }));
    hive.stream.push(watchMsg([[ADDED, worker({ id: 'b', state: WorkerState.PENDING })]], { hiveTime: T0, synced: true }));
    await flushMicrotasks();
    expect(inf.synced).toBe(true);
    expect(log).toEqual(['synced first=true restarted=false gap=0', 'change a -->HEALTHY', 'change b -->PENDING']);
    hive.stream.push(watchMsg([[UPDATED, worker({ id: 'b', state: WorkerState.HEALTHY, seq: 2 })], [REMOVED, worker({ id: 'a' })]], { hiveTime: clock.now() }));
    await flushMicrotasks();
    expect(log.slice(3)).toEqual(['change b PENDING->HEALTHY', 'remove a']);
    expect(inf.size).toBe(1);
    expect(inf.get('b')!.lastSeq).toBe(2n);
    expect(inf.countIn(WorkerState.HEALTHY)).toBe(1);
    expect(inf.countIn(WorkerState.PENDING)).toBe(0);
  });

  it('merges a heartbeat delta into the worker it has: liveness from the delta, the rest as it was', async () => {
    const { hive, log, inf } = setup();
    await flushMicrotasks();
    const a = worker({ id: 'a', labels: { pool: 'gpu' }, intervalMs: 5000, seq: 1 });
    const delta = create(WorkerSchema, { workerId: 'a', lastSeen: msToTimestamp(T0 + 5000), lastSeq: 2n, sessionId: 's2', status: HealthStatus.DEGRADED, statusDetail: 'hot' });
    // One in the snapshot phase (merged before the listeners see anything), one after it.
    hive.stream.push(watchMsg([[ADDED, a], [HEARTBEAT, delta]], { hiveTime: T0, synced: true }));
    hive.stream.push(watchMsg([[HEARTBEAT, { ...delta, lastSeq: 3n }], [HEARTBEAT, { ...delta, workerId: 'never-sent' }]], { hiveTime: T0 }));
    await flushMicrotasks();
    expect(log).toEqual(['synced first=true restarted=false gap=0', 'change a -->HEALTHY', 'change a HEALTHY->HEALTHY']);
    expect(inf.size).toBe(1);
    expect(inf.get('a')).toEqual({ ...a, lastSeen: delta.lastSeen, lastSeq: 3n, sessionId: 's2', status: HealthStatus.DEGRADED, statusDetail: 'hot' });
  });

  it('nothing reaches the listeners before the snapshot is complete', async () => {
    const { hive, log } = setup();
    await flushMicrotasks();
    hive.stream.push(watchMsg([[ADDED, worker({ id: 'a' })]], { hiveTime: T0 }));
    await flushMicrotasks();
    expect(log).toEqual([]);
  });

  it('follows complete_through from the message that ends the snapshot on, forward only, afresh on each stream', async () => {
    const { clock, hive, log, inf } = setup();
    await flushMicrotasks();
    hive.stream.push(watchMsg([[ADDED, worker({ id: 'a' })]], { hiveTime: T0 }));
    await flushMicrotasks();
    expect(inf.completeThrough).toBeNull();
    hive.stream.push(watchMsg([[ADDED, worker({ id: 'b' })]], { hiveTime: T0 + 5, synced: true, completeThrough: T0 }));
    hive.stream.push(watchMsg([[HEARTBEAT, worker({ id: 'a', seq: 2, lastSeen: T0 + 40 })]], { hiveTime: T0 + 50, completeThrough: T0 + 50 }));
    hive.stream.push(watchMsg([], { hiveTime: T0 + 60, completeThrough: T0 + 50 })); // the watch is behind: it stands still
    hive.stream.push(watchMsg([], { hiveTime: T0 + 100, completeThrough: T0 + 100 })); // a quiet registry's progress message
    await flushMicrotasks();
    expect(log.filter((l) => l.startsWith('complete'))).toEqual(['complete through +0', 'complete through +50', 'complete through +100']);
    expect(log.indexOf('complete through +50')).toBeGreaterThan(log.indexOf('change a HEALTHY->HEALTHY')); // after the changes it covers
    expect(inf.completeThrough).toBe(T0 + 100);
    hive.stream.fail();
    await flushMicrotasks();
    await clock.advance(125);
    expect(inf.completeThrough).toBeNull(); // a new stream, maybe another hive: nothing known yet
  });

  it('reconnects with backoff, resyncs, and delivers what changed while it was away', async () => {
    const { clock, hive, log, syncs, inf } = setup();
    await flushMicrotasks();
    hive.stream.push(watchMsg([[ADDED, worker({ id: 'a' })], [ADDED, worker({ id: 'b' })]], { hiveTime: T0, synced: true }));
    await flushMicrotasks();
    log.length = 0;
    hive.stream.fail();
    await flushMicrotasks();
    expect(log).toEqual(['disconnected']);
    expect(inf.synced).toBe(false);
    // Full jitter with random 0.5: 125 ms, then 250 ms (a failed try in between).
    await clock.advance(125);
    expect(hive.streams).toHaveLength(2);
    hive.stream.fail();
    await flushMicrotasks();
    await clock.advance(250);
    expect(hive.streams).toHaveLength(3);
    // The same hive (same start time): b left meanwhile, c joined, a is gone.
    hive.stream.push(watchMsg([[ADDED, worker({ id: 'b', state: WorkerState.LEFT })], [ADDED, worker({ id: 'c' })]], { hiveTime: clock.now(), synced: true }));
    await flushMicrotasks();
    expect(syncs[1]).toMatchObject({ first: false, hiveRestarted: false, gapMs: 375 });
    expect(log).toEqual(['disconnected', 'synced first=false restarted=false gap=375', 'remove a', 'change b HEALTHY->LEFT', 'change c -->HEALTHY']);
    expect(inf.resyncs).toBe(1);
  });

  it('tells a restarted hive by its start time', async () => {
    const { clock, hive, syncs } = setup();
    await flushMicrotasks();
    hive.stream.push(watchMsg([[ADDED, worker({ id: 'a' })]], { hiveTime: T0, synced: true, startedAt: T0 - 1000 }));
    await flushMicrotasks();
    hive.stream.end(); // a hive shutting down closes its watches
    await flushMicrotasks();
    await clock.advance(3000);
    hive.stream.push(watchMsg([[ADDED, worker({ id: 'a' })]], { hiveTime: clock.now(), synced: true, startedAt: T0 + 2500 }));
    await flushMicrotasks();
    expect(syncs[1]).toMatchObject({ first: false, hiveRestarted: true, gapMs: 3000, hiveStartedAt: T0 + 2500 });
  });

  it('estimates the hive clock from hive_time (never ahead of it)', async () => {
    const { clock, hive, inf } = setup();
    await flushMicrotasks();
    // The hive is 5 s ahead; messages arrive 2, 7 and 3 ms after they were stamped.
    for (const transit of [2, 7, 3]) {
      hive.stream.push(watchMsg([], { hiveTime: clock.now() + 5000 - transit, synced: true }));
      await flushMicrotasks();
    }
    expect(inf.hiveClock.offset()).toBe(4998);
    expect(inf.hiveClock.now()).toBe(clock.now() + 4998);
  });

  it('takes the local clock where the hive\'s stamps allow it: a slow watch does not make every deadline late', async () => {
    const { clock, hive, inf } = setup();
    await flushMicrotasks();
    // Same clock; the first message is stamped 100 ms after the request left, and every one arrives 300 ms after it was stamped.
    await clock.advance(400);
    for (let i = 0; i < 3; i++) {
      hive.stream.push(watchMsg([], { hiveTime: clock.now() - 300, synced: true }));
      await flushMicrotasks();
      await clock.advance(100);
    }
    expect(inf.hiveClock.offset()).toBe(0);
  });

  it('bounds the hive clock from above by the first message of a stream (stamped after the request left)', async () => {
    const { clock, hive, inf } = setup();
    await flushMicrotasks();
    // The hive is 2 s behind; its first message comes 50 ms after the request.
    await clock.advance(50);
    hive.stream.push(watchMsg([], { hiveTime: clock.now() - 2000, synced: true }));
    await flushMicrotasks();
    // Within the round trip of the truth, on the early side (the hive answers an early mark with when).
    expect(inf.hiveClock.offset()).toBe(-1950);
  });
});

describe('HiveClock', () => {
  it('trusts the local clock while both bounds allow it, else takes the nearest bound', () => {
    const c = new HiveClock(() => 1000);
    // Same clocks, 250 ms transits and round trips: 0 lies between the bounds.
    c.sample(750, 1000);
    c.answered(1250, 1000);
    expect(c.offset()).toBe(0);
    // The hive is 400 ms ahead (20 ms transit, an answer stamped 30 ms after the call left): the lower bound is nearest 0.
    c.reset();
    c.sample(1400 - 20, 1000);
    c.answered(1400 + 30, 1000);
    expect(c.offset()).toBe(380);
    c.reset();
    // The hive is 400 ms behind: an answer stamped 300 ms after it was asked proves it.
    c.sample(600 - 100, 1000);
    c.answered(600 + 300 - 1000 + 1000, 1000);
    expect(c.offset()).toBe(-100);
    // Bounds that cross (a clock was stepped): the lower one, which is never early.
    c.sample(1200, 1000);
    expect(c.offset()).toBe(200);
  });

  it('keeps the best of the recent samples and forgets on reset', () => {
    let now = 1000;
    const c = new HiveClock(() => now);
    expect(c.offset()).toBe(0);
    c.sample(1500, 1000);
    c.sample(1490, 1000);
    expect(c.offset()).toBe(500);
    expect(c.toLocal(2500)).toBe(2000);
    now = 2000;
    expect(c.now()).toBe(2500);
    // Old samples age out of the window of 64.
    for (let i = 0; i < 64; i++) c.sample(2100, 2000);
    expect(c.offset()).toBe(100);
    c.reset();
    expect(c.offset()).toBe(0);
  });
});
