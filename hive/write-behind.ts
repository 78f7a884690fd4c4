import type { Clock } from '../lib/clock.js';
import { createPeriodic } from '../lib/periodic.js';
import type { Logger } from '../lib/logger.js';
import type { Store, WorkerSnapshot } from './store/store.js';

// Heartbeats cost no synchronous database write: they mark the worker
// dirty, and this flusher writes the latest snapshot of every dirty worker
// every interval, a chunk per statement. Each chunk is snapshotted just
// before it is written, so a flush of a large fleet never holds the event
// loop longer than one chunk's encoding. A failed flush keeps the workers
// it did not write dirty, so the next one retries with their then-latest
// state.

export interface WriteBehindStats {
  lastBatchSize: number;
  lastFlushSeconds: number;
  failures: number;
}

export interface WriteBehind {
  touch(workerId: string): void;
  /**
   * Queues a durable write that failed (the database is down) to be retried
   * in order before the next snapshot flush. Returns false when the outbox
   * is full, in which case the caller must fail its request.
   */
  defer(job: () => Promise<unknown>): boolean;
  /** Durable writes waiting in the outbox. */
  outbox(): number;
  /** Whether defer() would refuse the next write. */
  outboxFull(): boolean;
  forget(workerId: string): void;
  backlog(): number;
  flush(): Promise<void>;
  start(): void;
  stop(): Promise<void>;
  readonly stats: WriteBehindStats;
}

export function createWriteBehind(deps: {
  store: Store;
  clock: Clock;
  log: Logger;
  snapshot: (workerId: string) => WorkerSnapshot | undefined;
  intervalMs?: number;
  /** Workers snapshotted and written together; default 1000. */
  chunkSize?: number;
  onFlush?: (size: number, seconds: number, ok: boolean) => void;
  maxOutbox?: number;
}): WriteBehind {
  const intervalMs = deps.intervalMs ?? 2000;
  const maxOutbox = deps.maxOutbox ?? 100_000;
  const chunkSize = deps.chunkSize ?? 1000;
  const outbox: Array<() => Promise<unknown>> = [];
  let dirty = new Set<string>();
  let flushing: Promise<void> | null = null;
  const stats: WriteBehindStats = { lastBatchSize: 0, lastFlushSeconds: 0, failures: 0 };

  async function drainOutbox(): Promise<boolean> {
    while (outbox.length > 0) {
      try {
        await outbox[0]();
      } catch (err) {
        deps.log.warn({ err, outbox: outbox.length }, 'deferred durable write failed; will retry');
        return false;
      }
      outbox.shift();
    }
    return true;
  }

  async function flushOnce(): Promise<void> {
    if (!(await drainOutbox())) return;
    if (dirty.size === 0) return;
    const ids = [...dirty];
    dirty = new Set();
    const started = deps.clock.now();
    let written = 0;
    try {
      for (let i = 0; i < ids.length; i += chunkSize) {
        const batch: WorkerSnapshot[] = [];
        for (let j = i; j < Math.min(i + chunkSize, ids.length); j++) {
          const s = deps.snapshot(ids[j]);
          if (s) batch.push(s);
        }
        await deps.store.flushSnapshots(batch);
        written = i + chunkSize;
      }
      stats.lastBatchSize = ids.length;
      stats.lastFlushSeconds = (deps.clock.now() - started) / 1000;
      deps.onFlush?.(ids.length, stats.lastFlushSeconds, true);
    } catch (err) {
      stats.failures++;
      for (let i = written; i < ids.length; i++) dirty.add(ids[i]);
      deps.onFlush?.(ids.length, (deps.clock.now() - started) / 1000, false);
      deps.log.warn({ err, backlog: dirty.size }, 'write-behind flush failed; will retry');
    }
  }

  function flush(): Promise<void> {
    // One flush at a time; a caller arriving mid-flush waits and flushes again.
    const run = (flushing ?? Promise.resolve()).then(flushOnce);
    flushing = run.finally(() => {
      if (flushing === run) flushing = null;
    });
    return run;
  }

  const periodic = createPeriodic(deps.clock, intervalMs, flush);

  return {
    stats,
    touch: (id) => void dirty.add(id),
    defer(job) {
      if (outbox.length >= maxOutbox) return false;
      outbox.push(job);
      return true;
    },
    outbox: () => outbox.length,
    outboxFull: () => outbox.length >= maxOutbox,
    forget: (id) => void dirty.delete(id),
    backlog: () => dirty.size,
    flush,
    start: () => periodic.start(),
    async stop() {
      await periodic.stop();
      await flush();
    },
  };
}
