import { CheckOutcome } from '../gen/hive/v1/health_check_pb.js';
import { healthBand } from './health-score.js';
import { isFailed } from './check-score.js';

// The rule-based summary of a finished run: counts by band, which workers
// failed and why, and what changed against the previous run. Pure.

export interface SummaryResult {
  workerId: string;
  outcome: CheckOutcome;
  score: number;
  reason: string;
}

const MAX_NAMED = 10;

function named(list: readonly string[]): string {
  const shown = list.slice(0, MAX_NAMED).join(', ');
  return list.length > MAX_NAMED ? `${shown} and ${list.length - MAX_NAMED} more` : shown;
}

export function summarize(results: readonly SummaryResult[], previous?: { checkId: string; results: readonly SummaryResult[] }): string {
  if (results.length === 0) return 'no workers matched';
  const failed = results.filter(isFailed);
  const degraded = results.filter((r) => !isFailed(r) && healthBand(r.score) === 'degraded');
  const healthy = results.length - failed.length - degraded.length;
  const parts = [`${results.length} worker${results.length === 1 ? '' : 's'} checked: ${healthy} healthy, ${degraded.length} degraded, ${failed.length} failed.`];
  if (failed.length) parts.push(`Failed: ${failed.slice(0, MAX_NAMED).map((r) => `${r.workerId} (${r.reason})`).join('; ')}${failed.length > MAX_NAMED ? `; and ${failed.length - MAX_NAMED} more` : ''}.`);
  if (degraded.length) parts.push(`Degraded: ${degraded.slice(0, MAX_NAMED).map((r) => `${r.workerId} (${r.reason})`).join('; ')}.`);
  if (!previous) {
    parts.push('No previous run to compare with.');
    return parts.join(' ');
  }
  const before = new Map(previous.results.map((r) => [r.workerId, r]));
  const newlyFailed: string[] = [];
  const recovered: string[] = [];
  const added: string[] = [];
  for (const r of results) {
    const p = before.get(r.workerId);
    if (!p) added.push(r.workerId);
    else if (isFailed(r) && !isFailed(p)) newlyFailed.push(r.workerId);
    else if (!isFailed(r) && isFailed(p)) recovered.push(r.workerId);
  }
  const changes: string[] = [];
  if (newlyFailed.length) changes.push(`newly failing: ${named(newlyFailed)}`);
  if (recovered.length) changes.push(`recovered: ${named(recovered)}`);
  if (added.length) changes.push(`not in it: ${named(added)}`);
  parts.push(`Since ${previous.checkId}: ${changes.length ? changes.join('; ') : 'no change'}.`);
  return parts.join(' ');
}
