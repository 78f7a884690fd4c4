import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HealthStatus } from '../../gen/hive/v1/registry_pb.js';
import { ADMIN, startTestHive, type TestHive } from '../hivectl/fixture.js';

// The status page's Connect client (hive/status-page/connect.js: browser
// JavaScript, no build) run in Node, whose fetch and streams are the
// browser's: the envelope framing against hand-made responses, and the
// real WatchWorkers and ListEvents of a hive.

interface ConnectJs {
  RpcError: new (code: string, message: string) => Error & { code: string };
  EnvelopeParser: new () => { push(chunk: Uint8Array): Array<{ flags: number; data: Uint8Array }>; pending: number };
  encodeEnvelope(message: unknown, flags?: number): Uint8Array;
  callUnary(base: string, method: string, req: unknown, opts?: { token?: string; signal?: AbortSignal }): Promise<Record<string, unknown>>;
  callServerStream(base: string, method: string, req: unknown, opts?: { token?: string; signal?: AbortSignal }): AsyncGenerator<Record<string, unknown>>;
  backoffMs(attempt: number, base?: number, cap?: number, random?: () => number): number;
}

const modulePath = '../../hive/status-page/connect.js';
const load = () => import(/* @vite-ignore */ modulePath as string) as Promise<ConnectJs>;

const concat = (parts: Uint8Array[]) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
};

describe('connect.js framing', () => {
  it('parses envelopes whatever the chunking', async () => {
    const c = await load();
    const stream = concat([c.encodeEnvelope({ a: 1 }), c.encodeEnvelope({ b: 'two' }), c.encodeEnvelope({}, 0x02)]);
    for (const size of [1, 2, 3, 5, 7, 64, stream.length]) {
      const parser = new c.EnvelopeParser();
      const got: Array<{ flags: number; json: unknown }> = [];
      for (let i = 0; i < stream.length; i += size) {
        for (const e of parser.push(stream.slice(i, i + size))) got.push({ flags: e.flags, json: JSON.parse(new TextDecoder().decode(e.data)) });
      }
      expect(got, `chunks of ${size}`).toEqual([
        { flags: 0, json: { a: 1 } },
        { flags: 0, json: { b: 'two' } },
        { flags: 2, json: {} },
      ]);
      expect(parser.pending).toBe(0);
    }
  });

  it('backs off exponentially with full jitter, capped', async () => {
    const c = await load();
    expect(c.backoffMs(0, 500, 30_000, () => 0.999)).toBe(499);
    expect(c.backoffMs(3, 500, 30_000, () => 0.5)).toBe(2000);
    expect(c.backoffMs(20, 500, 30_000, () => 0.999)).toBe(29_970);
  });
});

describe('connect.js against hand-made responses', () => {
  let server: http.Server;
  let base: string;
  let reply: (req: http.IncomingMessage, res: http.ServerResponse) => void = () => {};
  const seen: Array<{ url?: string; headers: http.IncomingHttpHeaders; body: Buffer }> = [];

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        seen.push({ url: req.url, headers: req.headers, body: Buffer.concat(chunks) });
        reply(req, res);
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  const collect = async (c: ConnectJs) => {
    const got: unknown[] = [];
    try {
      for await (const m of c.callServerStream(base, 'svc.S/Watch', { x: 1 }, { token: 'tkn' })) got.push(m);
      return { got, error: null };
    } catch (err) {
      return { got, error: err as Error & { code: string } };
    }
  };

  it('sends an enveloped JSON request with the Connect headers and the token', async () => {
    const c = await load();
    reply = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/connect+json' });
      res.end(Buffer.from(concat([c.encodeEnvelope({ n: 1 }), c.encodeEnvelope({}, 0x02)])));
    };
    const { got, error } = await collect(c);
    expect(error).toBeNull();
    expect(got).toEqual([{ n: 1 }]);
    const req = seen.at(-1)!;
    expect(req.url).toBe('/svc.S/Watch');
    expect(req.headers['content-type']).toBe('application/connect+json');
    expect(req.headers['connect-protocol-version']).toBe('1');
    expect(req.headers.authorization).toBe('Bearer tkn');
    expect(req.body[0]).toBe(0);
    expect(req.body.readUInt32BE(1)).toBe(req.body.length - 5);
    expect(JSON.parse(req.body.subarray(5).toString())).toEqual({ x: 1 });
  });

  it('throws the error carried by the end-of-stream message, after the messages before it', async () => {
    const c = await load();
    reply = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/connect+json' });
      res.write(Buffer.from(c.encodeEnvelope({ n: 1 })));
      res.end(Buffer.from(c.encodeEnvelope({ error: { code: 'unauthenticated', message: 'unknown or revoked token' } }, 0x02)));
    };
    const { got, error } = await collect(c);
    expect(got).toEqual([{ n: 1 }]);
    expect(error).toBeInstanceOf(c.RpcError);
    expect(error).toMatchObject({ code: 'unauthenticated', message: 'unknown or revoked token' });
  });

  it('treats a body cut off before the end-of-stream message as unavailable', async () => {
    const c = await load();
    reply = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/connect+json' });
      const env = c.encodeEnvelope({ n: 1 });
      res.end(Buffer.from(concat([env, env.slice(0, 7)])));
    };
    const { got, error } = await collect(c);
    expect(got).toEqual([{ n: 1 }]);
    expect(error).toMatchObject({ code: 'unavailable' });
  });

  it('reads an error status with a Connect error body, and one without', async () => {
    const c = await load();
    reply = (_req, res) => {
      res.writeHead(401, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ code: 'unauthenticated', message: 'missing token' }));
    };
    await expect(c.callUnary(base, 'svc.S/Get', {})).rejects.toMatchObject({ code: 'unauthenticated', message: 'missing token' });
    reply = (_req, res) => {
      res.writeHead(502, { 'content-type': 'text/html' });
      res.end('<h1>bad gateway</h1>');
    };
    expect((await collect(c)).error).toMatchObject({ code: 'unavailable' });
  });

  it('a refused connection is unavailable', async () => {
    const c = await load();
    await expect(c.callUnary('http://127.0.0.1:1', 'svc.S/Get', {})).rejects.toMatchObject({ code: 'unavailable' });
  });
});

describe('connect.js against a real hive', () => {
  let t: TestHive;
  let token: string;
  beforeAll(async () => {
    t = await startTestHive('status_connect');
    token = await t.seed('gpu-x', { labels: { pool: 'h100' }, gpus: 2 });
  });
  afterAll(async () => {
    await t?.stop();
  });

  it('WatchWorkers: the snapshot, synced, then a change; ListEvents; auth errors', async () => {
    const c = await load();
    const stop = new AbortController();
    const stream = c.callServerStream(t.url, 'hive.v1.RegistryService/WatchWorkers', { labelSelector: 'pool=h100' }, { token: ADMIN, signal: stop.signal });
    const first = (await stream.next()).value as { changes: Array<{ type: string; worker: { workerId: string; stats: { gpus: unknown[] } } }>; synced: boolean };
    expect(first.synced).toBe(true);
    expect(first.changes[0]).toMatchObject({ type: 'WORKER_CHANGE_TYPE_ADDED', worker: { workerId: 'gpu-x', state: 'WORKER_STATE_HEALTHY' } });
    expect(first.changes[0].worker.stats.gpus).toHaveLength(2);
    await t.beat('gpu-x', token, { status: HealthStatus.UNHEALTHY, detail: 'probe failed', gpus: 2 });
    let state = '';
    for (let i = 0; i < 10 && state !== 'WORKER_STATE_UNHEALTHY'; i++) {
      const msg = (await stream.next()).value as { changes: Array<{ worker: { state: string } }> };
      state = msg.changes.at(-1)?.worker.state ?? state;
    }
    expect(state).toBe('WORKER_STATE_UNHEALTHY');
    stop.abort();
    await expect(stream.next()).rejects.toMatchObject({ code: 'canceled' });

    const events = await c.callUnary(t.url, 'hive.v1.RegistryService/ListEvents', { pageSize: 5 }, { token: ADMIN });
    expect((events.events as Array<{ kind: string }>).map((e) => e.kind)).toContain('status_changed');

    const denied = c.callServerStream(t.url, 'hive.v1.RegistryService/WatchWorkers', {}, { token: 'wrong' });
    await expect(denied.next()).rejects.toMatchObject({ code: 'unauthenticated' });
    await expect(c.callUnary(t.url, 'hive.v1.RegistryService/ListEvents', {}, { token: 'wrong' })).rejects.toMatchObject({ code: 'unauthenticated' });
  });
});
