import { create } from '@bufbuild/protobuf';
import { Code, ConnectError } from '@connectrpc/connect';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import {
  CommandSchema,
  CommandType,
  HealthStatus,
  HeartbeatStreamResponseSchema,
  type HeartbeatRequest,
  type HeartbeatStreamRequest,
} from '../../gen/hive/v1/registry_pb.js';
import { validateHeartbeat } from '../../hive/validate.js';
import { flushMicrotasks, ManualClock } from '../../lib/clock.js';
import { createLogger } from '../../lib/logger.js';
import { createAgent, type Agent, type AgentDeps } from '../../worker-agent/agent.js';
import type { RegistryClient } from '../../worker-agent/hive-client.js';

// The agent's timing on a manual clock against a fake hive: the first beat
// at a random phase, ±10% jitter on every interval, and full-jitter
// reconnect backoff capped at 30 s. The random source is injected, so each
// delay is known exactly.

const dir = mkdtempSync(join(tmpdir(), 'hive-agent-timing-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const agents: Agent[] = [];
afterEach(async () => {
  await Promise.all(agents.splice(0).map((a) => a.stop({ leave: false })));
});

/** Returns the given values in turn, then `rest` forever. */
function randoms(values: number[], rest = 0.5): () => number {
  const q = [...values];
  return () => q.shift() ?? rest;
}

interface FakeHive {
  client: RegistryClient;
  /** Heartbeats received, with the clock time each arrived. */
  beats: Array<{ at: number; hb: HeartbeatRequest }>;
  /** Clock times at which the agent opened a stream. */
  opened: number[];
  /** Resolves when the agent opens its first stream (the token file was read). */
  firstOpen: Promise<void>;
  /** Commands to push down the stream with the reply to the next heartbeat. */
  commands: ReturnType<typeof create<typeof CommandSchema>>[];
}

function fakeHive(clock: ManualClock, o: { down?: boolean } = {}): FakeHive {
  let opened!: () => void;
  const hive: FakeHive = {
    beats: [],
    opened: [],
    commands: [],
    firstOpen: new Promise<void>((r) => (opened = r)),
    client: {
      registerWorker: async () => ({ workerToken: 'worker-token' }),
      leave: async () => ({}),
      heartbeatStream(requests: AsyncIterable<HeartbeatStreamRequest>) {
        hive.opened.push(clock.now());
        opened();
        return (async function* () {
          if (o.down) throw new ConnectError('connect ECONNREFUSED 127.0.0.1:50051', Code.Unavailable);
          for await (const r of requests) {
            hive.beats.push({ at: clock.now(), hb: r.heartbeat! });
            yield create(HeartbeatStreamResponseSchema, { heartbeat: { ackSeq: r.heartbeat!.seq, commands: hive.commands.splice(0) } });
          }
        })();
      },
    } as unknown as RegistryClient,
  };
  return hive;
}

async function startAgent(deps: Partial<AgentDeps> & { clock: ManualClock; hive: FakeHive }): Promise<Agent> {
  const tokenFile = join(dir, `w-${Math.random().toString(36).slice(2)}.token`);
  writeFileSync(tokenFile, 'worker-token\n', { mode: 0o600 });
  const a = createAgent({
    log: createLogger('agent', 'silent'),
    workerId: 'w-1',
    intervalMs: 1000,
    labels: {},
    tokenFile,
    sample: async () => ({ status: HealthStatus.HEALTHY, statusDetail: 'ok' }),
    ...deps,
    client: deps.hive.client,
  });
  agents.push(a);
  a.start();
  await deps.hive.firstOpen;
  await flushMicrotasks();
  return a;
}

describe('agent timing (manual clock, injected random)', () => {
  it('sends its first beat at a random phase within the interval', async () => {
    for (const phase of [0.3, 0.85]) {
      const clock = new ManualClock();
      const t0 = clock.now();
      const hive = fakeHive(clock);
      await startAgent({ clock, hive, random: randoms([phase]) });
      await clock.advance(phase * 1000 - 1);
      expect(hive.beats).toHaveLength(0);
      await clock.advance(1);
      expect(hive.beats.map((b) => b.at - t0)).toEqual([phase * 1000]);
    }
  });

  it('jitters every interval by up to ±10%', async () => {
    const clock = new ManualClock();
    const t0 = clock.now();
    const hive = fakeHive(clock);
    // phase 0.3, then the extremes of the jitter and the middle.
    await startAgent({ clock, hive, random: randoms([0.3, 0, 1, 0.5]) });
    await clock.advance(3300);
    expect(hive.beats.map((b) => b.at - t0)).toEqual([300, 1200, 2300, 3300]);
    expect(hive.beats.map((b) => b.hb.seq)).toEqual([1n, 2n, 3n, 4n]);

    // Any random value keeps each gap within [0.9, 1.1] x interval.
    const clock2 = new ManualClock();
    const hive2 = fakeHive(clock2);
    let x = 42;
    const lcg = () => (x = (x * 48_271) % 2_147_483_647) / 2_147_483_647; // Park-Miller
    await startAgent({ clock: clock2, hive: hive2, random: lcg });
    for (let i = 0; i < 60; i++) await clock2.advance(100);
    for (let i = 0; i < 200; i++) await clock2.advance(250);
    const gaps = hive2.beats.slice(1).map((b, i) => b.at - hive2.beats[i]!.at);
    expect(gaps.length).toBeGreaterThan(40);
    for (const g of gaps) {
      expect(g).toBeGreaterThanOrEqual(900);
      expect(g).toBeLessThanOrEqual(1100);
    }
    expect(new Set(gaps).size).toBeGreaterThan(10);
  });

  it('reconnects with full-jitter exponential backoff from 500 ms, capped at 30 s', async () => {
    const clock = new ManualClock();
    const hive = fakeHive(clock, { down: true });
    const failed: string[] = [];
    // The top of each jitter range: the delay is the (capped) ceiling, less 1 ms.
    await startAgent({ clock, hive, random: () => 0.99999, events: { failed: (c) => failed.push(c) } });
    // (Fewer than 11 reconnects: ManualClock keeps one abort listener per finished sleep.)
    for (let i = 0; i < 92; i++) await clock.advance(1000);
    const gaps = hive.opened.slice(1).map((t, i) => t - hive.opened[i]!);
    expect(gaps).toEqual([499, 999, 1999, 3999, 7999, 15_999, 29_999, 29_999]);
    expect(failed.every((c) => c === 'Unavailable')).toBe(true);

    // Full jitter: the delay is the random fraction of the whole ceiling (no fixed part).
    const clock2 = new ManualClock();
    const hive2 = fakeHive(clock2, { down: true });
    await startAgent({ clock: clock2, hive: hive2, random: () => 0.25 });
    for (let i = 0; i < 23; i++) await clock2.advance(1000);
    const gaps2 = hive2.opened.slice(1).map((t, i) => t - hive2.opened[i]!);
    expect(gaps2).toEqual([125, 250, 500, 1000, 2000, 4000, 7500, 7500]);
  });

  it('a failing sampler and a wordy, multi-line command result still make heartbeats the hive accepts', async () => {
    const clock = new ManualClock();
    const hive = fakeHive(clock);
    let calls = 0;
    await startAgent({
      clock,
      hive,
      random: randoms([0]),
      sample: async () => {
        if (calls++ === 0) throw new Error(`collector exploded:\n\t${'ß'.repeat(300)}`);
        return { status: HealthStatus.HEALTHY, statusDetail: 'ok' };
      },
      onCommand: async () => ({ success: false, message: `restart failed: spawn ENOENT\nat line 2\t${'é'.repeat(300)}` }),
    });
    hive.commands.push(create(CommandSchema, { commandId: 'cmd-1', type: CommandType.RESTART, reason: 'test' }));
    await clock.advance(0); // first beat; the reply carries the command, whose result wakes the next beat
    await flushMicrotasks();
    expect(hive.beats).toHaveLength(2);
    const [first, second] = hive.beats.map((b) => b.hb);
    expect(first!.statusDetail).toMatch(/^agent sampling failed: collector exploded:  ß/);
    expect(second!.commandResults).toHaveLength(1);
    expect(second!.commandResults[0]!.message).toMatch(/^restart failed: spawn ENOENT at line 2 é/);
    for (const hb of [first!, second!]) expect(() => validateHeartbeat(hb)).not.toThrow();
  });
});
