import { WorkerState, type Worker } from '../gen/hive/v1/registry_pb.js';
import type { Clock } from '../lib/clock.js';
import { durationToMs, timestampToMs } from '../lib/duration.js';
import type { Logger } from '../lib/logger.js';
import { DeadlineQueue, type Due } from './deadline-queue.js';
import { DueLoop } from './due-loop.js';
import type { HiveApi } from './hive-client.js';
import { classifyMarkError, type MarkOutcome } from './hive-errors.js';

// Stale detection: one deadline per worker (last seen + 2x its interval,
// in the hive's clock) in a deadline queue, one loop that sleeps until the
// earliest, and a MarkStale compare-and-set on the seq the monitor saw.
// A due deadline is acted on only if the view is complete through half an
// interval before it (the watch's complete_through): the heartbeat that
// would have met it was due an interval earlier, so a view that far along
// has it. A view further behind (a saturated hive or monitor) holds the
// mark until it catches up, instead of sending marks the hive refuses for
// heartbeats the monitor has not seen, a flood that puts it further behind.
// The hive has the last word: a late heartbeat always wins (the mark is
// refused and the deadline dropped; the watch brings the new one), and a
// mark it finds early is retried when it says. Transient failures are
// re-queued with backoff until the hive answers (at least once).

/** States the hive lets the monitor mark STALE. */
export const WATCHED_STATES: ReadonlySet<WorkerState> = new Set([WorkerState.PENDING, WorkerState.HEALTHY, WorkerState.DEGRADED, WorkerState.UNHEALTHY]);

export interface Observed {
  seq: bigint;
  session: string;
  /** The deadline as computed (hive ms). */
  dueAt: number;
  /** Last heartbeat (or registration) time, hive ms. */
  lastSeen: number;
  intervalMs: number;
}

/**
 * When the worker's silence becomes staleness, in hive ms: twice its
 * interval after its last heartbeat (or registration), but never inside the
 * hive's post-restart grace, nor within 2x interval of graceBase (the end
 * of the monitor's own grace after it could not see the registry).
 */
export function deadlineOf(w: Worker, graceBase: number, promotedAt = -Infinity): number {
  const interval = durationToMs(w.heartbeatInterval) ?? 0;
  const last = timestampToMs(w.lastSeen) ?? timestampToMs(w.registeredAt) ?? 0;
  const hiveGrace = timestampToMs(w.graceUntil) ?? -Infinity;
  // A new leader judges nobody within one interval of taking over: every
  // live worker has beaten (and the watch brought it) by then, and what the
  // old leader had in flight has landed.
  return Math.max(last + 2 * interval, hiveGrace, graceBase + 2 * interval, promotedAt + interval);
}

/**
 * The grace after a gap in what the monitor could see: deadlines start
 * counting afresh from the sync, plus a multiple of the measured outage
 * (agents find a restarted hive on a jittered exponential backoff, so
 * they trail the monitor by a random share of the outage), capped.
 */
export function graceBaseAfterGap(syncAtHive: number, gapMs: number, factor: number, maxMs: number): number {
  return syncAtHive + Math.min(Math.max(0, gapMs) * factor, maxMs);
}

/** What one MarkStale call came to. */
export type MarkAnswer = 'applied' | 'done' | MarkOutcome['kind'];

export interface StaleDetectorDeps {
  clock: Clock;
  log: Logger;
  hive: Pick<HiveApi, 'markStale'>;
  /** The hive's clock as estimated by the informer. */
  hiveNow: () => number;
  /**
   * The hive time the view is complete through (the watch's
   * complete_through), or null where the hive does not say.
   */
  viewThrough?: () => number | null;
  maxInFlight?: number;
  retryBaseMs?: number;
  retryCapMs?: number;
  /** A mark this call applied; lagMs = hive mark time - the deadline. */
  onMarked?: (w: Worker, lagMs: number) => void;
  /** An applied mark's state_since (hive ms), stamped after the call left at sentAt (local ms): a bound on the hive's clock. */
  onStamped?: (hiveMs: number, sentAt: number) => void;
  /** Every MarkStale answer: applied, or why not (MarkOutcome's kind; 'done' for an answer that changed nothing). */
  onAnswer?: (outcome: MarkAnswer) => void;
}

export type StaleDetector = ReturnType<typeof createStaleDetector>;

/** The longest a due mark waits for the view (or two intervals, if longer) before it goes out on the clock alone. */
export const HOLD_CAP_MS = 10_000;

export function createStaleDetector(deps: StaleDetectorDeps) {
  const { clock, log, hive } = deps;
  const queue = new DeadlineQueue();
  /** Due deadlines waiting for the view, keyed by the hive time the view must reach. */
  const held = new DeadlineQueue();
  const observed = new Map<string, Observed>();
  const inFlight = new Map<string, Observed>();
  const retries = new Map<string, number>();
  // A rack going silent is a burst of marks; the hive commits those that
  // meet on the way in one transaction, so they are sent together rather
  // than queued here behind each other's commits.
  const maxInFlight = deps.maxInFlight ?? 1024;
  let graceBase = -Infinity;
  let promotedAt = -Infinity;

  const loop = new DueLoop({
    clock,
    queue,
    log,
    now: deps.hiveNow,
    capacity: () => maxInFlight - inFlight.size,
    onDue: (due) => {
      for (const d of due) {
        const obs = observed.get(d.key);
        if (obs && !viewHas(obs)) hold(d.key, obs);
        else fire(d);
      }
    },
  });

  const viewThrough = deps.viewThrough ?? (() => null);
  const viewNeeded = (obs: Observed) => obs.dueAt - obs.intervalMs / 2;
  function viewHas(obs: Observed): boolean {
    const through = viewThrough();
    return through === null || through >= viewNeeded(obs);
  }

  // Held marks go out when the view catches up, or, should it stop moving
  // (a watch stuck behind), at holdCap after the deadline on the clock
  // alone: a view that stands still must not stop detection. Both loops
  // share the in-flight bound.
  /** The same marks, keyed by when they go out anyway (hive clock). */
  const heldUntil = new DeadlineQueue();
  const holdCapMs = (obs: Observed) => Math.max(2 * obs.intervalMs, HOLD_CAP_MS);
  const heldLoop = new DueLoop({
    clock,
    queue: held,
    log,
    now: () => viewThrough() ?? Infinity,
    untimed: true,
    capacity: () => maxInFlight - inFlight.size,
    onDue: (due) => {
      for (const d of due) {
        heldUntil.remove(d.key);
        fire(d);
      }
    },
  });
  const capLoop = new DueLoop({
    clock,
    queue: heldUntil,
    log,
    now: deps.hiveNow,
    capacity: () => maxInFlight - inFlight.size,
    onDue: (due) => {
      log.warn({ marks: due.length, viewThrough: viewThrough() }, 'the view stood still: held stale marks go out on the clock');
      for (const d of due) {
        held.remove(d.key);
        fire(d);
      }
    },
  });
  const loops = [loop, heldLoop, capLoop];

  function hold(id: string, obs: Observed): void {
    held.update(id, viewNeeded(obs));
    heldUntil.update(id, obs.dueAt + holdCapMs(obs));
    heldLoop.poke();
    capLoop.poke();
  }

  function unhold(id: string): void {
    if (held.remove(id)) heldLoop.poke();
    if (heldUntil.remove(id)) capLoop.poke();
  }

  function fire(d: Due): void {
    const obs = observed.get(d.key);
    if (!obs) return;
    inFlight.set(d.key, obs);
    void mark(d.key, obs).finally(() => {
      inFlight.delete(d.key);
      for (const l of loops) l.poke();
    });
  }

  function requeue(id: string, obs: Observed, at: number): void {
    // A newer observation (the watch delivered a heartbeat while the call
    // was in flight) has set its own deadline: that one stands.
    if (observed.get(id) !== obs || queue.has(id) || held.has(id)) return;
    queue.update(id, at);
    loop.poke();
  }

  async function mark(id: string, obs: Observed): Promise<void> {
    const silentMs = Math.max(0, deps.hiveNow() - obs.lastSeen);
    const sentAt = clock.now();
    try {
      const { worker, applied } = await hive.markStale(
        { workerId: id, observedSeq: obs.seq, observedSessionId: obs.session },
        `no heartbeat for ${silentMs} ms (2x interval ${obs.intervalMs} ms)`,
      );
      retries.delete(id);
      if (observed.get(id) === obs) observed.delete(id);
      deps.onAnswer?.(applied && worker ? 'applied' : 'done');
      if (!applied || !worker) return;
      const stamped = timestampToMs(worker.stateSince);
      if (stamped !== undefined) deps.onStamped?.(stamped, sentAt);
      const markedAt = stamped ?? deps.hiveNow();
      const lagMs = markedAt - obs.dueAt;
      log.info({ workerId: id, lagMs, silentMs: markedAt - obs.lastSeen, intervalMs: obs.intervalMs, seq: String(obs.seq) }, 'worker marked stale');
      deps.onMarked?.(worker, lagMs);
    } catch (err) {
      const outcome = classifyMarkError(err);
      deps.onAnswer?.(outcome.kind);
      switch (outcome.kind) {
        case 'heartbeated':
          retries.delete(id);
          log.debug({ workerId: id, seq: String(obs.seq) }, 'stale mark lost to a newer heartbeat');
          return;
        case 'moot':
          retries.delete(id);
          log.debug({ workerId: id, why: outcome.why }, 'stale mark not applicable');
          return;
        case 'later':
          // The hive's clock or grace says not yet; its word is final.
          retries.delete(id);
          requeue(id, obs, deps.hiveNow() + Math.max(1, outcome.afterMs));
          return;
        case 'retry': {
          const n = (retries.get(id) ?? 0) + 1;
          retries.set(id, n);
          const delay = Math.min(deps.retryCapMs ?? 5000, (deps.retryBaseMs ?? 100) * 2 ** Math.min(n - 1, 16));
          log.warn({ workerId: id, attempt: n, retryInMs: delay, err: outcome.why }, 'stale mark failed; will retry');
          requeue(id, obs, deps.hiveNow() + delay);
          return;
        }
      }
    }
  }

  function forget(id: string): void {
    observed.delete(id);
    retries.delete(id);
    if (queue.remove(id)) loop.poke();
    unhold(id);
  }

  return {
    /** Takes the watch's latest copy of a worker and (re)sets or drops its deadline. */
    observe(w: Worker): void {
      const id = w.workerId;
      if (!WATCHED_STATES.has(w.state)) {
        forget(id);
        return;
      }
      const dueAt = deadlineOf(w, graceBase, promotedAt);
      const same = (o: Observed | undefined) => !!o && o.seq === w.lastSeq && o.session === w.sessionId && o.dueAt === dueAt;
      if (same(observed.get(id))) return;
      const flying = inFlight.get(id);
      if (same(flying)) {
        // This very heartbeat is being marked now: no second call for it.
        observed.set(id, flying!);
        return;
      }
      const obs: Observed = {
        seq: w.lastSeq,
        session: w.sessionId,
        dueAt,
        lastSeen: timestampToMs(w.lastSeen) ?? timestampToMs(w.registeredAt) ?? 0,
        intervalMs: durationToMs(w.heartbeatInterval) ?? 0,
      };
      observed.set(id, obs);
      queue.update(id, dueAt);
      loop.poke();
      unhold(id);
    },
    remove(id: string): void {
      forget(id);
    },
    /** Every deadline from now on is at least graceBase + 2x interval (hive ms). Call before re-observing. */
    setGraceBase(hiveMs: number): void {
      graceBase = hiveMs;
    },
    /** This monitor became the leader at hiveMs: every deadline is at least one interval later. Call before re-observing. */
    setPromotedAt(hiveMs: number): void {
      promotedAt = hiveMs;
    },
    /** The view moved on (viewThrough advanced): held marks it has caught up with go out now. */
    advanced(): void {
      heldLoop.advanced();
    },
    /** Pauses marking while the registry is out of sight; deadlines stay queued. */
    setEnabled(on: boolean): void {
      for (const l of loops) l.setEnabled(on);
    },
    start(): void {
      for (const l of loops) l.start();
    },
    async stop(): Promise<void> {
      await Promise.all(loops.map((l) => l.stop()));
    },
    get size(): number {
      return queue.size + held.size;
    },
    /** Due marks waiting for the view to catch up. */
    get held(): number {
      return held.size;
    },
    get inFlight(): number {
      return inFlight.size;
    },
    deadline(id: string): number | undefined {
      return queue.get(id) ?? (held.has(id) ? observed.get(id)?.dueAt : undefined);
    },
  };
}
