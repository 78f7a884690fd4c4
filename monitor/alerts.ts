import { WorkerState, type Worker } from '../gen/hive/v1/registry_pb.js';
import type { Clock } from '../lib/clock.js';
import { durationToMs, formatDurationMs } from '../lib/duration.js';
import type { Logger } from '../lib/logger.js';
import type { GuardInfo } from './mass-stale-guard.js';
import type { PostResult } from './post-json.js';
import type { SilenceBook } from './silences.js';

// Alerts: rules with a severity, delivered as webhooks (Slack-compatible
// {text, blocks} or a generic JSON body), with a cooldown per rule and
// worker, silences by worker or label from the hive, and a start-up grace
// so a restarting stack does not page ("shepherd monitor"). A crash and a
// clean shutdown are told apart in the text.

export type Severity = 'critical' | 'warning' | 'info';
export const SEVERITIES: readonly Severity[] = ['critical', 'warning', 'info'];
const RANK: Record<Severity, number> = { info: 0, warning: 1, critical: 2 };

export interface Alert {
  rule: string;
  severity: Severity;
  workerId?: string;
  labels?: Record<string, string>;
  title: string;
  text: string;
  details?: Record<string, unknown>;
}

export interface Receiver {
  url: string;
  format: 'slack' | 'generic';
}

export type AlertOutcome = 'sent' | 'failed' | 'silenced' | 'cooldown' | 'startup_grace' | 'below_min' | 'no_receivers';

export interface AlerterDeps {
  clock: Clock;
  log: Logger;
  receivers: readonly Receiver[];
  post: (url: string, body: unknown) => Promise<PostResult>;
  cooldownMs: number;
  startupGraceMs: number;
  minSeverity: Severity;
  silences: SilenceBook;
  metrics?: { sent(severity: Severity): void };
}

const EMOJI: Record<Severity, string> = { critical: ':rotating_light:', warning: ':warning:', info: ':information_source:' };

export function slackBody(a: Alert, at: number) {
  const context = [`*severity:* ${a.severity}`, `*rule:* ${a.rule}`];
  if (a.workerId) context.push(`*worker:* ${a.workerId}`);
  if (a.labels && Object.keys(a.labels).length) context.push(`*labels:* ${Object.entries(a.labels).map(([k, v]) => `${k}=${v}`).join(', ')}`);
  context.push(new Date(at).toISOString());
  return {
    text: `${EMOJI[a.severity]} [${a.severity.toUpperCase()}] ${a.title}: ${a.text}`,
    blocks: [
      { type: 'section', text: { type: 'mrkdwn', text: `${EMOJI[a.severity]} *${a.title}*\n${a.text}` } },
      { type: 'context', elements: [{ type: 'mrkdwn', text: context.join('  |  ') }] },
    ],
  };
}

export function genericBody(a: Alert, at: number) {
  return {
    source: 'hive-monitor',
    rule: a.rule,
    severity: a.severity,
    title: a.title,
    text: a.text,
    worker_id: a.workerId ?? null,
    labels: a.labels ?? {},
    time: new Date(at).toISOString(),
    details: a.details ?? {},
  };
}

export type Alerter = ReturnType<typeof createAlerter>;

export function createAlerter(deps: AlerterDeps) {
  const { clock, log } = deps;
  const startedAt = clock.now();
  const lastSent = new Map<string, number>();
  const pending = new Set<Promise<unknown>>();

  function decide(a: Alert, now: number): AlertOutcome | null {
    if (RANK[a.severity] < RANK[deps.minSeverity]) return 'below_min';
    if (now - startedAt < deps.startupGraceMs) return 'startup_grace';
    if (deps.silences.match(a.workerId, a.labels, now)) return 'silenced';
    const key = `${a.rule}\u0000${a.workerId ?? ''}`;
    const last = lastSent.get(key);
    if (last !== undefined && now - last < deps.cooldownMs) return 'cooldown';
    if (deps.receivers.length === 0) return 'no_receivers';
    // The cooldown starts when we try, not when a receiver accepts: a down
    // receiver must not turn every change into a retry storm.
    lastSent.set(key, now);
    if (lastSent.size > 100_000) {
      for (const [k, t] of lastSent) if (now - t >= deps.cooldownMs) lastSent.delete(k);
    }
    return null;
  }

  async function deliver(a: Alert, now: number): Promise<AlertOutcome> {
    const results = await Promise.all(
      deps.receivers.map(async (r) => {
        const res = await deps.post(r.url, r.format === 'slack' ? slackBody(a, now) : genericBody(a, now));
        if (!res.ok) log.warn({ rule: a.rule, receiver: new URL(r.url).origin, detail: res.detail }, 'alert delivery failed');
        return res.ok;
      }),
    );
    if (!results.some(Boolean)) return 'failed';
    deps.metrics?.sent(a.severity);
    return 'sent';
  }

  return {
    /** Decides and delivers one alert; never throws. */
    async fire(a: Alert): Promise<AlertOutcome> {
      const now = clock.now();
      const skip = decide(a, now);
      if (skip) {
        log.info({ rule: a.rule, severity: a.severity, workerId: a.workerId, outcome: skip }, 'alert not sent');
        return skip;
      }
      const p = deliver(a, now).catch((err) => {
        log.error({ err, rule: a.rule }, 'alert delivery crashed');
        return 'failed' as const;
      });
      pending.add(p);
      void p.finally(() => pending.delete(p));
      const outcome = await p;
      log.info({ rule: a.rule, severity: a.severity, workerId: a.workerId, outcome }, outcome === 'sent' ? 'alert sent' : 'alert not delivered');
      return outcome;
    },
    /** Waits for deliveries in flight (shutdown). */
    async drain(): Promise<void> {
      await Promise.all([...pending]);
    },
  };
}

// The rules. Texts say what happened and what it means for the operator.

const sec = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

export const alertRules = {
  stale(w: Worker, silentMs: number): Alert {
    const interval = durationToMs(w.heartbeatInterval) ?? 0;
    return {
      rule: 'worker_stale',
      severity: 'warning',
      workerId: w.workerId,
      labels: w.labels,
      title: `Worker ${w.workerId} stopped heartbeating (crash suspected)`,
      text: `No heartbeat from ${w.workerId} for ${sec(silentMs)}, twice its ${formatDurationMs(interval)} interval, and no clean shutdown was announced: it crashed, hung or lost its network. Marked STALE.`,
      details: { silent_seconds: silentMs / 1000, interval_seconds: interval / 1000 },
    };
  },
  left(w: Worker): Alert {
    return {
      rule: 'worker_left',
      severity: 'info',
      workerId: w.workerId,
      labels: w.labels,
      title: `Worker ${w.workerId} shut down cleanly`,
      text: `${w.workerId} announced a clean shutdown (state LEFT): a planned stop or scale-down, not a crash. It will not be restarted.`,
    };
  },
  unhealthy(w: Worker): Alert {
    return {
      rule: 'worker_unhealthy',
      severity: 'warning',
      workerId: w.workerId,
      labels: w.labels,
      title: `Worker ${w.workerId} reports itself unhealthy`,
      text: `${w.workerId} is heartbeating but reports UNHEALTHY: ${w.statusDetail || 'no detail given'}.`,
    };
  },
  recovered(w: Worker, from: WorkerState): Alert {
    return {
      rule: 'worker_recovered',
      severity: 'info',
      workerId: w.workerId,
      labels: w.labels,
      title: `Worker ${w.workerId} recovered`,
      text: `${w.workerId} is heartbeating again and reports ${WorkerState[w.state]} (was ${WorkerState[from]}).`,
    };
  },
  restartFailed(w: Worker | undefined, id: string, attempt: number, max: number, detail: string): Alert {
    return {
      rule: 'restart_failed',
      severity: 'warning',
      workerId: id,
      labels: w?.labels,
      title: `Restart attempt ${attempt}/${max} of ${id} failed`,
      text: `${detail}. Another attempt follows after a backoff unless the attempts are exhausted.`,
    };
  },
  gaveUp(w: Worker | undefined, id: string, why: string): Alert {
    return {
      rule: 'worker_failed',
      severity: 'critical',
      workerId: id,
      labels: w?.labels,
      title: `Gave up restarting worker ${id}`,
      text: `${why}. The worker is FAILED and needs a human; no further restarts are attempted until it heartbeats healthy again.`,
    };
  },
  massStale(info: GuardInfo): Alert {
    return {
      rule: 'mass_stale',
      severity: 'critical',
      title: `${info.recent} of ${info.fleet} workers went stale at once: restarts paused`,
      text: `${Math.round(info.share * 100)}% of the fleet stopped heartbeating within ${formatDurationMs(info.windowMs)}. That looks like the network, the hive or a shared dependency, not the workers: they are marked STALE but restart actions are paused (mass-stale guard) until heartbeats recover, then resume at a limited rate.`,
      details: { ...info },
    };
  },
  massStaleReleased(info: GuardInfo): Alert {
    return {
      rule: 'mass_stale_released',
      severity: 'info',
      title: `Mass-stale guard released`,
      text: `Heartbeats recovered: ${info.stale} of ${info.fleet} workers still stale (${Math.round(info.share * 100)}%). Held restarts resume at a limited rate.`,
      details: { ...info },
    };
  },
};
