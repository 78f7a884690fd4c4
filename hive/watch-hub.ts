import { WorkerChangeType, WorkerState } from '../gen/hive/v1/registry_pb.js';
import type { Clock } from '../lib/clock.js';
import type { LiveWorker } from './worker.js';
import { matchesSelector, type Selector } from './selector.js';

// Fan-out of registry changes to WatchWorkers streams. Each subscriber has
// a map of pending changes keyed by worker: a burst of heartbeats from one
// worker collapses into its latest state, so a slow watcher costs memory
// bounded by the fleet size, never by the heartbeat rate.

/** The abort reason of an idle timer ended by a change: a constant, so a wake builds no DOMException. */
const WOKEN = Symbol('woken');

export interface WatchFilter {
  states: Set<WorkerState> | null;
  selector: Selector;
}

export interface PendingChange {
  type: WorkerChangeType;
  worker: LiveWorker;
  /** The worker's state when the change was offered. */
  state: WorkerState;
  /** Every change folded into this one was a heartbeat that changed liveness only. */
  touch: boolean;
  /** When the oldest change folded into this one was offered (the hub's clock). */
  since: number;
}

export class Subscription {
  readonly pending = new Map<string, PendingChange>();
  /** Workers this subscriber currently sees (only tracked when filtered). */
  private readonly visible = new Set<string>();
  private wake: (() => void) | null = null;
  private frozen = 0;
  closed = false;

  /**
   * @param touches false: heartbeats that change nothing but liveness and stats are not offered.
   * @param now the hub's clock (when a pending change was first offered).
   */
  constructor(
    readonly filter: WatchFilter | null,
    readonly touches: boolean,
    private readonly now: () => number,
  ) {}

  matches(w: LiveWorker): boolean {
    const f = this.filter;
    if (!f) return true;
    if (f.states && !f.states.has(w.state)) return false;
    return f.selector.length === 0 || matchesSelector(f.selector, w.labels);
  }

  /** Records the initial snapshot membership. */
  markVisible(id: string): void {
    if (this.filter) this.visible.add(id);
  }

  offer(w: LiveWorker, type: WorkerChangeType, touch = false): void {
    if (this.filter) {
      const was = this.visible.has(w.workerId);
      const is = type !== WorkerChangeType.REMOVED && this.matches(w);
      if (!was && !is) return;
      if (was && !is) {
        this.visible.delete(w.workerId);
        type = WorkerChangeType.REMOVED;
      } else if (!was && is) {
        this.visible.add(w.workerId);
        type = WorkerChangeType.ADDED;
      }
    }
    const prev = this.pending.get(w.workerId);
    // A change folded into a pending one keeps its time: no clock read for a coalesced heartbeat.
    let since = prev ? prev.since : this.now();
    if (prev && prev.state !== w.state && prev.type !== WorkerChangeType.REMOVED) {
      // Heartbeat touches collapse; a state change never folds into a later
      // one (HEALTHY -> STALE -> HEALTHY must reach the watcher as two
      // changes). Freeze what the watcher has not seen yet, under a key of
      // its own, and queue the new change after it.
      this.pending.delete(w.workerId);
      this.pending.set(`${w.workerId}\u0000${this.frozen++}`, { type: prev.type, worker: { ...w, state: prev.state }, state: prev.state, touch: false, since: prev.since });
      touch &&= type === WorkerChangeType.UPDATED;
      since = this.now();
    } else {
      if (prev && prev.type === WorkerChangeType.ADDED && type === WorkerChangeType.UPDATED) type = WorkerChangeType.ADDED;
      touch &&= type === WorkerChangeType.UPDATED && (!prev || prev.touch);
    }
    this.pending.set(w.workerId, { type, worker: type === WorkerChangeType.REMOVED ? { ...w } : w, state: w.state, touch, since });
    const wake = this.wake;
    if (wake) {
      // The watcher wakes once the I/O of this turn of the event loop is
      // handled: what the other sockets bring in the same turn goes out in
      // the same message, not one message per heartbeat.
      this.wake = null;
      setImmediate(wake);
    }
  }

  /**
   * Resolves when there is something pending (and the event loop's turn
   * that brought it has ended) or the subscription closed; with idle, also
   * once idle.ms pass with nothing pending (a progress message is due).
   */
  waitForChanges(signal: AbortSignal, idle?: { clock: Clock; ms: number }): Promise<void> {
    if (this.pending.size > 0 || this.closed || signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = idle ? new AbortController() : null;
      const done = () => {
        signal.removeEventListener('abort', done);
        timer?.abort(WOKEN);
        // A wake queued before the timer fired must not clear a later wait's wake.
        if (this.wake === done) this.wake = null;
        resolve();
      };
      signal.addEventListener('abort', done, { once: true });
      this.wake = done;
      if (idle) idle.clock.sleep(idle.ms, timer!.signal).then(done, () => undefined);
    });
  }

  /** Takes up to max pending changes, in first-changed order. */
  take(max: number): PendingChange[] {
    const out: PendingChange[] = [];
    for (const [id, change] of this.pending) {
      if (out.length >= max) break;
      out.push(change);
      this.pending.delete(id);
    }
    return out;
  }

  /**
   * The time every change offered before it has been taken: now with
   * nothing pending, else the oldest pending change's offer time (a frozen
   * change keeps its own, so the whole map is looked at; it is only ever
   * left over from a take of a whole batch).
   */
  completeThrough(now: number): number {
    let oldest = now;
    for (const c of this.pending.values()) if (c.since < oldest) oldest = c.since;
    return oldest;
  }

  close(): void {
    this.closed = true;
    this.wake?.();
    this.wake = null;
  }
}

export class WatchHub {
  private readonly subs = new Set<Subscription>();

  /** @param now the registry's clock. */
  constructor(private readonly now: () => number) {}

  subscribe(filter: WatchFilter | null, touches = true): Subscription {
    const s = new Subscription(filter, touches, this.now);
    this.subs.add(s);
    return s;
  }

  unsubscribe(s: Subscription): void {
    this.subs.delete(s);
    s.close();
  }

  publish(w: LiveWorker, type: WorkerChangeType): void {
    for (const s of this.subs) s.offer(w, type);
  }

  /** A heartbeat that changed the worker's liveness and stats only: offered to subscribers that watch those. */
  touch(w: LiveWorker): void {
    for (const s of this.subs) if (s.touches) s.offer(w, WorkerChangeType.UPDATED, true);
  }

  get size(): number {
    return this.subs.size;
  }

  closeAll(): void {
    for (const s of this.subs) s.close();
    this.subs.clear();
  }
}
