import { create, type MessageInitShape } from '@bufbuild/protobuf';
import { Code, ConnectError, createClient, type Client } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ControlService } from '../../gen/hive/v1/control_pb.js';
import { CheckOutcome, HealthBand, HealthCheckState, type HealthCheck } from '../../gen/hive/v1/health_check_pb.js';
import { RestartAction, RestartMode, RestartPolicySchema } from '../../gen/hive/v1/policy_pb.js';
import { HealthStatus, RegistryService, TokenScope, WorkerState, type Event, type Worker } from '../../gen/hive/v1/registry_pb.js';
import { msToDuration, timestampToMs } from '../../lib/duration.js';
import { dropSchema, PG_URL, postgresAvailable, uniqueSchema } from '../support/pg.js';
import { eventually, startHiveProc, startProc, tempDir, type HiveProc, type Proc } from '../support/procs.js';

// Health-check runs and dependencies end to end: a real hive, a real
// monitor and real agents as child processes, probing a real HTTP server
// the test controls. Scenarios: a run over three agents where one probe
// fails and one agent is killed while the run waits for it; a dependency
// chain A <- B where A's agent dies; a dependency cycle refused.

const JOIN = 'join-token-for-checks-e2e-001';
const { HEALTHY, STALE, UNHEALTHY } = WorkerState;
const ms = (t: Parameters<typeof timestampToMs>[0]) => timestampToMs(t) ?? NaN;


describe('health checks and dependencies end to end (real hive, monitor, agents)', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let hive: HiveProc;
  let admin: string;
  let registry: Client<typeof RegistryService>;
  let control: Client<typeof ControlService>;
  let monitor: Proc;
  let probes: http.Server;
  let probeBase: string;
  const procs: Proc[] = [];
  const agents = new Map<string, Proc>();
  let schema: string | null = null;
  let script: string;
  let execLog: string;

  // The probe server: /ok answers 200, /fail 500; /held answers 200 unless
  // held (then it answers nothing until released); /b answers as bStatus says.
  let held = false;
  const heldSeen: number[] = [];
  const waitingOnHeld: http.ServerResponse[] = [];
  let bStatus = 200;

  const auth = () => ({ headers: { authorization: `Bearer ${admin}` }, timeoutMs: 10_000 });
  const getWorker = async (id: string): Promise<Worker> => (await registry.getWorker({ workerId: id }, auth())).worker!;
  const events = async (id: string): Promise<Event[]> => (await registry.listEvents({ workerId: id, pageSize: 500 }, auth())).events.reverse();
  const kinds = async (id: string) => (await events(id)).map((e) => e.kind);
  const waitState = (id: string, state: WorkerState, timeoutMs = 20_000) =>
    eventually(async () => ((await getWorker(id)).state === state ? true : null), timeoutMs, `${id} ${WorkerState[state]}`);
  const execLines = () => (existsSync(execLog) ? readFileSync(execLog, 'utf8').split('\n').filter(Boolean) : []);

  function startAgent(id: string, args: string[], supervise: string[] = []): Proc {
    const a = startProc(
      'worker-agent.mjs',
      ['--hive', hive.grpcAddr, '--worker-id', id, '--interval', '1s', '--token-file', join(dir.path, `${id}.token`), '--metrics-addr', '127.0.0.1:0', '--join-token', JOIN, ...args, ...(supervise.length ? ['--', ...supervise] : [])],
      { LOG_LEVEL: 'info' },
    );
    agents.set(id, a);
    procs.push(a);
    return a;
  }
  const policy = (p: MessageInitShape<typeof RestartPolicySchema>) => create(RestartPolicySchema, p);

  beforeAll(async () => {
    dir = await tempDir('hive-checks-e2e-');
    execLog = join(dir.path, 'exec.log');
    script = join(dir.path, 'restart-worker.sh');
    writeFileSync(script, `#!/bin/sh\nprintf '%s %s\\n' "$(date +%s%3N)" "$*" >> '${execLog}'\n`);
    chmodSync(script, 0o755);

    probes = http.createServer((req, res) => {
      if (req.url === '/ok') return void res.writeHead(200).end('ok');
      if (req.url === '/fail') return void res.writeHead(500).end('broken');
      if (req.url === '/b') return void res.writeHead(bStatus).end();
      if (req.url === '/held') {
        if (!held) return void res.writeHead(200).end('ok');
        heldSeen.push(Date.now());
        waitingOnHeld.push(res);
        return;
      }
      res.writeHead(404).end();
    });
    await new Promise<void>((r) => probes.listen(0, '127.0.0.1', r));
    probeBase = `http://127.0.0.1:${(probes.address() as { port: number }).port}`;

    schema = (await postgresAvailable()) ? uniqueSchema('hive_chk_e2e') : null;
    const store = schema ? ['--database-url', PG_URL, '--database-schema', schema] : [];
    hive = await startHiveProc(['--data-dir', join(dir.path, 'data'), '--join-token', JOIN, '--write-behind', '500ms', ...store], { LOG_LEVEL: 'info' });
    procs.push(hive);
    admin = (await readFile(join(dir.path, 'data', 'admin-token'), 'utf8')).trim();
    const transport = createGrpcTransport({ baseUrl: `http://${hive.grpcAddr}` });
    registry = createClient(RegistryService, transport);
    control = createClient(ControlService, transport);

    // A is restarted by an exec script (its agent is dead: nobody to tell);
    // B by its agent, when it reports itself unhealthy.
    await control.setDefaultPolicy({ defaultPolicy: { name: 'dep-a', labelSelector: 'role=a', priority: 10, policy: policy({ mode: RestartMode.ON_STALE, action: RestartAction.EXEC, execArgv: [script, '{worker_id}'], verifyTimeout: msToDuration(60_000) }) } }, auth());
    await control.setDefaultPolicy({ defaultPolicy: { name: 'dep-b', labelSelector: 'role=b', priority: 10, policy: policy({ mode: RestartMode.ON_UNHEALTHY, action: RestartAction.AGENT, restartAfter: msToDuration(300), verifyTimeout: msToDuration(30_000) }) } }, auth());

    startAgent('run-ok', ['--label', 'suite=chk', '--label', 'scenario=run', '--probe', `${probeBase}/ok`]);
    startAgent('run-fail', ['--label', 'suite=chk', '--label', 'scenario=run', '--probe', `${probeBase}/fail`]);
    startAgent('run-killed', ['--label', 'suite=chk', '--label', 'scenario=run', '--probe', `${probeBase}/held`, '--probe-timeout', '30s']);
    startAgent('dep-a', ['--label', 'suite=chk', '--label', 'role=a']);
    startAgent('dep-b', ['--label', 'suite=chk', '--label', 'role=b', '--depends-on', 'dep-a', '--probe', `${probeBase}/b`], ['sleep', '3600']);

    const monitorToken = (await registry.createToken({ scope: TokenScope.MONITOR, description: 'checks e2e monitor' }, auth())).token;
    monitor = startProc('hive-monitor.mjs', ['--hive', hive.grpcAddr, '--http-addr', '127.0.0.1:0', '--token', monitorToken, '--selector', 'suite=chk', '--exec-allow', script, '--refresh', '1s', '--alert-startup-grace', '0s'], { LOG_LEVEL: 'info' });
    procs.push(monitor);
    await monitor.waitForLog((e) => e.msg === 'monitor serving', 60_000);
    await eventually(async () => {
      const ws = (await registry.listWorkers({ labelSelector: 'suite=chk' }, auth())).workers;
      const want: Record<string, WorkerState> = { 'run-ok': HEALTHY, 'run-fail': UNHEALTHY, 'run-killed': HEALTHY, 'dep-a': HEALTHY, 'dep-b': HEALTHY };
      return Object.entries(want).every(([id, s]) => ws.find((w) => w.workerId === id)?.state === s);
    }, 60_000, 'every worker in its starting state');
    await eventually(async () => (await getWorker('dep-b')).blockedBy.length === 0, 10_000, 'dep-b unblocked once dep-a is healthy');
    await monitor.waitForLog((e) => e.msg === 'watch synced', 30_000);
  }, 120_000);

  afterAll(async () => {
    held = false;
    for (const r of waitingOnHeld) r.destroy();
    await Promise.all(procs.map((p) => p.kill('SIGKILL')));
    probes?.closeAllConnections();
    await new Promise<void>((r) => (probes ? probes.close(() => r()) : r()));
    await dir?.remove();
    if (schema) await dropSchema(schema);
  });

  it.concurrent('a run over three agents: one probe fails, one agent is killed mid-run; right results, scores and status at the timeout', async ({ expect }) => {
    const TIMEOUT = 4000;
    // From now on run-killed's probe hangs: its answer cannot come before it dies.
    held = true;
    const started = (await control.startHealthCheck({ labelSelector: 'scenario=run', timeout: msToDuration(TIMEOUT) }, auth())).check!;
    const t0 = Date.now();
    expect(started).toMatchObject({ state: HealthCheckState.RUNNING, total: 3 });
    // The killed agent is in the middle of a probe when it dies.
    await eventually(() => heldSeen.length > 0, 10_000, 'run-killed probing');
    await agents.get('run-killed')!.kill('SIGKILL');

    const progress: Array<[number, HealthCheckState]> = [];
    let done: HealthCheck | undefined;
    for await (const m of control.watchHealthCheck({ checkId: started.checkId }, auth())) {
      progress.push([m.check!.completed, m.check!.state]);
      done = m.check;
    }
    const took = Date.now() - t0;
    console.log(`[checks e2e] run ${started.checkId}: done ${took} ms after start (timeout ${TIMEOUT} ms); progress ${JSON.stringify(progress)}`);
    expect(done!.state).toBe(HealthCheckState.DONE);
    // Ended by the timeout (the killed agent never answered), and not much later.
    const ranMs = ms(done!.finishedAt) - ms(done!.startedAt);
    expect(ranMs).toBeGreaterThanOrEqual(TIMEOUT);
    expect(ranMs).toBeLessThan(TIMEOUT + 1500);
    // Progress was seen as it happened: two answers before the end.
    expect(progress.some(([c, s]) => c === 2 && s === HealthCheckState.RUNNING)).toBe(true);

    const by = Object.fromEntries(done!.results.map((r) => [r.workerId, r]));
    expect(by['run-ok']).toMatchObject({ outcome: CheckOutcome.ANSWERED, score: 1, band: HealthBand.HEALTHY, reason: 'ok' });
    expect(by['run-ok'].report).toMatchObject({ probeStatus: HealthStatus.HEALTHY });
    expect(by['run-ok'].report!.uptimeSeconds).toBeGreaterThan(0);
    expect(by['run-ok'].report!.hiveRttSeconds).toBeGreaterThanOrEqual(0);
    expect(by['run-ok'].report!.stats!.collectors.map((c) => c.name).sort()).toEqual(['disk', 'gpu', 'load', 'memory']);
    expect(by['run-fail']).toMatchObject({ outcome: CheckOutcome.ANSWERED, score: 0.55, band: HealthBand.UNHEALTHY });
    expect(by['run-fail'].reason).toMatch(/^probe: GET .*\/fail returned HTTP 500/);
    expect(by['run-killed']).toMatchObject({ outcome: CheckOutcome.NO_ANSWER, score: 0, band: HealthBand.CRITICAL, reason: 'no answer within 4s' });
    expect(done).toMatchObject({ total: 3, completed: 3, failed: 2, band: HealthBand.UNHEALTHY });
    expect(done!.score).toBeCloseTo((1 + 0.55 + 0) / 3, 6);
    expect(done!.summary).toMatch(/^3 workers checked: 1 healthy, 0 degraded, 2 failed\. Failed: run-fail \(probe: GET .*returned HTTP 500[^)]*\); run-killed \(no answer within 4s\)\./);

    // Durable: the same run from the history.
    const listed = (await control.listHealthChecks({}, auth())).checks.find((c) => c.checkId === started.checkId);
    expect(listed).toMatchObject({ state: HealthCheckState.DONE, failed: 2, summary: done!.summary });
    held = false;
    for (const r of waitingOnHeld.splice(0)) r.destroy();
  }, 60_000);

  it.concurrent("dependency chain A <- B: A's agent killed; A restarted first, B blocked and not restarted until A is back", async ({ expect }) => {
    await agents.get('dep-a')!.kill('SIGKILL');
    await waitState('dep-a', STALE, 15_000);
    // B's own service fails because A is down.
    await eventually(async () => (await getWorker('dep-b')).blockedBy.join() === 'dep-a', 10_000, 'dep-b blocked by dep-a');
    bStatus = 503;
    await waitState('dep-b', UNHEALTHY, 20_000);
    await eventually(async () => (await kinds('dep-b')).includes('restart_blocked'), 15_000, "dep-b's restart held");
    const line = await eventually(() => execLines().find((l) => l.split(' ')[1] === 'dep-a'), 20_000, "dep-a's restart (exec)");
    console.log(`[checks e2e] dep-a restart ran: ${line}`);
    // Well past B's restart_after (300 ms): still no restart of B.
    await new Promise((r) => setTimeout(r, 2500));
    expect(await kinds('dep-b')).not.toContain('restart_issued');
    expect((await getWorker('dep-b')).state).toBe(UNHEALTHY);

    // What systemd would do after the exec: A's agent again, same token.
    startAgent('dep-a', ['--label', 'suite=chk', '--label', 'role=a']);
    await waitState('dep-a', HEALTHY, 20_000);
    await eventually(async () => (await kinds('dep-b')).includes('restart_issued'), 20_000, "dep-b's restart after dep-a is back");
    bStatus = 200;
    await eventually(async () => (await kinds('dep-b')).includes('restart_verified'), 30_000, "dep-b's restart verified");

    const a = await events('dep-a');
    const b = await events('dep-b');
    const at = (list: Event[], kind: string) => ms(list.find((e) => e.kind === kind && ms(e.time) >= ms(a.find((x) => x.kind === 'marked_stale')!.time))?.time);
    const aRestarted = at(a, 'restart_issued');
    const aBack = at(a, 'recovered');
    const bRestarted = at(b, 'restart_issued');
    console.log(`[checks e2e] dep-a restart issued +0 ms, back +${aBack - aRestarted} ms; dep-b restart issued +${bRestarted - aRestarted} ms`);
    expect(aRestarted).toBeLessThan(aBack);
    expect(bRestarted).toBeGreaterThanOrEqual(aBack);
    const bk = b.map((e) => e.kind);
    const fromBlock = bk.lastIndexOf('blocked');
    expect(bk.slice(fromBlock).filter((k) => ['blocked', 'restart_blocked', 'unblocked', 'restart_issued', 'restart_verified'].includes(k))).toEqual(['blocked', 'restart_blocked', 'unblocked', 'restart_issued', 'restart_verified']);
    expect(bk.filter((k) => k === 'restart_issued')).toHaveLength(1);
    expect(b.find((e) => e.kind === 'blocked' && ms(e.time) >= ms(a.find((x) => x.kind === 'marked_stale')!.time))?.reason).toBe('waiting for dep-a stale; not restarted until they are healthy');
    expect(execLines().filter((l) => l.split(' ')[1] === 'dep-a')).toHaveLength(1);
    expect((await getWorker('dep-b')).state).toBe(HEALTHY);
  }, 120_000);

  it('a dependency cycle is rejected with InvalidArgument and changes nothing', async () => {
    const before = await getWorker('dep-a');
    const err = await registry
      .registerWorker({ workerId: 'dep-a', labels: before.labels, heartbeatInterval: msToDuration(1000), dependsOn: ['dep-b'] }, auth())
      .then(() => null, (e) => ConnectError.from(e));
    expect(err?.code).toBe(Code.InvalidArgument);
    expect(err?.rawMessage).toBe('depends_on would create a dependency cycle: dep-a -> dep-b -> dep-a');
    const after = await getWorker('dep-a');
    expect(after.dependsOn).toEqual([]);
    expect(after.registeredAt).toEqual(before.registeredAt);
    // The agent's token still works: the registration changed nothing.
    expect(after.state).toBe(HEALTHY);
    // A join token registering a new worker into a cycle by selector is refused too.
    const viaSelector = await registry
      .registerWorker({ workerId: 'dep-c', labels: { role: 'c' }, heartbeatInterval: msToDuration(1000), dependsOnSelector: 'role=b' }, { headers: { authorization: `Bearer ${JOIN}` } })
      .then(() => 'registered', (e) => Code[ConnectError.from(e).code]);
    expect(viaSelector).toBe('registered');
    const cycle = await registry
      .registerWorker({ workerId: 'dep-a', labels: { ...before.labels }, heartbeatInterval: msToDuration(1000), dependsOnSelector: 'role=c' }, auth())
      .then(() => 'registered', (e) => Code[ConnectError.from(e).code]);
    // dep-a <- dep-c (by selector role=c) <- ... dep-c depends on role=b (dep-b), dep-b on dep-a: a cycle.
    expect(cycle).toBe('InvalidArgument');
    expect((await getWorker('dep-a')).dependsOnSelector).toBe('');
  }, 30_000);
});
