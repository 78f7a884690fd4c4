import { create, type MessageInitShape } from '@bufbuild/protobuf';
import { createClient, type Client } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ControlService } from '../../gen/hive/v1/control_pb.js';
import { RestartAction, RestartMode, RestartPolicySchema } from '../../gen/hive/v1/policy_pb.js';
import { RegistryService, TokenScope, WorkerState, type Event, type Worker } from '../../gen/hive/v1/registry_pb.js';
import { msToDuration, timestampToMs } from '../../lib/duration.js';
import { dropSchema, PG_URL, postgresAvailable, uniqueSchema } from '../support/pg.js';
import { eventually, freePort, startHiveProc, startProc, tempDir, type HiveProc, type Proc } from '../support/procs.js';

// The monitor end to end: a real hive, two real monitors and real agents
// (1 s heartbeat interval) as child processes on real ports, a real HTTP
// receiver for alerts and webhooks, and a tiny exec script that appends
// its arguments to a file. Independent scenarios run side by side against
// one hive: the main monitor watches suite=main, the second one (for the
// mass-stale guard, which would hold every restart of a shared fleet)
// watches suite=mass. The hive restart runs last, with everyone.

const JOIN = 'join-token-for-monitor-e2e-01';
const INTERVAL = '1s';
const { HEALTHY, STALE, RESTARTING, FAILED, LEFT } = WorkerState;

interface Received {
  path: string;
  body: Record<string, unknown>;
  at: number;
}

const ms = (t: Parameters<typeof timestampToMs>[0]) => timestampToMs(t) ?? NaN;

const sleep = (n: number) => new Promise((r) => setTimeout(r, n));

describe('monitor end to end (real hive, monitors, agents)', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let hive: HiveProc;
  let ports: { grpc: number; http: number };
  let admin: string;
  let registry: Client<typeof RegistryService>;
  let control: Client<typeof ControlService>;
  let mainMon: Proc;
  let massMon: Proc;
  let receiver: http.Server;
  let rx: string;
  const received: Received[] = [];
  const agents = new Map<string, Proc>();
  const allProcs: Proc[] = [];
  let script: string;
  let failScript: string;
  let execLog: string;
  const lags: Array<{ workerId: string; lagMs: number }> = [];

  const auth = () => ({ headers: { authorization: `Bearer ${admin}` }, timeoutMs: 10_000 });
  const getWorker = async (id: string): Promise<Worker> => (await registry.getWorker({ workerId: id }, auth())).worker!;
  /** Events of one worker, oldest first. */
  const events = async (id: string): Promise<Event[]> => (await registry.listEvents({ workerId: id, pageSize: 200 }, auth())).events.reverse();
  const kinds = async (id: string) => (await events(id)).map((e) => e.kind);
  const execLines = (): Array<{ at: number; args: string[] }> =>
    existsSync(execLog)
      ? readFileSync(execLog, 'utf8')
          .split('\n')
          .filter(Boolean)
          .map((l) => {
            const [at, ...args] = l.split(' ');
            return { at: Number(at), args };
          })
      : [];
  const alerts = (path: string) => received.filter((r) => r.path === path);
  const waitState = (id: string, state: WorkerState, timeoutMs = 20_000) =>
    eventually(async () => {
      const w = await getWorker(id);
      return w.state === state ? w : null;
    }, timeoutMs, `${id} ${WorkerState[state]}`);

  function startAgent(id: string, labels: string[], extra: string[] = [], supervise: string[] = []): Proc {
    const args = ['--hive', hive.grpcAddr, '--worker-id', id, '--interval', INTERVAL, '--token-file', join(dir.path, `${id}.token`), '--metrics-addr', '127.0.0.1:0'];
    for (const l of labels) args.push('--label', l);
    const a = startProc('worker-agent.mjs', [...args, ...extra, ...(supervise.length ? ['--', ...supervise] : [])], { LOG_LEVEL: 'info' });
    agents.set(id, a);
    allProcs.push(a);
    return a;
  }

  let schema: string | null = null;
  async function startTheHive(): Promise<void> {
    ports ??= { grpc: await freePort(), http: await freePort() };
    const store = schema ? ['--database-url', PG_URL, '--database-schema', schema] : [];
    hive = await startHiveProc(['--data-dir', join(dir.path, 'data'), '--join-token', JOIN, '--write-behind', '500ms', ...store], { LOG_LEVEL: 'info' }, ports);
    allProcs.push(hive);
  }

  function startMonitor(args: string[], env: Record<string, string> = {}): Proc {
    const m = startProc(
      'hive-monitor.mjs',
      [
        '--hive', hive.grpcAddr,
        '--http-addr', '127.0.0.1:0',
        '--exec-allow', script,
        '--exec-allow', failScript,
        '--alert-webhook', `${rx}/generic`,
        '--alert-startup-grace', '0s',
        '--refresh', '1s',
        '--webhook-retries', '1',
        ...args,
      ],
      { LOG_LEVEL: 'info', ...env },
    );
    allProcs.push(m);
    return m;
  }

  const policy = (p: MessageInitShape<typeof RestartPolicySchema>) => create(RestartPolicySchema, p);

  beforeAll(async () => {
    dir = await tempDir('hive-monitor-e2e-');
    execLog = join(dir.path, 'exec.log');
    script = join(dir.path, 'restart-worker.sh');
    writeFileSync(script, `#!/bin/sh\nprintf '%s %s\\n' "$(date +%s%3N)" "$*" >> '${execLog}'\n`);
    chmodSync(script, 0o755);
    // A restart command that fails, saying so on two lines (one multi-byte).
    failScript = join(dir.path, 'restart-fails.sh');
    writeFileSync(failScript, `#!/bin/sh\nprintf 'restart-worker: unit hive-worker@%s.service not found\\nhint: «systemctl status» ✓\\n' "$1"\nexit 1\n`);
    chmodSync(failScript, 0o755);

    receiver = http.createServer((req, res) => {
      let data = '';
      req.on('data', (c) => (data += c));
      req.on('end', () => {
        received.push({ path: req.url!, body: data ? JSON.parse(data) : {}, at: Date.now() });
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      });
    });
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
    rx = `http://127.0.0.1:${(receiver.address() as { port: number }).port}`;

    schema = (await postgresAvailable()) ? uniqueSchema('hive_mon_e2e') : null;
    await startTheHive();
    admin = (await readFile(join(dir.path, 'data', 'admin-token'), 'utf8')).trim();
    const transport = createGrpcTransport({ baseUrl: `http://${hive.grpcAddr}` });
    registry = createClient(RegistryService, transport);
    control = createClient(ControlService, transport);

    // Default policies by label, set before the monitors start. The
    // catch-all sorts first by name; the exec one must win by priority.
    const exec = (args: string[]) => policy({ mode: RestartMode.ON_STALE, action: RestartAction.EXEC, execArgv: [script, ...args], verifyTimeout: msToDuration(60_000) });
    await control.setDefaultPolicy({ defaultPolicy: { name: 'a-catch-all', labelSelector: 'suite=main', priority: 0, policy: policy({ mode: RestartMode.NEVER }) } }, auth());
    await control.setDefaultPolicy({ defaultPolicy: { name: 'exec-on-stale', labelSelector: 'suite=main,scenario=exec', priority: 10, policy: exec(['{worker_id}', '--zone={label:zone}']) } }, auth());
    await control.setDefaultPolicy({ defaultPolicy: { name: 'mass', labelSelector: 'suite=mass', priority: 10, policy: exec(['mass', '{worker_id}']) } }, auth());

    // A worker pre-registered by an admin with its policy (set at registration).
    const reg = await registry.registerWorker(
      {
        workerId: 'e-fail',
        labels: { suite: 'main' },
        heartbeatInterval: msToDuration(1000),
        restartPolicy: policy({
          mode: RestartMode.ON_STALE,
          action: RestartAction.WEBHOOK,
          webhookUrl: `${rx}/restart-hook`,
          restartAfter: msToDuration(200),
          maxAttempts: 2,
          backoffInitial: msToDuration(500),
          backoffMax: msToDuration(1000),
          verifyTimeout: msToDuration(1500),
          actionTimeout: msToDuration(2000),
        }),
      },
      auth(),
    );
    writeFileSync(join(dir.path, 'e-fail.token'), reg.workerToken, { mode: 0o600 });
    const regX = await registry.registerWorker(
      {
        workerId: 'e-xfail',
        labels: { suite: 'main' },
        heartbeatInterval: msToDuration(1000),
        restartPolicy: policy({
          mode: RestartMode.ON_STALE,
          action: RestartAction.EXEC,
          execArgv: [failScript, '{worker_id}'],
          restartAfter: msToDuration(200),
          maxAttempts: 2,
          backoffInitial: msToDuration(500),
          backoffMax: msToDuration(1000),
          actionTimeout: msToDuration(5000),
        }),
      },
      auth(),
    );
    writeFileSync(join(dir.path, 'e-xfail.token'), regX.workerToken, { mode: 0o600 });

    startAgent('e-exec', ['suite=main', 'scenario=exec', 'zone=z1'], ['--join-token', JOIN]);
    startAgent('e-left', ['suite=main', 'scenario=exec', 'zone=z2'], ['--join-token', JOIN]);
    startAgent('e-agent', ['suite=main'], ['--join-token', JOIN], ['sleep', '3600']);
    startAgent('e-fail', ['suite=main']);
    startAgent('e-xfail', ['suite=main']);
    startAgent('b-1', ['suite=main'], ['--join-token', JOIN]);
    for (let i = 1; i <= 6; i++) startAgent(`m-${i}`, ['suite=mass'], ['--join-token', JOIN]);

    const monitorToken = (await registry.createToken({ scope: TokenScope.MONITOR, description: 'e2e main monitor' }, auth())).token;
    // The main suite's scenarios kill three of its workers side by side on
    // purpose (and one leaves, shrinking the fleet): not a mass event here.
    mainMon = startMonitor(['--selector', 'suite=main', '--token', monitorToken, '--alert-slack-webhook', `${rx}/slack`, '--mass-stale-min', '4']);
    // The second monitor takes the admin token from the environment (HIVE_TOKEN).
    // Half the fleet is not more than the default share (50%): this one guards at 40%.
    massMon = startMonitor(['--selector', 'suite=mass', '--guard-resume-interval', '2s', '--mass-stale-share', '40%'], { HIVE_TOKEN: admin });
    for (const m of [mainMon, massMon]) await m.waitForLog((e) => e.msg === 'monitor serving' && typeof e.http === 'string', 60_000);

    const all = ['e-exec', 'e-left', 'e-agent', 'e-fail', 'e-xfail', 'b-1', 'm-1', 'm-2', 'm-3', 'm-4', 'm-5', 'm-6'];
    await eventually(async () => {
      const ws = (await registry.listWorkers({ pageSize: 100 }, auth())).workers;
      return all.every((id) => ws.find((w) => w.workerId === id)?.state === HEALTHY);
    }, 60_000, 'every worker HEALTHY');
    // The on_unhealthy policy of the supervised worker, set by an admin afterwards.
    await control.setRestartPolicy(
      { workerId: 'e-agent', policy: policy({ mode: RestartMode.ON_UNHEALTHY, restartAfter: msToDuration(500), verifyTimeout: msToDuration(20_000) }) },
      auth(),
    );
    for (const m of [mainMon, massMon]) await m.waitForLog((e) => e.msg === 'watch synced', 30_000);
  }, 120_000);

  afterAll(async () => {
    if (process.env.MONITOR_E2E_DUMP) for (const [name, m] of [['main', mainMon], ['mass', massMon]] as const) for (const l of m?.lines ?? []) if (/"level":[4-6]0/.test(l)) console.log(`[${name}] ${l.slice(0, 400)}`);
    await Promise.all(allProcs.map((p) => p.kill('SIGKILL')));
    receiver?.closeAllConnections();
    await new Promise<void>((r) => (receiver ? receiver.close(() => r()) : r()));
    if (lags.length) console.log(`[monitor e2e] stale detection lag (event time - last heartbeat): ${lags.map((l) => `${l.workerId} ${l.lagMs} ms`).join(', ')}`);
    await dir?.remove();
    if (schema) await dropSchema(schema);
  });

  /** Marked-stale time (hive clock, from the event log) minus the last heartbeat before it. */
  async function measureStale(id: string): Promise<number> {
    const w = await waitState(id, STALE, 15_000).catch(async () => {
      // It may already have moved on to RESTARTING or FAILED.
      return getWorker(id);
    });
    // The state is in memory at once; its event row is committed a moment later.
    const ev = await eventually(async () => (await events(id)).filter((e) => e.kind === 'marked_stale').at(-1), 10_000, `${id}'s marked_stale event (state ${WorkerState[w.state]})`);
    const lag = ms(ev.time) - ms(w.lastSeen);
    lags.push({ workerId: id, lagMs: lag });
    console.log(`[monitor e2e] ${id}: STALE ${lag} ms after its last heartbeat (target [2000, 2100])`);
    return lag;
  }

  it.concurrent('agent SIGKILL: STALE within [2 s, 2.1 s], exec run once with the right arguments, recovered by a new agent with the same token', async ({ expect }) => {
    // Killed a second after e-fail, whose mark at 2 s sets off exec runs and
    // new processes on this 2-core machine: the timed mark does not land in
    // that burst.
    await sleep(1000);
    await agents.get('e-exec')!.kill('SIGKILL');
    const lag = await measureStale('e-exec');
    const logged = await mainMon.waitForLog((e) => e.msg === 'worker marked stale' && e.workerId === 'e-exec', 10_000);
    console.log(`[monitor e2e] e-exec: monitor-side lag past the deadline ${String(logged.lagMs)} ms`);
    expect(lag).toBeGreaterThanOrEqual(2000);
    // The issue's window, measured and logged; a soft assertion so that the
    // rest of the scenario still runs when a loaded machine misses it.
    expect.soft(lag, `detection took ${lag - 2000} ms past 2x the interval; the target is at most 100 ms (a heavily loaded machine can miss it)`).toBeLessThanOrEqual(2100);

    const line = await eventually(() => execLines().find((l) => l.args[0] === 'e-exec'), 20_000, 'the exec action for e-exec');
    expect(line.args).toEqual(['e-exec', '--zone=z1']);
    expect((await getWorker('e-exec')).state).toBe(RESTARTING);

    // What systemd would do: a new agent, same token file, no join token.
    startAgent('e-exec', ['suite=main', 'scenario=exec', 'zone=z1']);
    await eventually(async () => (await kinds('e-exec')).includes('restart_verified'), 30_000, 'e-exec restart verified');
    expect((await getWorker('e-exec')).state).toBe(HEALTHY);
    const k = await kinds('e-exec');
    expect(k.slice(k.indexOf('marked_stale'))).toEqual(['marked_stale', 'restarting', 'restart_issued', 'recovered', 'restart_verified']);
    expect(execLines().filter((l) => l.args[0] === 'e-exec')).toHaveLength(1);
    const crash = alerts('/generic').find((a) => a.body.rule === 'worker_stale' && a.body.worker_id === 'e-exec');
    expect(crash?.body).toMatchObject({ severity: 'warning', text: expect.stringMatching(/crashed, hung or lost its network/) });
  }, 90_000);

  it.concurrent('supervised process killed: the agent restarts it on command, verified', async ({ expect }) => {
    const a = agents.get('e-agent')!;
    const first = await a.waitForLog((e) => e.msg === 'supervised process started');
    process.kill(first.pid as number, 'SIGKILL');
    await eventually(async () => (await kinds('e-agent')).includes('restart_verified'), 40_000, 'e-agent restart verified');
    const k = await kinds('e-agent');
    const from = k.indexOf('restarting');
    expect(from).toBeGreaterThan(0);
    expect(k.slice(from)).toEqual(expect.arrayContaining(['restarting', 'restart_issued', 'command_result', 'recovered', 'restart_verified']));
    expect(k.indexOf('restart_verified')).toBeGreaterThan(k.indexOf('recovered'));
    const result = (await events('e-agent')).find((e) => e.kind === 'command_result');
    expect(result?.reason).toMatch(/succeeded: restarted/);
    const second = await a.waitForLog((e) => e.msg === 'supervised process started' && e.pid !== first.pid, 5000);
    expect(second.pid).not.toBe(first.pid);
    expect((await getWorker('e-agent')).state).toBe(HEALTHY);
  }, 90_000);

  it.concurrent('attempts exhausted: FAILED, and a critical alert reaches a real HTTP receiver', async ({ expect }) => {
    await agents.get('e-fail')!.kill('SIGKILL');
    await measureStale('e-fail');
    await waitState('e-fail', FAILED, 30_000);
    const hooks = alerts('/restart-hook').filter((r) => r.body.worker_id === 'e-fail');
    expect(hooks.map((h) => h.body.attempt)).toEqual([1, 2]);
    expect(hooks[0].body).toMatchObject({ kind: 'hive.restart', trigger: 'stale', max_attempts: 2, labels: { suite: 'main' } });
    const k = await eventually(async () => {
      const ks = await kinds('e-fail');
      return ks.includes('gave_up') ? ks : undefined;
    }, 10_000, 'the gave_up event');
    expect(k.slice(k.indexOf('marked_stale'))).toEqual(['marked_stale', 'restarting', 'restart_issued', 'restart_failed', 'restart_issued', 'restart_failed', 'gave_up']);
    const generic = await eventually(() => alerts('/generic').find((a) => a.body.rule === 'worker_failed' && a.body.worker_id === 'e-fail'), 10_000, 'the critical alert');
    expect(generic.body).toMatchObject({ severity: 'critical', source: 'hive-monitor', labels: { suite: 'main' } });
    const slack = await eventually(() => alerts('/slack').find((a) => String(a.body.text).includes('Gave up restarting worker e-fail')), 10_000, 'the Slack alert');
    expect(String(slack.body.text)).toMatch(/^:rotating_light: \[CRITICAL\]/);
    expect(Array.isArray(slack.body.blocks)).toBe(true);
  }, 90_000);

  it.concurrent('an exec restart printing two lines exhausts its attempts: FAILED, its output in the events on one line, the alert', async ({ expect }) => {
    // Killed after the scenarios that time their stale marks, not beside them.
    await sleep(4000);
    await agents.get('e-xfail')!.kill('SIGKILL');
    await measureStale('e-xfail');
    const failed = await waitState('e-xfail', FAILED, 30_000);
    expect(failed.state).toBe(FAILED);
    // FAILED shows in GetWorker as it is decided; its event row is committed before the monitor's call returns.
    const evs = await eventually(async () => {
      const e = await events('e-xfail');
      return e.some((x) => x.kind === 'gave_up') ? e : undefined;
    }, 10_000, 'the gave_up event');
    const k = evs.map((e) => e.kind);
    expect(k.slice(k.indexOf('marked_stale'))).toEqual(['marked_stale', 'restarting', 'restart_issued', 'restart_failed', 'restart_issued', 'restart_failed', 'gave_up']);
    const reasons = evs.filter((e) => e.kind === 'restart_failed' || e.kind === 'gave_up').map((e) => e.reason);
    for (const r of reasons) expect(r).toMatch(/exited with 1: restart-worker: unit hive-worker@e-xfail.service not found hint: «systemctl status» ✓/);
    const alert = await eventually(() => alerts('/generic').find((a) => a.body.rule === 'worker_failed' && a.body.worker_id === 'e-xfail'), 10_000, 'the critical alert');
    expect(alert.body).toMatchObject({ severity: 'critical' });
  }, 90_000);

  it.concurrent('agent SIGTERM: LEFT, never restarted, and the alert says clean shutdown', async ({ expect }) => {
    const a = agents.get('e-left')!;
    await a.kill('SIGTERM');
    expect(await a.exited).toBe(0);
    await waitState('e-left', LEFT, 10_000);
    // Longer than stale (2 s) + the wait before acting (2 s) + slack.
    await sleep(5000);
    expect((await getWorker('e-left')).state).toBe(LEFT);
    const k = await kinds('e-left');
    expect(k).toContain('left');
    for (const kind of ['marked_stale', 'restarting', 'restart_issued']) expect(k).not.toContain(kind);
    expect(execLines().filter((l) => l.args[0] === 'e-left')).toEqual([]);
    const left = await eventually(() => alerts('/generic').find((r) => r.body.rule === 'worker_left' && r.body.worker_id === 'e-left'), 10_000, 'the LEFT alert');
    expect(left.body).toMatchObject({ severity: 'info', text: expect.stringMatching(/clean shutdown.*not a crash/) });
    expect(alerts('/generic').filter((r) => r.body.rule === 'worker_stale' && r.body.worker_id === 'e-left')).toEqual([]);
  }, 90_000);

  it.concurrent('half the fleet killed at once: guard engages, restarts held, then resumed no faster than the rate', async ({ expect }) => {
    const killed = ['m-1', 'm-2', 'm-3'];
    await Promise.all(killed.map((id) => agents.get(id)!.kill('SIGKILL')));
    for (const id of killed) await measureStale(id);
    const engaged = await massMon.waitForLog((e) => e.msg === 'mass-stale guard engaged: restart actions paused', 15_000);
    expect(engaged).toMatchObject({ recent: 3, fleet: 6 });
    const metricsUrl = `http://${String((await massMon.waitForLog((e) => e.msg === 'monitor serving')).http)}/metrics`;
    const gauge = async () => /^hive_monitor_mass_stale_guard_engaged (\d)$/m.exec(await (await fetch(metricsUrl)).text())?.[1];
    expect(await gauge()).toBe('1');
    const critical = await eventually(() => alerts('/generic').find((a) => a.body.rule === 'mass_stale'), 10_000, 'the mass-stale alert');
    expect(critical.body.severity).toBe('critical');
    // Past the wait before acting: still nothing restarted, every restart held.
    await sleep(3500);
    expect(execLines().filter((l) => l.args[0] === 'mass')).toEqual([]);
    for (const id of killed) expect(await kinds(id)).toContain('restart_held');

    // One comes back (same token): 2 of 6 stale, under 40%; the guard releases.
    startAgent('m-1', ['suite=mass']);
    await massMon.waitForLog((e) => e.msg === 'mass-stale guard released: restarts resume at a limited rate', 30_000);
    const lines = await eventually(() => {
      const l = execLines().filter((x) => x.args[0] === 'mass');
      return l.length >= 2 ? l : null;
    }, 20_000, 'the two held restarts');
    expect(lines.map((l) => l.args[1]).sort()).toEqual(['m-2', 'm-3']);
    const gap = lines[1].at - lines[0].at;
    console.log(`[monitor e2e] held restarts resumed ${gap} ms apart (rate: one per 2 s)`);
    expect(gap).toBeGreaterThanOrEqual(1500);
    await sleep(2500);
    expect(execLines().filter((l) => l.args[0] === 'mass')).toHaveLength(2);
    expect(await gauge()).toBe('0');
    expect((await getWorker('m-1')).state).toBe(HEALTHY);
  }, 90_000);

  it('hive restarted: no stale marks, every deadline gets a grace', async () => {
    // Whoever heartbeats now (the scenarios above leave some dead on purpose).
    const alive = (await registry.listWorkers({ states: [HEALTHY], pageSize: 100 }, auth())).workers.map((w) => w.workerId);
    expect(alive).toEqual(expect.arrayContaining(['b-1', 'm-4', 'm-5', 'm-6']));
    const killedAt = Date.now();
    await hive.kill('SIGKILL');
    await startTheHive();
    for (const m of [mainMon, massMon]) {
      await m.waitForLog((e) => e.msg === 'watch synced' && e.hiveRestarted === true, 30_000);
      const grace = await m.waitForLog((e) => e.msg === 'registry back in sight: every deadline gets a fresh grace', 5000);
      console.log(`[monitor e2e] after the hive restart: out of sight ${String(grace.gapMs)} ms, grace ${String(grace.graceMs)} ms`);
    }
    // Every survivor heartbeats again...
    await eventually(async () => {
      for (const id of alive) {
        const w = await getWorker(id);
        if (ms(w.lastSeen) <= killedAt || w.state !== HEALTHY) return false;
      }
      return true;
    }, 45_000, 'every survivor heartbeating on the new hive');
    // ...and some time later, still nobody was marked stale for the outage.
    await sleep(2500);
    const since = (await registry.listEvents({ pageSize: 1000, since: { seconds: BigInt(Math.floor(killedAt / 1000)), nanos: 0 } }, auth())).events;
    expect(since.filter((e) => e.kind === 'marked_stale').map((e) => `${e.workerId}@${ms(e.time) - killedAt}`)).toEqual([]);
    for (const id of alive) expect((await getWorker(id)).state).toBe(HEALTHY);
  }, 120_000);
});
