import { create, toBinary } from '@bufbuild/protobuf';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { WorkerState, WorkerStatsSchema } from '../../gen/hive/v1/registry_pb.js';
import { openStore } from '../../hive/store/open.js';
import { fleetMembers, sha256Hex, type DerivedFleet } from './fleet.js';
import { realisticHeartbeat } from './wire.js';

// PostgreSQL for the benchmark: every hive gets a schema of its own
// (bench_<random>), dropped at the end; large fleets are inserted directly,
// in the shape the hive's own migrations define, instead of through
// 100,000 RegisterWorker calls.

export const DEFAULT_DATABASE_URL = 'postgres://postgres@127.0.0.1:5432/test';

const created = new Set<string>();

export function newSchemaName(): string {
  return `bench_${randomBytes(5).toString('hex')}`;
}

/** Creates the schema and applies the hive's migrations to it (through the hive's own store code). */
export async function migrateSchema(url: string, schema: string): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'hive-bench-store-'));
  created.add(schema);
  try {
    const store = await openStore({ databaseUrl: url, dataDir: dir, schema });
    await store.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export function trackSchema(schema: string): void {
  created.add(schema);
}

export async function dropSchemas(url: string): Promise<string[]> {
  if (created.size === 0) return [];
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  const dropped: string[] = [];
  try {
    for (const s of created) {
      await client.query(`DROP SCHEMA IF EXISTS ${s} CASCADE`);
      dropped.push(s);
      created.delete(s);
    }
  } finally {
    await client.end();
  }
  return dropped;
}

export async function databaseReachable(url: string): Promise<string | null> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
    return null;
  } catch (err) {
    return (err as Error).message;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * Inserts a fleet as a hive that ran before would have left it: registered,
 * HEALTHY, last seen now, with last reported stats (8 GPUs) and one worker
 * token each. Returns the time it took.
 */
export async function insertFleet(url: string, schema: string, fleet: DerivedFleet, intervalMs: number): Promise<number> {
  const t0 = Date.now();
  const hb = realisticHeartbeat('x', 'x');
  const stats = Buffer.from(
    toBinary(
      WorkerStatsSchema,
      create(WorkerStatsSchema, { gpus: hb.gpus, memoryUsedBytes: hb.memoryUsedBytes, memoryTotalBytes: hb.memoryTotalBytes, disks: hb.disks, load1: hb.load1, collectors: hb.collectors }),
    ),
  );
  const members = fleetMembers(fleet);
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const CHUNK = 20_000;
    for (let i = 0; i < members.length; i += CHUNK) {
      const part = members.slice(i, i + CHUNK);
      const ids = part.map((m) => m.workerId);
      await client.query('BEGIN');
      await client.query(
        `INSERT INTO ${schema}.workers (worker_id, labels, interval_ms, registered_at, state, state_since, last_seen,
           last_seq, session_id, status, status_detail, stats, policy, depends_on)
         SELECT w, '{"pool":"bench"}'::jsonb, $2, now(), $3, now(), now(), 0, '', 1, '', $4::bytea, NULL, '{}'
         FROM unnest($1::text[]) AS w`,
        [ids, intervalMs, WorkerState.HEALTHY, stats],
      );
      await client.query(
        `INSERT INTO ${schema}.tokens (token_id, hash, scope, worker_id, description, created_at)
         SELECT 'tok_bench_' || w, h, 3, w, 'bench', now() FROM unnest($1::text[], $2::text[]) AS t(w, h)`,
        [ids, part.map((m) => sha256Hex(m.token))],
      );
      await client.query('COMMIT');
    }
  } finally {
    await client.end();
  }
  return Date.now() - t0;
}
