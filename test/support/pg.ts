import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { openStore } from '../../hive/store/open.js';
import type { Store } from '../../hive/store/store.js';

// Each suite gets a PostgreSQL schema of its own on the shared test
// database, dropped afterwards.

export const PG_URL = process.env.HIVE_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

export function uniqueSchema(prefix = 'hive_t'): string {
  return `${prefix}_${randomBytes(5).toString('hex')}`;
}

export async function dropSchema(schema: string): Promise<void> {
  const client = new pg.Client({ connectionString: PG_URL });
  await client.connect();
  try {
    await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  } finally {
    await client.end();
  }
}

export async function openTestStore(schema: string): Promise<Store> {
  return openStore({ databaseUrl: PG_URL, dataDir: '/nonexistent', schema });
}

/** Whether the shared test PostgreSQL answers. */
export async function postgresAvailable(): Promise<boolean> {
  const client = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 2000 });
  try {
    await client.connect();
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}
