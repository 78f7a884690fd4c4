import { create } from '@bufbuild/protobuf';
import { Code, ConnectError, createClient } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HeartbeatRequestSchema, RegistryService, type HeartbeatStreamRequest } from '../../gen/hive/v1/registry_pb.js';
import { createRateLimiter, TokenBucket } from '../../hive/rate-limit.js';
import { startHive, type HiveHandle } from '../../hive/server.js';
import { ManualClock } from '../../lib/clock.js';
import { parseAddr } from '../../lib/config.js';
import { msToDuration } from '../../lib/duration.js';
import { createLogger } from '../../lib/logger.js';
import { dropSchema, PG_URL, uniqueSchema } from '../support/pg.js';
import { tempDir } from '../support/procs.js';

// Token buckets on an injected clock: nothing sleeps, time is advanced.

describe('TokenBucket', () => {
  it('admits a burst, then one request per 1/rate seconds', () => {
    const b = new TokenBucket(2, 3, 0);
    expect([b.take(0), b.take(0), b.take(0), b.take(0)]).toEqual([true, true, true, false]);
    expect(b.waitMs(0)).toBe(500);
    expect(b.take(499)).toBe(false);
    expect(b.take(500)).toBe(true);
    expect(b.take(500)).toBe(false);
    // Idle time refills up to the burst, not beyond.
    expect(b.full(10_000)).toBe(true);
    expect([b.take(10_000), b.take(10_000), b.take(10_000), b.take(10_000)]).toEqual([true, true, true, false]);
  });

  it('a clock that steps back refills nothing', () => {
    const b = new TokenBucket(1, 1, 1000);
    expect(b.take(1000)).toBe(true);
    expect(b.take(0)).toBe(false);
    expect(b.take(1999)).toBe(false);
    expect(b.take(2000)).toBe(true);
  });
});

describe('createRateLimiter', () => {
  it('keeps one bucket per key and forgets full ones when it grows', async () => {
    const clock = new ManualClock(0);
    const l = createRateLimiter({ clock, perSecond: 1, burst: 2, sweepAt: 3 });
    expect([l.take('a'), l.take('a'), l.take('a')]).toEqual([true, true, false]);
    expect(l.take('b')).toBe(true);
    expect(l.retryAfterMs('a')).toBe(1000);
    await clock.advance(1000);
    expect(l.take('a')).toBe(true);
    l.take('c');
    await clock.advance(5000);
    l.take('d'); // the fourth key sweeps a, b and c, all full again
    expect(l.size()).toBe(1);
  });

  it('sweeps again only once the map has doubled, when the callers it holds are all busy', async () => {
    const clock = new ManualClock(0);
    const l = createRateLimiter({ clock, perSecond: 1, burst: 2, sweepAt: 4 });
    // Four busy callers (each bucket spent, none full): the sweep at the
    // fifth key keeps them all, and the next waits for twice that (8).
    for (const k of ['a', 'b', 'c', 'd', 'e']) l.take(k);
    expect(l.size()).toBe(5);
    await clock.advance(10_000); // a..e are full again: a sweep now would forget them
    for (const k of ['f', 'g', 'h']) l.take(k);
    expect(l.size()).toBe(8);
    // The eighth bucket is reached: the sweep forgets the five full ones.
    l.take('i');
    expect(l.size()).toBe(4);
  });

  it('meters a stream from the same bucket as the key\'s other requests, across a sweep', async () => {
    const clock = new ManualClock(0);
    const l = createRateLimiter({ clock, perSecond: 1, burst: 2, sweepAt: 2 });
    const stream = l.meterFor('t');
    expect(stream()).toBe(true);
    expect(l.take('t')).toBe(true); // one bucket: the stream's charge counts here
    expect(stream()).toBe(false);
    await clock.advance(10_000); // full again
    l.take('u');
    l.take('v'); // the sweep forgets the full bucket of t
    expect(l.size()).toBe(2);
    // The stream's next charge lands in t's new bucket, shared with t's requests.
    expect(stream()).toBe(true);
    expect(l.take('t')).toBe(true);
    expect(l.take('t')).toBe(false);
    expect(stream()).toBe(false);
  });

  it('is off at rate 0', () => {
    const l = createRateLimiter({ clock: new ManualClock(0), perSecond: 0, burst: 0 });
    for (let i = 0; i < 1000; i++) expect(l.take('x')).toBe(true);
  });
});

describe('limits on a real hive (ManualClock)', () => {
  const schema = uniqueSchema('hive_rl');
  const clock = new ManualClock(1_700_000_000_000);
  let hive: HiveHandle;
  let dir: Awaited<ReturnType<typeof tempDir>>;
  const auth = (t: string) => ({ headers: { authorization: `Bearer ${t}` }, timeoutMs: 5000 });
  const client = () => createClient(RegistryService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${hive.grpcPort}` }));

  beforeAll(async () => {
    dir = await tempDir();
    hive = await startHive(
      {
        grpcAddr: parseAddr('127.0.0.1:0'),
        httpAddr: parseAddr('127.0.0.1:0'),
        dataDir: dir.path,
        databaseUrl: PG_URL,
        databaseSchema: schema,
        adminToken: 'admin-token-for-rate-limit-tests',
        joinTokens: [],
        writeBehind: 1000,
        eventRetention: 86_400_000,
        logLevel: 'silent',
        rateLimit: 2,
        rateBurst: 5,
        maxStreamsPerWorker: 2,
      },
      { log: createLogger('test', 'silent'), clock },
    );
  });
  afterAll(async () => {
    await hive?.stop();
    await dropSchema(schema);
    await dir?.remove();
  });

  it('a worker token over its budget gets ResourceExhausted and changes nothing; admin is not limited', async () => {
    const c = client();
    const { workerToken } = await c.registerWorker({ workerId: 'rl-1', heartbeatInterval: msToDuration(1000) }, auth(hive.adminToken));
    const hb = (seq: bigint) => c.heartbeat(create(HeartbeatRequestSchema, { workerId: 'rl-1', sessionId: 's', seq, status: 1 }), auth(workerToken));
    for (let i = 1n; i <= 5n; i++) expect((await hb(i)).ackSeq).toBe(i);
    const err = await hb(6n).catch((e) => ConnectError.from(e));
    expect(err).toMatchObject({ code: Code.ResourceExhausted });
    expect((err as ConnectError).rawMessage).toMatch(/retry in 500 ms/);
    expect(hive.registry.get('rl-1').lastSeq).toBe(5n);
    for (let i = 0; i < 50; i++) await c.getWorker({ workerId: 'rl-1' }, auth(hive.adminToken));
    await clock.advance(500);
    expect((await hb(6n)).ackSeq).toBe(6n);
    await expect(hb(7n)).rejects.toMatchObject({ code: Code.ResourceExhausted });
  });

  it('caps open streams per worker (the oldest gives way) and charges every streamed heartbeat', async () => {
    const c = client();
    const { workerToken } = await c.registerWorker({ workerId: 'rl-2', heartbeatInterval: msToDuration(1000) }, auth(hive.adminToken));
    const opened: Array<AbortController> = [];
    const open = (beats: number, first: bigint) => {
      const ctl = new AbortController();
      opened.push(ctl);
      async function* reqs(): AsyncIterable<HeartbeatStreamRequest> {
        for (let i = 0; i < beats; i++) yield { $typeName: 'hive.v1.HeartbeatStreamRequest', heartbeat: create(HeartbeatRequestSchema, { workerId: 'rl-2', sessionId: `s${first}`, seq: first + BigInt(i), status: 1 }) };
        await new Promise((r) => ctl.signal.addEventListener('abort', r));
      }
      const acks: bigint[] = [];
      const done = (async () => {
        for await (const r of c.heartbeatStream(reqs(), { ...auth(workerToken), timeoutMs: 10_000, signal: ctl.signal })) acks.push(r.heartbeat!.ackSeq);
      })().then(() => 'ended', (e) => Code[ConnectError.from(e).code]);
      return { acks, done };
    };
    const a = open(1, 100n);
    await vitestEventually(() => a.acks.length === 1);
    const b = open(1, 200n);
    await vitestEventually(() => b.acks.length === 1);
    expect(hive.registry.get('rl-2').streams).toBe(2);
    // A third stream is served; the oldest one makes room (the newest is the one an agent uses).
    const third = open(1, 300n);
    expect(await a.done).toBe('ResourceExhausted');
    await vitestEventually(() => third.acks.length === 1);
    expect(hive.registry.get('rl-2').streams).toBe(2);
    for (const ctl of opened) ctl.abort();
    await vitestEventually(() => hive.registry.get('rl-2').streams === 0);
    await clock.advance(10_000);
    // A full bucket holds 5: the sixth beat on one stream ends that stream.
    const greedy = open(9, 400n);
    expect(await greedy.done).toBe('ResourceExhausted');
    opened.at(-1)!.abort();
    expect(greedy.acks).toEqual([400n, 401n, 402n, 403n, 404n]);
    expect(hive.registry.get('rl-2').lastSeq).toBe(404n);
  });
});

async function vitestEventually(pred: () => boolean): Promise<void> {
  // Network round trips on real sockets; no clock to advance for those.
  for (let i = 0; i < 200 && !pred(); i++) await new Promise((r) => setTimeout(r, 10));
  expect(pred()).toBe(true);
}
