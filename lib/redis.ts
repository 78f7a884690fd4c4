import { Redis } from 'ioredis';
import type { Logger } from './logger.js';

// One way to open Redis connections for every service. Commands fail fast
// while disconnected (no offline queue, one try) so a Redis outage turns
// into a degraded mode right away instead of requests piling up behind a
// reconnect; the connection itself keeps retrying in the background.

export interface RedisOptions {
  url: string;
  log: Logger;
  name: string;
  commandTimeoutMs?: number;
}

export function openRedis(o: RedisOptions): Redis {
  const r = new Redis(o.url, {
    connectionName: o.name,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    commandTimeout: o.commandTimeoutMs ?? 1000,
    connectTimeout: 2000,
    lazyConnect: true,
    autoResubscribe: true,
    retryStrategy: (attempt) => Math.min(100 * attempt, 1000),
  });
  let lastError = '';
  r.on('error', (err: Error) => {
    // Reconnect attempts repeat one error; say it once per change.
    if (err.message !== lastError) o.log.warn({ err: err.message, connection: o.name }, 'redis connection error');
    lastError = err.message;
  });
  r.on('ready', () => {
    lastError = '';
  });
  return r;
}

/** Connects, tolerating a Redis that is down now (the client keeps retrying). */
export async function connectRedis(r: Redis, log: Logger): Promise<void> {
  try {
    await r.connect();
  } catch (err) {
    log.warn({ err: (err as Error).message }, 'redis not reachable at start; running degraded until it is');
  }
}
