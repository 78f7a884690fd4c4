import type { Clock } from './clock.js';

/**
 * A loop that runs `task` every `everyMs` on the injected clock, with
 * start() and an idempotent stop() that waits for the loop to finish.
 * `immediately` runs the task once at start before the first wait.
 */
export function createPeriodic(clock: Clock, everyMs: number, task: () => Promise<unknown>, opts: { immediately?: boolean } = {}) {
  let abort: AbortController | null = null;
  let loop: Promise<void> | null = null;
  return {
    start(): void {
      if (loop) return;
      abort = new AbortController();
      const signal = abort.signal;
      loop = (async () => {
        if (opts.immediately) await task();
        while (!signal.aborted) {
          try {
            await clock.sleep(everyMs, signal);
          } catch {
            break;
          }
          await task();
        }
      })();
    },
    async stop(): Promise<void> {
      if (!loop) return;
      abort!.abort();
      await loop;
      loop = null;
    },
  };
}
