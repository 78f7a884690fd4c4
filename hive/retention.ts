import type { Clock } from '../lib/clock.js';
import { createPeriodic } from '../lib/periodic.js';
import type { Logger } from '../lib/logger.js';
import type { Store } from './store/store.js';

// The event log keeps `retentionMs` of history: a sweep deletes older rows
// once at start and then every `everyMs`.

export function createRetentionSweep(deps: { store: Store; clock: Clock; log: Logger; retentionMs: number; everyMs?: number; onSwept?: (n: number) => void }) {
  const everyMs = deps.everyMs ?? Math.min(3_600_000, Math.max(1000, deps.retentionMs / 24));
  async function sweep(): Promise<number> {
    const cutoff = deps.clock.now() - deps.retentionMs;
    try {
      const n = await deps.store.pruneEvents(cutoff);
      if (n > 0) deps.log.info({ deleted: n, before: new Date(cutoff).toISOString() }, 'old events deleted');
      deps.onSwept?.(n);
      return n;
    } catch (err) {
      deps.log.warn({ err }, 'event retention sweep failed; will retry');
      return 0;
    }
  }

  const periodic = createPeriodic(deps.clock, everyMs, sweep, { immediately: true });

  return {
    sweep,
    start: () => periodic.start(),
    stop: () => periodic.stop(),
  };
}
