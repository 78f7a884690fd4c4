import type { Worker } from '../../gen/hive/v1/registry_pb.js';
import type { EffectivePolicy, Trigger } from '../policy.js';

// What every restart action gets and returns. An action reports failure as
// data (ok: false with a detail), never by throwing: the supervisor counts
// it as a failed attempt either way.

export interface RestartRequest {
  worker: Worker;
  policy: EffectivePolicy;
  trigger: Trigger;
  /** 1-based attempt number within the current episode. */
  attempt: number;
  /** Unique per attempt: lets receivers drop a retried delivery. */
  attemptId: string;
  reason: string;
}

export interface ActionResult {
  ok: boolean;
  detail: string;
}

export type RestartAction = (req: RestartRequest, signal: AbortSignal) => Promise<ActionResult>;
