import { create } from '@bufbuild/protobuf';
import { Code } from '@connectrpc/connect';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HealthStatus, HeartbeatRequestSchema, RegisterWorkerRequestSchema, TokenScope, WorkerState } from '../../gen/hive/v1/registry_pb.js';
import { ManualClock } from '../../lib/clock.js';
import { msToDuration } from '../../lib/duration.js';
import { createLogger } from '../../lib/logger.js';
import { createRedisLiveState } from '../../hive/live-redis.js';
import { createRegistry, type Registry } from '../../hive/registry.js';
import type { Store } from '../../hive/store/store.js';
import type { Principal } from '../../hive/tokens.js';
import { dropSchema, openTestStore, uniqueSchema } from '../support/pg.js';
import { eventually } from '../support/procs.js';
import { ownRedisServer, uniquePrefix } from '../support/redis.js';
import { codeOf as codeOfCall, workerPrincipal } from '../support/principals.js';

// Two replicas on a redis-server of this test's own, which is killed and
// started again empty: meanwhile both keep accepting heartbeats and
// registrations, say they are degraded and refuse stale marks; afterwards
// they converge (each writes back what it accepted, rereads the registry,
// and graces every deadline) without a stale mark.

const log = createLogger('test', 'silent');
const admin: Principal = { scope: TokenScope.ADMIN, tokenId: 'admin' };
const as = workerPrincipal;
const hb = (workerId: string, seq: number) => create(HeartbeatRequestSchema, { workerId, sessionId: 's1', seq: BigInt(seq), status: HealthStatus.HEALTHY });
const reg = (workerId: string) => create(RegisterWorkerRequestSchema, { workerId, heartbeatInterval: msToDuration(1000) });

const codeOf = (p: unknown) => codeOfCall<Code>(p);

describe('Redis outage', () => {
  const schema = uniqueSchema('hive_deg');
  let store: Store;
  let redis: Awaited<ReturnType<typeof ownRedisServer>>;
  let a: Registry;
  let b: Registry;

  beforeAll(async () => {
    [store, redis] = await Promise.all([openTestStore(schema), ownRedisServer()]);
  });
  afterAll(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    await redis?.stop();
    await store?.close();
    await dropSchema(schema);
  });

  it('keeps both replicas serving in memory, refuses stale marks, and converges when Redis is back', async () => {
    const clock = new ManualClock();
    const prefix = uniquePrefix('hive_deg');
    const make = async (name: string) => {
      const r = await createRegistry({ store, clock, log, live: createRedisLiveState({ url: redis.url, prefix, log, replicaId: name, commandTimeoutMs: 300 }) });
      await r.start();
      return r;
    };
    [a, b] = await Promise.all([make('a'), make('b')]);
    expect(a.live.degraded()).toBeNull();
    await a.register(admin, reg('w-a'));
    await a.heartbeat(as(a, 'w-a'), hb('w-a', 1));
    await eventually(() => b.workers.get('w-a')?.lastSeq === 1n && b.workers.get('w-a')?.state === WorkerState.HEALTHY, 5000, 'b hears w-a');

    await redis.stop();
    await eventually(() => a.live.degraded() !== null && b.live.degraded() !== null, 5000, 'both degraded');
    // Heartbeats are accepted into memory; registrations (PostgreSQL) still work.
    for (let i = 2; i <= 5; i++) {
      await clock.advance(1000);
      await a.heartbeat(as(a, 'w-a'), hb('w-a', i));
    }
    expect(a.get('w-a').lastSeq).toBe(5n);
    expect(b.get('w-a').lastSeq).toBe(1n); // b cannot hear it meanwhile
    await b.register(admin, reg('w-b'));
    await b.heartbeat(as(b, 'w-b'), hb('w-b', 1));
    // b's copy says w-a is long silent, but b cannot know: no mark, and nothing changes.
    expect(await codeOf(b.markStale('w-a', 1n, 's1', 'monitor', ''))).toBe(Code.Unavailable);
    expect(await codeOf(b.live.checkFence(7n, true))).toBe(Code.Unavailable);
    expect(b.get('w-a').state).toBe(WorkerState.HEALTHY);

    await redis.start(); // empty: it lost everything
    await eventually(() => a.live.degraded() === null && b.live.degraded() === null, 10_000, 'both reachable');
    await eventually(() => b.workers.get('w-a')?.lastSeq === 5n && a.workers.get('w-b')?.lastSeq === 1n, 10_000, 'converged');
    // Every deadline is graced from the recovery: even the old seq b held cannot be marked now.
    expect(b.get('w-a').graceUntil).toBeGreaterThanOrEqual(clock.now() + 2000);
    expect(await codeOf(b.markStale('w-a', 5n, 's1', 'monitor', ''))).toBe(Code.FailedPrecondition);
    // After the grace, the shared compare-and-set works again on the converged state.
    await clock.advance(2500);
    expect(await codeOf(b.markStale('w-a', 1n, 's1', 'monitor', ''))).toBe(Code.FailedPrecondition);
    expect((await b.markStale('w-a', 5n, 's1', 'monitor', '')).worker.state).toBe(WorkerState.STALE);
    await eventually(() => a.get('w-a').state === WorkerState.STALE, 5000, 'a sees the mark');
    const marks = (await store.listEvents({ workerId: 'w-a', limit: 20 })).filter((e) => e.kind === 'marked_stale');
    expect(marks).toHaveLength(1);
  });

  it('a stalled Redis (connections open, nothing answers) degrades too, and its return is noticed', async () => {
    await eventually(() => a.live.degraded() === null && b.live.degraded() === null, 10_000, 'both reachable');
    await a.register(admin, reg('w-stall'));
    await a.heartbeat(as(a, 'w-stall'), hb('w-stall', 1));
    redis.pause();
    try {
      // The next command times out (300 ms here); meanwhile heartbeats are accepted.
      await a.heartbeat(as(a, 'w-stall'), hb('w-stall', 2));
      await eventually(() => a.live.degraded() !== null, 5000, 'a degraded');
      await a.heartbeat(as(a, 'w-stall'), hb('w-stall', 3));
      // Stalled past every command still in flight (300 ms timeouts): nothing
      // a already sent can bring the news that Redis answers again.
      await new Promise((r) => setTimeout(r, 800));
      expect(a.get('w-stall').lastSeq).toBe(3n);
    } finally {
      redis.resume();
    }
    await eventually(() => a.live.degraded() === null, 10_000, 'a reachable again');
    // What a accepted meanwhile reaches b.
    await eventually(() => b.workers.get('w-stall')?.lastSeq === 3n, 10_000, 'b converged');
  });
});
