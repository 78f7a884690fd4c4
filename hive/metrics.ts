import { Code, ConnectError } from '@connectrpc/connect';
import { Counter, Gauge, Histogram, Registry as PromRegistry } from 'prom-client';
import { registerProcessMetrics } from '../lib/process-metrics.js';
import { WorkerState } from '../gen/hive/v1/registry_pb.js';
import { systemClock, type Clock } from '../lib/clock.js';
import { HiveError } from './errors.js';
import { healthScore, pressureOf } from './health-score.js';
import type { Registry } from './registry.js';
import { lastBeatOf, storedStatsOf, type LiveWorker } from './worker.js';

// The hive's Prometheus metrics, on a Registry of its own. Gauges that
// mirror state are computed at scrape time; nothing is pushed by timers.
// Names: hive_<subsystem>_<name>_<base unit>, `_total` only on counters.

export const HEARTBEAT_RESULTS = ['ok', 'unauthenticated', 'denied', 'invalid', 'replay', 'not_found', 'limited', 'error'] as const;
export type HeartbeatResult = (typeof HEARTBEAT_RESULTS)[number];

/** Event kinds the hive itself writes (the monitor may record others). */
export const EVENT_KINDS = [
  'registered', 'token_rotated', 'first_heartbeat', 'status_changed', 'recovered', 'rejoined', 'left',
  'marked_stale', 'restarting', 'gave_up', 'command_result', 'policy_set', 'deregistered', 'blocked', 'unblocked',
] as const;

const STATE_NAMES = Object.entries(WorkerState)
  .filter(([, v]) => typeof v === 'number' && v !== 0)
  .map(([k, v]) => [k.toLowerCase(), v as number] as const);
const STATE_NAME: Record<number, string> = Object.fromEntries(STATE_NAMES.map(([k, v]) => [v, k]));

/** States whose last report is current: only these workers get resource gauges. */
const REPORTING = new Set<number>([WorkerState.HEALTHY, WorkerState.DEGRADED, WorkerState.UNHEALTHY]);

export function heartbeatResultOf(err: unknown): HeartbeatResult {
  const code = err instanceof HiveError || err instanceof ConnectError ? err.code : undefined;
  switch (code) {
    case Code.Unauthenticated:
      return 'unauthenticated';
    case Code.PermissionDenied:
      return 'denied';
    case Code.InvalidArgument:
      return 'invalid';
    case Code.FailedPrecondition:
      return 'replay';
    case Code.NotFound:
      return 'not_found';
    case Code.ResourceExhausted:
      return 'limited';
    default:
      return 'error';
  }
}

/** Label names per-worker series carry besides the worker's configured labels. */
const OWN_LABELS = new Set(['worker_id', 'state', 'gpu', 'gpu_name', 'path', 'job', 'instance', 'le', 'quantile', 'percentile']);

/**
 * Turns worker label keys (`pool`, `gpu.model`, `example.com/zone`) into
 * Prometheus label names (`pool`, `gpu_model`, `example_com_zone`). A name
 * the hive uses itself, or that Prometheus reserves, gets a `label_` prefix.
 * Two keys that end up with one name are a configuration error.
 */
export function metricLabelNames(keys: readonly string[]): string[] {
  const seen = new Map<string, string>();
  return keys.map((key) => {
    let name = key.replace(/[^A-Za-z0-9_]/g, '_');
    if (name === '' || /^[0-9]/.test(name) || name.startsWith('__') || OWN_LABELS.has(name)) name = `label_${name}`;
    const other = seen.get(name);
    if (other !== undefined) throw new Error(`worker labels "${other}" and "${key}" both become the metric label "${name}"`);
    seen.set(name, key);
    return name;
  });
}

export interface HiveMetricsOptions {
  /** Per-worker series (state, age, resources, health score); off for very large fleets. */
  perWorker?: boolean;
  /** Worker label keys copied onto every per-worker series. */
  labels?: readonly string[];
  /** At most this many workers get per-worker series; the rest are counted in hive_metrics_workers_omitted. */
  maxWorkers?: number;
  clock?: Clock;
}

/**
 * A scrape costs about 7 us of CPU per per-worker series. Measured on a
 * loaded 2-core machine, workers with 8 GPUs each: 2,000 workers (86,000
 * series) 0.4 s per scrape, 10,000 workers 2-3 s; the event loop is never
 * held for more than ~0.1 s either way (the pass yields).
 */
export const METRICS_DEFAULTS = { perWorker: true, labels: ['pool'], maxWorkers: 2_000 } as const;

export type HiveMetrics = ReturnType<typeof createHiveMetrics>;

export function createHiveMetrics(prom: PromRegistry, hive: () => Registry | undefined, options: HiveMetricsOptions = {}) {
  registerProcessMetrics(prom);
  const clock = options.clock ?? systemClock;
  // Counted in plain numbers on the heartbeat path, handed to prom-client
  // when it collects (every scrape): a counter's inc() hashes its labels.
  const pending = Object.fromEntries(HEARTBEAT_RESULTS.map((r) => [r, 0])) as Record<HeartbeatResult, number>;
  const heartbeats: Counter<'result'> = new Counter({
    name: 'hive_heartbeats_received_total',
    help: 'Heartbeats received, by result (ok, unauthenticated, denied, invalid, replay, not_found, limited, error).',
    labelNames: ['result'],
    registers: [prom],
    collect() {
      for (const r of HEARTBEAT_RESULTS) {
        if (pending[r] === 0) continue;
        byResult[r].inc(pending[r]);
        pending[r] = 0;
      }
    },
  });
  const byResult = Object.fromEntries(HEARTBEAT_RESULTS.map((r) => [r, heartbeats.labels(r)])) as Record<HeartbeatResult, ReturnType<typeof heartbeats.labels>>;
  for (const r of HEARTBEAT_RESULTS) byResult[r].inc(0);
  const handling = new Histogram({
    name: 'hive_heartbeat_handling_seconds',
    help: 'Time the hive takes to handle one heartbeat, accepted or refused by the handler (with the database write when it changes the state); not those refused by the auth guard.',
    buckets: [0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [prom],
  });
  const handled = handling.labels();
  const markWait = new Histogram({
    name: 'hive_stale_mark_read_wait_seconds',
    help: 'Each wait of a stale mark that came just past its deadline for the hive to read its sockets up to the deadline (until a turn of the event loop begun after it had ended).',
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [prom],
  });
  const streams = new Gauge({ name: 'hive_heartbeat_streams_open', help: 'Open HeartbeatStream calls.', registers: [prom] });
  new Gauge({
    name: 'hive_workers',
    help: 'Registered workers by state.',
    labelNames: ['state'],
    registers: [prom],
    collect() {
      const counts = new Map<number, number>();
      for (const w of hive()?.workers.values() ?? []) counts.set(w.state, (counts.get(w.state) ?? 0) + 1);
      for (const [name, v] of STATE_NAMES) this.labels(name).set(counts.get(v) ?? 0);
    },
  });
  new Gauge({
    name: 'hive_write_behind_backlog',
    help: 'Workers whose latest heartbeat is not yet written to the database.',
    registers: [prom],
    collect() {
      this.set(hive()?.writeBehind.backlog() ?? 0);
    },
  });
  new Gauge({
    name: 'hive_live_state_degraded',
    help: 'Whether the shared live state (Redis) is out of reach and this replica runs on its memory alone (1) or not (0).',
    labelNames: ['engine'],
    registers: [prom],
    collect() {
      const live = hive()?.live;
      this.reset();
      if (live) this.labels(live.kind).set(live.degraded() === null ? 0 : 1);
    },
  });
  new Gauge({
    name: 'hive_live_overdue_workers',
    help: 'Workers whose deadline (last heartbeat + 2x interval) has passed in the shared deadline index (Redis mode only).',
    registers: [prom],
    async collect() {
      const n = await hive()?.live.overdue(clock.now());
      this.set(n ?? 0);
    },
  });
  new Gauge({
    name: 'hive_write_behind_outbox',
    help: 'Durable writes queued while the database was unavailable.',
    registers: [prom],
    collect() {
      this.set(hive()?.writeBehind.outbox() ?? 0);
    },
  });
  const flushSeconds = new Histogram({
    name: 'hive_write_behind_flush_seconds',
    help: 'Duration of one write-behind batch, by result.',
    labelNames: ['result'],
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
    registers: [prom],
  });
  for (const r of ['ok', 'error']) flushSeconds.zero({ result: r });
  const flushRows = new Histogram({
    name: 'hive_write_behind_batch_rows',
    help: 'Workers written per write-behind batch.',
    buckets: [1, 10, 100, 1000, 10_000, 100_000],
    registers: [prom],
  });
  const checks = new Counter({ name: 'hive_health_checks_total', help: 'Finished health-check runs, by trigger (manual, scheduled) and band of the run score.', labelNames: ['trigger', 'band'], registers: [prom] });
  for (const t of ['manual', 'scheduled']) for (const b of ['healthy', 'degraded', 'unhealthy', 'critical']) checks.labels(t, b).inc(0);
  let runningChecks: () => number = () => 0;
  new Gauge({
    name: 'hive_health_checks_running',
    help: 'Health-check runs in progress on this hive.',
    registers: [prom],
    collect() {
      this.set(runningChecks());
    },
  });
  const events = new Counter({ name: 'hive_events_written_total', help: 'Events appended to the event log, by kind.', labelNames: ['kind'], registers: [prom] });
  for (const k of EVENT_KINDS) events.labels(k).inc(0);

  if (options.perWorker ?? METRICS_DEFAULTS.perWorker) {
    registerPerWorker(prom, hive, clock, options.labels ?? METRICS_DEFAULTS.labels, options.maxWorkers ?? METRICS_DEFAULTS.maxWorkers);
  }

  return {
    /**
     * Counts one heartbeat by result; seconds is how long handling it took.
     * A heartbeat refused before it was handled (by the auth guard) has no
     * handling time: it is counted without one, so that it does not pull the
     * latency histogram towards zero.
     */
    heartbeat(result: HeartbeatResult, seconds?: number): void {
      pending[result]++;
      if (seconds !== undefined) handled.observe(seconds);
    },
    /** A stale mark waited this long for the hive to read up to its deadline. */
    markReadWait(seconds: number): void {
      markWait.observe(seconds);
    },
    stream(delta: number): void {
      streams.inc(delta);
    },
    flushed(rows: number, seconds: number, ok: boolean): void {
      flushSeconds.labels(ok ? 'ok' : 'error').observe(seconds);
      if (ok) flushRows.observe(rows);
    },
    event(kind: string): void {
      events.labels(kind).inc();
    },
    checkFinished(trigger: 'manual' | 'scheduled', band: 'healthy' | 'degraded' | 'unhealthy' | 'critical'): void {
      checks.labels(trigger, band).inc();
    },
    /** Where hive_health_checks_running reads from (the run manager is created after the metrics). */
    countRunningChecks(fn: () => number): void {
      runningChecks = fn;
    },
  };
}

/** Workers filled per slice of a scrape before the event loop gets a turn. */
const SLICE = 256;

/**
 * Per-worker gauges, rebuilt from the live registry on every scrape: reset,
 * then set for the workers registered now, so a deregistered worker's
 * series disappear with it. One pass fills them all: every gauge's
 * collect() joins the pass in flight (prom-client awaits a collect() that
 * returns a promise), and the pass yields every SLICE workers so that a
 * scrape of a large fleet never holds up heartbeats for long.
 */
function registerPerWorker(prom: PromRegistry, hive: () => Registry | undefined, clock: Clock, labelKeys: readonly string[], maxWorkers: number): void {
  const extra = metricLabelNames(labelKeys);
  const base = ['worker_id', ...extra];
  let pass: Promise<void> | null = null;
  const refresh = () => (pass ??= fill().finally(() => (pass = null)));
  const gauges: Gauge<string>[] = [];
  const gauge = (name: string, help: string, more: string[] = []) => {
    const g = new Gauge({ name, help, labelNames: [...base, ...more], registers: [prom], collect: refresh });
    gauges.push(g);
    return g;
  };

  const omitted = new Gauge({ name: 'hive_metrics_workers_omitted', help: 'Workers left out of the per-worker series because of the configured limit.', registers: [prom], collect: refresh });
  const state = gauge('hive_worker_state', "The worker's current state (1; one series per worker, labelled with the state).", ['state']);
  const lastSeen = gauge('hive_worker_last_seen_timestamp_seconds', "Time of the worker's last accepted heartbeat (Unix seconds).");
  const age = gauge('hive_worker_heartbeat_age_seconds', 'Seconds since the worker last heartbeated (since it registered, if it never did).');
  const interval = gauge('hive_worker_heartbeat_interval_seconds', "The worker's heartbeat interval.");
  const connected = gauge('hive_worker_connected', 'Whether the worker has a heartbeat stream open on this hive (1) or not (0).');
  const score = gauge('hive_worker_health_score', 'Health score 0-1: healthy >= 0.9, degraded 0.7-0.9, unhealthy 0.4-0.7, critical < 0.4 (from state and resource pressure).');
  const vramUsed = gauge('hive_worker_gpu_memory_used_bytes', 'GPU memory in use, as last reported.', ['gpu', 'gpu_name']);
  const vramTotal = gauge('hive_worker_gpu_memory_total_bytes', 'GPU memory in total, as last reported.', ['gpu', 'gpu_name']);
  const gpuUtil = gauge('hive_worker_gpu_utilization_ratio', 'GPU utilisation 0-1, as last reported (absent when the driver does not report it).', ['gpu', 'gpu_name']);
  const gpuTemp = gauge('hive_worker_gpu_temperature_celsius', 'GPU temperature, as last reported.', ['gpu', 'gpu_name']);
  const memUsed = gauge('hive_worker_memory_used_bytes', 'Memory in use, as last reported.');
  const memTotal = gauge('hive_worker_memory_total_bytes', 'Memory in total, as last reported.');
  const diskFree = gauge('hive_worker_disk_free_bytes', 'Free space of a filesystem path, as last reported.', ['path']);
  const diskTotal = gauge('hive_worker_disk_total_bytes', 'Size of a filesystem path, as last reported.', ['path']);
  const load1 = gauge('hive_worker_load1', 'One-minute load average, as last reported.');
  const probeLatency = gauge('hive_worker_probe_latency_seconds', "Percentiles of the agent's probe latency over its sliding window, as last reported (percentile 50, 95, 99).", ['percentile']);

  function set(w: LiveWorker, now: number): void {
    const labels: Record<string, string> = { worker_id: w.workerId };
    for (let i = 0; i < extra.length; i++) labels[extra[i]] = w.labels[labelKeys[i]] ?? '';
    state.set({ ...labels, state: STATE_NAME[w.state] ?? 'unspecified' }, 1);
    if (w.lastSeen !== null) lastSeen.set(labels, w.lastSeen / 1000);
    age.set(labels, Math.max(0, now - (w.lastSeen ?? w.registeredAt)) / 1000);
    interval.set(labels, w.intervalMs / 1000);
    connected.set(labels, w.streams > 0 ? 1 : 0);
    const stats = statsLike(w);
    const s = healthScore(w.state, REPORTING.has(w.state) && stats ? pressureOf(stats) : {});
    if (s !== undefined) score.set(labels, s);
    // A stale, failed or departed worker's last report is history, not its
    // present: resource gauges (and the alerts on them) cover only workers
    // that are reporting.
    if (!stats || !REPORTING.has(w.state)) return;
    for (const g of stats.gpus) {
      const l = { ...labels, gpu: String(g.index), gpu_name: g.name };
      vramUsed.set(l, Number(g.memoryUsedBytes));
      vramTotal.set(l, Number(g.memoryTotalBytes));
      if (g.utilization !== undefined) gpuUtil.set(l, g.utilization);
      if (g.temperatureCelsius !== undefined) gpuTemp.set(l, g.temperatureCelsius);
    }
    if (stats.memoryTotalBytes > 0n) {
      memUsed.set(labels, Number(stats.memoryUsedBytes));
      memTotal.set(labels, Number(stats.memoryTotalBytes));
    }
    for (const d of stats.disks) {
      const l = { ...labels, path: d.path };
      diskFree.set(l, Number(d.freeBytes));
      diskTotal.set(l, Number(d.totalBytes));
    }
    load1.set(labels, stats.load1);
    if (stats.probeLatencyP50Seconds !== undefined) probeLatency.set({ ...labels, percentile: '50' }, stats.probeLatencyP50Seconds);
    if (stats.probeLatencyP95Seconds !== undefined) probeLatency.set({ ...labels, percentile: '95' }, stats.probeLatencyP95Seconds);
    if (stats.probeLatencyP99Seconds !== undefined) probeLatency.set({ ...labels, percentile: '99' }, stats.probeLatencyP99Seconds);
  }

  async function fill(): Promise<void> {
    for (const g of gauges) g.reset();
    const reg = hive();
    const now = clock.now();
    let n = 0;
    // Map iteration tolerates the registry changing between slices: a
    // worker removed meanwhile is skipped, one added is visited.
    for (const w of reg?.workers.values() ?? []) {
      if (n === maxWorkers) break;
      set(w, now);
      if (++n % SLICE === 0) await new Promise((resolve) => setImmediate(resolve));
    }
    omitted.set(Math.max(0, (reg?.workers.size ?? 0) - n));
  }
}

/** The worker's last reported stats without building a message: a heartbeat carries the same fields. */
function statsLike(w: LiveWorker) {
  return lastBeatOf(w) ?? storedStatsOf(w);
}
