import type { Clock } from '../lib/clock.js';

// When the hive has read what reached its sockets by a given moment. The
// event loop reads every ready socket once a turn, after its timers; under
// a saturating load a turn is every socket's backlog (hundreds of ms), so
// a heartbeat the kernel took in before a deadline may still be unread
// after it. Once a turn that began at or after the moment has run to its
// end, all of it has been read and handled. A stale mark waits for that
// (registry.markStale), so it does not beat a heartbeat that reached this
// hive before the deadline and that it had not got to yet (one still on
// the network, or unread on another replica, is not covered). A ticker
// marks where each turn begins.

/** How often the ticker runs on an idle loop: an idle hive adds about two ticks to a mark. */
const TICK_MS = 5;

export interface ReadThrough {
  /** Whether everything that reached the sockets before `at` (clock ms) has been read. */
  readThrough(at: number): boolean;
  /**
   * Resolves once readThrough(at) holds, for an `at` that is not in the
   * future: at the latest when a turn begun after the call has ended,
   * whatever the wall clock does meanwhile (a step back must not park it).
   */
  untilRead(at: number): Promise<void>;
  stop(): void;
}

/** Every moment counts as read: for a clock that is not the wall clock (tests), and the default. */
export const ALWAYS_READ: ReadThrough = {
  readThrough: () => true,
  untilRead: () => Promise.resolve(),
  stop: () => undefined,
};

export interface LoopTurnOptions {
  /** How often the ticker runs (ms). */
  tickMs?: number;
  /** Told how long each wait lasted (clock ms): what reading up to a deadline cost a stale mark. Not for waits let go by stop(). */
  onWaited?: (ms: number) => void;
}

export function watchLoopTurns(clock: Clock, { tickMs = TICK_MS, onWaited }: LoopTurnOptions = {}): ReadThrough {
  /** Start of the last turn that has run to its end, and of the current one. */
  let ended = clock.now();
  let current = ended;
  /** Ticks so far: a wait that began before tick n is over once tick n + 1 has run (turn n has ended). */
  let ticks = 0;
  let waiting: Array<{ at: number; tick: number; since: number; resolve: () => void }> = [];
  const ticker = setInterval(() => {
    // Timers run first in a turn: the previous turn has ended.
    ended = current;
    current = clock.now();
    ticks++;
    if (waiting.length === 0) return;
    const still: typeof waiting = [];
    for (const w of waiting) {
      if (w.at <= ended || ticks >= w.tick + 2) {
        onWaited?.(Math.max(0, current - w.since));
        w.resolve();
      } else still.push(w);
    }
    waiting = still;
  }, tickMs);
  ticker.unref();
  // Stopped (the hive is shutting down): nothing waits any more.
  let stopped = false;
  const readThrough = (at: number) => stopped || ended >= at;
  return {
    readThrough,
    untilRead(at) {
      if (readThrough(at)) return Promise.resolve();
      return new Promise<void>((resolve) => waiting.push({ at, tick: ticks, since: clock.now(), resolve }));
    },
    stop() {
      stopped = true;
      clearInterval(ticker);
      for (const w of waiting) w.resolve();
      waiting = [];
    },
  };
}
