import { toBinary } from '@bufbuild/protobuf';
import { randomBytes } from 'node:crypto';
import { CheckOutcome, HealthCheckState, type HealthCheck, type HealthCheckTrigger } from '../gen/hive/v1/health_check_pb.js';
import { CheckReportSchema, CommandType, WorkerState, type CheckReport } from '../gen/hive/v1/registry_pb.js';
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/logger.js';
import { bandOf, isFailed, noAnswer, runScore, scoreReport } from './check-score.js';
import { summarize } from './check-summary.js';
import { notFound, resourceExhausted } from './errors.js';
import { toHealthCheckMessage } from './health-check-messages.js';
import type { Registry } from './registry.js';
import { matchesSelector, parseSelector } from './selector.js';
import type { HealthCheckResultRow, HealthCheckRow, Store } from './store/store.js';

// Health-check runs. A run picks the workers matching its selector, sends
// each a CHECK command (pushed down its open heartbeat stream, or handed
// over with its next heartbeat reply), scores every answer as it arrives
// and, at the timeout, counts whoever has not answered as failed. The run
// and each result are written as they happen, so a run is durable from its
// start; the finished run gets its score, band and summary.

export interface HealthChecksDeps {
  registry: Pick<Registry, 'workers' | 'sendCommand'>;
  store: Store;
  clock: Clock;
  log: Logger;
  /** Called once per finished run (metrics). */
  onFinished?: (run: HealthCheckRow) => void;
}

export interface StartRequest {
  labelSelector: string;
  timeoutMs: number;
  trigger: HealthCheckTrigger;
  scheduleId: string;
  startedBy: string;
}

/** Runs in flight at once; each holds a timer and one command per worker. */
export const MAX_RUNNING = 16;

interface LiveRun {
  row: HealthCheckRow;
  results: Map<string, HealthCheckResultRow>;
  /** command id -> worker id */
  commands: Map<string, string>;
  version: number;
  waiters: Set<() => void>;
  timer: AbortController;
  writes: Promise<unknown>;
  finishing: Promise<void> | null;
}

export type HealthChecks = ReturnType<typeof createHealthChecks>;

export function createHealthChecks(deps: HealthChecksDeps) {
  const { registry, store, clock, log } = deps;
  const live = new Map<string, LiveRun>();
  const byCommand = new Map<string, LiveRun>();

  const sorted = (run: LiveRun) => [...run.results.values()].sort((a, b) => (a.workerId < b.workerId ? -1 : a.workerId > b.workerId ? 1 : 0));

  function changed(run: LiveRun): void {
    run.version++;
    const ws = [...run.waiters];
    run.waiters.clear();
    for (const w of ws) w();
  }

  /** Writes of one run go in order; a failed write is logged and the next one carries the newer state. */
  function persist(run: LiveRun, results: HealthCheckResultRow[]): Promise<unknown> {
    const row = { ...run.row };
    const copies = results.map((r) => ({ ...r }));
    run.writes = run.writes.then(() => store.saveHealthCheck(row, copies)).catch((err) => log.error({ err, checkId: row.checkId }, 'health-check write failed'));
    return run.writes;
  }

  async function previousOf(row: HealthCheckRow) {
    const recent = await store.listHealthChecks({ limit: 50, before: { startedAt: row.startedAt, checkId: row.checkId } });
    const prev = recent.find((r) => r.state === HealthCheckState.DONE && r.labelSelector === row.labelSelector);
    if (!prev) return undefined;
    const full = await store.getHealthCheck(prev.checkId);
    return full ? { checkId: prev.checkId, results: full.results } : undefined;
  }

  function finish(run: LiveRun): Promise<void> {
    run.finishing ??= (async () => {
      // The run ends now; reading the previous run and writing come after.
      const endedAt = clock.now();
      run.timer.abort();
      for (const c of run.commands.keys()) byCommand.delete(c);
      const late: HealthCheckResultRow[] = [];
      for (const r of run.results.values()) {
        if (r.outcome !== CheckOutcome.PENDING) continue;
        Object.assign(r, noAnswer(run.row.timeoutMs));
        late.push(r);
      }
      const results = sorted(run);
      let previous;
      try {
        previous = await previousOf(run.row);
      } catch (err) {
        log.warn({ err, checkId: run.row.checkId }, 'previous health check not read; summary without comparison');
      }
      const score = runScore(results.map((r) => r.score));
      Object.assign(run.row, {
        state: HealthCheckState.DONE,
        finishedAt: endedAt,
        completed: results.length,
        failed: results.filter(isFailed).length,
        score,
        band: bandOf(score),
        summary: summarize(results, previous),
      });
      // Watchers hear "done" only once it is on disk.
      await persist(run, late);
      changed(run);
      live.delete(run.row.checkId);
      log.info({ checkId: run.row.checkId, total: run.row.total, failed: run.row.failed, score: Number(score.toFixed(3)) }, 'health check done');
      deps.onFinished?.(run.row);
    })();
    return run.finishing;
  }

  function view(run: LiveRun): HealthCheck {
    return toHealthCheckMessage(run.row, sorted(run));
  }

  return {
    async start(req: StartRequest): Promise<HealthCheck> {
      const selector = parseSelector(req.labelSelector);
      if (live.size >= MAX_RUNNING) throw resourceExhausted(`${MAX_RUNNING} health checks are running already`);
      const ids = [...registry.workers.values()]
        .filter((w) => w.state !== WorkerState.LEFT && matchesSelector(selector, w.labels))
        .map((w) => w.workerId)
        .sort();
      const checkId = `chk_${randomBytes(6).toString('hex')}`;
      const row: HealthCheckRow = {
        checkId,
        trigger: req.trigger,
        scheduleId: req.scheduleId,
        labelSelector: req.labelSelector,
        timeoutMs: req.timeoutMs,
        state: HealthCheckState.RUNNING,
        startedAt: clock.now(),
        finishedAt: null,
        total: ids.length,
        completed: 0,
        failed: 0,
        score: 0,
        band: 0,
        summary: '',
        startedBy: req.startedBy,
      };
      const results = new Map(ids.map((workerId) => [workerId, { checkId, workerId, outcome: CheckOutcome.PENDING, score: 0, band: 0, reason: '', report: null, answeredAt: null } as HealthCheckResultRow]));
      // Durable before anyone is asked: an answer never refers to a run that is not stored.
      await store.saveHealthCheck(row, [...results.values()]);
      const run: LiveRun = { row, results, commands: new Map(), version: 0, waiters: new Set(), timer: new AbortController(), writes: Promise.resolve(), finishing: null };
      live.set(checkId, run);
      for (const id of ids) {
        try {
          const { command } = await registry.sendCommand(id, CommandType.CHECK, `health check ${checkId}`);
          run.commands.set(command.commandId, id);
          byCommand.set(command.commandId, run);
        } catch {
          // Deregistered since it was picked: it stays unanswered and fails at the timeout.
        }
      }
      log.info({ checkId, workers: ids.length, selector: req.labelSelector, timeoutMs: req.timeoutMs, trigger: req.trigger }, 'health check started');
      if (ids.length === 0) await finish(run);
      else
        clock.sleep(req.timeoutMs, run.timer.signal).then(
          () => finish(run),
          () => undefined,
        );
      return view(run);
    },

    /** Answers carried by a heartbeat of workerId; answers to other workers' commands are ignored. */
    report(workerId: string, reports: readonly CheckReport[]): void {
      for (const report of reports) {
        const run = byCommand.get(report.commandId);
        if (!run || run.finishing || run.commands.get(report.commandId) !== workerId) continue;
        const result = run.results.get(workerId);
        if (!result || result.outcome !== CheckOutcome.PENDING) continue;
        byCommand.delete(report.commandId);
        const s = scoreReport(report);
        Object.assign(result, { ...s, report: toBinary(CheckReportSchema, report), answeredAt: clock.now() });
        run.row.completed++;
        if (isFailed(s)) run.row.failed++;
        changed(run);
        void persist(run, [result]);
        if (run.row.completed === run.row.total) void finish(run);
      }
    },

    async get(checkId: string): Promise<HealthCheck> {
      const run = live.get(checkId);
      if (run) return view(run);
      const stored = await store.getHealthCheck(checkId);
      if (!stored) throw notFound(`health check "${checkId}" does not exist`);
      return toHealthCheckMessage(stored.run, stored.results);
    },

    /** The run now, then after every change, ending with the finished run. */
    async *watch(checkId: string, signal: AbortSignal): AsyncGenerator<HealthCheck> {
      const run = live.get(checkId);
      if (!run) {
        yield await this.get(checkId);
        return;
      }
      let seen = -1;
      while (!signal.aborted) {
        if (run.version !== seen) {
          seen = run.version;
          const msg = view(run);
          yield msg;
          if (msg.state === HealthCheckState.DONE) return;
        }
        await new Promise<void>((resolve) => {
          if (run.version !== seen || signal.aborted) return resolve();
          // One listener per wait, removed again: a long run must not pile them up on the signal.
          const wake = () => {
            signal.removeEventListener('abort', wake);
            run.waiters.delete(wake);
            resolve();
          };
          run.waiters.add(wake);
          signal.addEventListener('abort', wake, { once: true });
        });
      }
    },

    /**
     * Closes runs a previous hive process left RUNNING (it stopped or
     * crashed mid-run): whoever had not answered then never will to this
     * process, so they fail with that reason and the run gets its score and
     * summary. Called once at start, before anything is served.
     */
    async recover(): Promise<number> {
      const orphans = await store.listHealthChecks({ state: HealthCheckState.RUNNING, limit: 1000 });
      for (const row of orphans) {
        if (live.has(row.checkId)) continue;
        const stored = await store.getHealthCheck(row.checkId);
        if (!stored) continue;
        const results = stored.results;
        const late = results.filter((r) => r.outcome === CheckOutcome.PENDING);
        for (const r of late) Object.assign(r, noAnswer(row.timeoutMs), { reason: 'no answer: the hive stopped during the run' });
        let previous;
        try {
          previous = await previousOf(row);
        } catch {
          previous = undefined;
        }
        const score = runScore(results.map((r) => r.score));
        const done: HealthCheckRow = { ...stored.run, state: HealthCheckState.DONE, finishedAt: clock.now(), completed: results.length, failed: results.filter(isFailed).length, score, band: bandOf(score), summary: summarize(results, previous) };
        await store.saveHealthCheck(done, late);
        log.warn({ checkId: row.checkId, unanswered: late.length }, 'health check left running by a previous hive closed');
      }
      return orphans.length;
    },

    get running(): number {
      return live.size;
    },

    /** Ends timers; runs still going stay RUNNING in the store until the next start's recover() closes them. */
    async stop(): Promise<void> {
      for (const run of live.values()) {
        run.timer.abort();
        for (const w of run.waiters) w();
        await run.writes;
      }
    },
  };
}
