import { create } from '@bufbuild/protobuf';
import { Code } from '@connectrpc/connect';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { RestartAction, RestartMode, RestartPolicySchema } from '../../gen/hive/v1/policy_pb.js';
import { CommandType, HealthStatus, HeartbeatRequestSchema, RegisterWorkerRequestSchema, TokenScope, WorkerState } from '../../gen/hive/v1/registry_pb.js';
import { ManualClock } from '../../lib/clock.js';
import { msToDuration } from '../../lib/duration.js';
import { createLogger } from '../../lib/logger.js';
import { leaderKeys, liveKeys } from '../../lib/redis-keys.js';
import { createRedisLiveState } from '../../hive/live-redis.js';
import { createRegistry, type Registry } from '../../hive/registry.js';
import { lastBeatOf } from '../../hive/worker.js';
import type { Store } from '../../hive/store/store.js';
import type { Principal } from '../../hive/tokens.js';
import { dropSchema, openTestStore, uniqueSchema } from '../support/pg.js';
import { eventually } from '../support/procs.js';
import { dropPrefix, REDIS_URL, uniquePrefix } from '../support/redis.js';
import { Redis } from 'ioredis';
import { codeOf as codeOfCall, workerPrincipal } from '../support/principals.js';

// Two registries sharing one PostgreSQL schema and one Redis prefix, as two
// hive replicas do, in one process: what one accepts the other sees, the
// compare-and-set is decided by Redis whichever replica is asked, commands
// reach the replica holding the stream, and old fencing tokens are refused.
// The registries' time is a ManualClock; only the Redis round trips are
// waited for (polled), as they are real I/O.

const log = createLogger('test', 'silent');
const admin: Principal = { scope: TokenScope.ADMIN, tokenId: 'admin' };
const as = workerPrincipal;
const hb = (workerId: string, seq: number, status = HealthStatus.HEALTHY, sessionId = 's1') => create(HeartbeatRequestSchema, { workerId, sessionId, seq: BigInt(seq), status });
const reg = (workerId: string, intervalMs = 1000) => create(RegisterWorkerRequestSchema, { workerId, heartbeatInterval: msToDuration(intervalMs), labels: { pool: 'a' } });

const codeOf = (p: unknown) => codeOfCall<Code>(p);

describe('two replicas on Redis', () => {
  const schema = uniqueSchema('hive_rep');
  let store: Store;
  let clock: ManualClock;
  let a: Registry;
  let b: Registry;
  let prefix: string;

  beforeAll(async () => {
    store = await openTestStore(schema);
  });
  afterAll(async () => {
    await store.close();
    await dropSchema(schema);
  });
  afterEach(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    await dropPrefix(prefix);
  });

  async function pair(): Promise<void> {
    clock = new ManualClock();
    prefix = uniquePrefix('hive_rep');
    const make = async (name: string) => {
      const r = await createRegistry({ store, clock, log, live: createRedisLiveState({ url: REDIS_URL, prefix, log, replicaId: name }) });
      await r.start();
      return r;
    };
    [a, b] = await Promise.all([make('a'), make('b')]);
  }

  it('a registration and heartbeats on one replica are seen by the other, and its watchers', async () => {
    await pair();
    const sub = b.hub.subscribe(null);
    await a.register(admin, reg('w-seen'));
    await eventually(() => b.workers.get('w-seen'), 5000, 'registration seen by b');
    await a.heartbeat(as(a, 'w-seen'), hb('w-seen', 7, HealthStatus.DEGRADED));
    // The heartbeat is told at once, the state change once it is durable.
    const w = await eventually(() => {
      const x = b.workers.get('w-seen');
      return x?.lastSeq === 7n && x.state === WorkerState.DEGRADED ? x : null;
    }, 5000, 'heartbeat and state seen by b');
    expect(w.status).toBe(HealthStatus.DEGRADED);
    expect(lastBeatOf(w)?.memoryUsedBytes).toBeDefined(); // decoded on first read
    const changes = sub.take(100).filter((c) => c.worker.workerId === 'w-seen');
    expect(changes.length).toBeGreaterThan(0);
    // The worker's token, issued on a, is accepted on b.
    const other = await a.register(admin, reg('w-token'));
    await eventually(() => b.tokens.lookup(other.token)?.workerId === 'w-token', 5000, 'token seen by b');
    // A restart policy set on a is b's too.
    await a.setPolicy('w-token', create(RestartPolicySchema, { mode: RestartMode.ON_STALE, action: RestartAction.WEBHOOK, webhookUrl: 'http://127.0.0.1:1/hook' }), 'admin');
    await eventually(() => b.workers.get('w-token')?.policy?.webhookUrl === 'http://127.0.0.1:1/hook', 5000, 'policy seen by b');
    // Deregistered on a: gone from b, and its token with it.
    await a.deregister('w-token', 'admin', 'decommissioned');
    await eventually(() => !b.workers.has('w-token') && b.tokens.lookup(other.token) === undefined, 5000, 'removal seen by b');
  });

  it('decides MarkStale in Redis: a heartbeat b has not heard of wins; one mark for both replicas', async () => {
    await pair();
    await a.register(admin, reg('w-cas'));
    await a.heartbeat(as(a, 'w-cas'), hb('w-cas', 1));
    await eventually(() => b.workers.get('w-cas')?.lastSeq === 1n, 5000, 'b has seq 1');
    await clock.advance(2500);
    // A third replica's heartbeat (seq 2) is in Redis; b's copy still says 1: only Redis can refuse.
    const r = new Redis(REDIS_URL);
    try {
      await r.hset(liveKeys(prefix).worker('w-cas'), 'seq', '2');
    } finally {
      r.disconnect();
    }
    expect(b.get('w-cas').lastSeq).toBe(1n);
    expect(await codeOf(b.markStale('w-cas', 1n, 's1', 'monitor', ''))).toBe(Code.FailedPrecondition);
    expect(b.get('w-cas').state).toBe(WorkerState.HEALTHY);
    await a.heartbeat(as(a, 'w-cas'), hb('w-cas', 3));
    await eventually(() => b.workers.get('w-cas')?.lastSeq === 3n, 5000, 'b has seq 3');
    await clock.advance(2500);
    // Both replicas asked for the same mark: one applies it, the other finds it done.
    const [ra, rb] = await Promise.allSettled([a.markStale('w-cas', 3n, 's1', 'monitor', ''), b.markStale('w-cas', 3n, 's1', 'monitor', '')]);
    expect([ra.status, rb.status]).toContain('fulfilled');
    await eventually(() => a.get('w-cas').state === WorkerState.STALE && b.get('w-cas').state === WorkerState.STALE, 5000, 'stale on both');
    const marks = (await store.listEvents({ workerId: 'w-cas', limit: 20 })).filter((e) => e.kind === 'marked_stale');
    expect(marks).toHaveLength(1);
    // The worker comes back on b: a sees it recovered.
    await b.heartbeat(as(b, 'w-cas'), hb('w-cas', 1, HealthStatus.HEALTHY, 's2'));
    await eventually(() => a.get('w-cas').state === WorkerState.HEALTHY && a.get('w-cas').sessionId === 's2', 5000, 'recovered on a');
  });

  it('a heartbeat accepted on one replica while the other marks the old one wins there, and everywhere', async () => {
    await pair();
    await a.register(admin, reg('w-race'));
    await a.heartbeat(as(a, 'w-race'), hb('w-race', 1));
    await eventually(() => b.workers.get('w-race')?.lastSeq === 1n, 5000, 'b has seq 1');
    await clock.advance(2500);
    // a accepts seq 2 (written to Redis at the end of this turn); b's mark on
    // seq 1 reaches Redis first and applies; a holds the newer heartbeat and undoes it.
    await a.heartbeat(as(a, 'w-race'), hb('w-race', 2));
    await b.markStale('w-race', 1n, 's1', 'monitor', '');
    await eventually(() => a.get('w-race').state === WorkerState.HEALTHY && b.get('w-race').state === WorkerState.HEALTHY && b.get('w-race').lastSeq === 2n, 5000, 'healthy on both');
    await eventually(async () => (await store.listEvents({ workerId: 'w-race', limit: 5 })).some((e) => e.kind === 'recovered'), 5000, 'recovery written');
    const kinds = (await store.listEvents({ workerId: 'w-race', limit: 5 })).map((e) => e.kind);
    expect(kinds.slice(0, 2)).toEqual(['recovered', 'marked_stale']);
  });

  it('routes a command to the replica that holds the stream, exactly once', async () => {
    await pair();
    await a.register(admin, reg('w-cmd'));
    await eventually(() => b.workers.get('w-cmd'), 5000, 'registration seen by b');
    a.streamOpened('w-cmd');
    await a.heartbeat(as(a, 'w-cmd'), hb('w-cmd', 1), true);
    const got: string[] = [];
    const unlisten = a.live.listenCommands('w-cmd', () => {
      void Promise.resolve(a.live.takeCommands('w-cmd')).then((cmds) => got.push(...cmds.map((c) => c.reason)));
    });
    const { delivered } = await b.sendCommand('w-cmd', CommandType.RESTART, 'restart via b');
    expect(delivered).toBe(true);
    await eventually(() => got.length === 1, 5000, 'command at a');
    expect(got).toEqual(['restart via b']);
    // Taken once: a heartbeat on b afterwards carries nothing.
    const reply = await b.heartbeat(as(b, 'w-cmd'), hb('w-cmd', 2));
    expect(reply.commands).toEqual([]);
    unlisten();
    a.streamClosed('w-cmd');
    await eventually(async () => !(await b.sendCommand('w-cmd', CommandType.RESTART, 'queued')).delivered, 5000, 'no stream anywhere');
    // Queued for the next heartbeat, on whichever replica it lands.
    await eventually(async () => (await b.heartbeat(as(b, 'w-cmd'), hb('w-cmd', Number(b.get('w-cmd').lastSeq) + 1))).commands.length > 0, 5000, 'queued command on b');
  });

  it('refuses a fencing token older than the newest one handed out, on every replica', async () => {
    await pair();
    const r = new Redis(REDIS_URL);
    try {
      await r.set(leaderKeys(prefix).fence, '42');
      expect(await codeOf(b.live.checkFence(41n, true))).toBe(Code.FailedPrecondition);
      expect(await codeOf(a.live.checkFence(0n, true))).toBe(Code.FailedPrecondition);
      expect(await codeOf(a.live.checkFence(0n, false))).toBe('ok'); // an admin without a token
      expect(await codeOf(a.live.checkFence(42n, true))).toBe('ok');
      // Redis losing the counter does not let an older token back in where a newer one was seen.
      await r.del(leaderKeys(prefix).fence);
      expect(await codeOf(a.live.checkFence(41n, true))).toBe(Code.FailedPrecondition);
    } finally {
      r.disconnect();
    }
  });
});
