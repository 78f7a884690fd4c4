import { create } from '@bufbuild/protobuf';
import { Code } from '@connectrpc/connect';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CheckOutcome, HealthBand, HealthCheckState, HealthCheckTrigger, type HealthCheck } from '../../gen/hive/v1/health_check_pb.js';
import { CheckReportSchema, CommandType, HealthStatus, HeartbeatRequestSchema, RegisterWorkerRequestSchema, TokenScope, WorkerState, type Command } from '../../gen/hive/v1/registry_pb.js';
import { flushMicrotasks, ManualClock } from '../../lib/clock.js';
import { msToDuration } from '../../lib/duration.js';
import { createLogger } from '../../lib/logger.js';
import { createHealthChecks, type HealthChecks } from '../../hive/health-checks.js';
import { createRegistry, type Registry } from '../../hive/registry.js';
import type { Store } from '../../hive/store/store.js';
import type { Principal } from '../../hive/tokens.js';
import { dropSchema, openTestStore, uniqueSchema } from '../support/pg.js';

// Health-check runs on a real registry and a real PostgreSQL store, time
// from a ManualClock: answers scored as they arrive, the timeout failing
// whoever is silent, progress, durability, and the summary's comparison
// with the previous run.

const log = createLogger('test', process.env.HC_DEBUG ? 'debug' : 'silent');
const admin: Principal = { scope: TokenScope.ADMIN, tokenId: 'admin' };
const tokenIds = new Map<string, string>();
const as = (workerId: string): Principal => ({ scope: TokenScope.WORKER, tokenId: tokenIds.get(workerId) ?? `unissued-${workerId}`, workerId });

describe('health-check runs', () => {
  const schema = uniqueSchema('hive_hc');
  let store: Store;
  let clock: ManualClock;
  let registry: Registry;
  let checks: HealthChecks;
  const seqs = new Map<string, number>();

  const beat = (id: string) => {
    const seq = (seqs.get(id) ?? 0) + 1;
    seqs.set(id, seq);
    return registry.heartbeat(as(id), create(HeartbeatRequestSchema, { workerId: id, sessionId: 's', seq: BigInt(seq), status: HealthStatus.HEALTHY }));
  };
  /** The CHECK command the run sent the worker (taken off its queue, as its stream would). */
  const checkCommand = (id: string) => {
    const cmd = (registry.live.takeCommands(id) as Command[]).find((c) => c.type === CommandType.CHECK);
    expect(cmd, `a CHECK command for ${id}`).toBeDefined();
    return cmd!;
  };
  const report = (commandId: string, probeStatus: HealthStatus, detail = 'ok', over: Record<string, unknown> = {}) =>
    create(CheckReportSchema, {
      commandId,
      probeStatus,
      probeDetail: detail,
      probeLatencySeconds: 0.01,
      hiveRttSeconds: 0.002,
      uptimeSeconds: 12,
      stats: { memoryUsedBytes: 10n, memoryTotalBytes: 100n, collectors: [{ name: 'memory', success: true }] },
      ...over,
    });

  /** The run once finished (its last writes hit the real database, so it takes real time). */
  const untilDone = async (checkId: string) => {
    let last: HealthCheck | undefined;
    for await (const m of checks.watch(checkId, new AbortController().signal)) last = m;
    return last!;
  };

  beforeAll(async () => {
    store = await openTestStore(schema);
    clock = new ManualClock();
    registry = await createRegistry({ store, clock, log });
    for (const [id, pool] of [['w-a', 'gpu'], ['w-b', 'gpu'], ['w-c', 'gpu'], ['w-cpu', 'cpu'], ['w-gone', 'gpu']]) {
      const { token } = await registry.register(admin, create(RegisterWorkerRequestSchema, { workerId: id, heartbeatInterval: msToDuration(1000), labels: { pool } }));
      tokenIds.set(id, registry.tokens.lookup(token)!.tokenId);
      await beat(id);
    }
    await registry.leave(as('w-gone'), 'w-gone', 'done');
    checks = createHealthChecks({ registry, store, clock, log });
  });
  afterAll(async () => {
    await checks?.stop();
    await registry?.stop();
    await store?.close();
    await dropSchema(schema);
  });

  it('scores answers as they arrive, fails the silent worker at the timeout, and stores it all', async () => {
    const started = await checks.start({ labelSelector: 'pool=gpu', timeoutMs: 5000, trigger: HealthCheckTrigger.MANUAL, scheduleId: '', startedBy: 'admin' });
    // LEFT and non-matching workers are not asked.
    expect(started).toMatchObject({ state: HealthCheckState.RUNNING, total: 3, completed: 0 });
    expect(started.results.map((r) => [r.workerId, r.outcome])).toEqual([['w-a', CheckOutcome.PENDING], ['w-b', CheckOutcome.PENDING], ['w-c', CheckOutcome.PENDING]]);
    expect(registry.live.takeCommands('w-cpu')).toEqual([]);
    expect(registry.live.takeCommands('w-gone')).toEqual([]);
    const [a, b, c] = ['w-a', 'w-b', 'w-c'].map(checkCommand);
    expect(a.reason).toContain(started.checkId);

    const seen: HealthCheck[] = [];
    const ctl = new AbortController();
    const watching = (async () => {
      for await (const m of checks.watch(started.checkId, ctl.signal)) seen.push(m);
    })();
    await flushMicrotasks();

    checks.report('w-a', [report(a.commandId, HealthStatus.HEALTHY)]);
    await flushMicrotasks();
    // Another worker's answer to w-c's command does not count for anyone.
    checks.report('w-b', [report(c.commandId, HealthStatus.HEALTHY)]);
    checks.report('w-b', [report(b.commandId, HealthStatus.UNHEALTHY, 'GET http://w-b/health returned HTTP 500')]);
    // A second answer to the same command changes nothing.
    checks.report('w-b', [report(b.commandId, HealthStatus.HEALTHY)]);
    await flushMicrotasks();
    const mid = await checks.get(started.checkId);
    expect(mid).toMatchObject({ state: HealthCheckState.RUNNING, total: 3, completed: 2, failed: 1 });

    await clock.advance(4999);
    expect((await checks.get(started.checkId)).state).toBe(HealthCheckState.RUNNING);
    await clock.advance(1);
    await watching;
    await untilDone(started.checkId);
    const done = await checks.get(started.checkId);
    expect(done).toMatchObject({ state: HealthCheckState.DONE, total: 3, completed: 3, failed: 2, band: HealthBand.UNHEALTHY });
    expect(done.score).toBeCloseTo((1 + 0.55 + 0) / 3, 6);
    const by = Object.fromEntries(done.results.map((r) => [r.workerId, r]));
    expect(by['w-a']).toMatchObject({ outcome: CheckOutcome.ANSWERED, score: 1, band: HealthBand.HEALTHY, reason: 'ok' });
    expect(by['w-a'].report?.uptimeSeconds).toBe(12);
    expect(by['w-b']).toMatchObject({ outcome: CheckOutcome.ANSWERED, score: 0.55, band: HealthBand.UNHEALTHY, reason: 'probe: GET http://w-b/health returned HTTP 500' });
    expect(by['w-c']).toMatchObject({ outcome: CheckOutcome.NO_ANSWER, score: 0, band: HealthBand.CRITICAL, reason: 'no answer within 5s' });
    expect(done.summary).toBe('3 workers checked: 1 healthy, 0 degraded, 2 failed. Failed: w-b (probe: GET http://w-b/health returned HTTP 500); w-c (no answer within 5s). No previous run to compare with.');

    // Progress as it happened: pending, one answer, two, then done.
    expect(seen.map((m) => [m.completed, m.state])).toEqual([[0, 1], [1, 1], [2, 1], [3, 2]]);
    // The same run, read back from the database.
    const stored = await store.getHealthCheck(started.checkId);
    expect(stored?.run).toMatchObject({ state: HealthCheckState.DONE, completed: 3, failed: 2, summary: done.summary });
    expect(stored?.results.map((r) => [r.workerId, r.outcome, r.score])).toEqual([['w-a', 2, 1], ['w-b', 2, 0.55], ['w-c', 3, 0]]);
    // A late answer after the end changes nothing.
    checks.report('w-c', [report(c.commandId, HealthStatus.HEALTHY)]);
    expect((await checks.get(started.checkId)).results[2].outcome).toBe(CheckOutcome.NO_ANSWER);
  });

  it('ends as soon as everyone answered, and the summary says what changed since the previous run', async () => {
    const run = await checks.start({ labelSelector: 'pool=gpu', timeoutMs: 5000, trigger: HealthCheckTrigger.MANUAL, scheduleId: '', startedBy: 'admin' });
    const [a, b, c] = ['w-a', 'w-b', 'w-c'].map(checkCommand);
    checks.report('w-a', [report(a.commandId, HealthStatus.DEGRADED, 'GET took 2500 ms (slow above 2000 ms)')]);
    checks.report('w-b', [report(b.commandId, HealthStatus.UNHEALTHY, 'connection refused')]);
    checks.report('w-c', [report(c.commandId, HealthStatus.HEALTHY, 'ok', { stats: { collectors: [{ name: 'gpu', success: false, error: 'nvidia-smi hung' }] } })]);
    const done = await untilDone(run.checkId);
    expect(done.state).toBe(HealthCheckState.DONE);
    const by = Object.fromEntries(done.results.map((r) => [r.workerId, r]));
    expect(by['w-a']).toMatchObject({ score: 0.8, band: HealthBand.DEGRADED });
    expect(by['w-c']).toMatchObject({ score: 0.8, band: HealthBand.DEGRADED, reason: 'collector gpu failed: nvidia-smi hung' });
    expect(done.summary).toContain('1 failed');
    expect(done.summary).toMatch(/Since chk_[0-9a-f]+: recovered: w-c\.$/);
  });

  it('a heartbeat carrying a malformed check report is InvalidArgument and changes nothing', () => {
    const before = registry.workers.get('w-a')!.lastSeq;
    const bad = [
      { probeStatus: 9 as HealthStatus },
      { probeLatencySeconds: -1 },
      { hiveRttSeconds: Number.NaN },
      { probeDetail: 'x'.repeat(300) },
      { stats: { disks: [{ path: '/', freeBytes: 2n, totalBytes: 1n }] } },
      { stats: { gpus: [{ name: 'g'.repeat(300) }] } },
    ];
    for (const over of bad) {
      const hb = create(HeartbeatRequestSchema, { workerId: 'w-a', sessionId: 's', seq: before + 1n, status: HealthStatus.HEALTHY, checkReports: [report('cmd_x', HealthStatus.HEALTHY, 'ok', over)] });
      let code: Code | undefined;
      try {
        registry.heartbeat(as('w-a'), hb);
      } catch (err) {
        code = (err as { code: Code }).code;
      }
      expect(code, JSON.stringify(Object.keys(over))).toBe(Code.InvalidArgument);
      expect(registry.workers.get('w-a')!.lastSeq).toBe(before);
    }
    const tooMany = create(HeartbeatRequestSchema, { workerId: 'w-a', sessionId: 's', seq: before + 1n, checkReports: Array.from({ length: 9 }, (_, i) => report(`c${i}`, HealthStatus.HEALTHY)) });
    expect(() => registry.heartbeat(as('w-a'), tooMany)).toThrow(/more than 8 check reports/);
  });

  it('a run left RUNNING by a stopped hive is closed at the next start: the unanswered fail with that reason', async () => {
    const first = createHealthChecks({ registry, store, clock, log });
    const run = await first.start({ labelSelector: 'pool=gpu', timeoutMs: 60_000, trigger: HealthCheckTrigger.MANUAL, scheduleId: '', startedBy: 'admin' });
    const a = checkCommand('w-a');
    for (const id of ['w-b', 'w-c']) checkCommand(id);
    first.report('w-a', [report(a.commandId, HealthStatus.HEALTHY)]);
    await first.stop();
    expect((await store.getHealthCheck(run.checkId))?.run.state).toBe(HealthCheckState.RUNNING);

    const next = createHealthChecks({ registry, store, clock, log });
    expect(await next.recover()).toBe(1);
    const closed = await next.get(run.checkId);
    expect(closed).toMatchObject({ state: HealthCheckState.DONE, completed: 3, failed: 2 });
    expect(closed.results.map((r) => [r.workerId, r.outcome, r.reason])).toEqual([
      ['w-a', CheckOutcome.ANSWERED, 'ok'],
      ['w-b', CheckOutcome.NO_ANSWER, 'no answer: the hive stopped during the run'],
      ['w-c', CheckOutcome.NO_ANSWER, 'no answer: the hive stopped during the run'],
    ]);
    expect(await next.recover()).toBe(0);
  });

  it('a run without matching workers is done at once with nothing wrong', async () => {
    const run = await checks.start({ labelSelector: 'pool=none', timeoutMs: 5000, trigger: HealthCheckTrigger.SCHEDULED, scheduleId: 's1', startedBy: 'monitor' });
    expect(run).toMatchObject({ state: HealthCheckState.DONE, total: 0, score: 1, band: HealthBand.HEALTHY, summary: 'no workers matched' });
    const listed = await store.listHealthChecks({ limit: 10, trigger: HealthCheckTrigger.SCHEDULED });
    expect(listed.map((r) => r.checkId)).toEqual([run.checkId]);
    expect(registry.workers.get('w-gone')?.state).toBe(WorkerState.LEFT);
  });
});
