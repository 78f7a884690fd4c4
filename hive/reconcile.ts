import { toBinary } from '@bufbuild/protobuf';
import { RestartPolicySchema } from '../gen/hive/v1/policy_pb.js';
import type { StoredWorker } from './store/store.js';
import type { LiveWorker } from './worker.js';

// What a reread of the durable registry changes in this replica's copy:
// workers registered elsewhere, workers whose registration (labels,
// interval, policy, dependencies) changed elsewhere, and workers
// deregistered elsewhere. Live fields (seq, last seen, state) are not the
// durable store's to decide: they arrive over the change channel and from
// the shared live state.

export interface ReconcilePlan {
  added: StoredWorker[];
  changed: StoredWorker[];
  removed: string[];
}

/** skip: workers changed here after the reread began (the read may predate the change). */
export function reconcile(current: ReadonlyMap<string, LiveWorker>, stored: readonly StoredWorker[], skip: (id: string) => boolean = () => false): ReconcilePlan {
  const plan: ReconcilePlan = { added: [], changed: [], removed: [] };
  const seen = new Set<string>();
  for (const s of stored) {
    seen.add(s.workerId);
    if (skip(s.workerId)) continue;
    const w = current.get(s.workerId);
    if (!w) plan.added.push(s);
    else if (registrationDiffers(w, s)) plan.changed.push(s);
  }
  for (const id of current.keys()) if (!seen.has(id) && !skip(id)) plan.removed.push(id);
  return plan;
}

function registrationDiffers(w: LiveWorker, s: StoredWorker): boolean {
  if (w.intervalMs !== s.intervalMs || w.registeredAt !== s.registeredAt) return true;
  if (w.dependsOn.length !== s.dependsOn.length || w.dependsOn.some((d, i) => d !== s.dependsOn[i])) return true;
  if ((w.policy === null) !== (s.policy === null)) return true;
  const a = Object.keys(w.labels);
  const b = Object.keys(s.labels);
  if (a.length !== b.length || a.some((k) => w.labels[k] !== s.labels[k])) return true;
  // A replaced policy (same presence) is caught by comparing its bytes.
  return s.policy !== null && w.policy !== null && !samePolicy(w, s);
}

function samePolicy(w: LiveWorker, s: StoredWorker): boolean {
  const mine = toBinary(RestartPolicySchema, w.policy!);
  const theirs = s.policy!;
  return mine.length === theirs.length && mine.every((b, i) => b === theirs[i]);
}
