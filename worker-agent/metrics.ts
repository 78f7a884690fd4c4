import http from 'node:http';
import { Code } from '@connectrpc/connect';
import { Counter, Gauge, Registry as PromRegistry } from 'prom-client';
import { registerProcessMetrics } from '../lib/process-metrics.js';
import type { CollectorRun } from './collectors/runner.js';
import type { LatencyPercentiles } from './latency-window.js';
import type { ProbeResult } from './probe.js';

// The agent's own /metrics: node_exporter-style collector success and
// duration, its heartbeat traffic, and the stats it last reported.
// Names: hive_agent_<name>_<base unit>, `_total` only on counters.

/** How often the agent samples its event-loop lag (nodejs_eventloop_lag_*), in ms. */
export const AGENT_EVENT_LOOP_PRECISION_MS = 100;

export const COLLECTORS = ['gpu', 'memory', 'disk', 'load'] as const;

/** gRPC code names as they travel on the wire (`unavailable`, `permission_denied`), plus `unknown`. */
export const FAILURE_CODES = [
  ...new Set([
    ...Object.values(Code)
      .filter((v): v is string => typeof v === 'string')
      .map(snake),
    'unknown',
  ]),
];

function snake(name: string): string {
  return name.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toLowerCase();
}

export function createAgentMetrics(prom: PromRegistry, workerId: string) {
  // The agent is idle between heartbeats and must stay under 1% of a core:
  // sampling the event-loop lag every 10 ms would be ~0.4% of a core on its
  // own. Every 100 ms still catches a blocked loop within a scrape interval.
  registerProcessMetrics(prom, { eventLoopPrecisionMs: AGENT_EVENT_LOOP_PRECISION_MS });
  const labels = { worker_id: workerId };
  const collectorSuccess = new Gauge({ name: 'hive_agent_collector_success', help: 'Whether the collector succeeded on its last run (1) or not (0).', labelNames: ['collector'], registers: [prom] });
  const collectorDuration = new Gauge({ name: 'hive_agent_collector_duration_seconds', help: "Duration of the collector's last run.", labelNames: ['collector'], registers: [prom] });
  const sent = new Counter({ name: 'hive_agent_heartbeats_sent_total', help: 'Heartbeats sent to the hive.', registers: [prom] });
  const acked = new Counter({ name: 'hive_agent_heartbeats_acked_total', help: 'Heartbeats acknowledged by the hive.', registers: [prom] });
  const failed = new Counter({ name: 'hive_agent_heartbeat_failures_total', help: 'Heartbeat stream failures, by gRPC code.', labelNames: ['code'], registers: [prom] });
  const beatBytes = new Gauge({
    name: 'hive_agent_heartbeat_bytes',
    help: 'Encoded size of the last heartbeat sent, by form (full: with the GPU and collector inventory; compact: only changing values), bytes of the HeartbeatStreamRequest without the 5-byte gRPC frame header.',
    labelNames: ['form'],
    registers: [prom],
  });
  const reconnects = new Counter({ name: 'hive_agent_reconnects_total', help: 'Reconnections to the hive.', registers: [prom] });
  const memUsed = new Gauge({ name: 'hive_agent_memory_used_bytes', help: 'Memory used, as last reported.', labelNames: ['worker_id'], registers: [prom] });
  const memTotal = new Gauge({ name: 'hive_agent_memory_total_bytes', help: 'Memory total, as last reported.', labelNames: ['worker_id'], registers: [prom] });
  const load1 = new Gauge({ name: 'hive_agent_load1', help: 'One-minute load average, as last reported.', labelNames: ['worker_id'], registers: [prom] });
  const gpuLabels = ['worker_id', 'gpu', 'gpu_name'];
  const gpuUsed = new Gauge({ name: 'hive_agent_gpu_memory_used_bytes', help: 'GPU memory used, as last reported.', labelNames: gpuLabels, registers: [prom] });
  const gpuTotal = new Gauge({ name: 'hive_agent_gpu_memory_total_bytes', help: 'GPU memory total, as last reported.', labelNames: gpuLabels, registers: [prom] });
  const gpuUtil = new Gauge({ name: 'hive_agent_gpu_utilization_ratio', help: 'GPU utilisation 0-1, as last reported (absent when the driver does not report it).', labelNames: gpuLabels, registers: [prom] });
  const gpuTemp = new Gauge({ name: 'hive_agent_gpu_temperature_celsius', help: 'GPU temperature, as last reported.', labelNames: gpuLabels, registers: [prom] });
  const diskFree = new Gauge({ name: 'hive_agent_disk_free_bytes', help: 'Free disk space, as last reported.', labelNames: ['worker_id', 'path'], registers: [prom] });
  const diskTotal = new Gauge({ name: 'hive_agent_disk_total_bytes', help: 'Disk size, as last reported.', labelNames: ['worker_id', 'path'], registers: [prom] });
  const probeSeconds = new Gauge({ name: 'hive_agent_probe_latency_seconds', help: 'Latency of the last probe of the worker.', labelNames: ['worker_id'], registers: [prom] });
  const probeWindow = new Gauge({ name: 'hive_agent_probe_latency_window_seconds', help: 'Percentiles of the probe latency over the sliding window of recent answers (percentile 50, 95, 99).', labelNames: ['worker_id', 'percentile'], registers: [prom] });
  const probeUp = new Gauge({ name: 'hive_agent_probe_success', help: 'Whether the last probe of the worker answered 200 (1) or not (0).', labelNames: ['worker_id'], registers: [prom] });
  for (const c of COLLECTORS) {
    collectorSuccess.labels(c).set(0);
    collectorDuration.labels(c).set(0);
  }
  for (const code of FAILURE_CODES) failed.labels(code).inc(0);

  return {
    sample(run: CollectorRun, probe: ProbeResult | undefined, window?: LatencyPercentiles): void {
      if (window) {
        probeWindow.set({ ...labels, percentile: '50' }, window.p50 / 1000);
        probeWindow.set({ ...labels, percentile: '95' }, window.p95 / 1000);
        probeWindow.set({ ...labels, percentile: '99' }, window.p99 / 1000);
      }
      for (const s of run.statuses) {
        collectorSuccess.labels(s.name).set(s.success ? 1 : 0);
        collectorDuration.labels(s.name).set(s.durationSeconds);
      }
      memUsed.set(labels, Number(run.stats.memoryUsedBytes));
      memTotal.set(labels, Number(run.stats.memoryTotalBytes));
      load1.set(labels, run.stats.load1);
      // GPUs and disks are whatever this run saw: a GPU that fell off the bus disappears.
      for (const g of [gpuUsed, gpuTotal, gpuUtil, gpuTemp, diskFree, diskTotal]) g.reset();
      for (const g of run.stats.gpus) {
        const l = { ...labels, gpu: String(g.index), gpu_name: g.name };
        gpuUsed.set(l, Number(g.memoryUsedBytes));
        gpuTotal.set(l, Number(g.memoryTotalBytes));
        if (g.utilization !== undefined) gpuUtil.set(l, g.utilization);
        if (g.temperatureCelsius !== undefined) gpuTemp.set(l, g.temperatureCelsius);
      }
      for (const d of run.stats.disks) {
        diskFree.set({ ...labels, path: d.path }, Number(d.freeBytes));
        diskTotal.set({ ...labels, path: d.path }, Number(d.totalBytes));
      }
      if (probe) {
        probeSeconds.set(labels, probe.latencyMs / 1000);
        probeUp.set(labels, probe.httpStatus === 200 ? 1 : 0);
      }
    },
    events: {
      sent: () => sent.inc(),
      acked: () => acked.inc(),
      failed: (code: string) => failed.labels(snake(code)).inc(),
      reconnect: () => reconnects.inc(),
      encoded: (form: 'full' | 'compact', bytes: number) => beatBytes.labels(form).set(bytes),
    },
  };
}

/** A small HTTP server for /metrics and /healthz. */
export function serveMetrics(prom: PromRegistry, host: string, port: number, healthy: () => boolean): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    if (req.url === '/metrics') {
      prom.metrics().then(
        (body) => {
          res.writeHead(200, { 'content-type': prom.contentType });
          res.end(body);
        },
        (err: Error) => {
          res.writeHead(500, { 'content-type': 'text/plain' });
          res.end(`metrics collection failed: ${err.message}\n`);
        },
      );
    } else if (req.url === '/healthz') {
      const ok = healthy();
      res.writeHead(ok ? 200 : 503, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ status: ok ? 'ok' : 'disconnected' }) + '\n');
    } else {
      res.writeHead(404).end();
    }
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve(server));
  });
}
