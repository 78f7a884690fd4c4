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
// and records a blocked / unblocked event for each.

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
    try {
      for (const w of registry.workers.values()) seen.set(w.workerId, { state: w.state, labels: w.labels, dependsOn: w.dependsOn });
      recompute();
      while (!stopCtl.signal.aborted && !sub.closed) {
        await sub.waitForChanges(stopCtl.signal);
        let relevant = false;
        for (const c of sub.take(10_000)) {
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
  };
}
