import { create } from '@bufbuild/protobuf';
import { Code, ConnectError } from '@connectrpc/connect';
import { afterEach, describe, expect, it } from 'vitest';
import { WorkerSchema, WorkerState, type Worker } from '../../gen/hive/v1/registry_pb.js';
import { flushMicrotasks, ManualClock } from '../../lib/clock.js';
import { msToTimestamp } from '../../lib/duration.js';
import { createStaleDetector, deadlineOf, graceBaseAfterGap, HOLD_CAP_MS, type StaleDetector } from '../../monitor/stale-detector.js';
import { FakeHive, silentLog, T0, worker } from './support.js';

// The stale detector on a manual clock against a fake hive that applies
// the real hive's compare-and-set and due-time rules.

let detector: StaleDetector | undefined;
afterEach(async () => {
  await detector?.stop();
  detector = undefined;
});

function setup(opts: { skewMs?: number; maxInFlight?: number; viewThrough?: () => number | null } = {}) {
  const clock = new ManualClock(T0);
  const hive = new FakeHive({ now: () => clock.now() });
  const marked: Array<{ id: string; lagMs: number }> = [];
  const answers: string[] = [];
  const stamps: Array<{ hiveMs: number; sentAt: number }> = [];
  detector = createStaleDetector({
    clock,
    log: silentLog,
    hive,
    // The monitor's estimate of the hive's clock (skewMs: how wrong it is).
    hiveNow: () => clock.now() + (opts.skewMs ?? 0),
    maxInFlight: opts.maxInFlight,
    viewThrough: opts.viewThrough,
    onMarked: (w, lagMs) => marked.push({ id: w.workerId, lagMs }),
    onAnswer: (a) => answers.push(a),
    onStamped: (hiveMs, sentAt) => stamps.push({ hiveMs, sentAt }),
  });
  detector.start();
  /** A heartbeat reaches the hive (and, unless told otherwise, the monitor's watch). */
  const beat = (id: string, seq: number, o: { seen?: boolean } = {}) => {
    const w = worker({ id, seq, lastSeen: clock.now() });
    hive.put(w);
    if (o.seen !== false) detector!.observe(w);
    return w;
  };
  return { clock, hive, marked, answers, stamps, d: detector, beat };
}

describe('deadlineOf', () => {
  it('is last seen + 2x interval, or registration + 2x before the first beat', () => {
    expect(deadlineOf(worker({ id: 'a', lastSeen: T0, intervalMs: 5000 }), -Infinity)).toBe(T0 + 10_000);
    expect(deadlineOf(worker({ id: 'a', lastSeen: null, registeredAt: T0, intervalMs: 1000 }), -Infinity)).toBe(T0 + 2000);
  });

  it('never falls inside the hive\'s post-restart grace or the monitor\'s own', () => {
    expect(deadlineOf(worker({ id: 'a', lastSeen: T0, graceUntil: T0 + 7000 }), -Infinity)).toBe(T0 + 7000);
    expect(deadlineOf(worker({ id: 'a', lastSeen: T0 }), T0 + 500)).toBe(T0 + 2500);
    expect(deadlineOf(worker({ id: 'a', lastSeen: T0 + 9000 }), T0 + 500)).toBe(T0 + 11_000);
  });

  it('the outage grace is a multiple of the measured outage, capped', () => {
    expect(graceBaseAfterGap(T0, 3000, 6, 60_000)).toBe(T0 + 18_000);
    expect(graceBaseAfterGap(T0, 30_000, 6, 60_000)).toBe(T0 + 60_000);
    expect(graceBaseAfterGap(T0, 0, 6, 60_000)).toBe(T0);
  });
});

describe('stale detector', () => {
  it('holds a due mark until the view is complete through half an interval before the deadline', async () => {
    let through: number | null = T0;
    const { clock, hive, marked, answers, beat, d } = setup({ viewThrough: () => through });
    beat('w1', 1); // deadline T0 + 2000; the view must reach T0 + 1500
    await clock.advance(2000);
    expect(hive.called('markStale')).toHaveLength(0);
    expect(d.held).toBe(1);
    through = T0 + 1499;
    d.advanced();
    await flushMicrotasks();
    expect(hive.called('markStale')).toHaveLength(0);
    await clock.advance(300); // the view, not the clock, lets it go
    expect(hive.called('markStale')).toHaveLength(0);
    through = T0 + 1500;
    d.advanced();
    await flushMicrotasks();
    expect(hive.called('markStale')).toHaveLength(1);
    expect(marked).toEqual([{ id: 'w1', lagMs: 300 }]);
    expect(answers).toEqual(['applied']);
    expect(d.held).toBe(0);
  });

  it('a heartbeat the view brings while a mark is held drops the mark and sets the new deadline', async () => {
    let through: number | null = T0;
    const { clock, hive, beat, d } = setup({ viewThrough: () => through });
    beat('w1', 1);
    await clock.advance(2100);
    expect(d.held).toBe(1);
    // The late view brings the heartbeat the hive had at T0 + 1000 (the clock is at T0 + 2100).
    const late = worker({ id: 'w1', seq: 2, lastSeen: T0 + 1000 });
    hive.put(late);
    through = T0 + 1200;
    d.observe(late);
    d.advanced();
    await flushMicrotasks();
    expect(d.held).toBe(0);
    expect(hive.called('markStale')).toHaveLength(0); // without the hold: one refused for heartbeating since
    expect(d.deadline('w1')).toBe(T0 + 3000);
    through = T0 + 3000;
    await clock.advance(900);
    d.advanced();
    await flushMicrotasks();
    expect(hive.called('markStale')).toHaveLength(1);
    expect(hive.workers.get('w1')!.state).toBe(WorkerState.STALE);
  });

  it('a held mark goes out on the clock once the view has stood still for the cap past the deadline', async () => {
    const { clock, hive, beat, d } = setup({ viewThrough: () => T0 }); // a watch that never moves on
    beat('w1', 1, {});
    await clock.advance(2000);
    expect(d.held).toBe(1);
    await clock.advance(HOLD_CAP_MS - 1);
    expect(hive.called('markStale')).toHaveLength(0);
    await clock.advance(1);
    expect(hive.called('markStale')).toHaveLength(1);
    expect(d.held).toBe(0);
    expect(hive.workers.get('w1')!.state).toBe(WorkerState.STALE);
  });

  it('a held mark waits while the registry is out of sight, view or cap notwithstanding, and goes out once it is back', async () => {
    let through: number | null = T0;
    const { clock, hive, beat, d } = setup({ viewThrough: () => through });
    beat('w1', 1);
    await clock.advance(2000);
    expect(d.held).toBe(1);
    d.setEnabled(false);
    through = T0 + 5000;
    d.advanced();
    await clock.advance(HOLD_CAP_MS + 1000);
    expect(hive.called('markStale')).toHaveLength(0);
    expect(d.held).toBe(1);
    d.setEnabled(true);
    await flushMicrotasks();
    expect(hive.called('markStale')).toHaveLength(1);
    expect(d.held).toBe(0);
  });

  it('marks on the clock alone where the hive does not say how far the view is complete', async () => {
    const { clock, hive, beat, d } = setup({ viewThrough: () => null });
    beat('w1', 1);
    await clock.advance(2000);
    expect(d.held).toBe(0);
    expect(hive.called('markStale')).toHaveLength(1);
  });

  it('marks a silent worker at twice its interval after the last heartbeat, not before', async () => {
    const { clock, hive, marked, beat } = setup();
    beat('w1', 1);
    await clock.advance(1999);
    expect(hive.called('markStale')).toHaveLength(0);
    await clock.advance(1);
    expect(hive.called('markStale')).toHaveLength(1);
    expect(hive.workers.get('w1')!.state).toBe(WorkerState.STALE);
    expect(marked).toEqual([{ id: 'w1', lagMs: 0 }]);
    const [ref] = hive.called('markStale')[0].args as [{ observedSeq: bigint; observedSessionId: string }];
    expect(ref).toMatchObject({ observedSeq: 1n, observedSessionId: 's1' });
  });

  it('every heartbeat pushes the deadline back', async () => {
    const { clock, hive, beat, d } = setup();
    beat('w1', 1);
    for (let seq = 2; seq <= 10; seq++) {
      await clock.advance(1000);
      beat('w1', seq);
    }
    expect(hive.called('markStale')).toHaveLength(0);
    expect(d.deadline('w1')).toBe(clock.now() + 2000);
    await clock.advance(2000);
    expect(hive.called('markStale')).toHaveLength(1);
  });

  it('CAS race: a heartbeat arriving while MarkStale is in flight wins, and its deadline stands', async () => {
    const { clock, hive, marked, beat, d } = setup();
    beat('w1', 1);
    let release!: () => void;
    hive.gate = new Promise<void>((r) => (release = r));
    await clock.advance(2000);
    expect(hive.called('markStale')).toHaveLength(1); // in flight, held at the gate
    // The late heartbeat reaches the hive and the watch while the call is held.
    await clock.advance(10);
    beat('w1', 2);
    hive.gate = null;
    release();
    await flushMicrotasks();
    expect(hive.workers.get('w1')!.state).toBe(WorkerState.HEALTHY); // the heartbeat won
    expect(marked).toEqual([]);
    expect(d.deadline('w1')).toBe(T0 + 2010 + 2000); // the new deadline survived the refusal
    await clock.advance(2000);
    expect(hive.called('markStale')).toHaveLength(2);
    expect(hive.workers.get('w1')!.state).toBe(WorkerState.STALE);
    expect((hive.called('markStale')[1].args[0] as { observedSeq: bigint }).observedSeq).toBe(2n);
  });

  it('CAS race: a heartbeat the watch has not delivered yet also wins; the deadline waits for the watch', async () => {
    const { clock, hive, marked, beat, d } = setup();
    beat('w1', 1);
    await clock.advance(1999);
    beat('w1', 2, { seen: false }); // at the hive, not yet at the monitor
    await clock.advance(1);
    expect(hive.called('markStale')).toHaveLength(1);
    expect(hive.workers.get('w1')!.state).toBe(WorkerState.HEALTHY);
    expect(marked).toEqual([]);
    expect(d.deadline('w1')).toBeUndefined(); // dropped: "heartbeated since"
    d.observe(hive.workers.get('w1')!); // the watch catches up
    expect(d.deadline('w1')).toBe(T0 + 1999 + 2000);
  });

  it('an update with the same seq during the call does not cause a second call', async () => {
    const { clock, hive, beat, d } = setup();
    const w = beat('w1', 1);
    let release!: () => void;
    hive.gate = new Promise<void>((r) => (release = r));
    await clock.advance(2000);
    d.observe(create(WorkerSchema, { ...w, connected: false })); // e.g. its stream closed
    await clock.advance(500);
    expect(hive.called('markStale')).toHaveLength(1);
    hive.gate = null;
    release();
    await flushMicrotasks();
    expect(hive.called('markStale')).toHaveLength(1);
  });

  it('a mark the hive finds early (clock skew) is retried when the hive says', async () => {
    // The monitor believes the hive is 300 ms ahead of where it is.
    const { clock, hive, marked, beat } = setup({ skewMs: 300 });
    beat('w1', 1);
    await clock.advance(1700);
    expect(hive.called('markStale')).toHaveLength(1);
    expect(hive.workers.get('w1')!.state).toBe(WorkerState.HEALTHY);
    await clock.advance(299);
    expect(hive.called('markStale')).toHaveLength(1);
    await clock.advance(1);
    expect(hive.called('markStale')).toHaveLength(2);
    expect(hive.workers.get('w1')!.state).toBe(WorkerState.STALE);
    expect(marked).toHaveLength(1);
  });

  it('transient failures are re-queued with backoff until the hive answers (at least once)', async () => {
    const { clock, hive, beat } = setup();
    beat('w1', 1);
    const down = () => new ConnectError('connect ECONNREFUSED', Code.Unavailable);
    hive.failNext.set('markStale', [down(), down(), down()]);
    await clock.advance(2000);
    expect(hive.called('markStale')).toHaveLength(1);
    await clock.advance(100); // 100 ms
    expect(hive.called('markStale')).toHaveLength(2);
    await clock.advance(200); // 200 ms
    expect(hive.called('markStale')).toHaveLength(3);
    await clock.advance(400); // 400 ms: the hive answers
    expect(hive.called('markStale')).toHaveLength(4);
    expect(hive.workers.get('w1')!.state).toBe(WorkerState.STALE);
  });

  it('only PENDING/HEALTHY/DEGRADED/UNHEALTHY workers have deadlines', async () => {
    const { clock, hive, d } = setup();
    for (const [id, state] of [
      ['p', WorkerState.PENDING],
      ['h', WorkerState.HEALTHY],
      ['dg', WorkerState.DEGRADED],
      ['u', WorkerState.UNHEALTHY],
      ['s', WorkerState.STALE],
      ['r', WorkerState.RESTARTING],
      ['f', WorkerState.FAILED],
      ['l', WorkerState.LEFT],
    ] as const) {
      d.observe(worker({ id, state }));
    }
    expect(d.size).toBe(4);
    d.observe(worker({ id: 'h', state: WorkerState.LEFT }));
    d.remove('u');
    expect(d.size).toBe(2);
    await clock.advance(10_000);
    expect(hive.called('markStale').map((c) => c.workerId).sort()).toEqual(['dg', 'p']);
  });

  it('marks nothing while disabled (registry out of sight); deadlines wait', async () => {
    const { clock, hive, beat, d } = setup();
    beat('w1', 1);
    d.setEnabled(false);
    await clock.advance(5000);
    expect(hive.called('markStale')).toHaveLength(0);
    expect(d.size).toBe(1);
    d.setEnabled(true);
    await flushMicrotasks();
    expect(hive.called('markStale')).toHaveLength(1);
  });

  it('after a resync every deadline gets the grace (grace base + 2x interval)', async () => {
    const { clock, hive, d } = setup();
    const w = worker({ id: 'w1', lastSeen: T0 - 10_000 });
    hive.put(w);
    d.setGraceBase(T0 + 3000);
    d.observe(w);
    expect(d.deadline('w1')).toBe(T0 + 5000);
    await clock.advance(4999);
    expect(hive.called('markStale')).toHaveLength(0);
    await clock.advance(1);
    expect(hive.called('markStale')).toHaveLength(1);
  });

  it('bounds the calls in flight', async () => {
    const { clock, hive, beat } = setup({ maxInFlight: 2 });
    for (let i = 0; i < 5; i++) beat(`w${i}`, 1);
    let release!: () => void;
    hive.gate = new Promise<void>((r) => (release = r));
    await clock.advance(2000);
    expect(hive.called('markStale')).toHaveLength(2);
    hive.gate = null;
    release();
    await flushMicrotasks();
    expect(hive.called('markStale')).toHaveLength(5);
    expect([...hive.workers.values()].every((w: Worker) => w.state === WorkerState.STALE)).toBe(true);
  });

  it('reports the lag from the deadline to the hive\'s mark time', async () => {
    const { clock, hive, marked, d } = setup();
    const w = worker({ id: 'w1', lastSeen: T0 - 2050 }); // already 50 ms overdue when seen
    hive.put(w);
    d.observe(w);
    await flushMicrotasks();
    expect(marked).toEqual([{ id: 'w1', lagMs: 50 }]);
    expect(hive.workers.get('w1')!.stateSince).toEqual(msToTimestamp(clock.now()));
  });

  it('hands on the state_since of a mark it applied, with when the call left (a bound on the hive clock), and only that', async () => {
    const { clock, hive, stamps, beat } = setup();
    let release!: () => void;
    hive.gate = new Promise<void>((r) => (release = r));
    beat('w1', 1);
    await clock.advance(2000); // the call leaves at T0 + 2000 and waits at the gate
    await clock.advance(100);
    hive.gate = null;
    release();
    await flushMicrotasks();
    expect(stamps).toEqual([{ hiveMs: T0 + 2100, sentAt: T0 + 2000 }]);
    // A refused mark (a heartbeat the monitor had not seen) stamps nothing.
    beat('w2', 1);
    await clock.advance(1000);
    hive.put(worker({ id: 'w2', seq: 2, lastSeen: clock.now() }));
    await clock.advance(1000);
    expect(hive.called('markStale')).toHaveLength(2);
    expect(stamps).toHaveLength(1);
  });
});
