import { WorkerChangeType, WorkerState } from '../gen/hive/v1/registry_pb.js';
import type { Logger } from '../lib/logger.js';
import { blockedBy, hasDependencies } from './dependencies.js';
import type { Registry } from './registry.js';
import type { LiveWorker } from './worker.js';

// Keeps every worker's blocked_by current: the dependencies that are not
// healthy right now. It follows the registry's own change feed (like any
// watcher), so the registry core knows nothing of it. A heartbeat that
// changes no state costs one map lookup here; a state change (or a
// registration, which may change labels and dependencies) recomputes the
// workers that have dependencies, publishes those whose blocked_by changed
// and records a blocked / unblocked event for each. Until some worker has
// dependencies no change can block anyone, and nothing is kept per worker
// (a copy of each worker's state, labels and dependencies is ~70 B times
// the fleet).

export interface DependencyTrackerDeps {
  registry: Pick<Registry, 'hub' | 'workers' | 'recordEvent'>;
  log: Logger;
}

interface Seen {
  state: WorkerState;
  labels: Record<string, string>;
  dependsOn: string[];
}

export function createDependencyTracker(deps: DependencyTrackerDeps) {
  const { registry, log } = deps;
  const seen = new Map<string, Seen>();
  const stopCtl = new AbortController();
  let loop: Promise<void> | null = null;

  function same(a: Seen | undefined, w: LiveWorker): boolean {
    return !!a && a.state === w.state && a.labels === w.labels && a.dependsOn === w.dependsOn;
  }

  function recompute(): void {
    for (const w of registry.workers.values()) {
      const before = w.blockedBy ?? [];
      const after = hasDependencies(w) ? blockedBy(w, registry.workers) : [];
      if (before.length === after.length && before.every((id, i) => id === after[i])) continue;
      w.blockedBy = after;
      registry.hub.publish(w, WorkerChangeType.UPDATED);
      const added = after.filter((id) => !before.includes(id));
      const states = (ids: string[]) => ids.map((id) => `${id} ${WorkerState[registry.workers.get(id)?.state ?? 0]?.toLowerCase() ?? 'unknown'}`).join(', ');
      const [kind, reason] =
        after.length === 0
          ? ['unblocked', 'every dependency is healthy again']
          : ['blocked', `waiting for ${added.length ? states(added) : states(after)}; not restarted until they are healthy`];
      log.info({ workerId: w.workerId, blockedBy: after }, kind === 'blocked' ? 'worker blocked by its dependencies' : 'worker unblocked');
      registry.recordEvent(w.workerId, kind, 'hive', reason.replace(/unspecified/g, 'not registered').slice(0, 256)).catch((err) => log.warn({ err, workerId: w.workerId }, 'dependency event not recorded'));
    }
  }

  async function run(): Promise<void> {
    // States, labels and dependencies matter here; heartbeats that change none are not offered.
    const sub = registry.hub.subscribe(null, false);
    // Whether any worker has had dependencies: from then on every worker's last state is kept.
    let tracking = false;
    const track = () => {
      tracking = true;
      for (const w of registry.workers.values()) seen.set(w.workerId, { state: w.state, labels: w.labels, dependsOn: w.dependsOn });
    };
    try {
      for (const w of registry.workers.values()) {
        if (!hasDependencies(w)) continue;
        track();
        break;
      }
      recompute();
      while (!stopCtl.signal.aborted && !sub.closed) {
        await sub.waitForChanges(stopCtl.signal);
        let relevant = false;
        for (const c of sub.take(10_000)) {
          if (!tracking) {
            // Nobody depends on anything: only a worker that now has dependencies matters (recompute reads the current states).
            if (c.type === WorkerChangeType.REMOVED || !hasDependencies(c.worker)) continue;
            track();
            relevant = true;
            continue;
          }
          const id = c.worker.workerId;
          if (c.type === WorkerChangeType.REMOVED) {
            relevant = seen.delete(id) || relevant;
            continue;
          }
          if (same(seen.get(id), c.worker)) continue;
          seen.set(id, { state: c.worker.state, labels: c.worker.labels, dependsOn: c.worker.dependsOn });
          relevant = true;
        }
        if (relevant) recompute();
      }
    } finally {
      registry.hub.unsubscribe(sub);
    }
  }

  return {
    start(): void {
      loop ??= run().catch((err) => log.error({ err }, 'dependency tracker stopped'));
    },
    async stop(): Promise<void> {
      stopCtl.abort();
      await loop;
    },
    /** Workers whose last state is kept (none until some worker has dependencies). */
    get tracked(): number {
      return seen.size;
    },
  };
}
