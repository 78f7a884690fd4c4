import { create } from '@bufbuild/protobuf';
import { Code, ConnectError, createClient, type Client } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ControlService } from '../../gen/hive/v1/control_pb.js';
import { RestartAction, RestartMode, RestartPolicySchema } from '../../gen/hive/v1/policy_pb.js';
import { RegistryService, TokenScope, WorkerState, type Event, type Worker } from '../../gen/hive/v1/registry_pb.js';
import { msToDuration, timestampToMs } from '../../lib/duration.js';
import { dropSchema, PG_URL, uniqueSchema } from '../support/pg.js';
import { eventually, startHiveProc, startProc, tempDir, type HiveProc, type Proc } from '../support/procs.js';
import { ownRedisServer, uniquePrefix } from '../support/redis.js';

// Several replicas end to end, as real processes: two hives on one
// PostgreSQL schema and one Redis (a redis-server of this test's own, so
// that it can be stopped), monitors electing a leader on that Redis, and
// agents (1 s interval) spread over both hives. The scenarios run in
// order on one cluster: every worker seen from both hives; a dead agent
// marked stale and restarted exactly once; the leader SIGKILLed and its
// successor acting in time; a paused leader fenced off; Redis stopped for
// 10 s without a stale mark or a lost registration, and converging after.

const INTERVAL_MS = 1000;
const LEASE_MS = 2000;
const JOIN = 'join-token-for-replicas-e2e-01';
const ADMIN = 'admin-token-for-replicas-e2e-0001';
const { HEALTHY, STALE } = WorkerState;
const ms = (t: Parameters<typeof timestampToMs>[0]) => timestampToMs(t) ?? NaN;

interface MonitorProc extends Proc {
  http: string;
  name: string;
}

describe('replicas end to end (two hives, monitors with a leader, Redis and PostgreSQL)', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let redis: Awaited<ReturnType<typeof ownRedisServer>>;
  const schema = uniqueSchema('hive_rep_e2e');
  const prefix = uniquePrefix('hive_rep_e2e');
  let hiveA: HiveProc;
  let hiveB: HiveProc;
  const procs: Proc[] = [];
  const agents = new Map<string, Proc>();
  const monitors: MonitorProc[] = [];
  let monitorToken = '';
  const clients = new Map<HiveProc, { registry: Client<typeof RegistryService>; control: Client<typeof ControlService> }>();
  const auth = (token = ADMIN) => ({ headers: { authorization: `Bearer ${token}` }, timeoutMs: 10_000 });

  const api = (h: HiveProc) => {
    let c = clients.get(h);
    if (!c) {
      const t = createGrpcTransport({ baseUrl: `http://${h.grpcAddr}` });
      clients.set(h, (c = { registry: createClient(RegistryService, t), control: createClient(ControlService, t) }));
    }
    return c;
  };
  const list = async (h: HiveProc): Promise<Worker[]> => (await api(h).registry.listWorkers({ pageSize: 100 }, auth())).workers;
  const get = async (h: HiveProc, id: string): Promise<Worker> => (await api(h).registry.getWorker({ workerId: id }, auth())).worker!;
  const events = async (id: string): Promise<Event[]> => (await api(hiveA).registry.listEvents({ workerId: id, pageSize: 200 }, auth())).events.reverse();
  const count = async (id: string, kind: string) => (await events(id)).filter((e) => e.kind === kind).length;

  function startAgent(id: string, hive: HiveProc, labels: string[] = []): Proc {
    const args = ['--hive', hive.grpcAddr, '--join-token', JOIN, '--worker-id', id, '--interval', '1s', '--token-file', join(dir.path, `${id}.token`), '--metrics-addr', '127.0.0.1:0'];
    for (const l of labels) args.push('--label', l);
    const a = startProc('worker-agent.mjs', args, { LOG_LEVEL: 'info' });
    agents.set(id, a);
    procs.push(a);
    return a;
  }

  async function startMonitor(name: string, hive: HiveProc): Promise<MonitorProc> {
    const m = startProc(
      'hive-monitor.mjs',
      ['--hive', hive.grpcAddr, '--http-addr', '127.0.0.1:0', '--exec-allow', script, '--redis-url', redis.url, '--redis-prefix', prefix, '--lease-ttl', `${LEASE_MS}ms`, '--alert-startup-grace', '0s', '--refresh', '1s'],
      { LOG_LEVEL: 'info', HIVE_TOKEN: monitorToken },
    );
    procs.push(m);
    const ready = await m.waitForLog((e) => e.msg === 'monitor serving', 60_000);
    const mp = Object.assign(m, { http: `http://${String(ready.http)}`, name });
    monitors.push(mp);
    return mp;
  }

  const leaderGauge = async (m: MonitorProc): Promise<number> => {
    const text = await (await fetch(`${m.http}/metrics`)).text();
    return Number(/^hive_monitor_leader (\d)/m.exec(text)?.[1] ?? NaN);
  };
  /** The monitor's fencing token of its latest term, from its log. */
  const termOf = (m: MonitorProc): bigint => {
    const terms = m.lines.map((l) => { try { return JSON.parse(l); } catch { return null; } }).filter((e) => e?.msg === 'leadership acquired');
    return terms.length ? BigInt(terms.at(-1).fencingToken) : 0n;
  };
  const alive = (m: MonitorProc) => m.child.exitCode === null && m.child.signalCode === null;
  const leaderOf = async (among: MonitorProc[]): Promise<MonitorProc> =>
    eventually(async () => {
      const g = await Promise.all(among.map(leaderGauge));
      return g.filter((x) => x === 1).length === 1 ? among[g.indexOf(1)] : null;
    }, 20_000, 'exactly one leader');

  let script = '';
  let execLog = '';
  /** Restart actions run, by worker: one line per run of the exec script. */
  const execRuns = (id: string) => (existsSync(execLog) ? readFileSync(execLog, 'utf8').split('\n').filter((l) => l === id).length : 0);

  beforeAll(async () => {
    dir = await tempDir('hive-replicas-e2e-');
    execLog = join(dir.path, 'exec.log');
    script = join(dir.path, 'restart-worker.sh');
    writeFileSync(script, `#!/bin/sh\nprintf '%s\\n' "$1" >> '${execLog}'\n`);
    chmodSync(script, 0o755);
    redis = await ownRedisServer();
    const common = ['--database-url', PG_URL, '--database-schema', schema, '--redis-url', redis.url, '--redis-prefix', prefix, '--admin-token', ADMIN, '--join-token', JOIN, '--write-behind', '500ms'];
    // One hive migrates the fresh schema first; the other finds it done.
    hiveA = await startHiveProc([...common, '--data-dir', join(dir.path, 'a')], { LOG_LEVEL: 'info' });
    procs.push(hiveA);
    hiveB = await startHiveProc([...common, '--data-dir', join(dir.path, 'b')], { LOG_LEVEL: 'info' });
    procs.push(hiveB);

    // Created on one hive, used on both: token changes reach every replica.
    monitorToken = (await api(hiveA).registry.createToken({ scope: TokenScope.MONITOR, description: 'replicas e2e' }, auth())).token;
    await api(hiveA).control.setDefaultPolicy(
      {
        defaultPolicy: {
          name: 'exec-once',
          labelSelector: 'restart=exec',
          priority: 1,
          policy: create(RestartPolicySchema, { mode: RestartMode.ON_STALE, action: RestartAction.EXEC, execArgv: [script, '{worker_id}'], maxAttempts: 1, verifyTimeout: msToDuration(120_000) }),
        },
      },
      auth(),
    );
    startAgent('r-1', hiveA, ['restart=exec']);
    startAgent('r-2', hiveA, ['restart=exec']);
    startAgent('r-3', hiveB);
    startAgent('r-4', hiveB);
    startAgent('r-5', hiveA);
    await eventually(async () => {
      const ok = await api(hiveB).registry.listWorkers({}, auth(monitorToken)).then(() => true, () => false);
      return ok;
    }, 10_000, 'the monitor token known to hive B');
    await Promise.all([startMonitor('m1', hiveA), startMonitor('m2', hiveB)]);
  }, 120_000);

  afterAll(async () => {
    if (process.env.REPLICAS_E2E_DUMP) for (const [n, h] of [['A', hiveA], ['B', hiveB]] as const) for (const l of h?.lines ?? []) if (/"level":[4-6]0/.test(l)) console.log(`[${n}] ${l.slice(0, 600)}`);
    for (const p of procs) if (p.child.exitCode === null) p.child.kill('SIGCONT');
    await Promise.all(procs.map((p) => p.kill('SIGKILL')));
    await redis?.stop();
    await dir?.remove();
    await dropSchema(schema);
  });

  it('shows every worker, wherever it heartbeats, on both hives: ListWorkers and WatchWorkers', async () => {
    const ids = ['r-1', 'r-2', 'r-3', 'r-4', 'r-5'];
    for (const h of [hiveA, hiveB]) {
      await eventually(async () => {
        const ws = await list(h);
        return ids.every((id) => ws.find((w) => w.workerId === id)?.state === HEALTHY);
      }, 30_000, 'every worker HEALTHY on both hives');
    }
    // A watcher on A sees heartbeats B received (r-3), and one on B those A received (r-1).
    for (const [h, id] of [[hiveA, 'r-3'], [hiveB, 'r-1']] as const) {
      const before = (await get(h, id)).lastSeq;
      const ctl = new AbortController();
      let seen = 0n;
      try {
        for await (const msg of api(h).registry.watchWorkers({}, { ...auth(), signal: ctl.signal, timeoutMs: 15_000 })) {
          const c = msg.changes.find((x) => x.worker?.workerId === id && !msg.synced);
          if (c && c.worker!.lastSeq > before) {
            seen = c.worker!.lastSeq;
            break;
          }
        }
      } finally {
        ctl.abort();
      }
      expect(seen).toBeGreaterThan(before);
    }
    // The stats came along (forwarded as the agent sent them): B shows A's agent's memory.
    expect((await get(hiveB, 'r-1')).stats?.memoryTotalBytes ?? 0n).toBeGreaterThan(0n);
    expect((await get(hiveA, 'r-3')).stats?.memoryTotalBytes ?? 0n).toBeGreaterThan(0n);
    // Exactly one monitor leads.
    await leaderOf(monitors);
  }, 60_000);

  it('a killed agent is marked stale exactly once and restarted exactly once, whichever monitor watches it', async () => {
    await agents.get('r-1')!.kill('SIGKILL');
    await eventually(async () => (await get(hiveB, 'r-1')).state === STALE || (await count('r-1', 'restart_issued')) > 0, 15_000, 'r-1 STALE');
    await eventually(async () => (await count('r-1', 'restart_issued')) === 1, 15_000, 'one restart issued');
    // Long enough for a second monitor, or a second replica, to have done it again.
    await new Promise((r) => setTimeout(r, 3 * INTERVAL_MS));
    expect(await count('r-1', 'marked_stale')).toBe(1);
    expect(await count('r-1', 'restart_issued')).toBe(1);
    expect(await count('r-1', 'restarting')).toBe(1);
    expect(execRuns('r-1')).toBe(1);
  }, 60_000);

  it('SIGKILL of the leader: the other monitor marks a worker that died with it within 2x interval + the lease', async () => {
    const leader = await leaderOf(monitors);
    const standby = monitors.find((m) => m !== leader)!;
    const lastSeen = ms((await get(hiveA, 'r-2')).lastSeen);
    await Promise.all([leader.kill('SIGKILL'), agents.get('r-2')!.kill('SIGKILL')]);
    const w = await eventually(async () => {
      const x = await get(hiveA, 'r-2');
      return x.state !== HEALTHY ? x : null;
    }, 20_000, 'r-2 marked by the successor');
    // The state is in memory at once; its event row is committed a moment later.
    const mark = await eventually(async () => (await events('r-2')).find((e) => e.kind === 'marked_stale'), 10_000, "r-2's marked_stale event");
    const last = Math.max(lastSeen, ms(w.lastSeen));
    const tookMs = ms(mark.time) - last;
    console.log(`[replicas e2e] successor marked r-2 ${tookMs} ms after its last heartbeat (bound 2x interval + lease = ${2 * INTERVAL_MS + LEASE_MS} ms)`);
    expect(tookMs).toBeGreaterThanOrEqual(2 * INTERVAL_MS);
    // Slack for a loaded machine: one renewal period and transit.
    expect(tookMs).toBeLessThanOrEqual(2 * INTERVAL_MS + LEASE_MS + 1000);
    expect(mark.actor).toBe(`monitor#${termOf(standby)}`);
    expect(termOf(standby)).toBeGreaterThan(termOf(leader));
  }, 60_000);

  it('a paused leader is fenced off: after SIGSTOP/SIGCONT its token is refused and it stands by', async () => {
    const m3 = await startMonitor('m3', hiveA);
    const live = monitors.filter(alive);
    const leader = await leaderOf(live);
    const other = live.find((m) => m !== leader)!;
    const oldTerm = termOf(leader);
    leader.child.kill('SIGSTOP');
    try {
      await other.waitForLog((e) => e.msg === 'leadership acquired', 15_000);
    } finally {
      leader.child.kill('SIGCONT');
    }
    const newTerm = termOf(other);
    expect(newTerm).toBeGreaterThan(oldTerm);
    await leader.waitForLog((e) => e.msg === 'leadership lost', 10_000);
    expect(await leaderGauge(leader)).toBe(0);
    // A MarkStale as the paused leader would send it late: refused for its token, nothing changes.
    const w = await get(hiveB, 'r-3');
    const ref = { workerId: 'r-3', observedSeq: w.lastSeq, observedSessionId: w.sessionId, reason: 'late' };
    for (const h of [hiveA, hiveB]) {
      const err = await api(h).control.markStale({ ...ref, fencingToken: oldTerm }, auth(monitorToken)).then(() => null, (e) => ConnectError.from(e));
      expect(err?.code).toBe(Code.FailedPrecondition);
      expect(err?.rawMessage).toMatch(/fencing token/);
      const cmd = await api(h).control.sendCommand({ workerId: 'r-3', type: 1, reason: 'late', fencingToken: oldTerm }, auth(monitorToken)).then(() => null, (e) => ConnectError.from(e));
      expect(cmd?.code).toBe(Code.FailedPrecondition);
    }
    // The current term passes the fence (to be refused only for naming nobody).
    const current = await api(hiveA).control.markStale({ ...ref, workerId: 'r-nobody', fencingToken: newTerm }, auth(monitorToken)).then(() => null, (e) => ConnectError.from(e));
    expect(current?.code).toBe(Code.NotFound);
    expect((await get(hiveB, 'r-3')).state).toBe(HEALTHY);
    expect(m3).toBeDefined();
  }, 60_000);

  it('Redis stopped for 10 s: both hives keep serving, no stale mark, no lost registration, converged after', async () => {
    const watched = ['r-3', 'r-4', 'r-5'];
    const marksBefore = await Promise.all(watched.map((id) => count(id, 'marked_stale')));
    await redis.stop();
    const stoppedAt = Date.now();
    await eventually(async () => {
      const h = await (await fetch(`${hiveA.httpUrl}/healthz`)).json();
      return h.status === 'degraded';
    }, 10_000, 'hive A degraded');
    const metric = async (url: string, name: string) => (await (await fetch(`${url}/metrics`)).text()).split('\n').find((l) => l.startsWith(name));
    expect(await metric(hiveA.httpUrl, 'hive_live_state_degraded{')).toBe('hive_live_state_degraded{engine="redis"} 1');
    // The monitors cannot renew their lease: within its ttl nobody leads, so nobody marks.
    await eventually(async () => (await Promise.all(monitors.filter(alive).map(leaderGauge))).every((g) => g === 0), 10_000, 'no leader during the outage');
    // A worker joins through B while Redis is gone.
    startAgent('r-6', hiveB);
    await eventually(async () => (await get(hiveB, 'r-6').catch(() => null))?.state === HEALTHY, 15_000, 'r-6 registered on B during the outage');
    const r5during = (await get(hiveA, 'r-5')).lastSeq;
    await new Promise((r) => setTimeout(r, Math.max(0, 10_000 - (Date.now() - stoppedAt))));
    expect((await get(hiveA, 'r-5')).lastSeq).toBeGreaterThan(r5during); // A kept accepting heartbeats
    await redis.start();
    for (const h of [hiveA, hiveB]) {
      await eventually(async () => (await (await fetch(`${h.httpUrl}/healthz`)).json()).status === 'ok', 15_000, 'hive reachable again');
    }
    // Converged: every live worker, r-6 included, HEALTHY and current on both.
    await eventually(async () => {
      const [a, b] = await Promise.all([list(hiveA), list(hiveB)]);
      return [...watched, 'r-6'].every((id) => {
        const wa = a.find((w) => w.workerId === id);
        const wb = b.find((w) => w.workerId === id);
        return wa?.state === HEALTHY && wb?.state === HEALTHY && wa.lastSeq > 0n && wb.lastSeq > 0n && (wa.lastSeq - wb.lastSeq) ** 2n <= 4n;
      });
    }, 20_000, 'both hives agree');
    await leaderOf(monitors.filter(alive));
    expect(await metric(hiveB.httpUrl, 'hive_live_state_degraded{')).toBe('hive_live_state_degraded{engine="redis"} 0');
    // Past every grace: still nobody marked.
    await new Promise((r) => setTimeout(r, 3 * INTERVAL_MS));
    const marksAfter = await Promise.all(watched.map((id) => count(id, 'marked_stale')));
    expect(marksAfter).toEqual(marksBefore);
    expect(await count('r-6', 'marked_stale')).toBe(0);
  }, 90_000);
});
