import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HealthStatus } from '../../gen/hive/v1/registry_pb.js';
import { ManualClock } from '../../lib/clock.js';
import { createHttpProbe } from '../../worker-agent/probe.js';

// A real worker stand-in: /ok answers at once, /500 fails, /held answers only
// when the test releases it, so "slow" is measured on the manual clock.
let server: Server;
let base: string;
let held: ServerResponse[] = [];
let onHeld: (() => void) | undefined;

function handler(req: IncomingMessage, res: ServerResponse): void {
  if (req.url === '/ok') return void res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
  if (req.url === '/500') return void res.writeHead(500).end('boom');
  if (req.url === '/held') {
    held.push(res);
    onHeld?.();
    return;
  }
  res.writeHead(404).end();
}

function nextHeldRequest(): Promise<ServerResponse> {
  return new Promise((resolve) => {
    onHeld = () => {
      onHeld = undefined;
      resolve(held.at(-1)!);
    };
  });
}

beforeAll(async () => {
  server = createServer(handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  for (const res of held) res.destroy();
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
});

describe('createHttpProbe', () => {
  it('a prompt 200 is healthy', async () => {
    const clock = new ManualClock();
    const result = await createHttpProbe({ url: `${base}/ok`, clock, slowMs: 1000 }).probe();
    expect(result).toEqual({ status: HealthStatus.HEALTHY, latencyMs: 0, httpStatus: 200, detail: `GET ${base}/ok returned 200 in 0 ms` });
    expect(clock.pending).toBe(0);
  });

  it('a 200 slower than slowMs is degraded', async () => {
    const clock = new ManualClock();
    const arrived = nextHeldRequest();
    const probing = createHttpProbe({ url: `${base}/held`, clock, slowMs: 1000, timeoutMs: 5000 }).probe();
    const res = await arrived;
    await clock.advance(1500);
    res.writeHead(200).end('late');
    const result = await probing;
    expect(result.status).toBe(HealthStatus.DEGRADED);
    expect(result.latencyMs).toBe(1500);
    expect(result.detail).toBe(`GET ${base}/held took 1500 ms (slow above 1000 ms)`);
  });

  it('a 200 exactly at slowMs is still healthy', async () => {
    const clock = new ManualClock();
    const arrived = nextHeldRequest();
    const probing = createHttpProbe({ url: `${base}/held`, clock, slowMs: 1000 }).probe();
    const res = await arrived;
    await clock.advance(1000);
    res.writeHead(200).end();
    expect((await probing).status).toBe(HealthStatus.HEALTHY);
  });

  it('a 500 is unhealthy', async () => {
    const result = await createHttpProbe({ url: `${base}/500`, clock: new ManualClock() }).probe();
    expect(result).toMatchObject({ status: HealthStatus.UNHEALTHY, httpStatus: 500, detail: `GET ${base}/500 returned HTTP 500` });
  });

  it('no answer within timeoutMs is unhealthy', async () => {
    const clock = new ManualClock();
    const arrived = nextHeldRequest();
    const probing = createHttpProbe({ url: `${base}/held`, clock, timeoutMs: 2000 }).probe();
    await arrived;
    await clock.advance(2000);
    const result = await probing;
    expect(result).toEqual({ status: HealthStatus.UNHEALTHY, latencyMs: 2000, detail: `GET ${base}/held timed out after 2000 ms` });
  });

  it('a refused connection is unhealthy', async () => {
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));

    const clock = new ManualClock();
    const result = await createHttpProbe({ url: `http://127.0.0.1:${port}/health`, clock }).probe();
    expect(result.status).toBe(HealthStatus.UNHEALTHY);
    expect(result.detail).toBe(`GET http://127.0.0.1:${port}/health failed: connection refused`);
    expect(clock.pending).toBe(0);
  });

  it('an outside abort ends the probe as unhealthy', async () => {
    const arrived = nextHeldRequest();
    const abort = new AbortController();
    const probing = createHttpProbe({ url: `${base}/held`, clock: new ManualClock() }).probe(abort.signal);
    await arrived;
    abort.abort();
    expect(await probing).toMatchObject({ status: HealthStatus.UNHEALTHY, detail: `GET ${base}/held aborted` });
  });
});
