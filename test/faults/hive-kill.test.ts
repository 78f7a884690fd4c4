import { create } from '@bufbuild/protobuf';
import { Code, ConnectError, createClient } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ControlService } from '../../gen/hive/v1/control_pb.js';
import { RestartMode, RestartPolicySchema } from '../../gen/hive/v1/policy_pb.js';
import { HeartbeatRequestSchema, RegistryService, TokenScope, WorkerState } from '../../gen/hive/v1/registry_pb.js';
import { msToDuration } from '../../lib/duration.js';
import { report } from '../support/figures.js';
import { dropSchema, PG_URL, uniqueSchema } from '../support/pg.js';
import { eventually, freePort, startHiveProc, startProc, tempDir, type HiveProc, type Proc } from '../support/procs.js';
import { createFleet, type Fleet } from './support/fleet.js';
import { pool } from './support/raw-grpc.js';

// SIGKILL of the hive while a simulated fleet (HIVE_FAULT_FLEET workers:
// 250 in the default `npm test`, 1,000 in `npm run test:faults`; one
// HeartbeatStream each) heartbeats and registrations,
// policy changes, token creations and Leaves are in flight. After the
// restart: every acknowledged write is there, the monitor (a real process
// watching throughout) marked nobody stale for the hive's own downtime,
// and the fleet came back spread out by its jittered backoff.

const FLEET = Number(process.env.HIVE_FAULT_FLEET || 250);
const INTERVAL_MS = 2000;
const BACKOFF_CAP_MS = 5000;
const ADMIN = 'hive_adm_kill-test-admin-0123456789abcdef';

interface Ledger {
  registered: Map<string, string>;
  policies: Map<string, number>;
  left: Set<string>;
  tokens: Set<string>;
}

describe(`SIGKILL of the hive under ${FLEET} heartbeating workers`, () => {
  const schema = uniqueSchema('hive_kill');
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let hive: HiveProc;
  let monitor: Proc;
  let fleet: Fleet;
  let ports: { grpc: number; http: number };
  const admin = { headers: { authorization: `Bearer ${ADMIN}` }, timeoutMs: 3000 };
  const start = async () => {
    hive = await startHiveProc(['--data-dir', dir.path, '--database-url', PG_URL, '--database-schema', schema, '--admin-token', ADMIN, '--write-behind', '500ms'], { LOG_LEVEL: 'info' }, ports);
  };
  const clients = () => {
    const t = createGrpcTransport({ baseUrl: `http://127.0.0.1:${ports.grpc}` });
    return { registry: createClient(RegistryService, t), control: createClient(ControlService, t) };
  };

  async function sql<T = Record<string, unknown>>(q: string, params: unknown[] = []): Promise<T[]> {
    const c = new pg.Client({ connectionString: PG_URL, options: `-c search_path=${schema}` });
    await c.connect();
    try {
      return (await c.query(q, params)).rows as T[];
    } finally {
      await c.end();
    }
  }

  beforeAll(async () => {
    dir = await tempDir('hive-kill-');
    ports = { grpc: await freePort(), http: await freePort() };
    await start();
    const { registry } = clients();
    fleet = createFleet({ addr: `127.0.0.1:${ports.grpc}`, intervalMs: INTERVAL_MS, backoffBaseMs: 500, backoffCapMs: BACKOFF_CAP_MS, channels: 4 });
    const ids = Array.from({ length: FLEET }, (_, i) => `k-w${String(i).padStart(4, '0')}`);
    await pool(ids, 16, async (id) => {
      const { workerToken } = await registry.registerWorker({ workerId: id, heartbeatInterval: msToDuration(INTERVAL_MS), labels: { fleet: 'kill' } }, { ...admin, timeoutMs: 30_000 });
      fleet.add(id, workerToken);
    });
    const monitorToken = (await registry.createToken({ scope: TokenScope.MONITOR, description: 'kill test' }, admin)).token;
    monitor = startProc('hive-monitor.mjs', ['--hive', `127.0.0.1:${ports.grpc}`, '--token', monitorToken, '--http-addr', '127.0.0.1:0', '--alert-startup-grace', '0s'], { LOG_LEVEL: 'info' });
    await monitor.waitForLog((e) => e.msg === 'watch synced', 60_000);
    fleet.start();
    await eventually(() => fleet.connectedCount() === FLEET, 90_000, 'the whole fleet to connect');
  }, 240_000);

  afterAll(async () => {
    fleet?.close();
    await monitor?.kill('SIGKILL');
    await hive?.kill('SIGKILL');
    await dropSchema(schema);
    await dir?.remove();
  });

  it('loses no acknowledged write, marks nobody stale for its own downtime, and the fleet returns spread out', async (ctx) => {
    const ledger: Ledger = { registered: new Map(), policies: new Map(), left: new Set(), tokens: new Set() };
    const ws = [...fleet.workers.values()];
    const policyRange = Math.floor(FLEET / 5);
    const leaveRange = Math.floor(FLEET * 0.4);
    let churning = true;
    let n = 0;
    const attempts = { ok: 0, failed: 0 };
    const ack = <T>(p: Promise<T>, onOk: (v: T) => void) =>
      p.then(
        (v) => {
          attempts.ok++;
          onOk(v);
        },
        () => void attempts.failed++,
      );
    // Four lanes of writes, each on workers of its own so the ledger's "latest acknowledged" is well defined.
    const lane = async (k: number) => {
      while (churning) {
        const { registry, control } = clients();
        const i = n++;
        switch (i % 4) {
          case 0: {
            const id = `k-new-${i}`;
            await ack(registry.registerWorker({ workerId: id, heartbeatInterval: msToDuration(60_000) }, admin), (r) => ledger.registered.set(id, r.workerToken));
            break;
          }
          case 1: {
            const w = ws[(k * 97 + i) % policyRange];
            const attemptsMax = 1 + (i % 50);
            await ack(control.setRestartPolicy({ workerId: w.workerId, policy: create(RestartPolicySchema, { mode: RestartMode.NEVER, maxAttempts: attemptsMax }) }, admin), () => ledger.policies.set(w.workerId, attemptsMax));
            break;
          }
          case 2: {
            const w = ws[FLEET - 1 - (i % leaveRange)];
            if (w.stopped) break;
            fleet.stopWorker(w.workerId);
            await ack(registry.leave({ workerId: w.workerId, reason: 'rolling update' }, { headers: { authorization: `Bearer ${w.token}` }, timeoutMs: 3000 }), () => ledger.left.add(w.workerId));
            break;
          }
          case 3:
            await ack(registry.createToken({ scope: TokenScope.READ, description: `t${i}` }, admin), (r) => ledger.tokens.add(r.info!.tokenId));
            break;
        }
      }
    };
    const lanes = [0, 1, 2, 3].map(lane);
    await new Promise((r) => setTimeout(r, 1500));
    const okBeforeKill = attempts.ok;
    await hive.kill('SIGKILL');
    const killedAt = Date.now();
    await new Promise((r) => setTimeout(r, 1500));
    await start();
    const servingAt = Date.now();
    await new Promise((r) => setTimeout(r, 1000));
    churning = false;
    await Promise.all(lanes);
    expect(okBeforeKill).toBeGreaterThan(4);
    expect(attempts.failed).toBeGreaterThan(0); // the kill did land mid-churn

    // Everyone still heartbeating is back, by their own backoff.
    const alive = ws.filter((w) => !w.stopped);
    await eventually(() => alive.every((w) => w.connects.some((t) => t >= killedAt)), 60_000, 'the fleet to reconnect');
    const delays = alive.map((w) => w.connects.find((t) => t >= killedAt)! - servingAt).sort((a, b) => a - b);
    const q = (p: number) => delays[Math.min(delays.length - 1, Math.floor(p * delays.length))];
    const buckets = new Map<number, number>();
    for (const d of delays) buckets.set(Math.floor(d / 250), (buckets.get(Math.floor(d / 250)) ?? 0) + 1);
    const peak = Math.max(...buckets.values());

    // Give the monitor time to act on anything it (wrongly) believes is silent.
    await new Promise((r) => setTimeout(r, 3 * INTERVAL_MS));

    const { registry } = clients();
    let lost = 0;
    const missing: string[] = [];
    const miss = (what: string) => {
      lost++;
      if (missing.length < 10) missing.push(what);
    };
    for (const [id, token] of ledger.registered) {
      const w = await registry.getWorker({ workerId: id }, admin).catch(() => undefined);
      if (!w) miss(`registration ${id}`);
      const beat = await registry
        .heartbeat(create(HeartbeatRequestSchema, { workerId: id, sessionId: 'after-kill', seq: 1n, status: 1 }), { headers: { authorization: `Bearer ${token}` }, timeoutMs: 3000 })
        .catch((e) => ConnectError.from(e));
      if (beat instanceof ConnectError) miss(`token of ${id}: ${Code[beat.code]}`);
    }
    for (const [id, maxAttempts] of ledger.policies) {
      const w = (await registry.getWorker({ workerId: id }, admin)).worker!;
      if (w.restartPolicy?.maxAttempts !== maxAttempts) miss(`policy of ${id}`);
    }
    for (const id of ledger.left) if ((await registry.getWorker({ workerId: id }, admin)).worker!.state !== WorkerState.LEFT) miss(`leave of ${id}`);
    const tokenIds = new Set((await registry.listTokens({}, admin)).tokens.map((t) => t.tokenId));
    for (const id of ledger.tokens) if (!tokenIds.has(id)) miss(`token ${id}`);
    const events = await sql<{ worker_id: string; kind: string }>("SELECT worker_id, kind FROM events WHERE kind IN ('registered', 'policy_set', 'left')");
    const has = new Set(events.map((e) => `${e.kind} ${e.worker_id}`));
    for (const id of ledger.registered.keys()) if (!has.has(`registered ${id}`)) miss(`event registered ${id}`);
    for (const id of ledger.policies.keys()) if (!has.has(`policy_set ${id}`)) miss(`event policy_set ${id}`);
    for (const id of ledger.left) if (!has.has(`left ${id}`)) miss(`event left ${id}`);

    const stopped = ws.filter((w) => w.stopped && !ledger.left.has(w.workerId)).map((w) => w.workerId);
    const stale = await sql<{ worker_id: string }>("SELECT worker_id FROM events WHERE kind = 'marked_stale' AND NOT (worker_id = ANY($1))", [stopped]);

    const acknowledged = ledger.registered.size + ledger.policies.size + ledger.left.size + ledger.tokens.size;
    report(ctx, {
      'faults survived': 1,
      'lost records': lost,
      'false stale marks': stale.length,
      'acknowledged writes checked after SIGKILL (count)': acknowledged,
      'fleet reconnect p50 after hive restart (ms)': q(0.5),
      'fleet reconnect p95 after hive restart (ms)': q(0.95),
      'fleet reconnect max after hive restart (ms)': delays[delays.length - 1],
      'fleet reconnect peak per 250 ms (workers)': peak,
    });
    expect(missing).toEqual([]);
    expect(stale.map((s) => s.worker_id)).toEqual([]);
    expect(acknowledged).toBeGreaterThan(10);
    // Back within the backoff cap (plus a start-up margin), not all at one instant.
    expect(delays[delays.length - 1]).toBeLessThan(BACKOFF_CAP_MS + 10_000);
    expect(peak).toBeLessThan(alive.length * 0.5);
  }, 240_000);
});
