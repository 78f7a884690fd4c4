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

/**
 * A redis-server of the test's own on a spare port (no persistence), to be
 * stopped and started again on the same port: outages without touching the
 * shared Redis.
 */
export async function ownRedisServer(): Promise<{ port: number; url: string; start(): Promise<void>; stop(): Promise<void>; pause(): void; resume(): void }> {
  const { spawn } = await import('node:child_process');
  const { freePort } = await import('./procs.js');
  const port = await freePort();
  let child: import('node:child_process').ChildProcess | null = null;
  const url = `redis://127.0.0.1:${port}`;
  async function start(): Promise<void> {
    child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--loglevel', 'warning'], { stdio: 'ignore' });
    const deadline = Date.now() + 10_000;
    for (;;) {
      const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
      r.on('error', () => undefined); // refused until it listens
      try {
        await r.connect();
        await r.ping();
        return;
      } catch {
        if (Date.now() > deadline) throw new Error(`redis-server on ${port} did not start`);
        await new Promise((res) => setTimeout(res, 50));
      } finally {
        r.disconnect();
      }
    }
  }
  async function stop(): Promise<void> {
    const c = child;
    child = null;
    if (!c || c.exitCode !== null) return;
    const exited = new Promise((res) => c.once('exit', res));
    c.kill('SIGKILL');
    await exited;
  }
  await start();
  // SIGSTOP: the connections stay open and nothing answers (a stalled Redis).
  const pause = () => void child?.kill('SIGSTOP');
  const resume = () => void child?.kill('SIGCONT');
  return { port, url, start, stop, pause, resume };
}
