import { create } from '@bufbuild/protobuf';
import { Registry as PromRegistry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { DefaultPolicySchema } from '../../gen/hive/v1/control_pb.js';
import { RestartAction as RA, RestartMode, RestartPolicySchema, type RestartPolicy } from '../../gen/hive/v1/policy_pb.js';
import { WorkerSchema, WorkerState } from '../../gen/hive/v1/registry_pb.js';
import { flushMicrotasks, ManualClock } from '../../lib/clock.js';
import { msToDuration, msToTimestamp } from '../../lib/duration.js';
import type { ActionResult, RestartAction, RestartRequest } from '../../monitor/actions/action.js';
import { createExecAction } from '../../monitor/actions/exec.js';
import { createMonitor, type Monitor, type MonitorOptions } from '../../monitor/monitor.js';
import { FakeHive, silentLog, T0, worker } from './support.js';

// The monitor's parts wired together (monitor.ts) against a fake hive on a
// manual clock: the whole path from a watch change to a stale mark, a
// restart, an alert and a metric, and the grace after the registry was
// out of sight.

let monitor: Monitor | undefined;
afterEach(async () => {
  await monitor?.stop();
  monitor = undefined;
});

const EXEC = create(RestartPolicySchema, { mode: RestartMode.ON_STALE, action: RA.EXEC, execArgv: ['/usr/bin/restart-worker', '{worker_id}'], verifyTimeout: msToDuration(10_000) });

/** Leadership the test hands out and takes away. */
function manualLeadership(leading: boolean) {
  let leader = leading;
  let fence = leading ? 1n : 0n;
  const fns: Array<(l: boolean, f: bigint) => void> = [];
  return {
    isLeader: () => leader,
    fence: () => (leader ? fence : 0n),
    onChange: (fn: (l: boolean, f: bigint) => void) => void fns.push(fn),
    start() {},
    async stop() {},
    set(l: boolean) {
      leader = l;
      if (l) fence++;
      for (const fn of fns) fn(l, leader ? fence : 0n);
    },
  };
}

async function setup(o: { workers: number; labels?: Record<string, string>; options?: Partial<MonitorOptions>; leadership?: ReturnType<typeof manualLeadership>; policy?: RestartPolicy; exec?: (clock: ManualClock) => RestartAction }) {
  const clock = new ManualClock(T0);
  const hive = new FakeHive({ now: () => clock.now() });
  hive.publishing = true;
  hive.defaults = [create(DefaultPolicySchema, { name: 'exec', labelSelector: 'pool=gpu', priority: 1, policy: o.policy ?? EXEC })];
  for (let i = 1; i <= o.workers; i++) hive.put(worker({ id: `w${i}`, lastSeen: T0, labels: o.labels ?? { pool: 'gpu' } }));
  const posted: Array<{ url: string; body: Record<string, unknown> }> = [];
  const fetchImpl = (async (url: string, init: { body: string }) => {
    posted.push({ url, body: JSON.parse(init.body) });
    return new Response('{}', { status: 200 });
  }) as unknown as typeof fetch;
  const ran: Array<{ id: string; at: number; req: RestartRequest }> = [];
  const exec = o.exec?.(clock);
  const prom = new PromRegistry();
  monitor = createMonitor({
    hive,
    clock,
    log: silentLog,
    prom,
    random: () => 0.5,
    fetchImpl,
    leadership: o.leadership,
    actions: {
      exec: async (req, signal) => {
        ran.push({ id: req.worker.workerId, at: clock.now(), req });
        return exec ? exec(req, signal) : { ok: true, detail: 'exit 0' };
      },
    },
    options: {
      selector: '',
      massStaleShare: 0.5,
      massStaleMin: 3,
      massStaleWindow: null,
      guardResumeInterval: 5000,
      outageGraceFactor: 6,
      outageGraceMax: 60_000,
      execAllow: [],
      webhookRetries: 0,
      receivers: [{ url: 'http://alerts.example/hook', format: 'generic' }],
      alertTimeout: 1000,
      alertCooldown: 300_000,
      alertStartupGrace: 0,
      alertMinSeverity: 'info',
      refresh: 30_000,
      ...o.options,
    },
  });
  await monitor.start();
  await flushMicrotasks();
  hive.snapshot();
  await flushMicrotasks();
  /** Every live worker in `ids` heartbeats once a second for ms. */
  const beatFor = async (ids: string[], ms: number) => {
    for (let t = 0; t < ms; t += 1000) {
      await clock.advance(1000);
      for (const id of ids) hive.beat(id);
      await flushMicrotasks(); // the watch delivers them
    }
  };
  const metric = async (name: string) => {
    const text = await prom.metrics();
    return text.split('\n').filter((l) => l.startsWith(name));
  };
  return { clock, hive, posted, ran, prom, m: monitor, beatFor, metric };
}

describe('monitor (wired, fake hive, manual clock)', () => {
  it('marks a silent worker, restarts it by policy, verifies it, alerts and counts', async () => {
    const { clock, hive, posted, ran, beatFor, metric, m } = await setup({ workers: 3 });
    expect(m.health()).toMatchObject({ ok: true, workers: 3, deadlines: 3 });
    await beatFor(['w1', 'w2', 'w3'], 3000);
    // w3 dies after its beat at T0+3000.
    await beatFor(['w1', 'w2'], 2000);
    expect(hive.workers.get('w3')!.state).toBe(WorkerState.STALE);
    expect(hive.workers.get('w3')!.stateSince).toEqual(msToTimestamp(T0 + 5000));
    await flushMicrotasks();
    expect(posted.map((p) => [p.body.rule, p.body.worker_id])).toEqual([['worker_stale', 'w3']]);
    // restart_after is 1x interval, but a stale restart also waits out the
    // mass-stale guard's window (2x interval): then RESTARTING and the exec action.
    await beatFor(['w1', 'w2'], 1000);
    expect(ran).toEqual([]);
    await beatFor(['w1', 'w2'], 1000);
    expect(ran.map((r) => [r.id, r.at - T0])).toEqual([['w3', 7000]]);
    expect(hive.workers.get('w3')!.state).toBe(WorkerState.RESTARTING);
    // The restarted worker heartbeats (a new session): recovered, verified.
    await clock.advance(1500);
    hive.beat('w3', { session: 'new' });
    await flushMicrotasks();
    expect(hive.events('w3')).toEqual(['restart_issued', 'restart_verified']);
    expect(posted.map((p) => p.body.rule)).toEqual(['worker_stale', 'worker_recovered']);
    expect(await metric('hive_monitor_stale_detections_total')).toEqual(['hive_monitor_stale_detections_total 1']);
    expect(await metric('hive_monitor_restarts_total{action="exec"')).toEqual([
      'hive_monitor_restarts_total{action="exec",result="issued"} 1',
      'hive_monitor_restarts_total{action="exec",result="verified"} 1',
      'hive_monitor_restarts_total{action="exec",result="failed"} 0',
    ]);
    expect(await metric('hive_monitor_detection_lag_seconds_count')).toEqual(['hive_monitor_detection_lag_seconds_count 1']);
    expect(await metric('hive_monitor_detection_lag_seconds_bucket{le="0.001"}')).toEqual(['hive_monitor_detection_lag_seconds_bucket{le="0.001"} 1']);
    expect(await metric('hive_monitor_alerts_sent_total')).toEqual([
      'hive_monitor_alerts_sent_total{severity="critical"} 0',
      'hive_monitor_alerts_sent_total{severity="warning"} 1',
      'hive_monitor_alerts_sent_total{severity="info"} 1',
    ]);
  });

  it('an exec action printing two lines (one multi-byte) that exhausts its attempts ends FAILED with the critical alert', async () => {
    // The real exec action, on the monitor's manual clock; its output is
    // the two lines, and every attempt exits 1.
    const execArgv = ['/bin/sh', '-c', 'printf "restart-worker: unit hive-worker@%s.service not found\\nhint: «systemctl status» ✓\\n" "$1"; exit 1', 'sh', '{worker_id}'];
    const policy = create(RestartPolicySchema, { mode: RestartMode.ON_STALE, action: RA.EXEC, execArgv, maxAttempts: 2, verifyTimeout: msToDuration(10_000) });
    const finished: ActionResult[] = [];
    let onFinished: (() => void) | undefined;
    const exec = (clock: ManualClock): RestartAction => {
      const real = createExecAction({ clock, log: silentLog, allow: ['/bin/sh'] });
      return async (req, signal) => {
        const r = await real(req, signal);
        finished.push(r);
        onFinished?.();
        return r;
      };
    };
    const { clock, hive, posted, ran } = await setup({ workers: 1, policy, exec });
    /** Waits (on the child's exit, not on time) for every action started so far. */
    const actionsDone = () => new Promise<void>((resolve) => {
      onFinished = () => finished.length >= ran.length && resolve();
      onFinished();
    });
    for (let i = 0; i < 120 && hive.workers.get('w1')!.state !== WorkerState.FAILED; i++) {
      await clock.advance(1000);
      await actionsDone();
      await flushMicrotasks();
    }
    expect(hive.workers.get('w1')!.state).toBe(WorkerState.FAILED);
    expect(finished).toHaveLength(2);
    expect(finished[0].detail).toContain('\n'); // what the action reports, as printed
    expect(hive.refused).toEqual([]); // nothing the hive would have rejected
    const failedReasons = hive.called('recordEvent', 'w1').filter((c) => c.args[0] === 'restart_failed').map((c) => String(c.args[1]));
    expect(failedReasons).toHaveLength(2);
    expect(failedReasons[0]).toMatch(/exited with 1: restart-worker: unit hive-worker@w1.service not found hint: «systemctl status» ✓$/);
    const gaveUp = String(hive.called('setWorkerState', 'w1').at(-1)!.args[2]);
    expect(gaveUp).toMatch(/^gave up: 2 restart attempts within 10m failed; last: exec \/bin\/sh exited with 1: restart-worker/);
    expect(Buffer.byteLength(gaveUp)).toBeLessThanOrEqual(256);
    await flushMicrotasks();
    const critical = posted.filter((p) => p.body.severity === 'critical');
    expect(critical.map((p) => [p.body.rule, p.body.worker_id])).toEqual([['worker_failed', 'w1']]);
  });

  it('a standby neither marks nor restarts; promoted, it graces every deadline by an interval and rate-limits the backlog', async () => {
    const leadership = manualLeadership(false);
    const { clock, hive, ran, beatFor, metric, m } = await setup({ workers: 6, leadership });
    expect(await metric('hive_monitor_leader ')).toEqual(['hive_monitor_leader 0']);
    await beatFor(['w1', 'w2', 'w3', 'w4', 'w5', 'w6'], 1000);
    // w5 and w6 die; the standby sees them overdue and does nothing.
    await beatFor(['w1', 'w2', 'w3', 'w4'], 5000);
    expect(hive.called('markStale')).toEqual([]);
    expect(hive.workers.get('w5')!.state).toBe(WorkerState.HEALTHY);
    // Promoted at T0+6000: nobody is judged before T0+7000 (one interval).
    leadership.set(true);
    expect(await metric('hive_monitor_leader ')).toEqual(['hive_monitor_leader 1']);
    expect(m.health()).toMatchObject({ leader: true });
    await beatFor(['w1', 'w2', 'w3', 'w4'], 0);
    await clock.advance(999);
    await flushMicrotasks();
    expect(hive.called('markStale')).toEqual([]);
    await beatFor(['w1', 'w2', 'w3', 'w4'], 1000);
    expect(hive.workers.get('w5')!.state).toBe(WorkerState.STALE);
    expect(hive.workers.get('w6')!.state).toBe(WorkerState.STALE);
    // Both restarts are due together; the new leader spaces them by the guard's resume interval (5 s).
    await beatFor(['w1', 'w2', 'w3', 'w4'], 3000);
    expect(ran.map((r) => r.id)).toHaveLength(1);
    await beatFor(['w1', 'w2', 'w3', 'w4'], 5000);
    expect(ran.map((r) => r.id).sort()).toEqual(['w5', 'w6']);
    expect(ran[1].at - ran[0].at).toBeGreaterThanOrEqual(5000);
    // Demoted: no more marks.
    leadership.set(false);
    await beatFor(['w1', 'w2', 'w3'], 5000);
    expect(hive.workers.get('w4')!.state).toBe(WorkerState.HEALTHY);
  });

  it('restart-after grace: a worker back within restart_after is marked but not restarted', async () => {
    const { clock, hive, ran, beatFor } = await setup({ workers: 2 });
    await beatFor(['w1', 'w2'], 2000);
    await beatFor(['w1'], 2000); // w2 silent since T0+2000: STALE at T0+4000
    expect(hive.workers.get('w2')!.state).toBe(WorkerState.STALE);
    await clock.advance(900);
    hive.beat('w2'); // the late beat: 'recovered' by the hive
    await beatFor(['w1', 'w2'], 10_000);
    expect(ran).toEqual([]);
    expect(hive.called('setWorkerState')).toEqual([]);
  });

  it('a LEFT worker is not marked, not restarted, and its alert says clean shutdown', async () => {
    const { clock, hive, posted, ran, beatFor } = await setup({ workers: 2 });
    await beatFor(['w1', 'w2'], 2000);
    hive.put(create(WorkerSchema, { ...hive.workers.get('w2')!, state: WorkerState.LEFT, stateSince: msToTimestamp(clock.now()) }));
    await beatFor(['w1'], 20_000);
    expect(hive.called('markStale')).toEqual([]);
    expect(ran).toEqual([]);
    expect(posted.map((p) => [p.body.rule, p.body.severity])).toEqual([['worker_left', 'info']]);
    expect(String(posted[0].body.text)).toMatch(/clean shutdown/);
  });

  it('after a hive restart, no worker is marked for time the registry could not see', async () => {
    const { clock, hive, beatFor, m } = await setup({ workers: 4 });
    await beatFor(['w1', 'w2', 'w3', 'w4'], 3000);
    // The hive goes down at T0+3000 for 3 s; the watch breaks.
    hive.stream.fail();
    await flushMicrotasks();
    await clock.advance(3000); // the informer's retries open streams that stay silent
    expect(m.health().ok).toBe(false);
    // It comes back: new start time, each worker in the hive's own 2x-interval grace.
    hive.startedAt = clock.now() - 200;
    for (const w of hive.workers.values()) hive.workers.set(w.workerId, create(WorkerSchema, { ...w, graceUntil: msToTimestamp(hive.startedAt + 2000) }));
    hive.snapshot();
    await flushMicrotasks();
    const syncAt = clock.now();
    expect(m.health().ok).toBe(true);
    // The agents find it on their jittered backoff: w1 at once, w2 after 5 s,
    // w3 after 15 s (both past the hive's own 2 s grace); w4 never.
    const back = new Set<string>();
    let markedAfter: number | undefined;
    for (let t = 1000; t <= 30_000; t += 1000) {
      await clock.advance(1000);
      if (t === 1000) back.add('w1');
      if (t === 5000) back.add('w2');
      if (t === 15_000) back.add('w3');
      for (const id of back) hive.beat(id);
      await flushMicrotasks();
      if (t < 20_000) expect(hive.called('markStale'), `no mark ${t} ms after the resync`).toEqual([]);
      if (markedAfter === undefined && hive.called('markStale').length > 0) markedAfter = clock.now() - syncAt;
    }
    // The grace: 6x the 3 s outage + 2x interval after the resync; then only the dead one.
    const marks = hive.called('markStale');
    expect(marks.map((c) => c.workerId)).toEqual(['w4']);
    expect(markedAfter).toBe(18_000 + 2000);
  });

  it('no marks and no restarts while the registry is out of sight', async () => {
    const { clock, hive, ran, beatFor } = await setup({ workers: 2 });
    await beatFor(['w1', 'w2'], 2000);
    hive.stream.fail();
    await flushMicrotasks();
    await clock.advance(60_000);
    expect(hive.called('markStale')).toEqual([]);
    expect(ran).toEqual([]);
  });

  it('half the fleet stale at once: marked, restarts held, one critical alert; resumed at a limited rate', async () => {
    // Half is not more than the default share (50%): this fleet guards at 40%.
    const { clock, hive, posted, ran, beatFor, metric } = await setup({ workers: 6, options: { massStaleShare: 0.4 } });
    await beatFor(['w1', 'w2', 'w3', 'w4', 'w5', 'w6'], 3000);
    await beatFor(['w4', 'w5', 'w6'], 3000); // w1..w3 killed together
    expect(['w1', 'w2', 'w3'].map((id) => WorkerState[hive.workers.get(id)!.state])).toEqual(['STALE', 'STALE', 'STALE']);
    expect(await metric('hive_monitor_mass_stale_guard_engaged')).toContain('hive_monitor_mass_stale_guard_engaged 1');
    await beatFor(['w4', 'w5', 'w6'], 20_000);
    expect(ran).toEqual([]);
    expect(hive.events().filter((e) => e === 'restart_held')).toHaveLength(3);
    const rules = posted.map((p) => `${p.body.rule}:${p.body.severity}`);
    expect(rules.filter((r) => r === 'mass_stale:critical')).toHaveLength(1);
    expect(rules.filter((r) => r.startsWith('worker_stale')).length).toBeLessThan(3); // the critical one speaks for the rest
    // w1 comes back: 2 of 6 stale, not more than 40%, the guard releases; w2 and w3 restart one slot (5 s) apart.
    hive.beat('w1', { session: 'new' });
    await flushMicrotasks();
    expect(await metric('hive_monitor_mass_stale_guard_engaged')).toContain('hive_monitor_mass_stale_guard_engaged 0');
    await beatFor(['w1', 'w4', 'w5', 'w6'], 12_000);
    expect(ran.map((r) => r.id)).toEqual(['w2', 'w3']);
    expect(ran[1].at - ran[0].at).toBe(5000);
    expect(posted.map((p) => p.body.rule)).toContain('mass_stale_released');
  });

  it('exports every metric the dashboard uses, labelled series at 0', async () => {
    const { prom } = await setup({ workers: 1 });
    const text = await prom.metrics();
    for (const name of [
      'hive_monitor_stale_detections_total',
      'hive_monitor_detection_lag_seconds_bucket',
      'hive_monitor_restart_attempts_total{action="agent"} 0',
      'hive_monitor_restart_attempts_total{action="exec"} 0',
      'hive_monitor_restart_attempts_total{action="webhook"} 0',
      'hive_monitor_restarts_total{action="webhook",result="failed"} 0',
      'hive_monitor_workers_failed 0',
      'hive_monitor_mass_stale_guard_engaged 0',
      'hive_monitor_alerts_sent_total{severity="critical"} 0',
      'hive_monitor_leader 1',
      'hive_monitor_watched_workers 1',
      'hive_monitor_deadlines 1',
      'hive_monitor_watch_connected 1',
      'hive_monitor_stale_mark_calls_total{answer="heartbeated"} 0',
      'hive_monitor_stale_marks_held 0',
      'hive_monitor_view_behind_seconds 0',
      'process_cpu_seconds_total',
    ]) {
      expect(text, name).toContain(name);
    }
  });
});
