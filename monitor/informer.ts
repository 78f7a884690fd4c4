import { WorkerChangeType, WorkerState, type WatchWorkersResponse, type Worker } from '../gen/hive/v1/registry_pb.js';
import { fullJitterBackoffMs } from '../lib/backoff.js';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import type { Clock } from '../lib/clock.js';
import { timestampToMs } from '../lib/duration.js';
import type { Logger } from '../lib/logger.js';
import { HiveClock } from './hive-clock.js';

// The monitor's view of the registry, built like a Kubernetes informer: a
// WatchWorkers stream gives a snapshot, then changes; the view is a local
// map that listeners are told about, change by change. A broken stream is
// reopened with full-jitter backoff and the new snapshot replaces the view,
// with the difference delivered as changes. Every (re)sync says how long
// the registry was out of sight and whether the hive restarted meanwhile,
// so the stale detector can give every deadline a fresh grace.

export interface SyncInfo {
  /** The first sync of this monitor process. */
  first: boolean;
  /** hive_started_at differs from the previous stream's: the hive restarted. */
  hiveRestarted: boolean;
  /** Local ms the registry was out of sight (stream lost to this sync); 0 on the first sync. */
  gapMs: number;
  /** Local time of this sync. */
  at: number;
  hiveStartedAt: number;
  workers: number;
}

export interface InformerListener {
  /** The view is synced again (first or after a reconnect), before the snapshot's differences are delivered. */
  onSynced?(info: SyncInfo): void;
  /** A worker added or changed; prev is the view's previous copy (undefined on first sight). */
  onChange?(worker: Worker, prev: Worker | undefined): void;
  /** A worker deregistered (or no longer matching the watch's selector). */
  onRemove?(prev: Worker): void;
  /** The stream broke after having synced; the view is stale until the next onSynced. */
  onDisconnected?(at: number): void;
  /** The view is now complete through this hive time (the hive's complete_through moved on). */
  onProgress?(hiveMs: number): void;
}

/** Changes applied between two yields to the event loop. */
const APPLY_SLICE = 1000;

export type WatchFn = (signal: AbortSignal) => AsyncIterable<WatchWorkersResponse>;

export interface InformerDeps {
  watch: WatchFn;
  clock: Clock;
  log: Logger;
  listeners: InformerListener[];
  random?: () => number;
  backoffBaseMs?: number;
  backoffCapMs?: number;
}

export type Informer = ReturnType<typeof createInformer>;

/** A WORKER_CHANGE_TYPE_HEARTBEAT change merged into the worker it updates: the liveness fields (and stats, when sent) are new, the rest as before. */
export function withHeartbeat(prev: Worker, delta: Worker): Worker {
  return {
    ...prev,
    lastSeen: delta.lastSeen,
    lastSeq: delta.lastSeq,
    sessionId: delta.sessionId,
    status: delta.status,
    statusDetail: delta.statusDetail,
    stats: delta.stats ?? prev.stats,
  };
}

export function createInformer(deps: InformerDeps) {
  const { clock, log, listeners } = deps;
  const random = deps.random ?? Math.random;
  const hiveClock = new HiveClock(() => clock.now());
  let view = new Map<string, Worker>();
  const stateCounts = new Map<WorkerState, number>();
  const stopCtl = new AbortController();
  let loop: Promise<void> | null = null;
  let synced = false;
  let everSynced = false;
  let lostAt: number | null = null;
  let hiveStartedAt: number | null = null;
  let resyncs = 0;
  /** This stream's complete_through (hive ms); null until the hive first says. */
  let completeThrough: number | null = null;

  const count = (s: WorkerState, d: number) => stateCounts.set(s, (stateCounts.get(s) ?? 0) + d);

  function emit<K extends keyof InformerListener>(name: K, ...args: Parameters<NonNullable<InformerListener[K]>>): void {
    for (const l of listeners) {
      const fn = l[name] as ((...a: unknown[]) => void) | undefined;
      if (!fn) continue;
      try {
        fn.apply(l, args);
      } catch (err) {
        // One listener's bug must not blind the others.
        log.error({ err, listener: name }, 'informer listener threw');
      }
    }
  }

  function put(w: Worker): void {
    const prev = view.get(w.workerId);
    if (prev) count(prev.state, -1);
    count(w.state, 1);
    view.set(w.workerId, w);
    emit('onChange', w, prev);
  }

  function drop(id: string): void {
    const prev = view.get(id);
    if (!prev) return;
    count(prev.state, -1);
    view.delete(id);
    emit('onRemove', prev);
  }

  function applySnapshot(snapshot: Map<string, Worker>, startedAt: number): void {
    const now = clock.now();
    const info: SyncInfo = {
      first: !everSynced,
      hiveRestarted: hiveStartedAt !== null && hiveStartedAt !== startedAt,
      gapMs: everSynced && lostAt !== null ? Math.max(0, now - lostAt) : 0,
      at: now,
      hiveStartedAt: startedAt,
      workers: snapshot.size,
    };
    hiveStartedAt = startedAt;
    everSynced = true;
    synced = true;
    lostAt = null;
    if (!info.first) resyncs++;
    log.info({ workers: info.workers, first: info.first, hiveRestarted: info.hiveRestarted, gapMs: info.gapMs, hiveStartedAt: new Date(startedAt).toISOString() }, 'watch synced');
    emit('onSynced', info);
    const old = view;
    for (const id of old.keys()) if (!snapshot.has(id)) drop(id);
    for (const w of snapshot.values()) put(w);
  }

  function markLost(): void {
    if (!synced) return;
    synced = false;
    lostAt = clock.now();
    emit('onDisconnected', lostAt);
  }

  async function streamOnce(): Promise<boolean> {
    const ctl = new AbortController();
    const signal = AbortSignal.any([stopCtl.signal, ctl.signal]);
    let snapshot: Map<string, Worker> | null = new Map();
    let reachedSync = false;
    hiveClock.reset();
    completeThrough = null;
    const openedAt = clock.now();
    let first = true;
    try {
      for await (const msg of deps.watch(signal)) {
        const hiveTime = timestampToMs(msg.hiveTime);
        if (hiveTime !== undefined) {
          hiveClock.sample(hiveTime);
          // The first message was stamped after the request left.
          if (first) hiveClock.answered(hiveTime, openedAt);
        }
        first = false;
        if (snapshot) {
          for (const c of msg.changes) {
            if (!c.worker) continue;
            if (c.type === WorkerChangeType.REMOVED) snapshot.delete(c.worker.workerId);
            else if (c.type === WorkerChangeType.HEARTBEAT) {
              const prev = snapshot.get(c.worker.workerId);
              if (prev) snapshot.set(prev.workerId, withHeartbeat(prev, c.worker));
            } else snapshot.set(c.worker.workerId, c.worker);
          }
          if (msg.synced) {
            applySnapshot(snapshot, timestampToMs(msg.hiveStartedAt) ?? 0);
            snapshot = null;
            reachedSync = true;
          }
        } else {
          let n = 0;
          for (const c of msg.changes) {
            // A message holds what changed in a turn of the hive's event
            // loop, up to the whole fleet: due timers run every so often.
            if (++n % APPLY_SLICE === 0) await yieldToEventLoop();
            if (!c.worker) continue;
            if (c.type === WorkerChangeType.REMOVED) drop(c.worker.workerId);
            else if (c.type === WorkerChangeType.HEARTBEAT) {
              const prev = view.get(c.worker.workerId);
              if (prev) put(withHeartbeat(prev, c.worker));
              else log.warn({ workerId: c.worker.workerId }, 'heartbeat delta for a worker the watch never sent; ignored');
            } else put(c.worker);
          }
        }
        const through = snapshot ? undefined : timestampToMs(msg.completeThrough);
        if (through !== undefined && (completeThrough === null || through > completeThrough)) {
          completeThrough = through;
          emit('onProgress', through);
        }
        // Messages that came in one read are handed over back to back: let
        // the timers that are due (stale deadlines) run between them.
        await yieldToEventLoop();
      }
      if (!stopCtl.signal.aborted) log.warn('watch stream ended by the hive; reconnecting');
    } finally {
      ctl.abort();
    }
    return reachedSync;
  }

  async function run(): Promise<void> {
    let attempt = 0;
    while (!stopCtl.signal.aborted) {
      try {
        if (await streamOnce()) attempt = 0;
      } catch (err) {
        if (stopCtl.signal.aborted) break;
        log.warn({ err: (err as Error).message }, 'watch stream failed; reconnecting');
      }
      markLost();
      if (stopCtl.signal.aborted) break;
      const delay = fullJitterBackoffMs(attempt++, deps.backoffBaseMs ?? 250, deps.backoffCapMs ?? 5000, random);
      try {
        await clock.sleep(delay, stopCtl.signal);
      } catch {
        /* stopping */
      }
    }
  }

  return {
    hiveClock,
    /** The hive time the view is complete through (this stream's complete_through); null until the hive says. */
    get completeThrough(): number | null {
      return completeThrough;
    },
    start(): void {
      loop ??= run();
    },
    async stop(): Promise<void> {
      stopCtl.abort();
      await loop;
    },
    get synced(): boolean {
      return synced;
    },
    get resyncs(): number {
      return resyncs;
    },
    get(id: string): Worker | undefined {
      return view.get(id);
    },
    get size(): number {
      return view.size;
    },
    values(): IterableIterator<Worker> {
      return view.values();
    },
    /** Workers in a state, kept up to date change by change. */
    countIn(state: WorkerState): number {
      return stateCounts.get(state) ?? 0;
    },
  };
}
