// The SQL executor under the store: one small interface, two engines. Real
// PostgreSQL through a pg.Pool, or PGlite (Postgres compiled to WASM) in a
// data directory for a single hive without a database server.

import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, openSync, readFileSync, unlinkSync, writeSync, closeSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { PGlite, type Transaction } from '@electric-sql/pglite';
import { StoreUnavailableError } from '../errors.js';
import { isConnectionError, isStorageError } from './unavailable.js';

export interface Db {
  /** One statement, $1.. parameters. */
  query<T = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<{ rows: T[] }>;
  /** Several statements without parameters (migration scripts). */
  exec(sql: string): Promise<void>;
  /**
   * Runs fn on one connection between BEGIN and COMMIT; rolls back and
   * rethrows when fn throws. Inside fn, tx.transaction joins the enclosing
   * transaction (no savepoints).
   */
  transaction<T>(fn: (tx: Db) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

// ---------------------------------------------------------------------------
// PostgreSQL

export interface PgDbOptions {
  url: string;
  /** Schema to create (if missing) and put first on every connection's search_path. */
  schema?: string;
  max?: number;
  /** Errors of idle pooled connections; the pool replaces them on the next checkout. */
  onError?: (err: Error) => void;
  connectTimeoutMs?: number;
}

/** Driver errors that mean "nothing was written, the database is unavailable" become StoreUnavailableError. */
function asUnavailable(err: unknown): unknown {
  if (isConnectionError(err)) return new StoreUnavailableError(`database unreachable: ${(err as Error).message}`, { cause: err });
  if (isStorageError(err)) return new StoreUnavailableError(`database cannot write: ${(err as Error).message}`, { cause: err });
  return err;
}

async function reachable<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw asUnavailable(err);
  }
}

const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

export async function createPgDb(opts: PgDbOptions): Promise<Db> {
  if (opts.schema !== undefined && !SCHEMA_NAME.test(opts.schema)) {
    throw new Error(`invalid schema name ${JSON.stringify(opts.schema)}: use [a-z_][a-z0-9_]*`);
  }
  const pool = new pg.Pool({
    connectionString: opts.url,
    max: opts.max ?? 10,
    // A database that does not answer is unavailable, not a request that hangs.
    connectionTimeoutMillis: opts.connectTimeoutMs ?? 5000,
    // search_path is a startup option, so every pooled connection (and
    // every reconnect) lands in the schema without an extra round trip.
    ...(opts.schema ? { options: `-c search_path=${opts.schema}` } : {}),
  });
  // Without a listener an idle connection's error would crash the process.
  pool.on('error', (err) => opts.onError?.(err));
  try {
    if (opts.schema) await createSchema(pool, opts.schema);
  } catch (err) {
    await pool.end();
    throw err;
  }
  let closing: Promise<void> | undefined;
  return {
    query: (sql, params) => reachable(() => poolQuery(pool, sql, params)),
    exec: (sql) =>
      reachable(async () => {
        await pool.query(sql);
      }),
    transaction: (fn) => reachable(() => pgTransaction(pool, fn)),
    // pool.end() throws when called twice; close() is idempotent.
    close: () => (closing ??= pool.end()),
  };
}

async function createSchema(pool: pg.Pool, schema: string): Promise<void> {
  try {
    await pool.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
  } catch (err) {
    // Two hives starting at once may both pass the IF NOT EXISTS check; the
    // loser sees a unique violation on the catalog, which means "exists".
    const code = (err as { code?: string }).code;
    if (code !== '23505' && code !== '42P06') throw err;
  }
}

async function poolQuery<T>(q: pg.Pool | pg.PoolClient, sql: string, params?: unknown[]): Promise<{ rows: T[] }> {
  try {
    const res = await q.query(sql, params as unknown[] | undefined);
    return { rows: res.rows as T[] };
  } catch (err) {
    throw asUnavailable(err);
  }
}


async function pgTransaction<T>(pool: pg.Pool, fn: (tx: Db) => Promise<T>): Promise<T> {
  let client: pg.PoolClient;
  try {
    client = await pool.connect();
  } catch (err) {
    throw asUnavailable(err);
  }
  let broken: Error | undefined;
  // A connection lost between two statements is reported by the next one;
  // its 'error' event must not crash the process meanwhile.
  const lost = (err: Error) => {
    broken = err;
  };
  client.on('error', lost);
  try {
    await client.query('BEGIN');
    const result = await fn(pgClientDb(client));
    await client.query('COMMIT');
    return result;
  } catch (err) {
    try {
      await client.query('ROLLBACK');
    } catch (rollbackErr) {
      // The connection is unusable; destroy it instead of pooling it.
      broken = rollbackErr as Error;
    }
    throw asUnavailable(err);
  } finally {
    client.off('error', lost);
    client.release(broken);
  }
}

function pgClientDb(client: pg.PoolClient): Db {
  const tx: Db = {
    query: (sql, params) => poolQuery(client, sql, params),
    exec: async (sql) => {
      await client.query(sql);
    },
    transaction: (fn) => fn(tx),
    close: () => Promise.reject(new Error('close() inside a transaction')),
  };
  return tx;
}

// ---------------------------------------------------------------------------
// PGlite

export interface PgliteDbOptions {
  dataDir: string;
}

const LOCK_FILE = 'hive.lock';

// PGlite's defaults plus:
// - fsync on, WAL opened O_DSYNC: PGlite's defaults turn fsync off and the
//   WASM runtime's fsync() is a no-op, but an O_DSYNC open reaches the real
//   file (Node's O_SYNC), so a commit's WAL is on disk when it is
//   acknowledged. Data-file fsyncs at checkpoints stay no-ops: a process
//   crash loses nothing, an OS crash just after a checkpoint might.
// - small buffers: every page PGlite touches stays resident in its WASM
//   heap; the 128MB default shared_buffers alone cost ~110MB of RSS. The
//   registry's working set is a few MB and misses are served from the OS
//   page cache.
function pgliteStartParams(): string[] {
  return [
    ...PGlite.defaultStartParams,
    '-c', 'fsync=on',
    '-c', 'wal_sync_method=open_datasync',
    '-c', 'shared_buffers=16MB',
    '-c', 'temp_buffers=1MB',
    '-c', 'work_mem=2MB',
    '-c', 'maintenance_work_mem=16MB',
  ];
}

export async function openPgliteDb(opts: PgliteDbOptions): Promise<Db> {
  mkdirSync(opts.dataDir, { recursive: true, mode: 0o700 });
  const lock = acquireLock(opts.dataDir);
  let db: PGlite;
  try {
    const startParams = pgliteStartParams();
    if (!existsSync(join(opts.dataDir, 'PG_VERSION'))) await initDataDir(opts.dataDir, startParams);
    db = await PGlite.create({ dataDir: opts.dataDir, startParams });
  } catch (err) {
    lock.release();
    throw err;
  }
  let closing: Promise<void> | undefined;
  return {
    query: (sql, params) => reachable(async () => ({ rows: (await db.query(sql, params)).rows as never[] })),
    exec: (sql) =>
      reachable(async () => {
        await db.exec(sql);
      }),
    transaction: (fn) => reachable(() => db.transaction((tx) => fn(pgliteTxDb(tx)))),
    close: () => (closing ??= closePglite(db, lock)),
  };
}

async function closePglite(db: PGlite, lock: Lock): Promise<void> {
  try {
    await db.close();
  } finally {
    lock.release();
  }
}

function pgliteTxDb(t: Transaction): Db {
  const tx: Db = {
    query: async (sql, params) => ({ rows: (await t.query(sql, params)).rows as never[] }),
    exec: async (sql) => {
      await t.exec(sql);
    },
    transaction: (fn) => fn(tx),
    close: () => Promise.reject(new Error('close() inside a transaction')),
  };
  return tx;
}

// initdb runs a second Postgres and a tar round trip inside the process;
// the WASM heaps it leaves behind are not returned to the OS (first open
// peaked at ~750MB RSS and stayed ~650MB, against ~200MB for a reopen).
// Running it in a short-lived child keeps that peak out of the hive.
const INIT_SCRIPT = `
const { PGlite } = require(process.argv[1]);
PGlite.create({ dataDir: process.argv[2], startParams: JSON.parse(process.argv[3]) })
  .then((db) => db.close())
  .catch((err) => { console.error(err); process.exit(1); });
`;

async function initDataDir(dataDir: string, startParams: string[]): Promise<void> {
  const modulePath = createRequire(import.meta.url).resolve('@electric-sql/pglite');
  try {
    await promisify(execFile)(process.execPath, ['-e', INIT_SCRIPT, modulePath, dataDir, JSON.stringify(startParams)], {
      maxBuffer: 16 * 1024 * 1024,
    });
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr ?? '';
    throw new Error(`initializing PGlite data directory ${dataDir} failed: ${stderr.trim() || String(err)}`);
  }
}

interface Lock {
  release(): void;
}

/**
 * An exclusive-create lock file holding "<pid>\n<nonce>\n". A lock whose
 * pid is no longer alive is stale (a crashed hive) and is taken over. Two
 * processes taking over the same stale lock at the same instant could both
 * succeed; that window needs a crash and two simultaneous restarts.
 */
function acquireLock(dataDir: string): Lock {
  const path = join(dataDir, LOCK_FILE);
  const content = `${process.pid}\n${randomBytes(8).toString('hex')}\n`;
  for (let attempt = 0; attempt < 3; attempt++) {
    if (tryCreate(path, content)) return { release: () => releaseLock(path, content) };
    const holder = readLock(path);
    if (holder === undefined) continue; // released meanwhile
    if (holder.pid !== null && pidAlive(holder.pid)) {
      throw new Error(`PGlite data directory ${dataDir} is in use by process ${holder.pid} (lock file ${path})`);
    }
    removeIfUnchanged(path, holder.raw);
  }
  throw new Error(`could not lock PGlite data directory ${dataDir} (lock file ${path})`);
}

function tryCreate(path: string, content: string): boolean {
  let fd: number;
  try {
    fd = openSync(path, 'wx', 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  }
  try {
    writeSync(fd, content);
  } finally {
    closeSync(fd);
  }
  return true;
}

function readLock(path: string): { raw: string; pid: number | null } | undefined {
  let raw: string;
  try {
    raw = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  const pid = Number.parseInt(raw.split('\n')[0] ?? '', 10);
  return { raw, pid: Number.isInteger(pid) && pid > 0 ? pid : null };
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: alive, owned by someone else.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function removeIfUnchanged(path: string, raw: string): void {
  if (readLock(path)?.raw !== raw) return;
  try {
    unlinkSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

function releaseLock(path: string, content: string): void {
  removeIfUnchanged(path, content);
}
