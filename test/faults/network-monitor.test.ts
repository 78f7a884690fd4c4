import { create } from '@bufbuild/protobuf';
import { createClient } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ControlService } from '../../gen/hive/v1/control_pb.js';
import { RestartAction, RestartMode, RestartPolicySchema } from '../../gen/hive/v1/policy_pb.js';
import { RegistryService, TokenScope, WorkerState } from '../../gen/hive/v1/registry_pb.js';
import { msToDuration } from '../../lib/duration.js';
import { report } from '../support/figures.js';
import { dropSchema, PG_URL, uniqueSchema } from '../support/pg.js';
import { eventually, startHiveProc, startProc, tempDir, type HiveProc, type Proc } from '../support/procs.js';
import { createProxy, type Proxy } from './support/proxy.js';

// Real agents reach the hive through TCP proxies the test steers (delay,
// stalls shorter than the policy, connection cuts), and the monitor is
// frozen (SIGSTOP) and killed (SIGKILL) and replaced. Within the policy
// (2x the interval) nothing may go stale; a stall longer than the policy
// makes exactly one worker stale and earns it exactly one restart, and
// its late heartbeats, delivered when the stall ends, bring it back.

const INTERVAL_MS = 2000;
const JOIN = 'hive_join_network-test-join-0123456789ab';
const ADMIN = 'hive_adm_network-test-admin-0123456789ab';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('network faults between agents and the hive, and a frozen and killed monitor', () => {
  const schema = uniqueSchema('hive_net');
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let hive: HiveProc;
  let monitorToken: string;
  const monitors: Proc[] = [];
  const agents: Proc[] = [];
  const proxies: Proxy[] = [];
  const ids = ['net-delay', 'net-stall', 'net-cut', 'net-long'];
  let script: string;
  let execLog: string;
  const admin = { headers: { authorization: `Bearer ${ADMIN}` }, timeoutMs: 10_000 };
  const clients = () => {
    const t = createGrpcTransport({ baseUrl: `http://${hive.grpcAddr}` });
    return { registry: createClient(RegistryService, t), control: createClient(ControlService, t) };
  };
  const execLines = (id: string) => (existsSync(execLog) ? readFileSync(execLog, 'utf8').split('\n').filter((l) => l.split(' ')[1] === id).length : 0);

  async function sql<T = Record<string, unknown>>(q: string, params: unknown[] = []): Promise<T[]> {
    const c = new pg.Client({ connectionString: PG_URL, options: `-c search_path=${schema}` });
    await c.connect();
    try {
      return (await c.query(q, params)).rows as T[];
    } finally {
      await c.end();
    }
  }

  function startMonitor(): Proc {
    const m = startProc(
      'hive-monitor.mjs',
      ['--hive', hive.grpcAddr, '--token', monitorToken, '--http-addr', '127.0.0.1:0', '--exec-allow', script, '--alert-startup-grace', '0s', '--refresh', '1s'],
      { LOG_LEVEL: 'info' },
    );
    monitors.push(m);
    return m;
  }

  beforeAll(async () => {
    dir = await tempDir('hive-net-');
    execLog = join(dir.path, 'exec.log');
    script = join(dir.path, 'restart.sh');
    writeFileSync(script, `#!/bin/sh\nprintf '%s %s\\n' "$(date +%s%3N)" "$*" >> '${execLog}'\n`);
    chmodSync(script, 0o755);
    hive = await startHiveProc(['--data-dir', dir.path, '--database-url', PG_URL, '--database-schema', schema, '--admin-token', ADMIN, '--join-token', JOIN, '--write-behind', '500ms'], { LOG_LEVEL: 'info' });
    const { registry, control } = clients();
    monitorToken = (await registry.createToken({ scope: TokenScope.MONITOR, description: 'network test' }, admin)).token;
    await control.setDefaultPolicy(
      {
        defaultPolicy: {
          name: 'net',
          labelSelector: 'suite=net',
          priority: 10,
          policy: create(RestartPolicySchema, { mode: RestartMode.ON_STALE, action: RestartAction.EXEC, execArgv: [script, '{worker_id}'], verifyTimeout: msToDuration(60_000), maxAttempts: 5 }),
        },
      },
      admin,
    );
    const [host, port] = hive.grpcAddr.split(':');
    for (const id of ids) {
      const p = await createProxy({ host, port: Number(port) });
      proxies.push(p);
      agents.push(
        startProc(
          'worker-agent.mjs',
          ['--hive', `127.0.0.1:${p.port}`, '--join-token', JOIN, '--worker-id', id, '--interval', `${INTERVAL_MS}ms`, '--label', 'suite=net', '--token-file', join(dir.path, `${id}.token`), '--metrics-addr', '127.0.0.1:0'],
          { LOG_LEVEL: 'info' },
        ),
      );
    }
    await eventually(async () => (await registry.listWorkers({ states: [WorkerState.HEALTHY] }, admin)).workers.length === ids.length, 60_000, 'all agents healthy');
    await startMonitor().waitForLog((e) => e.msg === 'watch synced', 30_000);
  }, 120_000);

  afterAll(async () => {
    await Promise.all([...agents, ...monitors].map((p) => p.kill('SIGKILL')));
    for (const p of proxies) await p.close();
    await hive?.kill('SIGKILL');
    await dropSchema(schema);
    await dir?.remove();
  });

  it('no false stale mark within the policy, exactly one restart beyond it, and the late heartbeats win', async (ctx) => {
    const [delay, stall, cut, long] = proxies;
    let faults = 0;
    const { registry } = clients();

    // Phase 1: the network misbehaves within the policy (a heartbeat reaches the hive at least every 2x interval).
    delay.setDelay(300);
    faults++;
    const cutter = (async () => {
      for (let i = 0; i < 3; i++) {
        await sleep(3500);
        cut.cut();
        faults++;
      }
    })();
    for (let i = 0; i < 4; i++) {
      stall.stall();
      await sleep(700);
      stall.release();
      faults++;
      await sleep(2300);
    }
    await cutter;
    delay.setDelay(0);
    expect(cut.connections()).toBeGreaterThanOrEqual(4); // the agent did reconnect after each cut

    // Phase 2: the monitor freezes with every deadline in its heap, then wakes up to a world that moved on.
    const m1 = monitors[0];
    m1.child.kill('SIGSTOP');
    await sleep(2.5 * INTERVAL_MS);
    m1.child.kill('SIGCONT');
    faults++;
    await sleep(2 * INTERVAL_MS);
    await m1.kill('SIGKILL');
    faults++;
    await startMonitor().waitForLog((e) => e.msg === 'watch synced', 30_000);
    await sleep(2 * INTERVAL_MS);
    const staleSoFar = await sql<{ worker_id: string }>("SELECT worker_id FROM events WHERE kind = 'marked_stale'");

    // Phase 3: a stall beyond the policy. The worker goes stale, gets one restart, and its held heartbeats arrive late.
    long.stall();
    faults++;
    // What the hive holds once the stall is in place (a heartbeat already past
    // the proxy when it began may still land): nothing may arrive after this.
    await sleep(300);
    const before = (await registry.getWorker({ workerId: 'net-long' }, admin)).worker!;
    await eventually(() => execLines('net-long') >= 1, 30_000, 'the restart action for net-long');
    const during = (await registry.getWorker({ workerId: 'net-long' }, admin)).worker!;
    expect([WorkerState.STALE, WorkerState.RESTARTING]).toContain(during.state);
    expect(during.lastSeq).toBe(before.lastSeq);
    long.release();
    const back = await eventually(async () => {
      const w = (await registry.getWorker({ workerId: 'net-long' }, admin)).worker!;
      return w.state === WorkerState.HEALTHY ? w : null;
    }, 30_000, 'net-long healthy again');
    // Same session, next seq: the heartbeat the agent sent during the stall was accepted when it
    // finally arrived, after the stale mark, and ended the episode.
    expect(back.sessionId).toBe(before.sessionId);
    expect(back.lastSeq).toBeGreaterThan(before.lastSeq);
    await sleep(3 * INTERVAL_MS);

    const stale = await sql<{ worker_id: string }>("SELECT worker_id FROM events WHERE kind = 'marked_stale'");
    const falseStale = staleSoFar.length + stale.filter((s) => s.worker_id !== 'net-long').length - staleSoFar.filter((s) => s.worker_id !== 'net-long').length;
    const restarts = Object.fromEntries(ids.map((id) => [id, execLines(id)]));
    const duplicates = Math.max(0, restarts['net-long'] - 1) + ids.filter((id) => id !== 'net-long').reduce((n, id) => n + restarts[id], 0);
    const kinds = (await sql<{ kind: string }>("SELECT kind FROM events WHERE worker_id = 'net-long' ORDER BY event_id")).map((r) => r.kind);
    report(ctx, { 'faults survived': faults, 'false stale marks': falseStale, 'duplicate restarts': duplicates });
    expect(staleSoFar.map((s) => s.worker_id)).toEqual([]);
    expect(stale.map((s) => s.worker_id)).toEqual(['net-long']);
    expect(restarts).toEqual({ 'net-delay': 0, 'net-stall': 0, 'net-cut': 0, 'net-long': 1 });
    expect(kinds.slice(kinds.indexOf('marked_stale'))).toEqual(expect.arrayContaining(['marked_stale', 'restarting', 'recovered']));
    for (const a of agents) expect(a.child.exitCode).toBeNull();
  }, 240_000);
});
