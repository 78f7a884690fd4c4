import { Code, ConnectError, createClient } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RegistryService, WorkerState } from '../../gen/hive/v1/registry_pb.js';
import { msToDuration } from '../../lib/duration.js';
import { report } from '../support/figures.js';
import { eventually, startHiveProc, tempDir, type HiveProc } from '../support/procs.js';
import { pool } from './support/raw-grpc.js';
import { createFleet, type Fleet } from './support/fleet.js';
import { createOwnedPostgres, type OwnedPostgres } from './support/postgres.js';

// PostgreSQL goes away for HIVE_FAULT_PG_DOWN_S seconds (5 in the default
// `npm test`, 10 in `npm run test:faults`, 60 in test:faults:long) under a heartbeating fleet: heartbeats keep being
// accepted, state changes and Leaves are acknowledged and queue in the
// outbox until the database returns, registrations fail with Unavailable
// and leave nothing behind, /healthz says what is wrong.

const DOWN_S = Number(process.env.HIVE_FAULT_PG_DOWN_S || 5);
const FLEET = 50;
const ADMIN = 'hive_adm_pg-outage-admin-0123456789abcdef';

describe(`PostgreSQL unavailable for ${DOWN_S} s`, () => {
  let db: OwnedPostgres;
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let hive: HiveProc;
  let fleet: Fleet;
  const admin = { headers: { authorization: `Bearer ${ADMIN}` }, timeoutMs: 10_000 };

  async function sql<T = Record<string, unknown>>(q: string, params: unknown[] = []): Promise<T[]> {
    const c = new pg.Client({ connectionString: db.url });
    await c.connect();
    try {
      return (await c.query(q, params)).rows as T[];
    } finally {
      await c.end();
    }
  }

  beforeAll(async () => {
    dir = await tempDir('hive-pg-outage-');
    db = await createOwnedPostgres();
    hive = await startHiveProc(['--data-dir', dir.path, '--database-url', db.url, '--admin-token', ADMIN, '--write-behind', '500ms'], { LOG_LEVEL: 'info' });
    const registry = createClient(RegistryService, createGrpcTransport({ baseUrl: `http://${hive.grpcAddr}` }));
    fleet = createFleet({ addr: hive.grpcAddr, intervalMs: 1000, channels: 2 });
    const ids = Array.from({ length: FLEET }, (_, i) => `pg-w${String(i).padStart(3, '0')}`);
    await pool(ids, 8, async (id) => {
      const { workerToken } = await registry.registerWorker({ workerId: id, heartbeatInterval: msToDuration(1000) }, admin);
      fleet.add(id, workerToken);
    });
    fleet.start();
    await eventually(() => fleet.connectedCount() === FLEET, 30_000, 'the fleet to connect');
  }, 120_000);

  afterAll(async () => {
    fleet?.close();
    await hive?.kill('SIGKILL');
    await db?.destroy();
    await dir?.remove();
  });

  it('keeps accepting heartbeats, queues state changes and Leaves, refuses registrations with Unavailable, and loses nothing', async (ctx) => {
    const registry = createClient(RegistryService, createGrpcTransport({ baseUrl: `http://${hive.grpcAddr}` }));
    const ws = [...fleet.workers.values()];
    const unhealthy = ws.slice(0, 5);
    const leavers = ws.slice(5, 8);

    await db.stop();
    const downAt = Date.now();
    const acksAtStop = new Map(ws.map((w) => [w.workerId, w.acks]));
    // Health says what is wrong while it is wrong.
    const health = await eventually(async () => {
      const r = await fetch(`${hive.httpUrl}/healthz`);
      return r.status === 503 ? ((await r.json()) as { problems: string[] }) : null;
    }, 10_000, '/healthz to report the database');
    expect(health.problems.join(' ')).toMatch(/postgresql|database/);

    for (const w of unhealthy) w.status = 3;
    const leaveCodes: string[] = [];
    for (const w of leavers) {
      fleet.stopWorker(w.workerId);
      const r = await registry.leave({ workerId: w.workerId, reason: 'maintenance during the outage' }, { headers: { authorization: `Bearer ${w.token}` }, timeoutMs: 10_000 }).then(
        () => 'ok',
        (e) => Code[ConnectError.from(e).code],
      );
      leaveCodes.push(r);
    }
    const registerCodes: string[] = [];
    let i = 0;
    while (Date.now() - downAt < DOWN_S * 1000) {
      const code = await registry.registerWorker({ workerId: `pg-new-${i++}`, heartbeatInterval: msToDuration(1000) }, admin).then(
        () => 'ok',
        (e) => Code[ConnectError.from(e).code],
      );
      registerCodes.push(code);
      await new Promise((r) => setTimeout(r, 500));
    }
    // Every heartbeating worker was acknowledged while the database was away.
    const silent = ws.filter((w) => !w.stopped && w.acks <= (acksAtStop.get(w.workerId) ?? 0) + Math.floor(DOWN_S / 2));
    expect(silent.map((w) => w.workerId)).toEqual([]);
    expect(leaveCodes).toEqual(['ok', 'ok', 'ok']);
    expect(new Set(registerCodes)).toEqual(new Set(['Unavailable']));
    const outbox = await (await fetch(`${hive.httpUrl}/metrics`)).text();
    expect(Number(/^hive_write_behind_outbox (\d+)/m.exec(outbox)?.[1])).toBeGreaterThanOrEqual(8);

    await db.start();
    await eventually(async () => (await fetch(`${hive.httpUrl}/healthz`)).status === 200, 30_000, '/healthz to recover');
    await eventually(async () => /^hive_write_behind_outbox 0$/m.test(await (await fetch(`${hive.httpUrl}/metrics`)).text()), 30_000, 'the outbox to drain');

    // What was acknowledged is in the database now; what was refused is nowhere.
    let lost = 0;
    const left = await sql<{ worker_id: string; state: number }>('SELECT worker_id, state FROM workers WHERE worker_id = ANY($1)', [leavers.map((w) => w.workerId)]);
    lost += leavers.length - left.filter((r) => r.state === WorkerState.LEFT).length;
    const leftEvents = await sql<{ worker_id: string }>("SELECT worker_id FROM events WHERE kind = 'left' AND worker_id = ANY($1)", [leavers.map((w) => w.workerId)]);
    lost += leavers.length - new Set(leftEvents.map((r) => r.worker_id)).size;
    const changed = await sql<{ worker_id: string }>("SELECT worker_id FROM events WHERE kind = 'status_changed' AND to_state = $2 AND worker_id = ANY($1)", [unhealthy.map((w) => w.workerId), WorkerState.UNHEALTHY]);
    lost += unhealthy.length - new Set(changed.map((r) => r.worker_id)).size;
    const halfWritten = [
      ...(await sql("SELECT worker_id FROM workers WHERE worker_id LIKE 'pg-new-%'")),
      ...(await sql("SELECT token_id FROM tokens WHERE worker_id LIKE 'pg-new-%'")),
      ...(await sql("SELECT event_id FROM events WHERE worker_id LIKE 'pg-new-%'")),
    ];
    await expect(registry.getWorker({ workerId: 'pg-new-0' }, admin)).rejects.toMatchObject({ code: Code.NotFound });
    // And registering works again.
    expect((await registry.registerWorker({ workerId: 'pg-new-0', heartbeatInterval: msToDuration(1000) }, admin)).workerToken).toMatch(/^hive_wkr_/);
    // The heartbeat snapshots written behind caught up too.
    const seen = await sql<{ n: string }>("SELECT count(*) AS n FROM workers WHERE worker_id LIKE 'pg-w%' AND last_seen > $1", [new Date(downAt).toISOString()]);

    report(ctx, { 'faults survived': 1, 'lost records': lost + halfWritten.length });
    expect(halfWritten).toEqual([]);
    expect(lost).toBe(0);
    expect(Number(seen[0].n)).toBeGreaterThanOrEqual(FLEET - leavers.length);
    expect(hive.child.exitCode).toBeNull();
  }, 180_000);
});
