import { randomBytes } from 'node:crypto';
import { WorkerState, type Worker } from '../gen/hive/v1/registry_pb.js';
import type { Clock } from '../lib/clock.js';
import { formatDurationMs } from '../lib/duration.js';
import type { Logger } from '../lib/logger.js';
import type { RestartAction } from './actions/action.js';
import { DeadlineQueue, type Due } from './deadline-queue.js';
import { DueLoop } from './due-loop.js';
import type { HiveApi } from './hive-client.js';
import { errorText, isHeartbeatedSince } from './hive-errors.js';
import { sanitizeReason } from './reason.js';
import { triggersOn, type ActionName, type EffectivePolicy, type Trigger } from './policy.js';
import { attemptsInWindow, backoffMs, cleanRunResets, delayBeforeAttempt, mayAttempt } from './restart-schedule.js';
import { Code, ConnectError } from '@connectrpc/connect';

// Per-worker restart state machine:
//
//   trigger (STALE / UNHEALTHY, as the policy says)
//     -> waiting (restart_after, or the backoff for a later attempt)
//     -> [held while the mass-stale guard is engaged; a rate-limited slot after]
//     -> acting (RESTARTING by compare-and-set, then the action)
//     -> verifying (healthy heartbeats within verify_timeout)
//     -> idle (verified)  |  waiting (failed; backoff)  |  FAILED (attempts
//        exhausted within the window; critical alert)
//
// A worker that recovers while waiting is not restarted (one late beat
// restarts nothing); a LEFT or deregistered worker is dropped at any step;
// a clean run of a whole window forgets earlier attempts. All waiting is
// one deadline queue and one loop on the injected clock.

const HEALTHY: ReadonlySet<WorkerState> = new Set([WorkerState.HEALTHY, WorkerState.DEGRADED]);

export type Phase = 'idle' | 'waiting' | 'held' | 'acting' | 'verifying' | 'giving_up' | 'gave_up';

export interface RestartRecord {
  id: string;
  phase: Phase;
  trigger: Trigger;
  policy: EffectivePolicy;
  /** Times of attempts (local clock), pruned to the window. */
  attempts: number[];
  /** Attempts since the last reset: sets the backoff. */
  episodeAttempts: number;
  healthySince: number | null;
  /** When the current attempt was issued. */
  issuedAt: number;
  /** Holds a guard slot for its deadline. */
  reserved: boolean;
  heldNoted: boolean;
  /** Held because a dependency is down (blocked_by); resumes when the hive clears it. */
  blocked: boolean;
  casTries: number;
  /** Bumped whenever the record is dropped or reset: late async continuations check it. */
  generation: number;
  action: ActionName | null;
}

export interface SupervisorNotify {
  attemptFailed?(w: Worker | undefined, rec: RestartRecord, detail: string): void;
  gaveUp?(w: Worker | undefined, rec: RestartRecord, why: string): void;
  verified?(w: Worker, rec: RestartRecord): void;
}

export interface SupervisorDeps {
  clock: Clock;
  log: Logger;
  hive: Pick<HiveApi, 'setWorkerState' | 'recordEvent'>;
  actions: Record<ActionName, RestartAction>;
  policies: { resolve(w: Worker): EffectivePolicy };
  view: { get(id: string): Worker | undefined };
  guard: { readonly engaged: boolean; reserve(now: number): number };
  random?: () => number;
  metrics?: { attempt(action: ActionName): void; restart(action: ActionName, result: 'issued' | 'verified' | 'failed'): void };
  notify?: SupervisorNotify;
  /** Pause between compare-and-set retries while the watch catches up with a heartbeat. */
  casRetryMs?: number;
  /**
   * Least wait from a trigger to the first attempt. For stale triggers the
   * monitor passes the mass-stale guard's window: a wave of workers dying
   * together goes stale spread over an interval, and none of it may be
   * restarted before the guard has seen the whole wave.
   */
  minWaitMs?: (trigger: Trigger, w: Worker) => number;
}

export type RestartSupervisor = ReturnType<typeof createRestartSupervisor>;

export function createRestartSupervisor(deps: SupervisorDeps) {
  const { clock, log, hive } = deps;
  const random = deps.random ?? Math.random;
  const recs = new Map<string, RestartRecord>();
  const queue = new DeadlineQueue();
  const held = new Set<string>();
  const stopCtl = new AbortController();
  const work = new Set<Promise<unknown>>();
  const loop = new DueLoop({ clock, queue, log, onDue: (due) => due.forEach(step) });

  function track(p: Promise<unknown>): void {
    const t = p.catch((err) => log.error({ err }, 'restart step failed'));
    work.add(t);
    void t.finally(() => work.delete(t));
  }

  function schedule(rec: RestartRecord, at: number): void {
    queue.update(rec.id, at);
    loop.poke();
  }

  function unschedule(rec: RestartRecord): void {
    if (queue.remove(rec.id)) loop.poke();
    held.delete(rec.id);
  }

  /** Records an event row; the promise settles (never rejects) once the hive has it or refused it. */
  function event(id: string, kind: string, reason: string): Promise<void> {
    // Reasons carry action output (several lines, any length): bounded here
    // so that the HiveApi in use, real or not, gets what the hive accepts.
    const p = hive.recordEvent(id, kind, sanitizeReason(reason)).catch((err) => log.warn({ workerId: id, kind, err: errorText(err) }, 'event not recorded'));
    track(p);
    return p;
  }

  function drop(rec: RestartRecord, why: string): void {
    if (rec.phase !== 'idle' && rec.phase !== 'gave_up') log.info({ workerId: rec.id, phase: rec.phase, why }, 'restart abandoned');
    unschedule(rec);
    rec.generation++;
    recs.delete(rec.id);
  }

  function toIdle(rec: RestartRecord, now: number): void {
    unschedule(rec);
    rec.generation++;
    rec.phase = 'idle';
    rec.reserved = false;
    rec.heldNoted = false;
    rec.blocked = false;
    rec.healthySince = now;
  }

  const label = (rec: RestartRecord) => `attempt ${rec.episodeAttempts}/${rec.policy.maxAttempts} via ${rec.action ?? 'none'} (${rec.trigger})`;

  function begin(rec: RestartRecord | undefined, w: Worker, policy: EffectivePolicy, trigger: Trigger): void {
    const now = clock.now();
    const r: RestartRecord = rec ?? {
      id: w.workerId,
      phase: 'idle',
      trigger,
      policy,
      attempts: [],
      episodeAttempts: 0,
      healthySince: null,
      issuedAt: 0,
      reserved: false,
      heldNoted: false,
      blocked: false,
      casTries: 0,
      generation: 0,
      action: policy.action,
    };
    if (cleanRunResets(r.healthySince, now, policy.windowMs)) {
      r.attempts = [];
      r.episodeAttempts = 0;
    }
    r.attempts = attemptsInWindow(r.attempts, now, policy.windowMs);
    r.phase = 'waiting';
    r.trigger = trigger;
    r.policy = policy;
    r.action = policy.action;
    r.healthySince = null;
    r.casTries = 0;
    recs.set(r.id, r);
    const delay = Math.max(delayBeforeAttempt(r.episodeAttempts + 1, policy, random), deps.minWaitMs?.(trigger, w) ?? 0);
    schedule(r, now + delay);
    log.info({ workerId: r.id, trigger, action: policy.action, policy: policy.source, inMs: delay, attempt: r.episodeAttempts + 1 }, 'restart scheduled');
  }

  function adopt(w: Worker, policy: EffectivePolicy, phase: 'verifying' | 'gave_up'): void {
    // Picked up mid-way (this monitor restarted): count what is under way.
    const now = clock.now();
    const rec: RestartRecord = {
      id: w.workerId,
      phase,
      trigger: triggersOn(policy, 'stale') ? 'stale' : 'unhealthy',
      policy,
      attempts: phase === 'verifying' ? [now] : [],
      episodeAttempts: phase === 'verifying' ? 1 : 0,
      healthySince: null,
      issuedAt: now,
      reserved: false,
      heldNoted: false,
      blocked: false,
      casTries: 0,
      generation: 0,
      action: policy.action,
    };
    recs.set(rec.id, rec);
    if (phase === 'verifying') schedule(rec, now + policy.verifyTimeoutMs);
    log.info({ workerId: rec.id, phase }, 'restart picked up from the registry state');
  }

  function verified(rec: RestartRecord, w: Worker): void {
    const now = clock.now();
    toIdle(rec, now);
    if (rec.action) deps.metrics?.restart(rec.action, 'verified');
    const took = formatDurationMs(Math.max(0, now - rec.issuedAt));
    log.info({ workerId: rec.id, attempt: rec.episodeAttempts, action: rec.action, tookMs: now - rec.issuedAt }, 'restart verified');
    event(rec.id, 'restart_verified', `${label(rec)}: healthy heartbeats ${took} after the restart`);
    deps.notify?.verified?.(w, rec);
  }

  function onHealthy(rec: RestartRecord, w: Worker): void {
    const now = clock.now();
    switch (rec.phase) {
      case 'waiting':
      case 'held':
        log.info({ workerId: rec.id, trigger: rec.trigger }, 'restart cancelled: the worker recovered by itself');
        toIdle(rec, now);
        return;
      case 'acting':
        // The action's continuation finds it healthy and verifies.
        return;
      case 'verifying':
        verified(rec, w);
        return;
      case 'giving_up':
      case 'gave_up':
        // Healthy after we gave up (fixed by hand): start from scratch.
        toIdle(rec, now);
        rec.attempts = [];
        rec.episodeAttempts = 0;
        return;
      case 'idle':
        if (rec.healthySince === null) rec.healthySince = now;
        else if (cleanRunResets(rec.healthySince, now, rec.policy.windowMs)) recs.delete(rec.id);
        return;
    }
  }

  /**
   * Compare-and-set of a monitor-owned state on the view's latest heartbeat;
   * retried while the watch catches up. 'refused': the hive rejected the
   * request itself (InvalidArgument), which no retry can change.
   */
  async function casState(rec: RestartRecord, state: WorkerState.RESTARTING | WorkerState.FAILED, why: string, gen: number): Promise<'ok' | 'gone' | 'healthy' | 'retry' | 'refused'> {
    const reason = sanitizeReason(why);
    for (let i = 0; i < 3; i++) {
      if (rec.generation !== gen) return 'gone';
      const w = deps.view.get(rec.id);
      if (!w || w.state === WorkerState.LEFT) return 'gone';
      if (HEALTHY.has(w.state)) return 'healthy';
      if (w.state === state) return 'ok';
      try {
        await hive.setWorkerState({ workerId: rec.id, observedSeq: w.lastSeq, observedSessionId: w.sessionId }, state, reason);
        return 'ok';
      } catch (err) {
        if (isHeartbeatedSince(err)) {
          // The watch is a few ms behind the hive: wait for it, then retry on the newer heartbeat.
          try {
            await clock.sleep(deps.casRetryMs ?? 100, stopCtl.signal);
          } catch {
            return 'gone';
          }
          continue;
        }
        const ce = ConnectError.from(err);
        if (ce.code === Code.NotFound || (ce.code === Code.FailedPrecondition && /left cleanly/.test(ce.rawMessage))) return 'gone';
        if (ce.code === Code.InvalidArgument) {
          log.error({ workerId: rec.id, state: WorkerState[state], reason, err: errorText(err) }, 'state change refused by the hive; not retrying');
          return 'refused';
        }
        log.warn({ workerId: rec.id, state: WorkerState[state], err: errorText(err) }, 'state change failed; will retry');
        return 'retry';
      }
    }
    return 'retry';
  }

  function retryLater(rec: RestartRecord, phase: Phase): void {
    rec.phase = phase;
    rec.casTries++;
    schedule(rec, clock.now() + Math.min(30_000, 500 * 2 ** Math.min(rec.casTries, 6)));
  }

  async function act(rec: RestartRecord): Promise<void> {
    const gen = rec.generation;
    rec.phase = 'acting';
    const action = rec.action!;
    const r = await casState(rec, WorkerState.RESTARTING, `restart: ${rec.trigger}, attempt ${rec.episodeAttempts + 1}/${rec.policy.maxAttempts} via ${action}`, gen);
    if (rec.generation !== gen) return;
    if (r === 'gone') return drop(rec, 'worker left or was removed');
    if (r === 'healthy') {
      log.info({ workerId: rec.id }, 'restart cancelled: the worker recovered by itself');
      return toIdle(rec, clock.now());
    }
    if (r === 'retry') return retryLater(rec, 'waiting');
    if (r === 'refused') return drop(rec, 'the hive refused RESTARTING');
    rec.casTries = 0;
    const now = clock.now();
    rec.attempts.push(now);
    rec.episodeAttempts++;
    rec.issuedAt = now;
    deps.metrics?.attempt(action);
    deps.metrics?.restart(action, 'issued');
    const w = deps.view.get(rec.id);
    if (!w) return drop(rec, 'worker was removed');
    log.info({ workerId: rec.id, action, attempt: rec.episodeAttempts, maxAttempts: rec.policy.maxAttempts, trigger: rec.trigger }, 'restart issued');
    event(rec.id, 'restart_issued', label(rec));
    const result = await deps.actions[action](
      { worker: w, policy: rec.policy, trigger: rec.trigger, attempt: rec.episodeAttempts, attemptId: `rst_${randomBytes(6).toString('hex')}`, reason: `hive-monitor: ${label(rec)}` },
      stopCtl.signal,
    );
    if (rec.generation !== gen) return;
    if (!result.ok) return attemptFailed(rec, result.detail);
    log.info({ workerId: rec.id, action, detail: result.detail }, 'restart action done');
    const after = deps.view.get(rec.id);
    if (after && HEALTHY.has(after.state)) return verified(rec, after);
    rec.phase = 'verifying';
    schedule(rec, clock.now() + rec.policy.verifyTimeoutMs);
  }

  function attemptFailed(rec: RestartRecord, detail: string): void {
    unschedule(rec);
    if (rec.action) deps.metrics?.restart(rec.action, 'failed');
    log.warn({ workerId: rec.id, attempt: rec.episodeAttempts, action: rec.action, detail }, 'restart attempt failed');
    const recorded = event(rec.id, 'restart_failed', `${label(rec)}: ${detail}`);
    deps.notify?.attemptFailed?.(deps.view.get(rec.id), rec, detail);
    const now = clock.now();
    rec.attempts = attemptsInWindow(rec.attempts, now, rec.policy.windowMs);
    if (!mayAttempt(rec.attempts, now, rec.policy)) {
      // After the failure's own row, so the log reads in order: the last
      // restart_failed, then gave_up (written with FAILED).
      const why = `${rec.attempts.length} restart attempts within ${formatDurationMs(rec.policy.windowMs)} failed; last: ${detail}`;
      // A recovery or removal meanwhile bumps the generation: then nothing to give up.
      const gen = rec.generation;
      rec.phase = 'giving_up';
      track(recorded.then(() => (rec.generation === gen ? giveUp(rec, why) : undefined)));
      return;
    }
    rec.phase = 'waiting';
    const delay = backoffMs(rec.episodeAttempts + 1, rec.policy, random);
    schedule(rec, now + delay);
    log.info({ workerId: rec.id, inMs: delay, attempt: rec.episodeAttempts + 1 }, 'restart scheduled after backoff');
  }

  async function giveUp(rec: RestartRecord, why: string): Promise<void> {
    const gen = rec.generation;
    rec.phase = 'giving_up';
    unschedule(rec);
    const r = await casState(rec, WorkerState.FAILED, `gave up: ${why}`, gen);
    if (rec.generation !== gen) return;
    if (r === 'gone') return drop(rec, 'worker left or was removed');
    if (r === 'healthy') return toIdle(rec, clock.now());
    if (r === 'retry') return retryLater(rec, 'giving_up');
    // Refused: FAILED is not recorded, but the attempts are spent all the
    // same, and the critical alert must still go out.
    rec.phase = 'gave_up';
    log.error({ workerId: rec.id, why, recorded: r === 'ok' }, 'restart attempts exhausted; worker FAILED');
    deps.notify?.gaveUp?.(deps.view.get(rec.id), rec, why);
  }

  function step(d: Due): void {
    const rec = recs.get(d.key);
    if (!rec) return;
    switch (rec.phase) {
      case 'waiting':
        return attemptNow(rec);
      case 'verifying':
        return attemptFailed(rec, `no healthy heartbeat within verify_timeout (${formatDurationMs(rec.policy.verifyTimeoutMs)})`);
      case 'giving_up':
        track(giveUp(rec, 'restart attempts exhausted'));
        return;
      default:
        return;
    }
  }

  function attemptNow(rec: RestartRecord): void {
    const w = deps.view.get(rec.id);
    if (!w || w.state === WorkerState.LEFT) return drop(rec, 'worker left or was removed');
    const now = clock.now();
    if (HEALTHY.has(w.state)) return toIdle(rec, now);
    if (!rec.action) return drop(rec, 'policy has no usable action');
    rec.attempts = attemptsInWindow(rec.attempts, now, rec.policy.windowMs);
    if (!mayAttempt(rec.attempts, now, rec.policy)) {
      track(giveUp(rec, `${rec.attempts.length} restart attempts within ${formatDurationMs(rec.policy.windowMs)} already`));
      return;
    }
    if (w.blockedBy.length > 0) {
      // Dependencies first: restarting a worker whose dependency is down
      // only adds to the storm. The hive clears blocked_by when they are
      // healthy again, and observe() resumes the restart then.
      rec.phase = 'held';
      if (!rec.blocked) {
        rec.blocked = true;
        log.info({ workerId: rec.id, blockedBy: w.blockedBy }, 'restart held: dependencies not healthy');
        event(rec.id, 'restart_blocked', `waiting for dependencies: ${w.blockedBy.join(', ')}`.slice(0, 256));
      }
      return;
    }
    rec.blocked = false;
    if (deps.guard.engaged) {
      rec.phase = 'held';
      rec.reserved = false;
      held.add(rec.id);
      if (!rec.heldNoted) {
        rec.heldNoted = true;
        log.warn({ workerId: rec.id }, 'restart held: mass-stale guard engaged');
        event(rec.id, 'restart_held', 'mass-stale guard engaged: restart actions paused');
      }
      return;
    }
    if (!rec.reserved) {
      const slot = deps.guard.reserve(now);
      if (slot > now) {
        rec.reserved = true;
        log.info({ workerId: rec.id, inMs: slot - now }, 'restart rate-limited after the mass-stale guard');
        schedule(rec, slot);
        return;
      }
    }
    rec.reserved = false;
    rec.heldNoted = false;
    track(act(rec));
  }

  return {
    /** Feeds the watch's latest copy of a worker (prev: the view's previous copy). */
    observe(w: Worker): void {
      const rec = recs.get(w.workerId);
      if (w.state === WorkerState.LEFT) {
        if (rec) drop(rec, 'worker left cleanly');
        return;
      }
      if (HEALTHY.has(w.state)) {
        if (rec) onHealthy(rec, w);
        return;
      }
      if (rec && (rec.phase === 'waiting' || rec.phase === 'held') && w.state === WorkerState.RESTARTING) {
        // Another monitor (the leader before us) restarted it: verify, do not restart again.
        unschedule(rec);
        rec.phase = 'verifying';
        rec.issuedAt = clock.now();
        rec.episodeAttempts++;
        rec.attempts.push(rec.issuedAt);
        schedule(rec, rec.issuedAt + rec.policy.verifyTimeoutMs);
        log.info({ workerId: rec.id }, 'restart issued elsewhere: verifying it');
        return;
      }
      if (rec && rec.phase === 'held' && rec.blocked && w.blockedBy.length === 0) {
        rec.phase = 'waiting';
        log.info({ workerId: rec.id }, 'dependencies healthy again: restart resumes');
        schedule(rec, clock.now());
        return;
      }
      if (rec && rec.phase !== 'idle') return;
      const policy = deps.policies.resolve(w);
      const trigger: Trigger | null = w.state === WorkerState.STALE ? 'stale' : w.state === WorkerState.UNHEALTHY ? 'unhealthy' : null;
      if (trigger && triggersOn(policy, trigger)) {
        if (!policy.action) {
          log.warn({ workerId: w.workerId, policy: policy.source }, 'restart policy has no usable action for this trigger; not restarting');
          return;
        }
        begin(rec, w, policy, trigger);
        return;
      }
      if (rec || policy.action === null || (!triggersOn(policy, 'stale') && !triggersOn(policy, 'unhealthy'))) return;
      if (w.state === WorkerState.RESTARTING) adopt(w, policy, 'verifying');
      else if (w.state === WorkerState.FAILED) adopt(w, policy, 'gave_up');
    },
    remove(id: string): void {
      const rec = recs.get(id);
      if (rec) drop(rec, 'worker was removed from the registry');
    },
    /** The guard released: held restarts go back to waiting (each then reserves its slot). */
    released(): void {
      const now = clock.now();
      for (const id of held) {
        const rec = recs.get(id);
        if (!rec || rec.phase !== 'held') continue;
        rec.phase = 'waiting';
        schedule(rec, now);
      }
      held.clear();
    },
    setEnabled(on: boolean): void {
      loop.setEnabled(on);
    },
    start(): void {
      loop.start();
    },
    async stop(): Promise<void> {
      stopCtl.abort();
      await loop.stop();
      await Promise.all([...work]);
    },
    record(id: string): Readonly<RestartRecord> | undefined {
      return recs.get(id);
    },
    get active(): number {
      let n = 0;
      for (const r of recs.values()) if (r.phase !== 'idle') n++;
      return n;
    },
  };
}
