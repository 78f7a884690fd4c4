// The registry store in SQL that runs unchanged on PostgreSQL and PGlite.
// Conventions at the boundary: times are ms since the epoch in JS and
// timestamptz in SQL (sent as ISO strings, read back as Date); last_seq is a
// uint64 in numeric(20,0) (sent and read as text); event ids are bigint.

import { StoreUnavailableError } from '../errors.js';
import type { Db } from './db.js';
import { groupCommit } from './group-commit.js';
import { getHealthCheck, listHealthChecks, saveHealthCheck } from './health-check-sql.js';
import { migrate } from './migrate.js';
import { deleteSchedule, getSchedule, listSchedules, putSchedule } from './schedule-sql.js';
import type {
  DefaultPolicyRow,
  EventQuery,
  EventRow,
  SilenceRow,
  StateCode,
  Store,
  StoredWorker,
  TokenRow,
  WorkerSnapshot,
} from './store.js';

/** hive.v1.TokenScope.TOKEN_SCOPE_WORKER: the tokens a worker authenticates with. */
const WORKER_SCOPE = 3;

/** Rows per statement in flushSnapshots; bounds the size of one bind message. */
export const FLUSH_CHUNK_ROWS = 1_000;

export function createSqlStore(db: Db): Store {
  // State transitions come in bursts (a rack goes silent, a hive restarts):
  // those that meet on the way to the database share one transaction.
  // A batch the database refuses for one bad item is written again an item
  // at a time, so that item fails alone; one that could not reach the
  // database fails whole (trying each alone would only wait longer).
  const transition = groupCommit((batch: Transition[]) => transitionWorkers(db, batch), FLUSH_CHUNK_ROWS, (err) => !(err instanceof StoreUnavailableError));
  return {
    migrate: async () => {
      await migrate(db);
    },
    loadWorkers: (ids) => loadWorkers(db, ids),
    forEachWorkerPage: (onPage) => forEachWorkerPage(db, onPage),
    loadTokens: (workerIds) => (workerIds ? loadWorkerTokens(db, workerIds) : listTokens(db, false)),
    registerWorker: (worker, token, revokeOld, event) =>
      db.transaction(async (tx) => {
        await upsertWorker(tx, worker);
        if (revokeOld) await revokeWorkerTokens(tx, worker.workerId, event.at);
        if (token) await insertToken(tx, token);
        return (await insertEvents(tx, [event]))[0];
      }),
    deleteWorker: (workerId, at, event) =>
      db.transaction(async (tx) => {
        await tx.query('DELETE FROM workers WHERE worker_id = $1', [workerId]);
        await tx.query('UPDATE tokens SET revoked_at = $2 WHERE worker_id = $1 AND revoked_at IS NULL', [
          workerId,
          iso(at),
        ]);
        return (await insertEvents(tx, [event]))[0];
      }),
    transition: (snapshot, events) => transition({ snapshot, events }),
    flushSnapshots: (snapshots) => flushSnapshots(db, snapshots),
    setPolicy: (workerId, policy, event) =>
      db.transaction(async (tx) => {
        await tx.query('UPDATE workers SET policy = $2::bytea WHERE worker_id = $1', [workerId, policy]);
        return (await insertEvents(tx, [event]))[0];
      }),
    appendEvents: (events) => insertEvents(db, events),
    listEvents: (query) => listEvents(db, query),
    pruneEvents: (olderThan) => pruneEvents(db, olderThan),
    createToken: (token) => insertToken(db, token),
    revokeToken: (tokenId, at) => revokeToken(db, tokenId, at),
    listTokens: (includeRevoked) => listTokens(db, includeRevoked),
    putDefaultPolicy: (row) => putDefaultPolicy(db, row),
    deleteDefaultPolicy: (name) => deleted(db, 'DELETE FROM default_policies WHERE name = $1 RETURNING name', name),
    listDefaultPolicies: () => listDefaultPolicies(db),
    putSilence: (row) => putSilence(db, row),
    deleteSilence: (silenceId) =>
      deleted(db, 'DELETE FROM silences WHERE silence_id = $1 RETURNING silence_id', silenceId),
    listSilences: () => listSilences(db),
    saveHealthCheck: (run, results) => saveHealthCheck(db, run, results),
    getHealthCheck: (checkId) => getHealthCheck(db, checkId),
    listHealthChecks: (query) => listHealthChecks(db, query),
    putSchedule: (row) => putSchedule(db, row),
    getSchedule: (id) => getSchedule(db, id),
    deleteSchedule: (id) => deleteSchedule(db, id),
    listSchedules: () => listSchedules(db),
    ping: async () => {
      await db.query('SELECT 1');
    },
    close: () => db.close(),
  };
}

// ---------------------------------------------------------------------------
// Conversions

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function isoOrNull(ms: number | null): string | null {
  return ms === null ? null : iso(ms);
}

/**
 * A timestamptz column read as epoch milliseconds: a float8 the drivers
 * parse with parseFloat, where a timestamptz is a regular expression and a
 * Date per value (at a cold start of 100,000 workers, a tenth of the CPU).
 */
const epochMs = (column: string) => `floor(extract(epoch FROM ${column}) * 1000)::float8 AS ${column}`;

function ms(d: Date): number {
  return d.getTime();
}

/**
 * A bytea as a plain Uint8Array (pg returns a Buffer, PGlite a Uint8Array):
 * a view of the driver's Buffer, not a copy (a malloc of its own).
 */
function bytes(v: Uint8Array | null): Uint8Array | null {
  if (v === null) return null;
  return Buffer.isBuffer(v) ? new Uint8Array(v.buffer, v.byteOffset, v.byteLength) : v;
}

function hexOrNull(v: Uint8Array | null): string | null {
  return v === null ? null : Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('hex');
}

// ---------------------------------------------------------------------------
// Workers

interface WorkerRecord {
  worker_id: string;
  labels: Record<string, string>;
  interval_ms: number;
  registered_at: number;
  state: number;
  state_since: number;
  last_seen: number | null;
  last_seq: string;
  session_id: string;
  status: number;
  status_detail: string;
  stats_hex: string | null;
  policy: Uint8Array | null;
  depends_on: string[];
  depends_on_selector: string;
}

const WORKER_COLUMNS = `worker_id, labels, interval_ms, ${epochMs('registered_at')}, state, ${epochMs('state_since')}, ${epochMs('last_seen')},
  last_seq::text AS last_seq, session_id, status, status_detail, encode(stats, 'hex') AS stats_hex, policy, depends_on, depends_on_selector`;

/**
 * The workers of a page of rows. Their stats come as hex text and are
 * decoded into one buffer for the page, each worker's a view of it: a page
 * is one allocation, freed whole once its workers are taken in. (As bytea,
 * each worker's stats were a Buffer of their own, and a cold start's 100,000
 * of them left the process heap fragmented for good.)
 */
function toWorkers(rows: WorkerRecord[]): StoredWorker[] {
  let total = 0;
  for (const r of rows) if (r.stats_hex !== null) total += r.stats_hex.length >>> 1;
  const buf = Buffer.allocUnsafeSlow(total);
  let at = 0;
  return rows.map((r) => {
    let stats: Uint8Array | null = null;
    if (r.stats_hex !== null) {
      const n = buf.write(r.stats_hex, at, 'hex');
      stats = new Uint8Array(buf.buffer, buf.byteOffset + at, n);
      at += n;
    }
    return toWorker(r, stats);
  });
}

function toWorker(r: WorkerRecord, stats: Uint8Array | null): StoredWorker {
  return {
    workerId: r.worker_id,
    labels: r.labels,
    intervalMs: r.interval_ms,
    registeredAt: r.registered_at,
    state: r.state,
    stateSince: r.state_since,
    lastSeen: r.last_seen,
    lastSeq: BigInt(r.last_seq),
    sessionId: r.session_id,
    status: r.status,
    statusDetail: r.status_detail,
    stats,
    policy: bytes(r.policy),
    dependsOn: r.depends_on,
    dependsOnSelector: r.depends_on_selector,
  };
}

/** Rows a page of the full load reads: the driver holds a page's rows (their stats in hex text) at once, not the fleet's. */
export const LOAD_PAGE = 5000;

async function loadWorkers(db: Db, ids?: readonly string[]): Promise<StoredWorker[]> {
  if (ids) {
    const { rows } = await db.query<WorkerRecord>(`SELECT ${WORKER_COLUMNS} FROM workers WHERE worker_id = ANY($1::text[]) ORDER BY worker_id`, [ids]);
    return toWorkers(rows);
  }
  const out: StoredWorker[] = [];
  await forEachWorkerPage(db, (page) => {
    for (const w of page) out.push(w);
  });
  return out;
}

/** Pages in worker_id order, in one snapshot: the same rows one query would read. */
function forEachWorkerPage(db: Db, onPage: (page: StoredWorker[]) => void): Promise<void> {
  return db.transaction(async (tx) => {
    await tx.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY');
    let after: string | null = null;
    for (;;) {
      const page: { rows: WorkerRecord[] } =
        after === null
          ? await tx.query<WorkerRecord>(`SELECT ${WORKER_COLUMNS} FROM workers ORDER BY worker_id LIMIT ${LOAD_PAGE}`)
          : await tx.query<WorkerRecord>(`SELECT ${WORKER_COLUMNS} FROM workers WHERE worker_id > $1 ORDER BY worker_id LIMIT ${LOAD_PAGE}`, [after]);
      onPage(toWorkers(page.rows));
      if (page.rows.length < LOAD_PAGE) return;
      after = page.rows[page.rows.length - 1].worker_id;
    }
  });
}

async function upsertWorker(tx: Db, w: StoredWorker): Promise<void> {
  await tx.query(
    `INSERT INTO workers (worker_id, labels, interval_ms, registered_at, state, state_since, last_seen,
       last_seq, session_id, status, status_detail, stats, policy, depends_on, depends_on_selector)
     VALUES ($1, $2::jsonb, $3, $4, $5, $6, $7, $8::numeric, $9, $10, $11, $12::bytea, $13::bytea, $14::text[], $15)
     ON CONFLICT (worker_id) DO UPDATE SET
       labels = EXCLUDED.labels, interval_ms = EXCLUDED.interval_ms, registered_at = EXCLUDED.registered_at,
       state = EXCLUDED.state, state_since = EXCLUDED.state_since, last_seen = EXCLUDED.last_seen,
       last_seq = EXCLUDED.last_seq, session_id = EXCLUDED.session_id, status = EXCLUDED.status,
       status_detail = EXCLUDED.status_detail, stats = EXCLUDED.stats, policy = EXCLUDED.policy,
       depends_on = EXCLUDED.depends_on, depends_on_selector = EXCLUDED.depends_on_selector`,
    [
      w.workerId,
      JSON.stringify(w.labels),
      w.intervalMs,
      iso(w.registeredAt),
      w.state,
      iso(w.stateSince),
      isoOrNull(w.lastSeen),
      w.lastSeq.toString(),
      w.sessionId,
      w.status,
      w.statusDetail,
      w.stats,
      w.policy,
      w.dependsOn,
      w.dependsOnSelector ?? '',
    ],
  );
}

type Transition = { snapshot: WorkerSnapshot & { state: StateCode; stateSince: number }; events: EventRow[] };

/** The snapshot columns of several workers as the arrays $1-$7 of TRANSITION_SQL and FLUSH_SQL. */
const SNAPSHOT_ARRAYS = `$1::text[], $2::timestamptz[], $3::numeric[], $4::text[], $5::smallint[], $6::text[], $7::text[]`;
const SNAPSHOT_NAMES = 'worker_id, last_seen, last_seq, session_id, status, status_detail, stats_hex';
const SET_SNAPSHOT = `last_seen = s.last_seen, last_seq = s.last_seq, session_id = s.session_id,
  status = s.status, status_detail = s.status_detail, stats = decode(s.stats_hex, 'hex')`;

function snapshotArrays(snaps: readonly WorkerSnapshot[]): unknown[] {
  return [
    snaps.map((s) => s.workerId),
    snaps.map((s) => iso(s.lastSeen)),
    snaps.map((s) => s.lastSeq.toString()),
    snaps.map((s) => s.sessionId),
    snaps.map((s) => s.status),
    snaps.map((s) => s.statusDetail),
    snaps.map((s) => hexOrNull(s.stats)),
  ];
}

/** One UPDATE ... FROM must not match a worker twice: the last snapshot given for a worker is its newest. */
function latestPerWorker<S extends WorkerSnapshot>(snaps: readonly S[]): S[] {
  return [...new Map(snaps.map((s) => [s.workerId, s])).values()];
}

const TRANSITION_SQL = `
UPDATE workers AS w SET state = s.state, state_since = s.state_since, ${SET_SNAPSHOT}
FROM unnest(${SNAPSHOT_ARRAYS}, $8::smallint[], $9::timestamptz[]) AS s(${SNAPSHOT_NAMES}, state, state_since)
WHERE w.worker_id = s.worker_id`;

/**
 * Locks the rows of these workers in worker_id order. Every statement that
 * updates several workers takes their locks this way first (UPDATE ... FROM
 * promises no order), so two of them never wait on each other in a cycle.
 */
async function lockWorkers(tx: Db, ids: readonly string[]): Promise<void> {
  if (ids.length > 1) await tx.query('SELECT 1 FROM workers WHERE worker_id = ANY($1::text[]) ORDER BY worker_id FOR UPDATE', [ids]);
}

/**
 * State transitions of many workers, each with its events, in one
 * transaction. A worker moved twice in one batch keeps its last snapshot
 * (one UPDATE ... FROM must not match a row twice); all events are kept,
 * in order.
 */
async function transitionWorkers(db: Db, batch: Transition[]): Promise<EventRow[][]> {
  const latest = latestPerWorker(batch.map((t) => t.snapshot));
  return db.transaction(async (tx) => {
    await lockWorkers(tx, latest.map((s) => s.workerId));
    await tx.query(TRANSITION_SQL, [...snapshotArrays(latest), latest.map((s) => s.state), latest.map((s) => iso(s.stateSince))]);
    const rows = await insertEvents(tx, batch.flatMap((t) => t.events));
    let at = 0;
    return batch.map((t) => rows.slice(at, (at += t.events.length)));
  });
}

const FLUSH_SQL = `
UPDATE workers AS w SET ${SET_SNAPSHOT}
FROM unnest(${SNAPSHOT_ARRAYS}) AS s(${SNAPSHOT_NAMES})
WHERE w.worker_id = s.worker_id`;

async function flushSnapshots(db: Db, snapshots: WorkerSnapshot[]): Promise<void> {
  const latest = latestPerWorker(snapshots);
  // Each chunk commits on its own: a snapshot is the latest of its worker
  // whenever it lands, and a transaction over the whole flush would hold
  // every row lock until the last chunk, stalling the state transitions
  // (stale marks) that need one of those rows meanwhile. A failed chunk
  // leaves the flush failed; the next one writes those workers again.
  for (let i = 0; i < latest.length; i += FLUSH_CHUNK_ROWS) {
    await flushChunk(db, latest.slice(i, i + FLUSH_CHUNK_ROWS));
  }
}

async function flushChunk(db: Db, chunk: WorkerSnapshot[]): Promise<void> {
  await db.transaction(async (tx) => {
    await lockWorkers(tx, chunk.map((s) => s.workerId));
    await tx.query(FLUSH_SQL, snapshotArrays(chunk));
  });
}

// ---------------------------------------------------------------------------
// Tokens

interface TokenRecord {
  token_id: string;
  hash: string;
  scope: number;
  worker_id: string | null;
  description: string;
  created_at: number;
  revoked_at: number | null;
}

const TOKEN_COLUMNS = 'token_id, hash, scope, worker_id, description, created_at, revoked_at';
/** TOKEN_COLUMNS as read back (the times as epoch ms). */
const TOKEN_READ = `token_id, hash, scope, worker_id, description, ${epochMs('created_at')}, ${epochMs('revoked_at')}`;

function toToken(r: TokenRecord): TokenRow {
  return {
    tokenId: r.token_id,
    hash: r.hash,
    scope: r.scope,
    workerId: r.worker_id,
    description: r.description,
    createdAt: r.created_at,
    revokedAt: r.revoked_at,
  };
}

async function insertToken(db: Db, t: TokenRow): Promise<void> {
  await db.query(
    `INSERT INTO tokens (${TOKEN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
    [t.tokenId, t.hash, t.scope, t.workerId, t.description, iso(t.createdAt), isoOrNull(t.revokedAt)],
  );
}

async function revokeWorkerTokens(tx: Db, workerId: string, at: number): Promise<void> {
  await tx.query(
    'UPDATE tokens SET revoked_at = $3 WHERE worker_id = $1 AND scope = $2 AND revoked_at IS NULL',
    [workerId, WORKER_SCOPE, iso(at)],
  );
}

async function revokeToken(db: Db, tokenId: string, at: number): Promise<TokenRow | null> {
  // A second revoke keeps the first revocation time.
  const { rows } = await db.query<TokenRecord>(
    `UPDATE tokens SET revoked_at = COALESCE(revoked_at, $2) WHERE token_id = $1 RETURNING ${TOKEN_READ}`,
    [tokenId, iso(at)],
  );
  return rows.length ? toToken(rows[0]) : null;
}

async function loadWorkerTokens(db: Db, workerIds: readonly string[]): Promise<TokenRow[]> {
  const { rows } = await db.query<TokenRecord>(
    `SELECT ${TOKEN_READ} FROM tokens WHERE revoked_at IS NULL AND worker_id = ANY($1::text[]) ORDER BY tokens.created_at, token_id`,
    [workerIds],
  );
  return rows.map(toToken);
}

async function listTokens(db: Db, includeRevoked: boolean): Promise<TokenRow[]> {
  const where = includeRevoked ? '' : 'WHERE revoked_at IS NULL';
  const { rows } = await db.query<TokenRecord>(
    `SELECT ${TOKEN_READ} FROM tokens ${where} ORDER BY tokens.created_at, token_id`,
  );
  return rows.map(toToken);
}

// ---------------------------------------------------------------------------
// Events

interface EventRecord {
  event_id: string | number | bigint;
  worker_id: string;
  at: Date;
  kind: string;
  from_state: number;
  to_state: number;
  actor: string;
  reason: string;
}

const EVENT_COLUMNS = 'event_id, worker_id, at, kind, from_state, to_state, actor, reason';

function toEvent(r: EventRecord): EventRow {
  return {
    eventId: BigInt(r.event_id),
    workerId: r.worker_id,
    at: ms(r.at),
    kind: r.kind,
    fromState: r.from_state,
    toState: r.to_state,
    actor: r.actor,
    reason: r.reason,
  };
}

/** One INSERT for all events; returns them with their ids, in the order given. */
async function insertEvents(db: Db, events: EventRow[]): Promise<EventRow[]> {
  if (events.length === 0) return [];
  const { rows } = await db.query<{ event_id: string | number | bigint }>(
    `INSERT INTO events (worker_id, at, kind, from_state, to_state, actor, reason)
     SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::smallint[], $5::smallint[],
       $6::text[], $7::text[])
     RETURNING event_id`,
    eventColumns(events),
  );
  return withEventIds(events, rows);
}

/** The events as the seven column arrays the inserts unnest. */
function eventColumns(events: EventRow[]): unknown[] {
  return [
    events.map((e) => e.workerId),
    events.map((e) => iso(e.at)),
    events.map((e) => e.kind),
    events.map((e) => e.fromState),
    events.map((e) => e.toState),
    events.map((e) => e.actor),
    events.map((e) => e.reason),
  ];
}

function withEventIds(events: EventRow[], rows: Array<{ event_id: string | number | bigint }>): EventRow[] {
  // The ids come from one sequence in insertion order; RETURNING's row
  // order is not promised, so sort rather than trust it.
  const ids = rows.map((r) => BigInt(r.event_id)).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return events.map((e, i) => ({ ...e, eventId: ids[i] }));
}

async function listEvents(db: Db, q: EventQuery): Promise<EventRow[]> {
  const where: string[] = [];
  const params: unknown[] = [];
  const add = (cond: (p: string) => string, value: unknown) => {
    params.push(value);
    where.push(cond(`$${params.length}`));
  };
  if (q.workerId !== undefined) add((p) => `worker_id = ${p}`, q.workerId);
  if (q.beforeId !== undefined) add((p) => `event_id < ${p}::bigint`, q.beforeId.toString());
  if (q.since !== undefined) add((p) => `at >= ${p}::timestamptz`, iso(q.since));
  params.push(q.limit);
  const { rows } = await db.query<EventRecord>(
    `SELECT ${EVENT_COLUMNS} FROM events ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
     ORDER BY event_id DESC LIMIT $${params.length}`,
    params,
  );
  return rows.map(toEvent);
}

async function pruneEvents(db: Db, olderThan: number): Promise<number> {
  const { rows } = await db.query<{ n: number }>(
    'WITH gone AS (DELETE FROM events WHERE at < $1 RETURNING 1) SELECT count(*)::int AS n FROM gone',
    [iso(olderThan)],
  );
  return rows[0].n;
}

// ---------------------------------------------------------------------------
// Default policies and silences

interface DefaultPolicyRecord {
  name: string;
  label_selector: string;
  priority: number;
  policy: Uint8Array;
}

function toDefaultPolicy(r: DefaultPolicyRecord): DefaultPolicyRow {
  return { name: r.name, labelSelector: r.label_selector, priority: r.priority, policy: bytes(r.policy)! };
}

async function putDefaultPolicy(db: Db, p: DefaultPolicyRow): Promise<void> {
  await db.query(
    `INSERT INTO default_policies (name, label_selector, priority, policy) VALUES ($1, $2, $3, $4::bytea)
     ON CONFLICT (name) DO UPDATE SET
       label_selector = EXCLUDED.label_selector, priority = EXCLUDED.priority, policy = EXCLUDED.policy`,
    [p.name, p.labelSelector, p.priority, p.policy],
  );
}

async function listDefaultPolicies(db: Db): Promise<DefaultPolicyRow[]> {
  const { rows } = await db.query<DefaultPolicyRecord>(
    'SELECT name, label_selector, priority, policy FROM default_policies ORDER BY name',
  );
  return rows.map(toDefaultPolicy);
}

interface SilenceRecord {
  silence_id: string;
  worker_id: string;
  label_selector: string;
  expires_at: Date;
  comment: string;
  created_by: string;
  created_at: Date;
}

const SILENCE_COLUMNS = 'silence_id, worker_id, label_selector, expires_at, comment, created_by, created_at';

function toSilence(r: SilenceRecord): SilenceRow {
  return {
    silenceId: r.silence_id,
    workerId: r.worker_id,
    labelSelector: r.label_selector,
    expiresAt: ms(r.expires_at),
    comment: r.comment,
    createdBy: r.created_by,
    createdAt: ms(r.created_at),
  };
}

async function putSilence(db: Db, s: SilenceRow): Promise<void> {
  await db.query(
    `INSERT INTO silences (${SILENCE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)
     ON CONFLICT (silence_id) DO UPDATE SET
       worker_id = EXCLUDED.worker_id, label_selector = EXCLUDED.label_selector,
       expires_at = EXCLUDED.expires_at, comment = EXCLUDED.comment,
       created_by = EXCLUDED.created_by, created_at = EXCLUDED.created_at`,
    [s.silenceId, s.workerId, s.labelSelector, iso(s.expiresAt), s.comment, s.createdBy, iso(s.createdAt)],
  );
}

async function listSilences(db: Db): Promise<SilenceRow[]> {
  const { rows } = await db.query<SilenceRecord>(
    `SELECT ${SILENCE_COLUMNS} FROM silences ORDER BY created_at, silence_id`,
  );
  return rows.map(toSilence);
}

async function deleted(db: Db, sql: string, key: string): Promise<boolean> {
  const { rows } = await db.query(sql, [key]);
  return rows.length > 0;
}
