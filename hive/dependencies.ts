import { WorkerState } from '../gen/hive/v1/registry_pb.js';
import { invalidArgument } from './errors.js';
import { matchesSelector, parseSelector, type Selector } from './selector.js';

// Worker dependencies: by id (depends_on) and by label selector
// (depends_on_selector). Pure functions over the registry's workers: who a
// worker depends on, whether a registration would close a cycle, and which
// dependencies block a worker right now.

export interface DependencyNode {
  workerId: string;
  labels: Record<string, string>;
  state: WorkerState;
  dependsOn: readonly string[];
  dependsOnSelector?: string;
}

/** Only a dependency in one of these states lets its dependents be restarted. */
const UP = new Set([WorkerState.HEALTHY, WorkerState.DEGRADED]);

const selectorCache = new Map<string, Selector>();
function selectorOf(text: string | undefined): Selector | null {
  if (!text) return null;
  let s = selectorCache.get(text);
  if (!s) {
    s = parseSelector(text);
    if (selectorCache.size > 1000) selectorCache.clear();
    selectorCache.set(text, s);
  }
  return s;
}

export function hasDependencies(w: Pick<DependencyNode, 'dependsOn' | 'dependsOnSelector'>): boolean {
  return w.dependsOn.length > 0 || !!w.dependsOnSelector;
}

/** The worker's dependencies among `workers`, by id and by selector (never itself), sorted. Ids not registered are kept. */
export function dependenciesOf(w: DependencyNode, workers: Iterable<DependencyNode>): string[] {
  const out = new Set(w.dependsOn.filter((id) => id !== w.workerId));
  const sel = selectorOf(w.dependsOnSelector);
  if (sel) for (const o of workers) if (o.workerId !== w.workerId && matchesSelector(sel, o.labels)) out.add(o.workerId);
  return [...out].sort();
}

/**
 * A cycle that registering `candidate` (replacing any worker of its id)
 * would create, as the path from it back to itself, or null.
 */
export function findCycle(candidate: DependencyNode, existing: Iterable<DependencyNode>): string[] | null {
  const nodes = new Map<string, DependencyNode>();
  for (const w of existing) nodes.set(w.workerId, w);
  nodes.set(candidate.workerId, candidate);
  const all = [...nodes.values()];
  const edges = new Map<string, string[]>();
  const edgesOf = (id: string) => {
    let e = edges.get(id);
    if (!e) {
      const n = nodes.get(id);
      edges.set(id, (e = n ? dependenciesOf(n, all) : []));
    }
    return e;
  };
  // Depth-first from the candidate; a path that comes back to it is the cycle.
  const seen = new Set<string>();
  const path: string[] = [candidate.workerId];
  const visit = (id: string): boolean => {
    for (const next of edgesOf(id)) {
      if (next === candidate.workerId) {
        path.push(next);
        return true;
      }
      if (seen.has(next)) continue;
      seen.add(next);
      path.push(next);
      if (visit(next)) return true;
      path.pop();
    }
    return false;
  };
  return visit(candidate.workerId) ? path : null;
}

/** Throws InvalidArgument when the registration would close a dependency cycle. */
export function checkNoCycle(candidate: DependencyNode, existing: Iterable<DependencyNode>): void {
  selectorOf(candidate.dependsOnSelector);
  const cycle = findCycle(candidate, existing);
  if (cycle) throw invalidArgument(`depends_on would create a dependency cycle: ${cycle.join(' -> ')}`);
}

/** Dependencies that are not up (or not registered at all), sorted. */
export function blockedBy(w: DependencyNode, workers: ReadonlyMap<string, DependencyNode>): string[] {
  if (!hasDependencies(w)) return [];
  return dependenciesOf(w, workers.values()).filter((id) => {
    const d = workers.get(id);
    return !d || !UP.has(d.state);
  });
}
