import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ManualClock, flushMicrotasks } from '../../lib/clock.js';
import { createLogger } from '../../lib/logger.js';
import { parseAddr } from '../../lib/config.js';
import { HealthStatus, WorkerState, CommandType } from '../../gen/hive/v1/registry_pb.js';
import { startHive, type HiveHandle } from '../../hive/server.js';
import { lastBeatOf } from '../../hive/worker.js';
import { createAgent, type Agent } from '../../worker-agent/agent.js';
import { createCheck } from '../../worker-agent/check.js';
import { createMemoryCollector } from '../../worker-agent/collectors/memory.js';
import { createHttpProbe } from '../../worker-agent/probe.js';
import { ControlService } from '../../gen/hive/v1/control_pb.js';
import { CheckOutcome } from '../../gen/hive/v1/health_check_pb.js';
import { createClient } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRegistryClient } from '../../worker-agent/hive-client.js';
import { dropSchema, PG_URL, uniqueSchema } from '../support/pg.js';
import { eventually, tempDir } from '../support/procs.js';
import { agentHeartbeat } from './support/heartbeats.js';

// The agent against a real in-process hive over real gRPC; the agent's own
// waits run on a ManualClock, so the test decides when each beat is due.

describe('worker-agent', () => {
  const schema = uniqueSchema('hive_agent');
  const JOIN = 'join-token-agent-tests-000001';
  let hive: HiveHandle;
  let dir: Awaited<ReturnType<typeof tempDir>>;
  const agents: Agent[] = [];

  beforeAll(async () => {
    dir = await tempDir();
    hive = await startHive(
      {
        grpcAddr: parseAddr('127.0.0.1:0'), httpAddr: parseAddr('127.0.0.1:0'), dataDir: dir.path, databaseUrl: PG_URL, databaseSchema: schema,
        adminToken: 'admin-token-for-agent-tests', joinTokens: [JOIN], writeBehind: 1000, eventRetention: 86_400_000, logLevel: 'silent',
      },
      { log: createLogger('hive', 'silent') },
    );
  });
  afterAll(async () => {
    await Promise.all(agents.map((a) => a.stop({ leave: false })));
    await hive?.stop();
    await dropSchema(schema);
    await dir?.remove();
  });

  function agent(
    workerId: string,
    opts: {
      status?: HealthStatus;
      onCommand?: Parameters<typeof createAgent>[0]['onCommand'];
      check?: Parameters<typeof createAgent>[0]['check'];
      dependsOn?: string[];
      sample?: Parameters<typeof createAgent>[0]['sample'];
      events?: Parameters<typeof createAgent>[0]['events'];
    } = {},
  ) {
    const clock = new ManualClock();
    const a = createAgent({
      client: createRegistryClient(`127.0.0.1:${hive.grpcPort}`),
      clock,
      log: createLogger('agent', 'silent'),
      workerId,
      intervalMs: 1000,
      labels: { pool: 't' },
      joinToken: JOIN,
      tokenFile: join(dir.path, `${workerId}.token`),
      sample: opts.sample ?? (async () => ({ status: opts.status ?? HealthStatus.HEALTHY, statusDetail: 'ok', memoryTotalBytes: 100n, memoryUsedBytes: 10n })),
      onCommand: opts.onCommand,
      check: opts.check,
      dependsOn: opts.dependsOn,
      events: opts.events,
      random: () => 0.5,
    });
    agents.push(a);
    return { a, clock };
  }

  /** Advances the agent's clock one interval at a time until cond holds. */
  async function beatUntil(clock: ManualClock, cond: () => boolean, what: string): Promise<void> {
    await eventually(async () => {
      await clock.advance(1100);
      await flushMicrotasks();
      return cond();
    }, 15_000, what);
  }

  it('joins once, stores its token 0600, heartbeats, and reuses the token after a restart', async () => {
    const { a, clock } = agent('ag-1');
    a.start();
    await beatUntil(clock, () => hive.registry.workers.get('ag-1')?.state === WorkerState.HEALTHY, 'ag-1 healthy');
    const file = join(dir.path, 'ag-1.token');
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const token = (await readFile(file, 'utf8')).trim();
    expect(hive.registry.tokens.lookup(token)?.workerId).toBe('ag-1');
    await a.stop({ leave: false });

    const again = agent('ag-1');
    again.a.start();
    const before = hive.registry.workers.get('ag-1')!.lastSeq;
    await beatUntil(again.clock, () => hive.registry.workers.get('ag-1')!.sessionId === again.a.state.sessionId, 'ag-1 new session');
    expect((await readFile(file, 'utf8')).trim()).toBe(token); // no second registration
    expect(before).toBeGreaterThan(0n);
  });

  it('sends Leave on stop: LEFT', async () => {
    const { a, clock } = agent('ag-leave');
    a.start();
    await beatUntil(clock, () => hive.registry.workers.get('ag-leave')?.state === WorkerState.HEALTHY, 'healthy');
    await a.stop({ reason: 'test' });
    expect(hive.registry.workers.get('ag-leave')?.state).toBe(WorkerState.LEFT);
  });

  it('joins again when its token is revoked (worker deregistered)', async () => {
    const { a, clock } = agent('ag-rejoin');
    a.start();
    await beatUntil(clock, () => hive.registry.workers.get('ag-rejoin')?.state === WorkerState.HEALTHY, 'healthy');
    const old = (await readFile(join(dir.path, 'ag-rejoin.token'), 'utf8')).trim();
    await hive.registry.deregister('ag-rejoin', 'admin', 'test');
    await beatUntil(clock, () => hive.registry.workers.get('ag-rejoin')?.state === WorkerState.HEALTHY, 'healthy again');
    expect((await readFile(join(dir.path, 'ag-rejoin.token'), 'utf8')).trim()).not.toBe(old);
  });

  it('starts a new session when the hive has seen a newer seq', async () => {
    const { a, clock } = agent('ag-session');
    a.start();
    await beatUntil(clock, () => hive.registry.workers.get('ag-session')?.state === WorkerState.HEALTHY, 'healthy');
    const first = a.state.sessionId;
    // Someone (a previous run with the same session) got further: the hive refuses our next seq.
    hive.registry.workers.get('ag-session')!.lastSeq = 1_000_000n;
    await beatUntil(clock, () => a.state.sessionId !== first && hive.registry.workers.get('ag-session')!.sessionId === a.state.sessionId, 'new session accepted');
  });

  it('sends the inventory once, then compact heartbeats, and the inventory again when the hive lacks it', async () => {
    let n = 0;
    const sent: { form: string; bytes: number }[] = [];
    const { a, clock } = agent('ag-compact', {
      sample: async () => {
        const { workerId: _w, sessionId: _s, seq: _q, ...rest } = agentHeartbeat(++n);
        return rest;
      },
      events: { encoded: (form, bytes) => sent.push({ form, bytes }) },
    });
    a.start();
    const gpuUsed = () => {
      const w = hive.registry.workers.get('ag-compact');
      return w && lastBeatOf(w)?.gpus.map((g) => g.memoryUsedBytes);
    };
    const latest = () => agentHeartbeat(n).gpus!.map((g) => g.memoryUsedBytes);
    await beatUntil(clock, () => sent.filter((s) => s.form === 'compact').length >= 2 && hive.registry.workers.get('ag-compact')!.lastSeq === BigInt(n), 'two compact beats');
    expect(sent[0].form).toBe('full');
    expect(sent[0].bytes).toBeGreaterThan(900);
    expect(Math.max(...sent.filter((s) => s.form === 'compact').map((s) => s.bytes))).toBeLessThanOrEqual(200);
    expect(gpuUsed()).toEqual(latest());
    expect(lastBeatOf(hive.registry.workers.get('ag-compact')!)!.collectors).toHaveLength(4);

    // As after a hive restart: the hive no longer holds the session's inventory.
    hive.registry.workers.get('ag-compact')!.inventory = undefined;
    const fullBefore = sent.filter((s) => s.form === 'full').length;
    await beatUntil(clock, () => sent.filter((s) => s.form === 'full').length > fullBefore, 'full form again');
    await beatUntil(clock, () => sent.at(-1)!.form === 'compact' && hive.registry.workers.get('ag-compact')!.lastSeq === BigInt(n), 'compact again');
    expect(gpuUsed()).toEqual(latest());
  });

  it('carries out a command pushed down the stream and reports the result', async () => {
    const done: string[] = [];
    const { a, clock } = agent('ag-cmd', {
      onCommand: async (cmd) => {
        done.push(cmd.reason);
        return { success: true, message: 'restarted' };
      },
    });
    a.start();
    await beatUntil(clock, () => hive.registry.workers.get('ag-cmd')?.streams === 1 && a.state.acked > 0, 'stream open');
    const { delivered } = await hive.registry.sendCommand('ag-cmd', CommandType.RESTART, 'test restart');
    expect(delivered).toBe(true);
    await eventually(() => done.length === 1, 5000, 'command run');
    expect(done).toEqual(['test restart']);
    // The result rides on the next heartbeat (sent at once) and becomes an event.
    await beatUntil(clock, () => true, 'tick');
    await hive.registry.writeBehind.flush();
    await eventually(async () => {
      const evs = await (await import('../../hive/store/open.js')).openStore({ databaseUrl: PG_URL, dataDir: '/nonexistent', schema }).then(async (s) => {
        const rows = await s.listEvents({ workerId: 'ag-cmd', limit: 5 });
        await s.close();
        return rows;
      });
      return evs.some((e) => e.kind === 'command_result' && e.reason.includes('succeeded: restarted'));
    }, 10_000, 'command_result event');
  });

  it('answers a CHECK at once with its probe, collectors, round trip and uptime; declares depends_on when joining', async () => {
    // A real HTTP probe of a real server, and the real memory collector.
    const server = http.createServer((_req, res) => res.writeHead(503).end());
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const clock = new ManualClock();
    const probe = createHttpProbe({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/health`, clock });
    const { a, clock: agentClock } = agent('ag-check', { check: createCheck({ clock, collectors: [createMemoryCollector()], probe }), dependsOn: ['ag-1'] });
    a.start();
    try {
      await beatUntil(agentClock, () => hive.registry.workers.get('ag-check')?.streams === 1 && a.state.acked > 1, 'stream open');
      expect(hive.registry.workers.get('ag-check')?.dependsOn).toEqual(['ag-1']);
      const control = createClient(ControlService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${hive.grpcPort}` }));
      const call = { headers: { authorization: 'Bearer admin-token-for-agent-tests' } };
      const { check } = await control.startHealthCheck({ labelSelector: '', timeout: { seconds: 20n, nanos: 0 } }, call);
      // Answered without the agent's clock moving: the check runs and is sent at once.
      const result = await eventually(async () => {
        const got = (await control.getHealthCheck({ checkId: check!.checkId }, call)).check!.results.find((r) => r.workerId === 'ag-check');
        return got?.outcome === CheckOutcome.ANSWERED ? got : null;
      }, 10_000, 'the answer of ag-check');
      expect(result.reason).toMatch(/^probe: GET http:\/\/127\.0\.0\.1:\d+\/health returned HTTP 503$/);
      expect(result.report).toMatchObject({ probeStatus: HealthStatus.UNHEALTHY });
      expect(result.report!.stats!.collectors).toEqual([expect.objectContaining({ name: 'memory', success: true })]);
      expect(result.report!.stats!.memoryTotalBytes).toBeGreaterThan(0n);
      // Uptime and round trip on the agent's own (manual) clock: the round
      // trip is whatever the test moved it by between a send and its ack.
      expect(result.report!.uptimeSeconds).toBeGreaterThan(1);
      expect(result.report!.hiveRttSeconds).toBeGreaterThanOrEqual(0);
    } finally {
      await a.stop({ leave: false });
      server.close();
    }
  });

  it('keeps retrying while the hive is unreachable and never throws', async () => {
    const clock = new ManualClock();
    await writeFile(join(dir.path, 'ag-down.token'), 'hive_wkr_unused\n', { mode: 0o600 });
    const failures: string[] = [];
    const a = createAgent({
      client: createRegistryClient('127.0.0.1:1'),
      clock,
      log: createLogger('agent', 'silent'),
      workerId: 'ag-down',
      intervalMs: 1000,
      labels: {},
      tokenFile: join(dir.path, 'ag-down.token'),
      sample: async () => ({ status: HealthStatus.HEALTHY }),
      random: () => 0.5,
      events: { failed: (c) => failures.push(c) },
    });
    a.start();
    await eventually(async () => {
      await clock.advance(30_000);
      return failures.length >= 3;
    }, 15_000, 'three failed attempts');
    expect(failures.every((c) => c === 'Unavailable')).toBe(true);
    await a.stop({ leave: false });
  });
});
