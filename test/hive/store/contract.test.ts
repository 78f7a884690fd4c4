// One contract for the registry store, run against every engine it ships
// with: PGlite in a temporary directory and a real PostgreSQL server (a
// fresh schema per run, dropped afterwards).

import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createPgDb, openPgliteDb, type Db } from '../../../hive/store/db.js';
import { migrate, readMigrations } from '../../../hive/store/migrate.js';
import { openStore } from '../../../hive/store/open.js';
import { createSqlStore, FLUSH_CHUNK_ROWS, LOAD_PAGE } from '../../../hive/store/sql-store.js';
import type { EventRow, HealthCheckResultRow, HealthCheckRow, ScheduleRow, Store, StoredWorker, TokenRow, WorkerSnapshot } from '../../../hive/store/store.js';

const PG_URL = process.env.HIVE_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const RUN_ID = randomBytes(4).toString('hex');

const T0 = Date.UTC(2026, 0, 2, 3, 4, 5, 678);
const SCOPE_ADMIN = 1;
const SCOPE_JOIN = 2;
const SCOPE_WORKER = 3;
const SCOPE_READ = 5;

function worker(workerId: string, over: Partial<StoredWorker> = {}): StoredWorker {
  return {
    workerId,
    labels: { pool: 'gpu' },
    intervalMs: 5_000,
    registeredAt: T0,
    state: 1,
    stateSince: T0,
    lastSeen: null,
    lastSeq: 0n,
    sessionId: '',
    status: 0,
    statusDetail: '',
    stats: null,
    policy: null,
    dependsOn: [],
    dependsOnSelector: '',
    ...over,
  };
}

function event(workerId: string, over: Partial<EventRow> = {}): EventRow {
  return { workerId, at: T0, kind: 'registered', fromState: 0, toState: 1, actor: 'admin', reason: '', ...over };
}

function token(tokenId: string, over: Partial<TokenRow> = {}): TokenRow {
  return {
    tokenId,
    hash: `sha256-${tokenId}`,
    scope: SCOPE_WORKER,
    workerId: null,
    description: '',
    createdAt: T0,
    revokedAt: null,
    ...over,
  };
}

function snapshot(workerId: string, over: Partial<WorkerSnapshot> = {}): WorkerSnapshot {
  return {
    workerId,
    lastSeen: T0 + 1_000,
    lastSeq: 1n,
    sessionId: 'session-1',
    status: 1,
    statusDetail: '',
    stats: null,
    ...over,
  };
}

/** Counts the statements a store sends through the real database. */
function countingDb(db: Db): { db: Db; count: () => number } {
  let n = 0;
  const wrap = (d: Db): Db => ({
    query: <T,>(sql: string, params?: unknown[]) => {
      n++;
      return d.query<T>(sql, params);
    },
    exec: (sql) => {
      n++;
      return d.exec(sql);
    },
    transaction: (fn) => d.transaction((tx) => fn(wrap(tx))),
    close: () => d.close(),
  });
  return { db: wrap(db), count: () => n };
}

interface Harness {
  store: Store;
  /** The database under the store, for setup and checks outside the Store interface. */
  db: Db;
}

function storeContract(name: string, makeStore: () => Promise<Harness>): void {
  describe(`Store contract: ${name}`, () => {
    let h: Harness;
    let store: Store;

    beforeAll(async () => {
      h = await makeStore();
      store = h.store;
    });
    afterAll(async () => {
      await h?.store.close();
    });
    beforeEach(async () => {
      await h.db.query('TRUNCATE workers, tokens, events, default_policies, silences, health_checks, health_check_results, health_check_schedules RESTART IDENTITY');
    });

    it('registers a worker and loads every field back', async () => {
      const full = worker('w-full', {
        labels: { 'gpu.model': 'H100', zone: 'eu-west "1"', 'ñ': 'ü\\x' },
        intervalMs: 2_500,
        registeredAt: T0 + 1,
        state: 2,
        stateSince: T0 + 2,
        lastSeen: T0 + 3,
        lastSeq: 2n ** 64n - 1n,
        sessionId: 'session-a',
        status: 2,
        statusDetail: 'fine',
        stats: new Uint8Array([0, 1, 127, 128, 255]),
        policy: new Uint8Array([8, 3, 16, 1]),
        dependsOn: ['db-1', 'cache "x", y'],
        dependsOnSelector: 'role=db,zone!=b',
      });
      const bare = worker('w-bare', { labels: {}, lastSeq: 2n ** 53n + 1n });
      const ev1 = await store.registerWorker(full, null, false, event('w-full'));
      const ev2 = await store.registerWorker(bare, null, false, event('w-bare', { reason: 'join token' }));

      expect(ev1).toEqual({ ...event('w-full'), eventId: 1n });
      expect(ev2.eventId).toBe(2n);
      const loaded = await store.loadWorkers();
      expect(loaded).toEqual([bare, full]);
      expect(Buffer.isBuffer(loaded[1].stats)).toBe(false);
      expect(loaded[1].stats).toBeInstanceOf(Uint8Array);
    });

    it('registering an existing worker replaces every column', async () => {
      await store.registerWorker(worker('w-1', { stats: new Uint8Array([1]) }), null, false, event('w-1'));
      const again = worker('w-1', {
        labels: { pool: 'cpu' },
        intervalMs: 1_000,
        registeredAt: T0 + 10,
        state: 1,
        stateSince: T0 + 10,
        lastSeen: null,
        lastSeq: 0n,
        sessionId: '',
        stats: null,
        policy: new Uint8Array([1, 2]),
        dependsOn: ['w-0'],
      });
      await store.registerWorker(again, null, false, event('w-1', { at: T0 + 10 }));
      expect(await store.loadWorkers()).toEqual([again]);
    });

    it('a failing part of registerWorker leaves nothing behind', async () => {
      await store.createToken(token('t-taken', { hash: 'same-hash' }));
      const attempt = store.registerWorker(
        worker('w-1'),
        token('t-new', { hash: 'same-hash', workerId: 'w-1' }),
        false,
        event('w-1'),
      );
      await expect(attempt).rejects.toThrow();
      expect(await store.loadWorkers()).toEqual([]);
      expect(await store.listEvents({ limit: 10 })).toEqual([]);
      expect((await store.listTokens(true)).map((t) => t.tokenId)).toEqual(['t-taken']);
    });

    it('rotating with revokeOld revokes only the worker tokens of that worker', async () => {
      const t1 = token('t1', { workerId: 'w-1', createdAt: T0 });
      const other = token('t-other', { workerId: 'w-2', createdAt: T0 + 1 });
      const join = token('t-join', { scope: SCOPE_JOIN, createdAt: T0 + 2 });
      await store.createToken(other);
      await store.createToken(join);
      await store.registerWorker(worker('w-1'), t1, false, event('w-1'));

      const t2 = token('t2', { workerId: 'w-1', createdAt: T0 + 5_000 });
      await store.registerWorker(worker('w-1'), t2, true, event('w-1', { at: T0 + 5_000, kind: 'rotated' }));
      expect(await store.listTokens(true)).toEqual([{ ...t1, revokedAt: T0 + 5_000 }, other, join, t2]);
      expect(await store.loadTokens()).toEqual([other, join, t2]);

      const t3 = token('t3', { workerId: 'w-1', createdAt: T0 + 6_000 });
      await store.registerWorker(worker('w-1'), t3, false, event('w-1', { at: T0 + 6_000 }));
      expect(await store.loadTokens()).toEqual([other, join, t2, t3]);
    });

    it('loads only the named workers, and only their active worker tokens', async () => {
      const join = token('t-join', { scope: SCOPE_JOIN, createdAt: T0 });
      await store.createToken(join);
      const t1 = token('t1', { workerId: 'w-1', createdAt: T0 + 1 });
      const t2 = token('t2', { workerId: 'w-2', createdAt: T0 + 2 });
      await store.registerWorker(worker('w-1'), t1, false, event('w-1'));
      await store.registerWorker(worker('w-2'), t2, false, event('w-2'));
      await store.registerWorker(worker('w-3'), null, false, event('w-3'));
      const t1b = token('t1b', { workerId: 'w-1', createdAt: T0 + 3 });
      await store.registerWorker(worker('w-1'), t1b, true, event('w-1', { kind: 'rotated' }));
      expect((await store.loadWorkers(['w-3', 'w-1', 'w-gone'])).map((w) => w.workerId)).toEqual(['w-1', 'w-3']);
      expect(await store.loadWorkers([])).toEqual([]);
      expect(await store.loadTokens(['w-1', 'w-3'])).toEqual([t1b]);
      expect(await store.loadTokens([])).toEqual([]);
      expect((await store.loadTokens()).map((t) => t.tokenId)).toEqual(['t-join', 't2', 't1b']);
    });

    it('deleteWorker removes the worker, revokes its tokens and keeps its events', async () => {
      const t1 = token('t1', { workerId: 'w-1' });
      await store.registerWorker(worker('w-1'), t1, false, event('w-1'));
      await store.registerWorker(worker('w-2'), null, false, event('w-2'));
      const ev = await store.deleteWorker('w-1', T0 + 9_000, event('w-1', { at: T0 + 9_000, kind: 'deleted' }));

      expect(ev.eventId).toBe(3n);
      expect((await store.loadWorkers()).map((w) => w.workerId)).toEqual(['w-2']);
      expect(await store.listTokens(true)).toEqual([{ ...t1, revokedAt: T0 + 9_000 }]);
      expect((await store.listEvents({ workerId: 'w-1', limit: 10 })).map((e) => e.kind)).toEqual([
        'deleted',
        'registered',
      ]);
    });

    it('transition writes state, snapshot and events together', async () => {
      await store.registerWorker(worker('w-1'), null, false, event('w-1'));
      const snap = {
        ...snapshot('w-1', { lastSeq: 2n ** 63n + 7n, stats: new Uint8Array([9, 9]), statusDetail: 'gpu hot' }),
        state: 3,
        stateSince: T0 + 1_000,
      };
      const evs = await store.transition(snap, [
        event('w-1', { at: T0 + 1_000, kind: 'state', fromState: 1, toState: 2 }),
        event('w-1', { at: T0 + 1_000, kind: 'state', fromState: 2, toState: 3, actor: 'monitor' }),
      ]);

      expect(evs.map((e) => e.eventId)).toEqual([2n, 3n]);
      expect(evs[1].actor).toBe('monitor');
      const [w] = await store.loadWorkers();
      expect(w).toEqual({
        ...worker('w-1'),
        state: 3,
        stateSince: T0 + 1_000,
        lastSeen: snap.lastSeen,
        lastSeq: snap.lastSeq,
        sessionId: snap.sessionId,
        status: snap.status,
        statusDetail: 'gpu hot',
        stats: new Uint8Array([9, 9]),
      });
      expect(await store.listEvents({ limit: 2 })).toEqual([...evs].reverse());
    });

    it('a failing event insert rolls the state change back', async () => {
      await store.registerWorker(worker('w-1'), null, false, event('w-1'));
      const before = await store.loadWorkers();
      const snap = { ...snapshot('w-1'), state: 4, stateSince: T0 + 2_000 };
      // events.actor is NOT NULL: the second insert row violates it.
      const bad = event('w-1', { actor: null as unknown as string });
      await expect(store.transition(snap, [event('w-1', { kind: 'state' }), bad])).rejects.toThrow();

      expect(await store.loadWorkers()).toEqual(before);
      expect((await store.listEvents({ limit: 10 })).map((e) => e.kind)).toEqual(['registered']);
    });

    it('transitions that meet on the way share one transaction; each caller gets its own events, a worker moved twice ends in its last state', async () => {
      for (const id of ['w-1', 'w-2', 'w-3']) await store.registerWorker(worker(id), null, false, event(id));
      const counting = countingDb(h.db);
      const grouped = createSqlStore(counting.db);
      const move = (id: string, state: number, at: number, kind: string) =>
        grouped.transition({ ...snapshot(id, { lastSeen: at, lastSeq: BigInt(at - T0) }), state, stateSince: at }, [
          event(id, { at, kind, fromState: 2, toState: state, actor: 'monitor' }),
        ]);
      const [a, b, c, d] = await Promise.all([
        move('w-1', 3, T0 + 1_000, 'marked_stale'),
        move('w-2', 3, T0 + 2_000, 'marked_stale'),
        move('w-1', 4, T0 + 3_000, 'restarting'),
        move('w-3', 5, T0 + 4_000, 'gave_up'),
      ]);

      // One batch: the row locks (in worker_id order), the UPDATE and the event INSERT, not one transaction per call.
      expect(counting.count()).toBe(3);
      expect([a, b, c, d].map((evs) => evs.map((e) => [e.workerId, e.kind]))).toEqual([
        [['w-1', 'marked_stale']],
        [['w-2', 'marked_stale']],
        [['w-1', 'restarting']],
        [['w-3', 'gave_up']],
      ]);
      // Event ids follow the order of the calls.
      const eventIds = [a, b, c, d].map((evs) => Number(evs[0]?.eventId));
      expect(new Set(eventIds).size).toBe(4);
      expect([...eventIds].sort((x, y) => x - y)).toEqual(eventIds);
      const byId = new Map((await store.loadWorkers()).map((w) => [w.workerId, w]));
      expect([...byId.values()].map((w) => [w.workerId, w.state, w.stateSince])).toEqual([
        ['w-1', 4, T0 + 3_000],
        ['w-2', 3, T0 + 2_000],
        ['w-3', 5, T0 + 4_000],
      ]);
      expect((await store.listEvents({ workerId: 'w-1', limit: 10 })).map((e) => e.kind)).toEqual(['restarting', 'marked_stale', 'registered']);
    });

    it('a batch of transitions the database refuses is written again an item at a time: the bad one fails alone', async () => {
      for (const id of ['w-1', 'w-2']) await store.registerWorker(worker(id), null, false, event(id));
      const move = (id: string, actor: string) =>
        store.transition({ ...snapshot(id), state: 3, stateSince: T0 + 1_000 }, [event(id, { at: T0 + 1_000, kind: 'marked_stale', actor })]);
      // events.actor is NOT NULL: the second call's row fails the batch both are in.
      const results = await Promise.allSettled([move('w-1', 'monitor'), move('w-2', null as unknown as string)]);
      expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected']);
      const byId = new Map((await store.loadWorkers()).map((w) => [w.workerId, w.state]));
      expect([byId.get('w-1'), byId.get('w-2')]).toEqual([3, 1]);
      expect((await store.listEvents({ limit: 10 })).map((e) => [e.workerId, e.kind])).toEqual([
        ['w-1', 'marked_stale'],
        ['w-2', 'registered'],
        ['w-1', 'registered'],
      ]);
    });

    it('forEachWorkerPage hands over every worker a page at a time, in worker_id order, the same workers loadWorkers reads', async () => {
      const n = 2 * LOAD_PAGE + 10;
      await h.db.query(
        `INSERT INTO workers (worker_id, interval_ms, registered_at, state, state_since, stats)
         SELECT 'p-' || lpad(g::text, 5, '0'), 1000, $1, 2, $1, CASE WHEN g % 3 = 0 THEN NULL ELSE decode(lpad(to_hex(g), 6, '0'), 'hex') END
         FROM generate_series(1, $2::int) g`,
        [new Date(T0).toISOString(), n],
      );
      const pages: StoredWorker[][] = [];
      await store.forEachWorkerPage((page) => void pages.push(page));

      expect(pages.map((p) => p.length)).toEqual([LOAD_PAGE, LOAD_PAGE, 10]);
      const all = pages.flat();
      expect(all).toEqual(await store.loadWorkers());
      all.forEach((w, idx) => {
        const g = idx + 1;
        expect(w.workerId).toBe(`p-${String(g).padStart(5, '0')}`);
        expect(w.stats).toEqual(g % 3 === 0 ? null : new Uint8Array([g >> 16, (g >> 8) & 0xff, g & 0xff]));
      });
    });

    it('flushSnapshots updates many workers in one call, in statements of FLUSH_CHUNK_ROWS rows, ignoring unknown ids', async () => {
      const n = 12_000;
      await h.db.query(
        `INSERT INTO workers (worker_id, interval_ms, registered_at, state, state_since)
         SELECT 'w-' || lpad(g::text, 5, '0'), 1000, $1, 2, $1 FROM generate_series(1, $2::int) g`,
        [new Date(T0).toISOString(), n],
      );
      const snaps: WorkerSnapshot[] = [];
      for (let i = 1; i <= n; i++) {
        snaps.push(
          snapshot(`w-${String(i).padStart(5, '0')}`, {
            lastSeen: T0 + i,
            lastSeq: 2n ** 60n + BigInt(i),
            sessionId: `s-${i}`,
            status: i % 3,
            statusDetail: `detail ${i}`,
            stats: i % 2 ? new Uint8Array([i & 0xff, i >> 8, 0]) : null,
          }),
        );
        if (i % 1_000 === 0) snaps.push(snapshot(`unknown-${i}`));
      }
      const counting = countingDb(h.db);
      await createSqlStore(counting.db).flushSnapshots(snaps);
      // Per chunk: its row locks (in worker_id order), then the UPDATE.
      expect(counting.count()).toBe(2 * Math.ceil(snaps.length / FLUSH_CHUNK_ROWS));

      const loaded = await store.loadWorkers();
      expect(loaded).toHaveLength(n);
      loaded.forEach((w, idx) => {
        const i = idx + 1;
        expect(w).toEqual({
          ...worker(`w-${String(i).padStart(5, '0')}`, { labels: {}, intervalMs: 1_000, state: 2 }),
          lastSeen: T0 + i,
          lastSeq: 2n ** 60n + BigInt(i),
          sessionId: `s-${i}`,
          status: i % 3,
          statusDetail: `detail ${i}`,
          stats: i % 2 ? new Uint8Array([i & 0xff, i >> 8, 0]) : null,
        });
      });
    });

    it('flushSnapshots of a small batch is one statement and the last snapshot of a worker wins', async () => {
      await store.registerWorker(worker('w-1'), null, false, event('w-1'));
      const counting = countingDb(h.db);
      await createSqlStore(counting.db).flushSnapshots([
        snapshot('w-1', { lastSeq: 1n }),
        snapshot('w-1', { lastSeq: 2n, stats: new Uint8Array([7]) }),
      ]);
      await createSqlStore(counting.db).flushSnapshots([]);
      expect(counting.count()).toBe(1);
      const [w] = await store.loadWorkers();
      expect(w.lastSeq).toBe(2n);
      expect(w.stats).toEqual(new Uint8Array([7]));
    });

    it('appendEvents returns the events with ascending ids in the order given', async () => {
      const given = [event('a', { kind: 'k1' }), event('b', { kind: 'k2', reason: 'why' }), event('a', { kind: 'k3' })];
      const stored = await store.appendEvents(given);
      expect(stored).toEqual(given.map((e, i) => ({ ...e, eventId: BigInt(i + 1) })));
      expect(await store.appendEvents([])).toEqual([]);
    });

    it('listEvents pages newest first with beforeId and filters by worker and since', async () => {
      const all = await store.appendEvents(
        Array.from({ length: 25 }, (_, i) => event(i % 2 ? 'b' : 'a', { at: T0 + i * 1_000, kind: `k${i}` })),
      );
      const newestFirst = [...all].reverse();

      const pages: EventRow[][] = [];
      let beforeId: bigint | undefined;
      for (;;) {
        const page = await store.listEvents({ limit: 10, beforeId });
        if (page.length === 0) break;
        pages.push(page);
        beforeId = page[page.length - 1].eventId;
      }
      expect(pages.map((p) => p.length)).toEqual([10, 10, 5]);
      expect(pages.flat()).toEqual(newestFirst);

      const since = await store.listEvents({ since: T0 + 20_000, limit: 100 });
      expect(since).toEqual(newestFirst.slice(0, 5));

      const onlyA = await store.listEvents({ workerId: 'a', since: T0 + 10_000, beforeId: all[20].eventId, limit: 3 });
      expect(onlyA.map((e) => e.kind)).toEqual(['k18', 'k16', 'k14']);
    });

    it('pruneEvents deletes events older than the cutoff and says how many', async () => {
      await store.appendEvents(Array.from({ length: 10 }, (_, i) => event('w-1', { at: T0 + i })));
      expect(await store.pruneEvents(T0 + 4)).toBe(4);
      const left = await store.listEvents({ limit: 100 });
      expect(left.map((e) => e.at)).toEqual([9, 8, 7, 6, 5, 4].map((i) => T0 + i));
      expect(await store.pruneEvents(T0 + 4)).toBe(0);
    });

    it('tokens: create, list, revoke (idempotently), load only active ones', async () => {
      const admin = token('t-admin', { scope: SCOPE_ADMIN, description: 'ops', createdAt: T0 });
      const read = token('t-read', { scope: SCOPE_READ, createdAt: T0 + 1 });
      await store.createToken(admin);
      await store.createToken(read);
      expect(await store.listTokens(false)).toEqual([admin, read]);

      expect(await store.revokeToken('t-admin', T0 + 50)).toEqual({ ...admin, revokedAt: T0 + 50 });
      expect(await store.revokeToken('t-admin', T0 + 90)).toEqual({ ...admin, revokedAt: T0 + 50 });
      expect(await store.revokeToken('t-missing', T0)).toBeNull();

      expect(await store.listTokens(false)).toEqual([read]);
      expect(await store.listTokens(true)).toEqual([{ ...admin, revokedAt: T0 + 50 }, read]);
      expect(await store.loadTokens()).toEqual([read]);
      await expect(store.createToken(token('t-dup', { hash: read.hash }))).rejects.toThrow();
    });

    it('setPolicy sets and clears a worker policy with an event', async () => {
      await store.registerWorker(worker('w-1'), null, false, event('w-1'));
      const ev = await store.setPolicy('w-1', new Uint8Array([1, 2, 3]), event('w-1', { kind: 'policy' }));
      expect(ev.eventId).toBe(2n);
      expect((await store.loadWorkers())[0].policy).toEqual(new Uint8Array([1, 2, 3]));
      await store.setPolicy('w-1', null, event('w-1', { kind: 'policy' }));
      expect((await store.loadWorkers())[0].policy).toBeNull();
    });

    it('default policies: put, replace, list, delete', async () => {
      const a = { name: 'a-gpu', labelSelector: 'pool=gpu', priority: 10, policy: new Uint8Array([1]) };
      const b = { name: 'b-all', labelSelector: '', priority: 0, policy: new Uint8Array([2, 0]) };
      await store.putDefaultPolicy(b);
      await store.putDefaultPolicy(a);
      expect(await store.listDefaultPolicies()).toEqual([a, b]);

      const a2 = { ...a, labelSelector: 'pool=h100', priority: 20, policy: new Uint8Array([3]) };
      await store.putDefaultPolicy(a2);
      expect(await store.listDefaultPolicies()).toEqual([a2, b]);

      expect(await store.deleteDefaultPolicy('a-gpu')).toBe(true);
      expect(await store.deleteDefaultPolicy('a-gpu')).toBe(false);
      expect(await store.listDefaultPolicies()).toEqual([b]);
    });

    it('silences: put, replace, list, delete', async () => {
      const s1 = {
        silenceId: 's1',
        workerId: 'w-1',
        labelSelector: '',
        expiresAt: T0 + 3_600_000,
        comment: 'maintenance',
        createdBy: 'alice',
        createdAt: T0,
      };
      const s2 = { ...s1, silenceId: 's2', workerId: '', labelSelector: 'pool=gpu', createdAt: T0 + 1 };
      await store.putSilence(s2);
      await store.putSilence(s1);
      expect(await store.listSilences()).toEqual([s1, s2]);

      const s1b = { ...s1, expiresAt: T0 + 7_200_000, comment: 'longer' };
      await store.putSilence(s1b);
      expect(await store.listSilences()).toEqual([s1b, s2]);

      expect(await store.deleteSilence('s1')).toBe(true);
      expect(await store.deleteSilence('s1')).toBe(false);
      expect(await store.listSilences()).toEqual([s2]);
    });

    it('health checks: a run and its results are saved together, updated in place, and read back', async () => {
      const run: HealthCheckRow = {
        checkId: 'chk-1', trigger: 1, scheduleId: '', labelSelector: 'pool=gpu', timeoutMs: 5_000, state: 1,
        startedAt: T0, finishedAt: null, total: 2, completed: 0, failed: 0, score: 0, band: 0, summary: '', startedBy: 'admin',
      };
      const pending = (workerId: string): HealthCheckResultRow => ({ checkId: 'chk-1', workerId, outcome: 1, score: 0, band: 0, reason: '', report: null, answeredAt: null });
      await store.saveHealthCheck(run, [pending('w-b'), pending('w-a')]);
      expect(await store.getHealthCheck('chk-1')).toEqual({ run, results: [pending('w-a'), pending('w-b')] });

      const answered: HealthCheckResultRow = { ...pending('w-a'), outcome: 2, score: 0.55, band: 3, reason: 'probe: HTTP 500', report: new Uint8Array([0, 1, 255]), answeredAt: T0 + 10 };
      await store.saveHealthCheck({ ...run, completed: 1, failed: 1 }, [answered]);
      const done = { ...run, state: 2, finishedAt: T0 + 5_000, completed: 2, failed: 2, score: 0.275, band: 4, summary: 'w-a: probe; w-b: no answer' };
      const noAnswer = { ...pending('w-b'), outcome: 3, reason: 'no answer within 5s' };
      await store.saveHealthCheck(done, [noAnswer]);
      expect(await store.getHealthCheck('chk-1')).toEqual({ run: done, results: [answered, noAnswer] });
      expect(await store.getHealthCheck('nope')).toBeNull();
    });

    it('health checks: listed newest first, paged by (started_at, check_id), filtered by trigger', async () => {
      const base: HealthCheckRow = {
        checkId: '', trigger: 1, scheduleId: '', labelSelector: '', timeoutMs: 1_000, state: 2,
        startedAt: T0, finishedAt: T0 + 1, total: 0, completed: 0, failed: 0, score: 1, band: 1, summary: '', startedBy: 'admin',
      };
      // Two runs share a start time: check_id breaks the tie, so no page repeats or skips one.
      const runs = [
        { ...base, checkId: 'c1', startedAt: T0 },
        { ...base, checkId: 'c2', startedAt: T0 + 1_000, trigger: 2, scheduleId: 's1', startedBy: 'monitor' },
        { ...base, checkId: 'c3', startedAt: T0 + 1_000 },
        { ...base, checkId: 'c4', startedAt: T0 + 2_000, trigger: 2, scheduleId: 's1', startedBy: 'monitor' },
      ];
      for (const r of runs) await store.saveHealthCheck(r, []);
      const ids = (rows: HealthCheckRow[]) => rows.map((r) => r.checkId);
      expect(ids(await store.listHealthChecks({ limit: 10 }))).toEqual(['c4', 'c3', 'c2', 'c1']);
      const page1 = await store.listHealthChecks({ limit: 2 });
      expect(ids(page1)).toEqual(['c4', 'c3']);
      const last = page1[page1.length - 1];
      expect(ids(await store.listHealthChecks({ limit: 2, before: { startedAt: last.startedAt, checkId: last.checkId } }))).toEqual(['c2', 'c1']);
      expect(ids(await store.listHealthChecks({ limit: 10, trigger: 2 }))).toEqual(['c4', 'c2']);
      expect(ids(await store.listHealthChecks({ limit: 10, trigger: 1 }))).toEqual(['c3', 'c1']);
      await store.saveHealthCheck({ ...runs[1], state: 1, finishedAt: null }, []);
      expect(ids(await store.listHealthChecks({ limit: 10, state: 1 }))).toEqual(['c2']);
      expect(ids(await store.listHealthChecks({ limit: 10, state: 2, trigger: 2 }))).toEqual(['c4']);
    });

    it('health-check schedules: put, replace (keeping created_at), get, list, delete', async () => {
      const s1: ScheduleRow = { scheduleId: 'nightly', cron: '0 3 * * *', enabled: true, labelSelector: 'pool=gpu', timeoutMs: 30_000, description: 'nightly', createdAt: T0, updatedAt: T0 };
      const s0: ScheduleRow = { ...s1, scheduleId: 'every-5m', cron: '*/5 * * * *', enabled: false, labelSelector: '' };
      await store.putSchedule(s1);
      await store.putSchedule(s0);
      expect(await store.listSchedules()).toEqual([s0, s1]);
      await store.putSchedule({ ...s1, cron: '0 4 * * *', createdAt: T0 + 99, updatedAt: T0 + 5 });
      expect(await store.getSchedule('nightly')).toEqual({ ...s1, cron: '0 4 * * *', updatedAt: T0 + 5 });
      expect(await store.getSchedule('nope')).toBeNull();
      expect(await store.deleteSchedule('nightly')).toBe(true);
      expect(await store.deleteSchedule('nightly')).toBe(false);
      expect(await store.listSchedules()).toEqual([s0]);
    });

    it('migrate again is a no-op that keeps the data', async () => {
      await store.registerWorker(worker('w-1'), null, false, event('w-1'));
      await store.migrate();
      await store.migrate();
      const versions = (await readMigrations()).map((m) => m.version);
      const { rows } = await h.db.query<{ version: number }>('SELECT version FROM schema_migrations ORDER BY version');
      expect(rows.map((r) => r.version)).toEqual(versions);
      expect((await store.loadWorkers()).map((w) => w.workerId)).toEqual(['w-1']);
    });

    it('ping answers', async () => {
      await expect(store.ping()).resolves.toBeUndefined();
    });
  });
}

// ---------------------------------------------------------------------------
// PGlite

describe('PGlite', () => {
  let root: string;
  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), 'hive-store-'));
  });
  afterAll(() => {
    rmSync(root, { recursive: true, force: true });
  });

  storeContract('PGlite', async () => {
    const db = await openPgliteDb({ dataDir: join(root, 'contract') });
    await migrate(db);
    return { db, store: createSqlStore(db) };
  });

  describe('data directory', () => {
    let dir: string;
    beforeAll(() => {
      dir = join(root, 'hive-data');
    });

    it('is created with mode 0700 and runs with durable commits and small buffers', async () => {
      const db = await openPgliteDb({ dataDir: dir });
      try {
        expect(statSync(dir).mode & 0o777).toBe(0o700);
        const { rows } = await db.query<Record<string, string>>(
          `SELECT current_setting('fsync') AS fsync, current_setting('synchronous_commit') AS sync,
             current_setting('wal_sync_method') AS wal, current_setting('shared_buffers') AS buffers`,
        );
        expect(rows[0]).toEqual({ fsync: 'on', sync: 'on', wal: 'open_datasync', buffers: '16MB' });
      } finally {
        await db.close();
      }
    });

    it('keeps the data across a reopen', async () => {
      const first = await openStore({ dataDir: dir });
      const w = worker('w-1', { lastSeq: 2n ** 64n - 2n, stats: new Uint8Array([4, 2]) });
      const t = token('t1', { workerId: 'w-1' });
      await first.registerWorker(w, t, false, event('w-1'));
      await first.close();

      const second = await openStore({ dataDir: dir });
      try {
        expect(await second.loadWorkers()).toEqual([w]);
        expect(await second.loadTokens()).toEqual([t]);
        expect(await second.listEvents({ limit: 10 })).toEqual([{ ...event('w-1'), eventId: 1n }]);
      } finally {
        await second.close();
      }
    });

    it('refuses a second open while the first is open, and close releases the lock', async () => {
      const lockPath = join(dir, 'hive.lock');
      const first = await openStore({ dataDir: dir });
      try {
        expect(existsSync(lockPath)).toBe(true);
        const second = openStore({ dataDir: dir });
        await expect(second).rejects.toThrow(dir);
        await expect(second).rejects.toThrow(`process ${process.pid}`);
        await expect(first.ping()).resolves.toBeUndefined();
      } finally {
        await first.close();
      }
      expect(existsSync(lockPath)).toBe(false);
      const third = await openStore({ dataDir: dir });
      await third.close();
    });

    it('takes over a lock left by a process that is gone; close is idempotent', async () => {
      // Above any pid_max, so never a live process.
      writeFileSync(join(dir, 'hive.lock'), '2147483646\n');
      const store = await openStore({ dataDir: dir });
      await Promise.all([store.close(), store.close()]);
      expect(existsSync(join(dir, 'hive.lock'))).toBe(false);
    });
  });
});

// ---------------------------------------------------------------------------
// PostgreSQL

describe('PostgreSQL', () => {
  const schemas: string[] = [];
  const newSchema = (tag: string) => {
    const schema = `hive_test_${RUN_ID}_${tag}`;
    schemas.push(schema);
    return schema;
  };

  afterAll(async () => {
    const client = new pg.Client({ connectionString: PG_URL });
    await client.connect();
    try {
      for (const schema of schemas) await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    } finally {
      await client.end();
    }
  });

  storeContract('PostgreSQL', async () => {
    const db = await createPgDb({ url: PG_URL, schema: newSchema('contract') });
    await migrate(db);
    return { db, store: createSqlStore(db) };
  });

  it('two hives migrating a fresh schema at once both succeed, and each migration applies once', async () => {
    const schema = newSchema('concurrent');
    const [a, b] = await Promise.all([createPgDb({ url: PG_URL, schema }), createPgDb({ url: PG_URL, schema })]);
    try {
      const [fromA, fromB] = await Promise.all([migrate(a), migrate(b)]);
      const versions = (await readMigrations()).map((m) => m.version);
      expect([...fromA, ...fromB].sort((x, y) => x - y)).toEqual(versions);
      const { rows } = await a.query<{ version: number }>('SELECT version FROM schema_migrations ORDER BY version');
      expect(rows.map((r) => r.version)).toEqual(versions);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  it('openStore with a database URL keeps the tables in the given schema and leaves dataDir alone', async () => {
    const schema = newSchema('open');
    const dataDir = join(tmpdir(), `hive-unused-${RUN_ID}`);
    const store = await openStore({ databaseUrl: PG_URL, dataDir, schema });
    try {
      await store.registerWorker(worker('w-1'), null, false, event('w-1'));
    } finally {
      await Promise.all([store.close(), store.close()]);
    }
    expect(existsSync(dataDir)).toBe(false);
    const client = new pg.Client({ connectionString: PG_URL });
    await client.connect();
    try {
      const { rows } = await client.query(`SELECT worker_id FROM ${schema}.workers`);
      expect(rows).toEqual([{ worker_id: 'w-1' }]);
    } finally {
      await client.end();
    }
  });
});
