import { create } from '@bufbuild/protobuf';
import { Code } from '@connectrpc/connect';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HealthStatus, HeartbeatRequestSchema, RegisterWorkerRequestSchema, TokenScope, WorkerState } from '../../gen/hive/v1/registry_pb.js';
import { flushMicrotasks, ManualClock } from '../../lib/clock.js';
import { msToDuration } from '../../lib/duration.js';
import { createLogger } from '../../lib/logger.js';
import { blockedBy, dependenciesOf, findCycle, type DependencyNode } from '../../hive/dependencies.js';
import { createDependencyTracker } from '../../hive/dependency-tracker.js';
import { createRegistry, type Registry } from '../../hive/registry.js';
import type { Store } from '../../hive/store/store.js';
import type { Principal } from '../../hive/tokens.js';
import { dropSchema, openTestStore, uniqueSchema } from '../support/pg.js';
import { eventually } from '../support/procs.js';

// Dependencies: the pure rules (who depends on whom, cycles, who is
// blocked), then on a real registry and PostgreSQL store: a cycle is
// refused with InvalidArgument and changes nothing, and blocked_by follows
// the dependency's state with an event each way.

const log = createLogger('test', 'silent');
const admin: Principal = { scope: TokenScope.ADMIN, tokenId: 'admin' };
const node = (workerId: string, o: Partial<DependencyNode> = {}): DependencyNode => ({ workerId, labels: {}, state: WorkerState.HEALTHY, dependsOn: [], ...o });

describe('dependency rules', () => {
  it('resolves ids and selectors, never the worker itself', () => {
    const db1 = node('db-1', { labels: { role: 'db' } });
    const db2 = node('db-2', { labels: { role: 'db' } });
    const app = node('app', { labels: { role: 'db' }, dependsOn: ['cache'], dependsOnSelector: 'role=db' });
    expect(dependenciesOf(app, [db1, db2, app])).toEqual(['cache', 'db-1', 'db-2']);
  });

  it('finds a cycle by id, by selector, and across both; a chain is no cycle', () => {
    const a = node('a', { dependsOn: ['b'] });
    const b = node('b', { dependsOn: ['c'] });
    expect(findCycle(node('c'), [a, b])).toBeNull();
    expect(findCycle(node('c', { dependsOn: ['a'] }), [a, b])).toEqual(['c', 'a', 'b', 'c']);
    const db = node('db', { labels: { role: 'db' }, dependsOnSelector: 'role=app' });
    expect(findCycle(node('app', { labels: { role: 'app' }, dependsOnSelector: 'role=db' }), [db])).toEqual(['app', 'db', 'app']);
    expect(findCycle(node('app', { labels: { role: 'web' }, dependsOnSelector: 'role=db' }), [db])).toBeNull();
    // Re-registering a worker replaces its old edges.
    expect(findCycle(node('a', { dependsOn: [] }), [a, b, node('c', { dependsOn: ['a'] })])).toBeNull();
  });

  it('a worker is blocked by dependencies that are not healthy or degraded, or not registered', () => {
    const ws = new Map([
      ['up', node('up')],
      ['slow', node('slow', { state: WorkerState.DEGRADED })],
      ['down', node('down', { state: WorkerState.STALE })],
      ['dead', node('dead', { state: WorkerState.FAILED })],
    ]);
    expect(blockedBy(node('x', { dependsOn: ['up', 'slow', 'down', 'dead', 'ghost'] }), ws)).toEqual(['dead', 'down', 'ghost']);
    expect(blockedBy(node('x'), ws)).toEqual([]);
  });
});

describe('dependencies in the registry', () => {
  const schema = uniqueSchema('hive_deps');
  let store: Store;
  let clock: ManualClock;
  let registry: Registry;
  let tracker: ReturnType<typeof createDependencyTracker>;
  const seqs = new Map<string, number>();
  const tokenIds = new Map<string, string>();
  const beat = (id: string) => {
    const seq = (seqs.get(id) ?? 0) + 1;
    seqs.set(id, seq);
    return registry.heartbeat({ scope: TokenScope.WORKER, tokenId: tokenIds.get(id) ?? id, workerId: id }, create(HeartbeatRequestSchema, { workerId: id, sessionId: 's', seq: BigInt(seq), status: HealthStatus.HEALTHY }));
  };
  // An admin registering an existing id again replaces its token.
  const register = async (workerId: string, o: { dependsOn?: string[]; dependsOnSelector?: string; labels?: Record<string, string> } = {}) => {
    const res = await registry.register(admin, create(RegisterWorkerRequestSchema, { workerId, heartbeatInterval: msToDuration(1000), labels: o.labels ?? {}, dependsOn: o.dependsOn ?? [], dependsOnSelector: o.dependsOnSelector ?? '', rotateToken: true }));
    tokenIds.set(workerId, registry.tokens.lookup(res.token)!.tokenId);
    return res;
  };
  const kinds = async (id: string) => (await store.listEvents({ workerId: id, limit: 100 })).map((e) => e.kind).reverse();
  /** The tracker runs off the registry's change feed; its events go to the real database. */
  const blockedOf = (id: string, want: string[]) => eventually(async () => {
    await flushMicrotasks();
    return JSON.stringify(registry.workers.get(id)?.blockedBy) === JSON.stringify(want);
  }, 5000, `${id} blocked by [${want.join(', ')}]`);

  beforeAll(async () => {
    store = await openTestStore(schema);
    clock = new ManualClock();
    registry = await createRegistry({ store, clock, log });
    tracker = createDependencyTracker({ registry, log });
    tracker.start();
  });
  afterAll(async () => {
    await tracker?.stop();
    await registry?.stop();
    await store?.close();
    await dropSchema(schema);
  });

  it('keeps nothing per worker while nobody depends on anything; the first worker with dependencies sees their state as it is', async () => {
    // Its own registry: the others in this file have dependencies from their first test on.
    const own = await createRegistry({ store, clock, log });
    const t = createDependencyTracker({ registry: own, log });
    t.start();
    try {
      const ids = new Map<string, string>();
      const enroll = async (workerId: string, dependsOn: string[] = []) => {
        const res = await own.register(admin, create(RegisterWorkerRequestSchema, { workerId, heartbeatInterval: msToDuration(1000), dependsOn, rotateToken: true }));
        ids.set(workerId, own.tokens.lookup(res.token)!.tokenId);
      };
      const hb = (id: string, seq: number) => own.heartbeat({ scope: TokenScope.WORKER, tokenId: ids.get(id)!, workerId: id }, create(HeartbeatRequestSchema, { workerId: id, sessionId: 's', seq: BigInt(seq), status: HealthStatus.HEALTHY }));
      for (const id of ['lean-1', 'lean-2', 'lean-db']) {
        await enroll(id);
        await hb(id, 1);
      }
      await clock.advance(2001);
      await hb('lean-1', 2);
      await hb('lean-2', 2);
      await own.markStale('lean-db', 1n, 's', 'monitor', 'silent');
      await flushMicrotasks();
      expect(t.tracked).toBe(0);
      await enroll('lean-app', ['lean-db']);
      await eventually(async () => {
        await flushMicrotasks();
        return JSON.stringify(own.workers.get('lean-app')?.blockedBy) === JSON.stringify(['lean-db']);
      }, 5000, 'lean-app blocked by the stale lean-db');
      expect(t.tracked).toBe(own.workers.size);
      await hb('lean-db', 2);
      await eventually(async () => {
        await flushMicrotasks();
        return own.workers.get('lean-app')?.blockedBy?.length === 0;
      }, 5000, 'lean-app unblocked');
    } finally {
      await t.stop();
      await own.stop();
    }
  });

  it('refuses a registration that closes a cycle with InvalidArgument, changing nothing', async () => {
    await register('a');
    await register('b', { dependsOn: ['a'] });
    await register('c', { dependsOn: ['b'], labels: { tier: 'c' } });
    const before = await kinds('a');
    await expect(register('a', { dependsOn: ['c'] })).rejects.toMatchObject({ code: Code.InvalidArgument, message: expect.stringContaining('a -> c -> b -> a') });
    await expect(register('a', { dependsOnSelector: 'tier=c' })).rejects.toMatchObject({ code: Code.InvalidArgument });
    await expect(register('a', { dependsOn: ['a'] })).rejects.toMatchObject({ code: Code.InvalidArgument });
    await expect(register('a', { dependsOnSelector: 'tier==' })).resolves.toBeDefined();
    expect(registry.workers.get('a')?.dependsOn).toEqual([]);
    expect((await store.loadWorkers()).find((w) => w.workerId === 'a')?.dependsOn).toEqual([]);
    // Only the accepted re-registration wrote an event.
    expect((await kinds('a')).length).toBe(before.length + 1);
    await expect(register('a', { dependsOnSelector: '=bad' })).rejects.toMatchObject({ code: Code.InvalidArgument });
  });

  it('blocked_by follows the dependency: set with an event when it goes stale, cleared with one when it is back', async () => {
    await register('db');
    await register('app', { dependsOn: ['db'] });
    // PENDING until its first heartbeat: not healthy, so blocking.
    await blockedOf('app', ['db']);
    await beat('db');
    await beat('app');
    await blockedOf('app', []);

    await clock.advance(2001);
    await beat('app');
    await registry.markStale('db', registry.workers.get('db')!.lastSeq, 's', 'monitor', 'silent');
    await blockedOf('app', ['db']);
    expect(registry.workers.get('app')?.state).toBe(WorkerState.HEALTHY);
    await beat('db');
    await blockedOf('app', []);
    const events = await eventually(async () => {
      const list = (await store.listEvents({ workerId: 'app', limit: 100 })).reverse().filter((e) => e.kind === 'blocked' || e.kind === 'unblocked');
      return list.length === 4 ? list : null;
    }, 5000, "app's four dependency events");
    expect(events.map((e) => e.kind)).toEqual(['blocked', 'unblocked', 'blocked', 'unblocked']);
    expect(events[2].reason).toBe('waiting for db stale; not restarted until they are healthy');
    expect(events[0].reason).toBe('waiting for db pending; not restarted until they are healthy');
  });
});
