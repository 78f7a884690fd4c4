// Picks the engine: PostgreSQL when a database URL is configured (several
// hives may share it), otherwise PGlite in the hive's data directory.

import { createPgDb, openPgliteDb, type Db } from './db.js';
import { createSqlStore } from './sql-store.js';
import type { Store } from './store.js';

export interface OpenStoreOptions {
  /** postgres://... (DATABASE_URL); empty or absent means PGlite in dataDir. */
  databaseUrl?: string;
  dataDir: string;
  /** PostgreSQL only: the schema to keep the tables in (created if missing). */
  schema?: string;
}

/** Opens the database, applies pending migrations and returns the store; close() closes the database. */
export async function openStore(opts: OpenStoreOptions): Promise<Store> {
  const db: Db = opts.databaseUrl
    ? await createPgDb({ url: opts.databaseUrl, schema: opts.schema })
    : await openPgliteDb({ dataDir: opts.dataDir });
  const store = createSqlStore(db);
  try {
    await store.migrate();
  } catch (err) {
    await db.close();
    throw err;
  }
  return store;
}
