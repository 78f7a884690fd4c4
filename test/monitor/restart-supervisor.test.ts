import { create, type MessageInitShape } from '@bufbuild/protobuf';
import { Code, ConnectError } from '@connectrpc/connect';
import { afterEach, describe, expect, it } from 'vitest';
import { RestartAction as RA, RestartMode, RestartPolicySchema, type RestartPolicy } from '../../gen/hive/v1/policy_pb.js';
import { WorkerState, type Worker } from '../../gen/hive/v1/registry_pb.js';
import { flushMicrotasks, ManualClock } from '../../lib/clock.js';
import { msToDuration } from '../../lib/duration.js';
import type { ActionResult, RestartRequest } from '../../monitor/actions/action.js';
import { MassStaleGuard } from '../../monitor/mass-stale-guard.js';
import { PolicyBook, type ActionName } from '../../monitor/policy.js';
import { createRestartSupervisor, type RestartSupervisor } from '../../monitor/restart-supervisor.js';
import { FakeHive, silentLog, T0, worker, type WorkerInit } from './support.js';

// The restart state machine on a manual clock: restart_after, act, verify,
// backoff, give up, LEFT, the guard, and the compare-and-set with a
// heartbeating worker.

let sup: RestartSupervisor | undefined;
afterEach(async () => {
  await sup?.stop();
  sup = undefined;
});

const policy = (p: MessageInitShape<typeof RestartPolicySchema>): RestartPolicy => create(RestartPolicySchema, p);
const S = (ms: number) => msToDuration(ms);
const EXEC_ON_STALE = policy({ mode: RestartMode.ON_STALE, action: RA.EXEC, execArgv: ['/bin/true'], maxAttempts: 3, verifyTimeout: S(5000) });

function setup(o: { guard?: MassStaleGuard; results?: ActionResult[] } = {}) {
  const clock = new ManualClock(T0);
  const hive = new FakeHive({ now: () => clock.now() });
  const ran: Array<{ action: ActionName; req: RestartRequest; at: number }> = [];
  const results = [...(o.results ?? [])];
  const action = (name: ActionName) => async (req: RestartRequest) => {
    ran.push({ action: name, req, at: clock.now() });
    return results.shift() ?? { ok: true, detail: 'done' };
  };
  const metrics: string[] = [];
  const notes: string[] = [];
  const guard = o.guard ?? new MassStaleGuard({ threshold: 0.5, minCount: 3, windowMs: null, resumeIntervalMs: 10_000, fleetSize: () => hive.workers.size });
  sup = createRestartSupervisor({
    clock,
    log: silentLog,
    hive,
    actions: { agent: action('agent'), exec: action('exec'), webhook: action('webhook') },
    policies: new PolicyBook(),
    view: { get: (id) => hive.workers.get(id) },
    guard,
    random: () => 0.5,
    metrics: { attempt: (a) => metrics.push(`attempt ${a}`), restart: (a, r) => metrics.push(`${r} ${a}`) },
    notify: {
      attemptFailed: (_w, rec, detail) => notes.push(`failed ${rec.id} #${rec.episodeAttempts}: ${detail}`),
      gaveUp: (_w, rec) => notes.push(`gave up ${rec.id}`),
      verified: (_w, rec) => notes.push(`verified ${rec.id}`),
    },
  });
  sup.start();
  /** The hive changes a worker and the watch delivers it. */
  const set = (i: WorkerInit): Worker => {
    const w = worker({ policy: EXEC_ON_STALE, lastSeen: clock.now(), ...i });
    hive.put(w);
    sup!.observe(w);
    return w;
  };
  const state = (id: string) => WorkerState[hive.workers.get(id)!.state];
  return { clock, hive, ran, metrics, notes, set, state, s: sup, guard };
}

describe('restart supervisor', () => {
  it('a worker blocked by its dependencies is held, once, and restarted only after blocked_by clears', async () => {
    const { clock, hive, ran, set, s } = setup();
    set({ id: 'dep', state: WorkerState.STALE, seq: 3 });
    set({ id: 'b', state: WorkerState.STALE, seq: 5, blockedBy: ['dep'] });
    await clock.advance(1000);
    // The dependency is restarted; the dependent waits.
    expect(ran.map((r) => r.req.worker.workerId)).toEqual(['dep']);
    expect(s.record('b')!.phase).toBe('held');
    await clock.advance(60_000);
    // The dependency's own attempts go on (it does not verify here); none for b.
    expect(ran.filter((r) => r.req.worker.workerId === 'b')).toEqual([]);
    expect(hive.events('b')).toEqual(['restart_blocked']);
    expect(hive.called('recordEvent', 'b')[0].args[1]).toBe('waiting for dependencies: dep');
    // Still stale, no longer blocked (the dependency is healthy again).
    set({ id: 'dep', state: WorkerState.HEALTHY, seq: 4 });
    set({ id: 'b', state: WorkerState.STALE, seq: 5, blockedBy: [] });
    const before = ran.length;
    await clock.advance(0);
    expect(ran.slice(before).map((r) => r.req.worker.workerId)).toEqual(['b']);
    expect(WorkerState[hive.workers.get('b')!.state]).toBe('RESTARTING');
  });

  it('a blocked worker that recovers by itself is not restarted', async () => {
    const { clock, ran, set, s } = setup();
    set({ id: 'b', state: WorkerState.STALE, seq: 5, blockedBy: ['dep'] });
    await clock.advance(5000);
    expect(s.record('b')!.phase).toBe('held');
    set({ id: 'b', state: WorkerState.HEALTHY, seq: 6, blockedBy: [] });
    await clock.advance(60_000);
    expect(ran).toEqual([]);
    expect(s.record('b')!.phase).toBe('idle');
  });

  it('restart_after: a single late beat restarts nothing', async () => {
    const { clock, hive, ran, set } = setup();
    set({ id: 'w1', state: WorkerState.STALE, seq: 5 });
    await clock.advance(600); // restart_after defaults to 1x interval (1 s)
    set({ id: 'w1', state: WorkerState.HEALTHY, seq: 6 }); // the late beat
    await clock.advance(60_000);
    expect(ran).toEqual([]);
    expect(hive.called('setWorkerState')).toEqual([]);
  });

  it('acts once after restart_after, by compare-and-set, and verifies on healthy heartbeats', async () => {
    const { clock, hive, ran, metrics, notes, set, state, s } = setup();
    set({ id: 'w1', state: WorkerState.STALE, seq: 5, labels: { zone: 'a' } });
    await clock.advance(999);
    expect(ran).toHaveLength(0);
    await clock.advance(1);
    expect(ran).toHaveLength(1);
    expect(ran[0]).toMatchObject({ action: 'exec', req: { trigger: 'stale', attempt: 1 } });
    expect(state('w1')).toBe('RESTARTING');
    expect(hive.called('setWorkerState', 'w1')[0].args[0]).toMatchObject({ observedSeq: 5n, observedSessionId: 's1' });
    expect(s.record('w1')!.phase).toBe('verifying');
    await clock.advance(2000);
    set({ id: 'w1', state: WorkerState.HEALTHY, seq: 1, session: 's2' }); // the new process heartbeats
    await flushMicrotasks();
    expect(hive.events('w1')).toEqual(['restart_issued', 'restart_verified']);
    expect(metrics).toEqual(['attempt exec', 'issued exec', 'verified exec']);
    expect(notes).toEqual(['verified w1']);
    await clock.advance(60_000);
    expect(ran).toHaveLength(1);
  });

  it('verify timeout fails the attempt, backs off, and gives up after max_attempts: FAILED', async () => {
    const { clock, hive, ran, notes, set, state, s } = setup();
    set({ id: 'w1', state: WorkerState.STALE, seq: 5 });
    await clock.advance(1000); // attempt 1
    expect(ran).toHaveLength(1);
    await clock.advance(5000); // verify_timeout 5 s: failed; backoff 10 s
    expect(notes).toEqual(['failed w1 #1: no healthy heartbeat within verify_timeout (5s)']);
    await clock.advance(9999);
    expect(ran).toHaveLength(1);
    await clock.advance(1); // attempt 2
    expect(ran.map((r) => r.req.attempt)).toEqual([1, 2]);
    await clock.advance(5000); // failed; backoff 20 s
    await clock.advance(20_000); // attempt 3
    expect(ran.map((r) => r.at - T0)).toEqual([1000, 16_000, 41_000]);
    await clock.advance(5000); // failed: 3 attempts within the window -> give up
    expect(state('w1')).toBe('FAILED');
    expect(s.record('w1')!.phase).toBe('gave_up');
    expect(notes.at(-1)).toBe('gave up w1');
    expect(hive.events('w1')).toEqual(['restart_issued', 'restart_failed', 'restart_issued', 'restart_failed', 'restart_issued', 'restart_failed']);
    const failed = hive.called('setWorkerState', 'w1').at(-1)!;
    expect(failed.args[1]).toBe(WorkerState.FAILED);
    expect(String(failed.args[2])).toMatch(/^gave up: 3 restart attempts within 10m failed/);
    await clock.advance(3_600_000);
    expect(ran).toHaveLength(3);
  });

  it('a failed action counts at once; attempts age out of the window; a clean run resets the backoff', async () => {
    const { clock, ran, set } = setup({ results: [{ ok: false, detail: 'exited with 1' }] });
    set({ id: 'w1', state: WorkerState.STALE, seq: 5 });
    await clock.advance(1000); // attempt 1 fails at once
    await clock.advance(10_000); // backoff 10 s: attempt 2
    expect(ran).toHaveLength(2);
    set({ id: 'w1', state: WorkerState.HEALTHY, seq: 1, session: 's2' }); // verified
    // Soon stale again: attempt 3 of the episode waits its backoff (20 s), not restart_after.
    await clock.advance(30_000);
    set({ id: 'w1', state: WorkerState.STALE, seq: 9, session: 's2' });
    await clock.advance(19_999);
    expect(ran).toHaveLength(2);
    await clock.advance(1);
    expect(ran).toHaveLength(3);
    expect(ran[2].req.attempt).toBe(3);
    set({ id: 'w1', state: WorkerState.HEALTHY, seq: 1, session: 's3' });
    // A clean run of the whole window (10 min): the next trigger starts afresh.
    await clock.advance(600_000);
    set({ id: 'w1', state: WorkerState.HEALTHY, seq: 2, session: 's3' });
    set({ id: 'w1', state: WorkerState.STALE, seq: 2, session: 's3' });
    await clock.advance(1000);
    expect(ran).toHaveLength(4);
    expect(ran[3].req.attempt).toBe(1);
  });

  it('action output with newlines reaches the hive on one line; a refused state change is final, not retried', async () => {
    const out = 'exec /bin/sh exited with 1: first line\nsecond line: déjà vu ✓';
    const { clock, hive, notes, set, state, s } = setup({ results: [{ ok: false, detail: out }, { ok: false, detail: out }, { ok: false, detail: out }] });
    set({ id: 'w1', state: WorkerState.STALE, seq: 5 });
    for (const ms of [1000, 10_000, 20_000]) await clock.advance(ms); // three attempts, each failing at once
    expect(state('w1')).toBe('FAILED');
    expect(hive.refused).toEqual([]);
    expect(hive.called('recordEvent', 'w1').filter((c) => c.args[0] === 'restart_failed').map((c) => c.args[1])).toEqual([
      'attempt 1/3 via exec (stale): exec /bin/sh exited with 1: first line second line: déjà vu ✓',
      'attempt 2/3 via exec (stale): exec /bin/sh exited with 1: first line second line: déjà vu ✓',
      'attempt 3/3 via exec (stale): exec /bin/sh exited with 1: first line second line: déjà vu ✓',
    ]);
    expect(String(hive.called('setWorkerState', 'w1').at(-1)!.args[2])).toMatch(/^gave up: 3 restart attempts within 10m failed; last: exec \/bin\/sh exited with 1: first line second line/);

    // The hive refusing the request itself (InvalidArgument) is not a race
    // to retry: give up once, alert once.
    set({ id: 'w2', state: WorkerState.STALE, seq: 5 });
    hive.failNext.set('setWorkerState', [new ConnectError('reason contains control characters', Code.InvalidArgument)]);
    await clock.advance(1000); // attempt 1: RESTARTING refused
    expect(s.record('w2')).toBeUndefined(); // dropped, not retried
    await clock.advance(600_000);
    expect(hive.called('setWorkerState', 'w2')).toHaveLength(1);
    expect(state('w2')).toBe('STALE');

    set({ id: 'w3', state: WorkerState.STALE, seq: 5, policy: policy({ ...EXEC_ON_STALE, maxAttempts: 1 }) });
    await clock.advance(1000); // attempt 1 succeeds; the verify timeout fails it
    hive.failNext.set('setWorkerState', [new ConnectError('reason is longer than 256 bytes', Code.InvalidArgument)]);
    await clock.advance(5000); // FAILED refused
    expect(s.record('w3')!.phase).toBe('gave_up');
    expect(notes.filter((n) => n === 'gave up w3')).toEqual(['gave up w3']); // the critical alert still goes out
    const failedCalls = hive.called('setWorkerState', 'w3').length;
    await clock.advance(600_000);
    expect(hive.called('setWorkerState', 'w3')).toHaveLength(failedCalls);
  });

  it('a LEFT worker is never restarted, at any step', async () => {
    const { clock, hive, ran, set, s } = setup();
    set({ id: 'gone', state: WorkerState.LEFT });
    set({ id: 'w1', state: WorkerState.STALE, seq: 5 });
    await clock.advance(500);
    set({ id: 'w1', state: WorkerState.LEFT, seq: 5 }); // a clean shutdown after all
    await clock.advance(60_000);
    expect(ran).toEqual([]);
    expect(s.record('w1')).toBeUndefined();
    expect(hive.called('setWorkerState')).toEqual([]);
  });

  it('on_unhealthy defaults to the agent action; the compare-and-set follows a heartbeating worker', async () => {
    const { clock, hive, ran, set, state } = setup();
    const p = policy({ mode: RestartMode.ON_UNHEALTHY, restartAfter: S(500) });
    set({ id: 'w1', state: WorkerState.UNHEALTHY, seq: 10, policy: p });
    // The worker keeps beating: the hive is one heartbeat ahead of the watch.
    await clock.advance(499);
    hive.put(worker({ id: 'w1', state: WorkerState.UNHEALTHY, seq: 11, policy: p, lastSeen: clock.now() }));
    const stale = hive.workers.get('w1')!;
    hive.workers.set('w1', worker({ id: 'w1', state: WorkerState.UNHEALTHY, seq: 10, policy: p }));
    const refused = new ConnectError('worker "w1" heartbeated since (seq 11, observed 10)', Code.FailedPrecondition);
    hive.failNext.set('setWorkerState', [refused]);
    await clock.advance(1);
    expect(hive.called('setWorkerState')).toHaveLength(1);
    hive.workers.set('w1', stale); // the watch delivers seq 11
    await clock.advance(100); // the retry uses it
    expect(hive.called('setWorkerState')).toHaveLength(2);
    expect(hive.called('setWorkerState')[1].args[0]).toMatchObject({ observedSeq: 11n });
    expect(state('w1')).toBe('RESTARTING');
    expect(ran.map((r) => r.action)).toEqual(['agent']);
  });

  it('holds restarts while the mass-stale guard is engaged and resumes them one slot at a time', async () => {
    const guard = new MassStaleGuard({ threshold: 0.5, minCount: 3, windowMs: null, resumeIntervalMs: 10_000, fleetSize: () => 6 });
    const { clock, ran, set, hive, s } = setup({ guard });
    for (let i = 0; i < 4; i++) {
      set({ id: `w${i}`, state: WorkerState.STALE, seq: 3 });
      guard.noteStale(`w${i}`, clock.now(), clock.now(), 1000);
    }
    expect(guard.engaged).toBe(true);
    await clock.advance(30_000);
    expect(ran).toEqual([]);
    expect(hive.events()).toEqual(['restart_held', 'restart_held', 'restart_held', 'restart_held']);
    // Two come back: 2 of 6 stale, the guard releases.
    for (const id of ['w0', 'w1']) {
      set({ id, state: WorkerState.HEALTHY, seq: 1, session: 's2' });
      guard.noteNotStale(id, clock.now());
    }
    expect(guard.engaged).toBe(false);
    s.released();
    await clock.advance(0);
    expect(ran.map((r) => r.req.worker.workerId)).toEqual(['w2']);
    await clock.advance(9999);
    expect(ran).toHaveLength(1);
    await clock.advance(1);
    expect(ran.map((r) => r.req.worker.workerId)).toEqual(['w2', 'w3']);
  });

  it('picks up a restart under way after a monitor restart (RESTARTING in the snapshot)', async () => {
    const { clock, ran, notes, set, s } = setup();
    set({ id: 'w1', state: WorkerState.RESTARTING, seq: 5 });
    expect(s.record('w1')!.phase).toBe('verifying');
    await clock.advance(5000);
    expect(notes[0]).toMatch(/^failed w1 #1: no healthy heartbeat/);
    await clock.advance(10_000);
    expect(ran.map((r) => r.req.attempt)).toEqual([2]);
  });

  it('a policy of never, or one without a usable action, restarts nothing', async () => {
    const { clock, ran, set } = setup();
    set({ id: 'a', state: WorkerState.STALE, policy: policy({ mode: RestartMode.NEVER }) });
    set({ id: 'b', state: WorkerState.STALE, policy: policy({ mode: RestartMode.ON_STALE }) }); // no action: invalid, never sent by a real hive
    set({ id: 'c', state: WorkerState.UNHEALTHY, policy: policy({ mode: RestartMode.ON_STALE, action: RA.EXEC, execArgv: ['/bin/true'] }) });
    await clock.advance(60_000);
    expect(ran).toEqual([]);
  });
});
