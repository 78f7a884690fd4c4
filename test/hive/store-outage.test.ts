import { create } from '@bufbuild/protobuf';
import { Code } from '@connectrpc/connect';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HealthStatus, HeartbeatRequestSchema, RegisterWorkerRequestSchema, TokenScope, WorkerState } from '../../gen/hive/v1/registry_pb.js';
import { ManualClock } from '../../lib/clock.js';
import { msToDuration } from '../../lib/duration.js';
import { createLogger } from '../../lib/logger.js';
import { toConnectError } from '../../hive/errors.js';
import { createRegistry, type Registry } from '../../hive/registry.js';
import { isConnectionError } from '../../hive/store/unavailable.js';
import { openStore } from '../../hive/store/open.js';
import type { Store } from '../../hive/store/store.js';
import type { Principal } from '../../hive/tokens.js';
import { dropSchema, openTestStore, PG_URL, uniqueSchema } from '../support/pg.js';
import { tcpProxy } from '../support/tcp-proxy.js';
import { workerPrincipal } from '../support/principals.js';

// The database goes away under a running registry (a TCP proxy in front of
// the real PostgreSQL is cut): heartbeats keep working, a state change
// waits in the outbox and is written when the database is back, and a
// registration fails with Unavailable without leaving anything behind.

const log = createLogger('test', 'silent');
const admin: Principal = { scope: TokenScope.ADMIN, tokenId: 'admin' };
const as = workerPrincipal;
const hb = (workerId: string, seq: number, status = HealthStatus.HEALTHY) => create(HeartbeatRequestSchema, { workerId, sessionId: 's1', seq: BigInt(seq), status });
const reg = (workerId: string) => create(RegisterWorkerRequestSchema, { workerId, heartbeatInterval: msToDuration(1000) });

describe('PostgreSQL outage under a running registry', () => {
  const schema = uniqueSchema('hive_pgout');
  let proxy: Awaited<ReturnType<typeof tcpProxy>>;
  let viaProxy: Store;
  let direct: Store;
  let r: Registry;

  beforeAll(async () => {
    direct = await openTestStore(schema);
    proxy = await tcpProxy(Number(new URL(PG_URL).port || 5432));
    const u = new URL(PG_URL);
    u.host = `127.0.0.1:${proxy.port}`;
    viaProxy = await openStore({ databaseUrl: u.toString(), dataDir: '/nonexistent', schema });
  });
  afterAll(async () => {
    await r?.stop().catch(() => undefined);
    await viaProxy?.close().catch(() => undefined);
    await proxy?.close();
    await direct?.close();
    await dropSchema(schema);
  });

  it('keeps heartbeats, queues state changes, refuses registrations with Unavailable, and catches up', async () => {
    const clock = new ManualClock();
    r = await createRegistry({ store: viaProxy, clock, log });
    await r.register(admin, reg('w-1'));
    await r.heartbeat(as(r, 'w-1'), hb('w-1', 1));

    await proxy.cut();
    // Heartbeats: memory only, as ever.
    await r.heartbeat(as(r, 'w-1'), hb('w-1', 2));
    // A state change: applied at once, its durable write queued in the outbox.
    await r.heartbeat(as(r, 'w-1'), hb('w-1', 3, HealthStatus.UNHEALTHY));
    expect(r.get('w-1').state).toBe(WorkerState.UNHEALTHY);
    expect(r.writeBehind.outbox()).toBe(1);
    // A registration: refused as Unavailable, nothing half done.
    const err = await r.register(admin, reg('w-2')).then(() => null, (e) => e);
    expect(err).not.toBeNull();
    expect(toConnectError(err).code).toBe(Code.Unavailable);
    expect(r.workers.has('w-2')).toBe(false);

    await proxy.resume();
    await r.writeBehind.flush();
    expect(r.writeBehind.outbox()).toBe(0);
    const stored = (await direct.loadWorkers()).find((w) => w.workerId === 'w-1')!;
    expect(stored.state).toBe(WorkerState.UNHEALTHY);
    expect((await direct.loadWorkers()).some((w) => w.workerId === 'w-2')).toBe(false);
    // And registering works again.
    await r.register(admin, reg('w-2'));
    expect((await direct.loadWorkers()).some((w) => w.workerId === 'w-2')).toBe(true);
  });

  it('tells connection failures from refused statements', () => {
    expect(isConnectionError(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }))).toBe(true);
    expect(isConnectionError(Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' }))).toBe(true);
    expect(isConnectionError(new Error('Connection terminated unexpectedly'))).toBe(true);
    expect(isConnectionError(Object.assign(new Error('duplicate key value'), { code: '23505' }))).toBe(false);
    expect(isConnectionError(Object.assign(new Error('syntax error'), { code: '42601' }))).toBe(false);
  });
});
