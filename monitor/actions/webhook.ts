import { WorkerState } from '../../gen/hive/v1/registry_pb.js';
import type { Clock } from '../../lib/clock.js';
import { timestampToMs } from '../../lib/duration.js';
import { postJson } from '../post-json.js';
import type { RestartAction, RestartRequest } from './action.js';

// The webhook action: an HTTP POST of a JSON body describing the restart
// to the policy's URL (an orchestrator, a runbook service), with the
// policy's timeout per try and a few retries. Only a 2xx counts as taken;
// a redirect is a failure. attempt_id is the same on every retry of one
// attempt, so a receiver can drop duplicates.

export function webhookBody(req: RestartRequest, now: number) {
  const w = req.worker;
  const lastSeen = timestampToMs(w.lastSeen);
  return {
    kind: 'hive.restart',
    attempt_id: req.attemptId,
    worker_id: w.workerId,
    labels: w.labels,
    state: WorkerState[w.state]?.toLowerCase() ?? String(w.state),
    trigger: req.trigger,
    attempt: req.attempt,
    max_attempts: req.policy.maxAttempts,
    reason: req.reason,
    last_seen: lastSeen === undefined ? null : new Date(lastSeen).toISOString(),
    time: new Date(now).toISOString(),
  };
}

export function createWebhookAction(deps: { clock: Clock; retries: number; fetchImpl?: typeof fetch }): RestartAction {
  return async (req, signal) => {
    if (!req.policy.webhookUrl) return { ok: false, detail: 'webhook: the policy has no webhook_url' };
    const r = await postJson(req.policy.webhookUrl, webhookBody(req, deps.clock.now()), {
      clock: deps.clock,
      timeoutMs: req.policy.actionTimeoutMs,
      retries: deps.retries,
      signal,
      fetchImpl: deps.fetchImpl,
    });
    return { ok: r.ok, detail: `webhook ${new URL(req.policy.webhookUrl).origin}: ${r.detail}` };
  };
}
