import { monitorEventLoopDelay } from 'node:perf_hooks';

// How far behind this process's event loop runs. A saturated hive reads
// its sockets once a turn, and a turn can be every socket's backlog: a
// heartbeat the kernel took in may wait that long to be read. Until it is
// read the registry cannot see it, so a stale mark must also wait that
// long past the deadline, or it marks a worker whose heartbeat came in
// time (the registry's markStale asks for this).

/** Samples the loop every RESOLUTION_MS; a turn longer than that shows as delay. */
const RESOLUTION_MS = 10;

export interface LoopLag {
  /** The longest the loop was late in the current and the previous window (ms). */
  ms(): number;
  stop(): void;
}

export function watchLoopLag(windowMs = 1000): LoopLag {
  const h = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
  h.enable();
  let previous = 0;
  const turn = setInterval(() => {
    previous = h.max / 1e6;
    h.reset();
  }, windowMs);
  turn.unref();
  return {
    // The histogram's max is 0 (or tiny) on an idle loop; a mark then waits for nothing.
    ms: () => Math.max(previous, h.max / 1e6),
    stop() {
      clearInterval(turn);
      h.disable();
    },
  };
}
