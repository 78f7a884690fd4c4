import { create } from '@bufbuild/protobuf';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Code } from '@connectrpc/connect';
import { HealthStatus, HeartbeatRequestSchema, RegisterWorkerRequestSchema, TokenScope, WorkerChangeType, WorkerState } from '../../gen/hive/v1/registry_pb.js';
import { ManualClock } from '../../lib/clock.js';
import { msToDuration } from '../../lib/duration.js';
import { createLogger } from '../../lib/logger.js';
import { HiveError, toConnectError } from '../../hive/errors.js';
import { createRegistry, type Registry } from '../../hive/registry.js';
import type { ReadThrough } from '../../hive/loop-turns.js';
import type { Store } from '../../hive/store/store.js';
import type { Principal } from '../../hive/tokens.js';
import { createRedisLiveState } from '../../hive/live-redis.js';
import { dropSchema, openTestStore, uniqueSchema } from '../support/pg.js';
import { dropPrefix, REDIS_URL, uniquePrefix } from '../support/redis.js';

// The registry's rules on a real PostgreSQL store, with time from a
// ManualClock: the seq compare-and-set, the late heartbeat that beats a
// stale mark, grace after a restart, join/rotate, and watch coalescing.

const log = createLogger('test', 'silent');
const admin: Principal = { scope: TokenScope.ADMIN, tokenId: 'admin' };
const joiner: Principal = { scope: TokenScope.JOIN, tokenId: 'join' };
// Worker principals carry the id of the token issued at registration: the
// registry refuses heartbeats on a token that is no longer active.
const tokenIds = new Map<string, string>();
const as = (workerId: string): Principal => ({ scope: TokenScope.WORKER, tokenId: tokenIds.get(workerId) ?? `unissued-${workerId}`, workerId });
async function enroll(r: Registry, p: Principal, req: ReturnType<typeof reg>) {
  const res = await r.register(p, req);
  tokenIds.set(req.workerId, r.tokens.lookup(res.token)!.tokenId);
  return res;
}
const hb = (workerId: string, seq: number, status = HealthStatus.HEALTHY, sessionId = 's1') => create(HeartbeatRequestSchema, { workerId, sessionId, seq: BigInt(seq), status });
const reg = (workerId: string, intervalMs = 1000) => create(RegisterWorkerRequestSchema, { workerId, heartbeatInterval: msToDuration(intervalMs), labels: { pool: 'a' } });

// Codes as the RPC boundary maps them (domain errors and store outages alike).
async function rejectsWith(p: unknown, code: Code): Promise<void> {
  try {
    await p;
  } catch (err) {
    expect(toConnectError(err).code, (err as Error).message).toBe(code);
    return;
  }
  throw new Error(`expected ${Code[code]}`);
}

function throwsWith(fn: () => unknown, code: Code): void {
  try {
    fn();
  } catch (err) {
    expect((err as { code: Code }).code, (err as Error).message).toBe(code);
    return;
  }
  throw new Error(`expected ${Code[code]}`);
}

// The same rules hold with the live state in memory and in Redis (one
// replica here; test/hive/replicas.test.ts runs two).
describe.each(['memory', 'redis'] as const)('registry (live state: %s)', (engine) => {
  const schema = uniqueSchema('hive_reg');
  const prefix = uniquePrefix('hive_reg');
  let store: Store;
  let clock: ManualClock;
  let registry: Registry;

  let turns: ReadThrough | undefined;
  const make = async () => {
    const live = engine === 'redis' ? createRedisLiveState({ url: REDIS_URL, prefix, log }) : undefined;
    const r = await createRegistry({ store, clock, log, live, turns });
    if (engine === 'redis') await r.start();
    return r;
  };

  beforeAll(async () => {
    store = await openTestStore(schema);
  });
  afterAll(async () => {
    await store.close();
    await dropSchema(schema);
    if (engine === 'redis') await dropPrefix(prefix);
  });
  afterEach(async () => {
    await registry?.stop();
    turns = undefined;
  });

  const fresh = async () => {
    clock = new ManualClock();
    registry = await make();
    return registry;
  };

  it('applies a heartbeat, then refuses its replay without changing state', async () => {
    const r = await fresh();
    await enroll(r, admin, reg('w-replay'));
    await r.heartbeat(as('w-replay'), hb('w-replay', 5));
    expect(r.get('w-replay').state).toBe(WorkerState.HEALTHY);
    throwsWith(() => r.heartbeat(as('w-replay'), hb('w-replay', 5, HealthStatus.UNHEALTHY)), Code.FailedPrecondition);
    throwsWith(() => r.heartbeat(as('w-replay'), hb('w-replay', 4, HealthStatus.UNHEALTHY)), Code.FailedPrecondition);
    expect(r.get('w-replay').state).toBe(WorkerState.HEALTHY);
    expect(r.get('w-replay').lastSeq).toBe(5n);
    // A new session starts its own sequence.
    await r.heartbeat(as('w-replay'), hb('w-replay', 1, HealthStatus.DEGRADED, 's2'));
    expect(r.get('w-replay').state).toBe(WorkerState.DEGRADED);
  });

  it("refuses one worker's token for another and unknown workers", async () => {
    const r = await fresh();
    await enroll(r, admin, reg('w-a'));
    await enroll(r, admin, reg('w-b'));
    throwsWith(() => r.heartbeat(as('w-a'), hb('w-b', 1)), Code.PermissionDenied);
    throwsWith(() => r.heartbeat(as('w-ghost'), hb('w-ghost', 1)), Code.NotFound);
    expect(r.get('w-b').lastSeen).toBeNull();
  });

  it('marks stale only when due, and only the heartbeat it observed (CAS)', async () => {
    const r = await fresh();
    await enroll(r, admin, reg('w-cas', 1000));
    await r.heartbeat(as('w-cas'), hb('w-cas', 1));
    await clock.advance(1999);
    await rejectsWith(r.markStale('w-cas', 1n, 's1', 'monitor', ''), Code.FailedPrecondition); // not due yet
    await clock.advance(1);
    await r.heartbeat(as('w-cas'), hb('w-cas', 2));
    await rejectsWith(r.markStale('w-cas', 1n, 's1', 'monitor', ''), Code.FailedPrecondition); // heartbeated since
    await clock.advance(2000);
    const { worker: w, applied } = await r.markStale('w-cas', 2n, 's1', 'monitor', 'silent');
    expect(w.state).toBe(WorkerState.STALE);
    expect(applied).toBe(true);
    // At-least-once delivery: repeating the mark is a no-op, not an error.
    expect((await r.markStale('w-cas', 2n, 's1', 'monitor', 'silent')).applied).toBe(false);
    const events = await store.listEvents({ workerId: 'w-cas', limit: 10 });
    expect(events.filter((e) => e.kind === 'marked_stale')).toHaveLength(1);
  });

  /** The event loop's turns, by hand: `ended` is the start of the last turn that has run to its end. */
  const handTurns = () => {
    let ended = -Infinity;
    let waiting: Array<{ at: number; resolve: () => void }> = [];
    turns = {
      readThrough: (at) => ended >= at,
      untilRead: (at) => new Promise<void>((resolve) => waiting.push({ at, resolve })),
      stop: () => undefined,
    };
    return async (start: number) => {
      ended = start;
      // Waits not yet read through stay (a hang shows as a test that never ends).
      const due = waiting.filter((w) => w.at <= ended);
      waiting = waiting.filter((w) => w.at > ended);
      due.forEach((w) => w.resolve());
      await new Promise((r) => setImmediate(r));
    };
  };
  /** Two workers that heartbeated once and have been silent 100 ms past their deadline, which it returns. */
  const silentPastDue = async (r: Registry, a: string, b: string) => {
    for (const id of [a, b]) {
      await enroll(r, admin, reg(id, 1000));
      await r.heartbeat(as(id), hb(id, 1));
    }
    const due = clock.now() + 2000;
    await clock.advance(2100);
    return due;
  };

  it('a mark waits until the hive has read what reached it by the deadline; a heartbeat read meanwhile wins', async () => {
    const endTurn = handTurns();
    const r = await fresh();
    const due = await silentPastDue(r, 'w-unread', 'w-late');
    await endTurn(due - 1); // the last finished turn began before the deadline
    const marking = r.markStale('w-unread', 1n, 's1', 'monitor', '');
    const late = r.markStale('w-late', 1n, 's1', 'monitor', '').catch((err) => toConnectError(err));
    await new Promise((res) => setImmediate(res));
    expect(r.get('w-unread').state).toBe(WorkerState.HEALTHY);
    // The heartbeat that was waiting in the socket is read in the same turn as the marks.
    await r.heartbeat(as('w-late'), hb('w-late', 2));
    await clock.advance(50);
    await endTurn(due + 10); // a turn begun after the deadline has ended
    const { worker: w } = await marking;
    expect(w.state).toBe(WorkerState.STALE);
    expect(w.stateSince).toBe(clock.now()); // decided when it could be, not when it came in
    expect(await late).toMatchObject({ code: Code.FailedPrecondition, rawMessage: expect.stringMatching(/heartbeated since/) });
    expect(r.get('w-late').state).toBe(WorkerState.HEALTHY);
  });

  it('a mark that waited for the hive to read up to the deadline is dropped when its call ended, and asks the caller again (the fence) before it is decided', async () => {
    const endTurn = handTurns();
    const r = await fresh();
    const due = await silentPastDue(r, 'w-fence', 'w-gone');
    const call = new AbortController();
    const gone = r.markStale('w-gone', 1n, 's1', 'monitor', '', { signal: call.signal }).catch((err) => toConnectError(err));
    const fenced = r.markStale('w-fence', 1n, 's1', 'monitor', '', { after: () => Promise.reject(new HiveError(Code.FailedPrecondition, 'fencing token 3 is older than 4')) }).catch((err) => toConnectError(err));
    await new Promise((res) => setImmediate(res));
    call.abort();
    await endTurn(due + 10);
    expect(await gone).toMatchObject({ code: Code.Aborted });
    expect(await fenced).toMatchObject({ code: Code.FailedPrecondition, rawMessage: 'fencing token 3 is older than 4' });
    expect(r.get('w-gone').state).toBe(WorkerState.HEALTHY);
    expect(r.get('w-fence').state).toBe(WorkerState.HEALTHY);
  });

  it('lets a heartbeat that arrives while MarkStale is in flight win', async () => {
    const r = await fresh();
    await enroll(r, admin, reg('w-race', 1000));
    await r.heartbeat(as('w-race'), hb('w-race', 1));
    await clock.advance(2500);
    const marking = r.markStale('w-race', 1n, 's1', 'monitor', 'silent'); // its database write is pending
    const beat = r.heartbeat(as('w-race'), hb('w-race', 2));
    await Promise.all([marking, beat]);
    const w = r.get('w-race');
    expect(w.state).toBe(WorkerState.HEALTHY);
    expect(w.lastSeq).toBe(2n);
    const kinds = (await store.listEvents({ workerId: 'w-race', limit: 10 })).map((e) => e.kind);
    expect(kinds.slice(0, 2)).toEqual(['recovered', 'marked_stale']); // newest first, in decision order
  });

  it('gives every worker a fresh grace after a restart of the hive', async () => {
    let r = await fresh();
    await enroll(r, admin, reg('w-grace', 1000));
    await r.heartbeat(as('w-grace'), hb('w-grace', 1));
    await r.stop();
    await clock.advance(60_000); // the hive was down for a minute
    r = registry = await make();
    const w = r.get('w-grace');
    expect(w.graceUntil).toBe(clock.now() + 2000);
    await rejectsWith(r.markStale('w-grace', 1n, 's1', 'monitor', ''), Code.FailedPrecondition);
    await clock.advance(2000);
    expect((await r.markStale('w-grace', 1n, 's1', 'monitor', '')).worker.state).toBe(WorkerState.STALE);
  });

  it('does not let a join token take over a worker that has a token; an admin rotates it', async () => {
    const r = await fresh();
    const first = await enroll(r, joiner, reg('w-join'));
    expect(r.tokens.lookup(first.token)?.workerId).toBe('w-join');
    await rejectsWith(r.register(joiner, reg('w-join')), Code.AlreadyExists);
    const rotated = await enroll(r, admin, { ...reg('w-join'), rotateToken: true });
    expect(r.tokens.lookup(first.token)).toBeUndefined();
    expect(r.tokens.lookup(rotated.token)?.workerId).toBe('w-join');
    // Only hashes are stored.
    const stored = await store.loadTokens();
    expect(JSON.stringify(stored)).not.toContain(rotated.token);
  });

  it('rejects invalid registrations without storing anything', async () => {
    const r = await fresh();
    await rejectsWith(r.register(admin, create(RegisterWorkerRequestSchema, { workerId: 'no interval' })), Code.InvalidArgument);
    await rejectsWith(r.register(admin, reg('w\u0000x')), Code.InvalidArgument);
    await rejectsWith(r.register(admin, create(RegisterWorkerRequestSchema, { workerId: 'w-dep', heartbeatInterval: msToDuration(1000), dependsOn: ['w-dep'] })), Code.InvalidArgument);
    expect((await store.loadWorkers()).map((w) => w.workerId)).not.toContain('w-dep');
  });

  it('a LEFT worker is not marked stale; Leave is durable', async () => {
    const r = await fresh();
    await enroll(r, admin, reg('w-left', 1000));
    await r.heartbeat(as('w-left'), hb('w-left', 1));
    await r.leave(as('w-left'), 'w-left', 'SIGTERM');
    await clock.advance(10_000);
    await rejectsWith(r.markStale('w-left', 1n, 's1', 'monitor', ''), Code.FailedPrecondition);
    expect((await store.loadWorkers()).find((w) => w.workerId === 'w-left')?.state).toBe(WorkerState.LEFT);
  });

  it('coalesces heartbeat touches per watcher and tracks filter membership', async () => {
    const r = await fresh();
    await enroll(r, admin, reg('w-watch'));
    const all = r.hub.subscribe(null);
    const unhealthyOnly = r.hub.subscribe({ states: new Set([WorkerState.UNHEALTHY]), selector: [] });
    for (let i = 1; i <= 50; i++) await r.heartbeat(as('w-watch'), hb('w-watch', i));
    const changes = all.take(100);
    expect(changes).toHaveLength(1);
    expect(changes[0].worker.lastSeq).toBe(50n);
    expect(unhealthyOnly.take(100)).toHaveLength(0);
    await r.heartbeat(as('w-watch'), hb('w-watch', 51, HealthStatus.UNHEALTHY));
    expect(unhealthyOnly.take(100).map((c) => c.type)).toEqual([WorkerChangeType.ADDED]);
    await r.heartbeat(as('w-watch'), hb('w-watch', 52, HealthStatus.HEALTHY));
    expect(unhealthyOnly.take(100).map((c) => c.type)).toEqual([WorkerChangeType.REMOVED]);
  });

  it('stops a rotated token at its next heartbeat, and refuses heartbeats of an ended session', async () => {
    const r = await fresh();
    await enroll(r, admin, reg('w-rot'));
    const old = as('w-rot');
    await r.heartbeat(old, hb('w-rot', 3));
    await enroll(r, admin, { ...reg('w-rot'), rotateToken: true });
    throwsWith(() => r.heartbeat(old, hb('w-rot', 4, HealthStatus.UNHEALTHY)), Code.Unauthenticated);
    expect(r.get('w-rot').lastSeq).toBe(3n);
    expect(r.get('w-rot').state).toBe(WorkerState.HEALTHY);
    // A new session starts over at seq 1; the old session's heartbeats are replays from then on.
    await r.heartbeat(as('w-rot'), hb('w-rot', 1, HealthStatus.HEALTHY, 's2'));
    throwsWith(() => r.heartbeat(as('w-rot'), hb('w-rot', 99, HealthStatus.UNHEALTHY, 's1')), Code.FailedPrecondition);
    expect(r.get('w-rot').sessionId).toBe('s2');
    expect(r.get('w-rot').state).toBe(WorkerState.HEALTHY);
  });

  it('an admin re-registration needs rotate_token, and keeps the live seq and stats', async () => {
    const r = await fresh();
    await enroll(r, admin, reg('w-rereg', 1000));
    await r.heartbeat(as('w-rereg'), hb('w-rereg', 9));
    await rejectsWith(r.register(admin, reg('w-rereg', 2000)), Code.AlreadyExists);
    expect(r.get('w-rereg').intervalMs).toBe(1000);
    await enroll(r, admin, { ...reg('w-rereg', 2000), rotateToken: true });
    const w = r.get('w-rereg');
    expect(w.intervalMs).toBe(2000);
    expect(w.lastSeq).toBe(9n);
    expect(w.state).toBe(WorkerState.HEALTHY);
  });

  it('tells the interval once per session and again after it changed', async () => {
    const r = await fresh();
    await enroll(r, admin, reg('w-int', 1000));
    const first = await r.heartbeat(as('w-int'), hb('w-int', 1));
    expect(first.heartbeatInterval?.seconds).toBe(1n);
    expect((await r.heartbeat(as('w-int'), hb('w-int', 2))).heartbeatInterval).toBeUndefined();
    await enroll(r, admin, { ...reg('w-int', 3000), rotateToken: true });
    expect((await r.heartbeat(as('w-int'), hb('w-int', 3))).heartbeatInterval?.seconds).toBe(3n);
    expect((await r.heartbeat(as('w-int'), hb('w-int', 1, HealthStatus.HEALTHY, 's2'))).heartbeatInterval?.seconds).toBe(3n);
  });

  it('delivers every state change to a watcher, while touches between them collapse', async () => {
    const r = await fresh();
    await enroll(r, admin, reg('w-flap'));
    await r.heartbeat(as('w-flap'), hb('w-flap', 1));
    const sub = r.hub.subscribe(null);
    await r.heartbeat(as('w-flap'), hb('w-flap', 2));
    await r.heartbeat(as('w-flap'), hb('w-flap', 3, HealthStatus.UNHEALTHY));
    await r.heartbeat(as('w-flap'), hb('w-flap', 4, HealthStatus.UNHEALTHY));
    await r.heartbeat(as('w-flap'), hb('w-flap', 5, HealthStatus.HEALTHY));
    await r.heartbeat(as('w-flap'), hb('w-flap', 6, HealthStatus.HEALTHY));
    const seen = sub.take(100).map((c) => WorkerState[c.worker.state]);
    expect(seen).toEqual(['HEALTHY', 'UNHEALTHY', 'HEALTHY']);
  });

  it('with the database gone, a Leave waits in the outbox and a registration is refused with Unavailable', async () => {
    const own = uniqueSchema('hive_reg_down');
    const downStore = await openTestStore(own);
    const c = new ManualClock();
    const r = await createRegistry({ store: downStore, clock: c, log });
    try {
      await enroll(r, admin, reg('w-down', 1000));
      await r.heartbeat(as('w-down'), hb('w-down', 1));
      await downStore.close(); // the pool is gone: every write fails as a real connection error
      expect((await r.leave(as('w-down'), 'w-down', 'SIGTERM')).state).toBe(WorkerState.LEFT);
      expect(r.writeBehind.outbox()).toBe(1);
      await rejectsWith(r.register(admin, reg('w-new')), Code.Unavailable);
      expect(r.workers.has('w-new')).toBe(false);
    } finally {
      await r.stop().catch(() => undefined);
      await dropSchema(own);
    }
  });

  it('writes heartbeat snapshots behind, in one batch', async () => {
    const r = await fresh();
    await enroll(r, admin, reg('w-wb1'));
    await enroll(r, admin, reg('w-wb2'));
    await r.heartbeat(as('w-wb1'), hb('w-wb1', 1));
    await r.heartbeat(as('w-wb2'), hb('w-wb2', 1));
    await r.heartbeat(as('w-wb1'), hb('w-wb1', 7));
    expect(r.writeBehind.backlog()).toBe(1); // w-wb1's later beat; first beats were state changes, written at once
    await r.writeBehind.flush();
    const stored = await store.loadWorkers();
    expect(stored.find((w) => w.workerId === 'w-wb1')?.lastSeq).toBe(7n);
    expect(r.writeBehind.backlog()).toBe(0);
  });
});
