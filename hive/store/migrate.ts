// Versioned plain-SQL migrations: migrations/NNN_name.sql, applied in order,
// each in its own transaction together with its schema_migrations row.

import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Db } from './db.js';

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export const MIGRATIONS_DIR = fileURLToPath(new URL('./migrations/', import.meta.url));

// Every hive sharing a database serializes its migrations on this key (the
// lock is per database, so hives in different schemas also take turns,
// which costs nothing). A transaction-level lock is released by COMMIT or
// ROLLBACK, even when the connection dies.
const MIGRATION_LOCK_KEY = 0x68697665; // 'hive'

const CREATE_MIGRATIONS_TABLE = `
CREATE TABLE IF NOT EXISTS schema_migrations (
  version     integer PRIMARY KEY,
  name        text NOT NULL,
  applied_at  timestamptz NOT NULL DEFAULT now()
)`;

const FILE_NAME = /^(\d+)_([A-Za-z0-9_-]+)\.sql$/;

export async function readMigrations(dir: string = MIGRATIONS_DIR): Promise<Migration[]> {
  const files = (await readdir(dir)).filter((f) => f.endsWith('.sql'));
  const migrations: Migration[] = [];
  for (const file of files) {
    const m = FILE_NAME.exec(file);
    if (!m) throw new Error(`migration file name ${file} is not NNN_name.sql`);
    migrations.push({ version: Number(m[1]), name: m[2], sql: await readFile(join(dir, file), 'utf8') });
  }
  migrations.sort((a, b) => a.version - b.version);
  for (let i = 1; i < migrations.length; i++) {
    if (migrations[i].version === migrations[i - 1].version) {
      throw new Error(`two migrations with version ${migrations[i].version}`);
    }
  }
  return migrations;
}

/** Applies pending migrations; returns the versions this call applied. */
export async function migrate(db: Db, dir: string = MIGRATIONS_DIR): Promise<number[]> {
  const migrations = await readMigrations(dir);
  const applied = await db.transaction(async (tx) => {
    await lockAndEnsureTable(tx);
    return appliedVersions(tx);
  });
  const done: number[] = [];
  for (const m of migrations) {
    if (applied.has(m.version)) continue;
    if (await applyOne(db, m)) done.push(m.version);
  }
  return done;
}

async function lockAndEnsureTable(tx: Db): Promise<void> {
  await tx.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK_KEY]);
  await tx.exec(CREATE_MIGRATIONS_TABLE);
}

async function appliedVersions(tx: Db): Promise<Set<number>> {
  const { rows } = await tx.query<{ version: number }>('SELECT version FROM schema_migrations');
  return new Set(rows.map((r) => r.version));
}

async function applyOne(db: Db, m: Migration): Promise<boolean> {
  return db.transaction(async (tx) => {
    await lockAndEnsureTable(tx);
    // Another hive may have applied it while this one waited for the lock.
    if ((await appliedVersions(tx)).has(m.version)) return false;
    await tx.exec(m.sql);
    await tx.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [m.version, m.name]);
    return true;
  });
}
