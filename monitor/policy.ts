import type { DefaultPolicy } from '../gen/hive/v1/control_pb.js';
import { RestartAction, RestartMode, type RestartPolicy } from '../gen/hive/v1/policy_pb.js';
import type { Worker } from '../gen/hive/v1/registry_pb.js';
import { durationToMs } from '../lib/duration.js';
import { matchesSelector, parseSelector, type Selector } from '../hive/selector.js';

// A worker's effective restart policy: its own (set at registration or by
// SetRestartPolicy), else the highest-priority default whose label selector
// matches it, else never; unset fields take the documented defaults.

export type Trigger = 'stale' | 'unhealthy';
export type ActionName = 'agent' | 'exec' | 'webhook';

export const ACTION_NAMES: readonly ActionName[] = ['agent', 'exec', 'webhook'];

export interface EffectivePolicy {
  mode: RestartMode;
  /** null when the policy names no usable action (it cannot restart anything). */
  action: ActionName | null;
  restartAfterMs: number;
  maxAttempts: number;
  windowMs: number;
  backoffInitialMs: number;
  backoffMaxMs: number;
  verifyTimeoutMs: number;
  actionTimeoutMs: number;
  execArgv: readonly string[];
  webhookUrl: string;
  /** Where it came from: "worker", "default:<name>" or "none". */
  source: string;
}

export interface CompiledDefault {
  name: string;
  selector: Selector;
  priority: number;
  policy: RestartPolicy;
}

export const POLICY_DEFAULTS = {
  maxAttempts: 5,
  windowMs: 10 * 60_000,
  backoffInitialMs: 10_000,
  backoffMaxMs: 5 * 60_000,
  minVerifyTimeoutMs: 30_000,
  actionTimeoutMs: 30_000,
} as const;

/** Orders default policies by precedence (highest priority, then name) and parses their selectors; bad ones are skipped. */
export function compileDefaults(list: readonly DefaultPolicy[], onBad?: (name: string, err: Error) => void): CompiledDefault[] {
  const out: CompiledDefault[] = [];
  for (const d of list) {
    if (!d.policy) continue;
    try {
      out.push({ name: d.name, selector: parseSelector(d.labelSelector), priority: d.priority, policy: d.policy });
    } catch (err) {
      onBad?.(d.name, err as Error);
    }
  }
  return out.sort((a, b) => b.priority - a.priority || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

function actionOf(p: RestartPolicy): ActionName | null {
  switch (p.action) {
    case RestartAction.AGENT:
      return 'agent';
    case RestartAction.EXEC:
      return 'exec';
    case RestartAction.WEBHOOK:
      return 'webhook';
    default:
      // Unset: the agent for on_unhealthy; on_stale has no default (a
      // silent agent cannot be told anything).
      return p.mode === RestartMode.ON_UNHEALTHY ? 'agent' : null;
  }
}

export function effectivePolicy(p: RestartPolicy | undefined, intervalMs: number, source: string): EffectivePolicy {
  const mode = p && p.mode !== RestartMode.UNSPECIFIED ? p.mode : RestartMode.NEVER;
  const ms = (d: Parameters<typeof durationToMs>[0], dflt: number) => durationToMs(d) ?? dflt;
  return {
    mode,
    action: p ? actionOf(p) : null,
    restartAfterMs: ms(p?.restartAfter, intervalMs),
    maxAttempts: p?.maxAttempts || POLICY_DEFAULTS.maxAttempts,
    windowMs: ms(p?.window, POLICY_DEFAULTS.windowMs),
    backoffInitialMs: ms(p?.backoffInitial, POLICY_DEFAULTS.backoffInitialMs),
    backoffMaxMs: ms(p?.backoffMax, POLICY_DEFAULTS.backoffMaxMs) || POLICY_DEFAULTS.backoffMaxMs,
    verifyTimeoutMs: ms(p?.verifyTimeout, Math.max(3 * intervalMs, POLICY_DEFAULTS.minVerifyTimeoutMs)),
    actionTimeoutMs: ms(p?.actionTimeout, POLICY_DEFAULTS.actionTimeoutMs) || POLICY_DEFAULTS.actionTimeoutMs,
    execArgv: p?.execArgv ?? [],
    webhookUrl: p?.webhookUrl ?? '',
    source,
  };
}

export function resolvePolicy(w: Worker, defaults: readonly CompiledDefault[]): EffectivePolicy {
  const interval = durationToMs(w.heartbeatInterval) ?? 0;
  if (w.restartPolicy) return effectivePolicy(w.restartPolicy, interval, 'worker');
  for (const d of defaults) {
    if (matchesSelector(d.selector, w.labels)) return effectivePolicy(d.policy, interval, `default:${d.name}`);
  }
  return effectivePolicy(undefined, interval, 'none');
}

export function triggersOn(p: EffectivePolicy, t: Trigger): boolean {
  if (p.mode === RestartMode.ALWAYS) return true;
  return t === 'stale' ? p.mode === RestartMode.ON_STALE : p.mode === RestartMode.ON_UNHEALTHY;
}

/** The policy store the supervisor reads: defaults refreshed from the hive. */
export class PolicyBook {
  private defaults: CompiledDefault[] = [];

  set(list: readonly DefaultPolicy[], onBad?: (name: string, err: Error) => void): void {
    this.defaults = compileDefaults(list, onBad);
  }

  get size(): number {
    return this.defaults.length;
  }

  resolve(w: Worker): EffectivePolicy {
    return resolvePolicy(w, this.defaults);
  }
}
