import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadHiveConfig } from '../../hive/config.js';
import { pingRedis, pongProblem, respLines } from '../../hive/readiness.js';
import { startHive, type HiveHandle } from '../../hive/server.js';
import { createLogger } from '../../lib/logger.js';
import { dropSchema, PG_URL, uniqueSchema } from '../support/pg.js';
import { tempDir } from '../support/procs.js';

// The hive's /healthz checks its dependencies for real: the test
// PostgreSQL, the real Redis on 127.0.0.1:6379, and small TCP servers that
// answer the way a Redis does when it wants a password or is still loading.

const REDIS = process.env.HIVE_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

/** A TCP server that answers every PING with the given raw reply (null: says nothing). */
async function fakeRedis(reply: string | null): Promise<{ url: string; close: () => Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('data', (d) => {
      if (reply !== null && d.toString().includes('PING')) s.write(reply);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `redis://127.0.0.1:${port}`,
    close: () => new Promise<void>((r) => {
      for (const s of sockets) s.destroy();
      server.close(() => r());
    }),
  };
}

describe('readiness rules', () => {
  it('only an exact +PONG passes', () => {
    expect(pongProblem('+PONG')).toBeNull();
    expect(pongProblem('-NOAUTH Authentication required.')).toBe('answered NOAUTH Authentication required.');
    expect(pongProblem('-LOADING Redis is loading the dataset in memory')).toBe('answered LOADING Redis is loading the dataset in memory');
    expect(pongProblem('+PONGX')).toBe('answered "+PONGX" instead of PONG');
    expect(respLines('+OK\r\n+PONG\r\n-ER')).toEqual(['+OK', '+PONG']);
  });
});

describe('pingRedis', () => {
  const fakes: Array<{ close: () => Promise<void> }> = [];
  afterAll(async () => {
    await Promise.all(fakes.map((f) => f.close()));
  });
  const fake = async (reply: string | null) => {
    const f = await fakeRedis(reply);
    fakes.push(f);
    return f.url;
  };

  it('passes on the real Redis', async () => {
    await expect(pingRedis(REDIS)).resolves.toBeUndefined();
  });

  it('fails on NOAUTH, LOADING, silence and a refused connection, saying why', async () => {
    await expect(pingRedis(await fake('-NOAUTH Authentication required.\r\n'))).rejects.toThrow('answered NOAUTH Authentication required.');
    await expect(pingRedis(await fake('-LOADING Redis is loading the dataset in memory\r\n'))).rejects.toThrow(/LOADING/);
    await expect(pingRedis(await fake(null), 300)).rejects.toThrow('no answer within 300 ms');
    const closed = await fake(null);
    await fakes.pop()!.close();
    await expect(pingRedis(closed)).rejects.toThrow('ECONNREFUSED');
  });

  it('authenticates first when the URL has a password, and a refused AUTH fails', async () => {
    // The real Redis has no password: AUTH is refused, which must not pass as healthy.
    await expect(pingRedis(REDIS.replace('redis://', 'redis://:wrong-password@'))).rejects.toThrow(/^AUTH answered/);
  });
});

describe('/healthz', () => {
  const schema = uniqueSchema('hive_ready');
  let dir: Awaited<ReturnType<typeof tempDir>>;
  const hives: HiveHandle[] = [];
  let noauth: Awaited<ReturnType<typeof fakeRedis>>;

  beforeAll(async () => {
    dir = await tempDir();
    noauth = await fakeRedis('-NOAUTH Authentication required.\r\n');
  });
  afterAll(async () => {
    await Promise.all(hives.map((h) => h.stop()));
    await noauth?.close();
    await dropSchema(schema);
    await dir?.remove();
  });

  async function hive(redis?: string, db = PG_URL): Promise<HiveHandle> {
    const args = ['--grpc-addr', '127.0.0.1:0', '--http-addr', '127.0.0.1:0', '--data-dir', dir.path, '--database-url', db, '--database-schema', schema, '--admin-token', 'admin-token-for-readiness', '--log-level', 'silent'];
    if (redis) args.push('--redis-url', redis);
    const h = await startHive(loadHiveConfig(args, {}), { log: createLogger('test', 'silent') });
    hives.push(h);
    return h;
  }
  const healthz = async (h: HiveHandle) => {
    const res = await fetch(`http://127.0.0.1:${h.httpPort}/healthz`);
    return { status: res.status, body: (await res.json()) as { status: string; problems: string[] } };
  };

  it('200 with PostgreSQL and a real Redis answering; degraded, naming Redis, when it answers NOAUTH', async () => {
    expect(await healthz(await hive(REDIS))).toEqual({ status: 200, body: { status: 'ok', problems: [] } });
    // The replicas keep serving from memory while Redis is unusable: degraded, not down.
    const h = await healthz(await hive(noauth.url));
    expect(h).toMatchObject({ status: 200, body: { status: 'degraded', problems: [] } });
    expect((h.body as { degraded?: string[] }).degraded).toContain('redis: answered NOAUTH Authentication required.');
    // Without a Redis URL, Redis is not checked at all.
    expect((await healthz(await hive())).status).toBe(200);
  });

  it('503 naming PostgreSQL when the database stops answering', async () => {
    // The hive reaches PostgreSQL through a TCP proxy the test can cut.
    const pgPort = Number(new URL(PG_URL).port || 5432);
    const conns = new Set<net.Socket>();
    const proxy = net.createServer((client) => {
      const upstream = net.connect(pgPort, new URL(PG_URL).hostname);
      conns.add(client).add(upstream);
      client.pipe(upstream).pipe(client);
      const drop = () => (client.destroy(), upstream.destroy());
      client.on('error', drop).on('close', drop);
      upstream.on('error', drop).on('close', drop);
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
    const url = new URL(PG_URL);
    url.host = `127.0.0.1:${(proxy.address() as net.AddressInfo).port}`;
    const h = await hive(undefined, url.toString());
    expect((await healthz(h)).status).toBe(200);
    await new Promise<void>((r) => {
      proxy.close(() => r());
      for (const c of conns) c.destroy();
    });
    const down = await healthz(h);
    expect(down.status).toBe(503);
    expect(down.body.problems).toHaveLength(1);
    expect(down.body.problems[0]).toMatch(/^postgresql: /);
  });
});
