import { Counter, Gauge, Histogram, Registry as PromRegistry } from 'prom-client';
import { registerProcessMetrics } from '../lib/process-metrics.js';
import { ACTION_NAMES, type ActionName } from './policy.js';
import { SEVERITIES, type Severity } from './alerts.js';
import type { MarkAnswer } from './stale-detector.js';

// The monitor's metrics, on a Registry of its own. The Grafana dashboard is
// built from these exact names. Gauges that mirror state are read at scrape
// time from the parts that own it; labelled series start at 0.

export interface MonitorGaugeSources {
  watchedWorkers(): number;
  failedWorkers(): number;
  deadlines(): number;
  /** Due stale marks waiting for the view to catch up. */
  heldMarks(): number;
  /** How far the view lags the hive's clock, in ms (0 where the hive does not say). */
  viewBehindMs(): number;
  guardEngaged(): boolean;
  watchConnected(): boolean;
  leader(): boolean;
}

export const RESTART_RESULTS = ['issued', 'verified', 'failed'] as const;
export type RestartResult = (typeof RESTART_RESULTS)[number];

/** Every MarkStale answer the stale detector reports, each a series from the start (the record makes the compiler check that none is missing). */
const MARK_ANSWERS = Object.keys({ applied: 1, done: 1, heartbeated: 1, later: 1, moot: 1, retry: 1 } satisfies Record<MarkAnswer, 1>) as MarkAnswer[];

/** Fine below 0.25 s (the target is 0.1 s), coarse above for outliers. */
export const LAG_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.125, 0.15, 0.2, 0.25, 0.5, 1, 2.5, 5, 10];

export type MonitorMetrics = ReturnType<typeof createMonitorMetrics>;

export function createMonitorMetrics(prom: PromRegistry, src: MonitorGaugeSources) {
  registerProcessMetrics(prom);
  const stale = new Counter({ name: 'hive_monitor_stale_detections_total', help: 'Workers this monitor marked STALE.', registers: [prom] });
  const lag = new Histogram({
    name: 'hive_monitor_detection_lag_seconds',
    help: 'Stale mark time (hive clock) minus the deadline: last heartbeat + 2x interval, or the end of a grace when one applied.',
    buckets: LAG_BUCKETS,
    registers: [prom],
  });
  const markCalls = new Counter({
    name: 'hive_monitor_stale_mark_calls_total',
    help: 'MarkStale calls by answer: applied; heartbeated (the hive had a heartbeat the view lacked); later (not due by the hive\'s clock); moot; retry (failed, sent again); done (already marked).',
    labelNames: ['answer'],
    registers: [prom],
  });
  for (const a of MARK_ANSWERS) markCalls.labels(a).inc(0);
  const restarts = new Counter({ name: 'hive_monitor_restarts_total', help: 'Restart attempts by action and outcome (issued, verified, failed).', labelNames: ['action', 'result'], registers: [prom] });
  const attempts = new Counter({ name: 'hive_monitor_restart_attempts_total', help: 'Restart attempts started, by action.', labelNames: ['action'], registers: [prom] });
  const alerts = new Counter({ name: 'hive_monitor_alerts_sent_total', help: 'Alerts delivered to at least one receiver, by severity.', labelNames: ['severity'], registers: [prom] });
  for (const a of ACTION_NAMES) {
    attempts.labels(a).inc(0);
    for (const r of RESTART_RESULTS) restarts.labels(a, r).inc(0);
  }
  for (const s of SEVERITIES) alerts.labels(s).inc(0);

  const gauge = (name: string, help: string, read: () => number) =>
    new Gauge({
      name,
      help,
      registers: [prom],
      collect() {
        this.set(read());
      },
    });
  gauge('hive_monitor_workers_failed', 'Workers in state FAILED (restart attempts exhausted).', src.failedWorkers);
  gauge('hive_monitor_mass_stale_guard_engaged', 'Whether the mass-stale guard holds restart actions (1) or not (0).', () => (src.guardEngaged() ? 1 : 0));
  gauge('hive_monitor_leader', 'Whether this monitor is the leader that acts (1) or a standby (0).', () => (src.leader() ? 1 : 0));
  gauge('hive_monitor_watched_workers', 'Workers in the monitor\'s view of the registry.', src.watchedWorkers);
  gauge('hive_monitor_deadlines', 'Stale deadlines in the deadline queue.', src.deadlines);
  gauge('hive_monitor_stale_marks_held', 'Due stale marks held until the view is complete through half an interval before their deadline.', src.heldMarks);
  gauge('hive_monitor_view_behind_seconds', 'The hive\'s clock (estimated) minus the time the watch says the view is complete through.', () => src.viewBehindMs() / 1000);
  gauge('hive_monitor_watch_connected', 'Whether the WatchWorkers stream is open and synced (1) or not (0).', () => (src.watchConnected() ? 1 : 0));

  return {
    staleDetected(lagSeconds: number): void {
      stale.inc();
      lag.observe(Math.max(0, lagSeconds));
    },
    markAnswer(answer: MarkAnswer): void {
      markCalls.labels(answer).inc();
    },
    restart(action: ActionName, result: RestartResult): void {
      restarts.labels(action, result).inc();
    },
    attempt(action: ActionName): void {
      attempts.labels(action).inc();
    },
    alertSent(severity: Severity): void {
      alerts.labels(severity).inc();
    },
  };
}
