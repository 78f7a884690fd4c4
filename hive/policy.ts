import { RestartAction, RestartMode, type RestartPolicy } from '../gen/hive/v1/policy_pb.js';
import { durationToMs } from '../lib/duration.js';
import { invalidArgument } from './errors.js';

// What a restart policy may say. Exec templates are argv, never a shell
// line: each element is one argument, and only whole placeholders are
// substituted, so a worker id or label can never become a second command.

export const TEMPLATE_PLACEHOLDER = /\{(worker_id|label:[A-Za-z0-9._/-]+)\}/g;
const MAX_ARGV = 64;

export function validatePolicy(p: RestartPolicy): void {
  if (!(p.mode in RestartMode)) throw invalidArgument(`restart_policy.mode ${p.mode} is unknown`);
  if (!(p.action in RestartAction)) throw invalidArgument(`restart_policy.action ${p.action} is unknown`);
  for (const [name, d] of [
    ['restart_after', p.restartAfter],
    ['window', p.window],
    ['backoff_initial', p.backoffInitial],
    ['backoff_max', p.backoffMax],
    ['verify_timeout', p.verifyTimeout],
    ['action_timeout', p.actionTimeout],
  ] as const) {
    const ms = durationToMs(d);
    if (ms !== undefined && (!Number.isFinite(ms) || ms < 0 || ms > 7 * 86_400_000)) throw invalidArgument(`restart_policy.${name} must be between 0 and 7 days`);
  }
  if (p.maxAttempts > 1000) throw invalidArgument('restart_policy.max_attempts must be at most 1000');
  const bi = durationToMs(p.backoffInitial);
  const bm = durationToMs(p.backoffMax);
  if (bi !== undefined && bm !== undefined && bm > 0 && bi > bm) throw invalidArgument('restart_policy.backoff_initial exceeds backoff_max');
  const restarts = p.mode !== RestartMode.NEVER && p.mode !== RestartMode.UNSPECIFIED;
  const onStale = p.mode === RestartMode.ON_STALE || p.mode === RestartMode.ALWAYS;
  if (restarts && onStale && (p.action === RestartAction.AGENT || p.action === RestartAction.UNSPECIFIED))
    throw invalidArgument('restart_policy: on_stale needs an exec or webhook action (a silent agent cannot be told anything)');
  if (p.action === RestartAction.EXEC) {
    if (p.execArgv.length === 0) throw invalidArgument('restart_policy.exec_argv is required for the exec action');
    if (p.execArgv.length > MAX_ARGV) throw invalidArgument(`restart_policy.exec_argv has more than ${MAX_ARGV} elements`);
    for (const a of p.execArgv) {
      if (Buffer.byteLength(a) > 1024) throw invalidArgument('restart_policy.exec_argv element longer than 1024 bytes');
      // eslint-disable-next-line no-control-regex
      if (/[\u0000]/.test(a)) throw invalidArgument('restart_policy.exec_argv contains NUL');
      const stripped = a.replace(TEMPLATE_PLACEHOLDER, '');
      if (/[{}]/.test(stripped)) throw invalidArgument(`restart_policy.exec_argv "${a.slice(0, 64)}" has an unknown placeholder (use {worker_id} or {label:NAME})`);
    }
    if (p.execArgv[0].includes('{')) throw invalidArgument('restart_policy.exec_argv[0] (the program) cannot be a placeholder');
  }
  if (p.action === RestartAction.WEBHOOK) {
    let url: URL;
    try {
      url = new URL(p.webhookUrl);
    } catch {
      throw invalidArgument('restart_policy.webhook_url is not a URL');
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw invalidArgument('restart_policy.webhook_url must be http or https');
  }
}
