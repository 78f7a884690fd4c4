import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Skip, type Scenario } from '../lib/context.js';
import { measureLoad } from '../lib/measure.js';
import { migrateSchema, newSchemaName } from '../lib/pg.js';
import { startHive } from '../lib/servers.js';
import { ROOT } from '../lib/spawn.js';

// Redis replica mode: two hives sharing PostgreSQL and Redis (REDIS_URL);
// the stream load goes to one of them while the other follows. The target
// compares this replica's throughput with the memory-mode hive-stream run.

export const REDIS_URL = process.env.BENCH_REDIS_URL || 'redis://127.0.0.1:6379/15';

export function redisModeMissing(): string | null {
  try {
    const config = readFileSync(join(ROOT, 'hive/config.ts'), 'utf8');
    if (!config.includes('REDIS_URL')) return 'redis mode not implemented (hive/config.ts has no REDIS_URL setting)';
  } catch {
    return 'redis mode not implemented (no hive/config.ts)';
  }
  return null;
}

export const redisScenario: Scenario = {
  name: 'redis',
  title: 'hive HeartbeatStream, Redis replica mode (per replica)',
  quick: false,
  async run(ctx) {
    const missing = redisModeMissing();
    if (missing) throw new Skip(`skipped: ${missing}`);
    const schema = newSchemaName();
    await migrateSchema(ctx.opts.databaseUrl, schema);
    const env = { REDIS_URL };
    const a = await startHive({ databaseUrl: ctx.opts.databaseUrl, schema, env });
    try {
      const b = await startHive({ databaseUrl: ctx.opts.databaseUrl, schema, env });
      try {
        const load = await measureLoad(
          ctx,
          a.child.pid,
          {
            target: 'hive',
            addr: a.addr,
            mode: 'stream',
            concurrency: ctx.opts.streams,
            conns: ctx.opts.conns,
            hive: { adminToken: a.adminToken, workers: { mode: 'register', prefix: 'bench-r-', count: ctx.opts.streams, intervalMs: 5000 }, watchers: ctx.opts.watchers },
          },
          { label: 'hive stream (redis replica)' },
        );
        return {
          status: 'ok',
          load,
          values: {},
          notes: [`Two replicas with REDIS_URL=${REDIS_URL}; load on one, the other follows. Server CPU is the loaded replica only.`],
        };
      } finally {
        await b.stop();
      }
    } finally {
      await a.stop();
    }
  },
};
