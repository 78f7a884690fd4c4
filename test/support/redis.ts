import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';

// Each suite gets a key prefix of its own on the shared test Redis, and
// deletes its keys afterwards.

export const REDIS_URL = process.env.HIVE_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

export function uniquePrefix(prefix = 'hive_t'): string {
  return `${prefix}_${randomBytes(5).toString('hex')}`;
}

/** Deletes every key of the prefix (hash-tagged or not). */
export async function dropPrefix(prefix: string, url = REDIS_URL): Promise<void> {
  const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await r.connect();
    for (const pattern of [`${prefix}*`, `{${prefix}:*`]) {
      let cursor = '0';
      do {
        const [next, keys] = await r.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
        cursor = next;
        if (keys.length) await r.del(...keys);
      } while (cursor !== '0');
    }
  } finally {
    r.disconnect();
  }
}
