import type { HeartbeatRequest, RegisterWorkerRequest } from '../gen/hive/v1/registry_pb.js';
import type { Duration } from '@bufbuild/protobuf/wkt';
import { HealthStatus } from '../gen/hive/v1/registry_pb.js';
import { invalidArgument } from './errors.js';
import { parseSelector } from './selector.js';
import { durationToMs } from '../lib/duration.js';

// Pure checks of what callers send. A request that fails any of them is
// rejected with InvalidArgument before it touches any state.

export const LIMITS = {
  maxStringBytes: 256,
  maxGpus: 64,
  maxDisks: 32,
  maxLabels: 64,
  maxCollectors: 32,
  maxCommandResults: 32,
  maxCheckReports: 8,
  maxDependsOn: 64,
  maxMessageBytes: 64 * 1024,
  minIntervalMs: 100,
  maxIntervalMs: 24 * 3_600_000,
} as const;

const WORKER_ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;
const LABEL_KEY = /^[A-Za-z0-9]([A-Za-z0-9._/-]{0,126})?$/;
// Control characters (C0, DEL, C1) have no place in ids, labels or details.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

function byteLength(s: string): number {
  // Fast path: ASCII-only strings are their length in bytes.
  return s.length * 3 <= LIMITS.maxStringBytes ? s.length : Buffer.byteLength(s, 'utf8');
}

export function checkString(field: string, s: string, opts: { allowControl?: boolean } = {}): void {
  if (byteLength(s) > LIMITS.maxStringBytes) throw invalidArgument(`${field} is longer than ${LIMITS.maxStringBytes} bytes`);
  if (!opts.allowControl && CONTROL.test(s)) throw invalidArgument(`${field} contains control characters`);
}

export function checkWorkerId(id: string, field = 'worker_id'): void {
  if (!id) throw invalidArgument(`${field} is required`);
  if (!WORKER_ID.test(id)) throw invalidArgument(`${field} must match ${WORKER_ID.source}`);
}

function checkFinite(field: string, v: number | undefined, min = 0, max = Number.MAX_VALUE): void {
  if (v === undefined) return;
  if (!Number.isFinite(v) || v < min || v > max) throw invalidArgument(`${field} must be a finite number in [${min}, ${max}], got ${v}`);
}

export function checkLabels(labels: Record<string, string>): void {
  const keys = Object.keys(labels);
  if (keys.length > LIMITS.maxLabels) throw invalidArgument(`more than ${LIMITS.maxLabels} labels`);
  for (const k of keys) {
    if (!LABEL_KEY.test(k)) throw invalidArgument(`label key "${k.slice(0, 64)}" must match ${LABEL_KEY.source}`);
    checkString(`label ${k}`, labels[k]);
  }
}

export function checkIntervalMs(ms: number | undefined): number {
  if (ms === undefined) throw invalidArgument('heartbeat_interval is required');
  if (!Number.isFinite(ms) || ms < LIMITS.minIntervalMs || ms > LIMITS.maxIntervalMs)
    throw invalidArgument(`heartbeat_interval must be between ${LIMITS.minIntervalMs} ms and 24 h`);
  return ms;
}

/** A watch's progress_interval in ms, null when unset. */
export function checkProgressIntervalMs(d: Duration | undefined): number | null {
  if (!d) return null;
  const ms = durationToMs(d);
  if (ms === undefined || !Number.isFinite(ms) || ms < 10 || ms > 60_000) throw invalidArgument('progress_interval must be between 10 ms and 60 s');
  return ms;
}

export function validateRegister(req: RegisterWorkerRequest): { intervalMs: number } {
  checkWorkerId(req.workerId);
  checkLabels(req.labels);
  const d = req.heartbeatInterval;
  if (d && (d.nanos < 0 || d.seconds < 0n)) throw invalidArgument('heartbeat_interval must be positive');
  const intervalMs = checkIntervalMs(durationToMs(d));
  if (req.dependsOn.length > LIMITS.maxDependsOn) throw invalidArgument(`more than ${LIMITS.maxDependsOn} dependencies`);
  for (const dep of req.dependsOn) checkWorkerId(dep, 'depends_on');
  if (req.dependsOn.includes(req.workerId)) throw invalidArgument('a worker cannot depend on itself');
  checkString('depends_on_selector', req.dependsOnSelector);
  parseSelector(req.dependsOnSelector);
  return { intervalMs };
}

/** Hot path: every heartbeat. Checks bounds without allocating. */
export function validateHeartbeat(hb: HeartbeatRequest): void {
  checkWorkerId(hb.workerId);
  checkString('session_id', hb.sessionId);
  checkString('status_detail', hb.statusDetail);
  if (hb.status !== HealthStatus.UNSPECIFIED && hb.status !== HealthStatus.HEALTHY && hb.status !== HealthStatus.DEGRADED && hb.status !== HealthStatus.UNHEALTHY)
    throw invalidArgument(`status ${hb.status} is not a HealthStatus`);
  if (hb.gpus.length > LIMITS.maxGpus) throw invalidArgument(`more than ${LIMITS.maxGpus} gpus`);
  if (hb.disks.length > LIMITS.maxDisks) throw invalidArgument(`more than ${LIMITS.maxDisks} disks`);
  if (hb.collectors.length > LIMITS.maxCollectors) throw invalidArgument(`more than ${LIMITS.maxCollectors} collector statuses`);
  if (hb.commandResults.length > LIMITS.maxCommandResults) throw invalidArgument(`more than ${LIMITS.maxCommandResults} command results`);
  if (hb.memoryUsedBytes > hb.memoryTotalBytes && hb.memoryTotalBytes !== 0n) throw invalidArgument('memory_used_bytes exceeds memory_total_bytes');
  checkFinite('load1', hb.load1, 0, 1e6);
  checkFinite('probe_latency_p50_seconds', hb.probeLatencyP50Seconds, 0, 86400);
  checkFinite('probe_latency_p95_seconds', hb.probeLatencyP95Seconds, 0, 86400);
  checkFinite('probe_latency_p99_seconds', hb.probeLatencyP99Seconds, 0, 86400);
  for (let i = 0; i < hb.gpus.length; i++) {
    const g = hb.gpus[i];
    checkString('gpus.uuid', g.uuid);
    checkString('gpus.name', g.name);
    if (g.index > 1024) throw invalidArgument('gpus.index out of range');
    if (g.memoryUsedBytes > g.memoryTotalBytes && g.memoryTotalBytes !== 0n) throw invalidArgument(`gpu ${g.index}: memory_used_bytes exceeds memory_total_bytes`);
    checkFinite('gpus.utilization', g.utilization, 0, 1);
    checkFinite('gpus.temperature_celsius', g.temperatureCelsius, -273.15, 1000);
  }
  for (let i = 0; i < hb.disks.length; i++) {
    const d = hb.disks[i];
    checkString('disks.path', d.path);
    if (d.freeBytes > d.totalBytes) throw invalidArgument(`disk ${d.path}: free_bytes exceeds total_bytes`);
  }
  for (let i = 0; i < hb.collectors.length; i++) {
    const c = hb.collectors[i];
    checkString('collectors.name', c.name);
    checkString('collectors.error', c.error);
    checkFinite('collectors.duration_seconds', c.durationSeconds, 0, 86400);
  }
  if (hb.checkReports.length > LIMITS.maxCheckReports) throw invalidArgument(`more than ${LIMITS.maxCheckReports} check reports`);
  for (let i = 0; i < hb.checkReports.length; i++) {
    const r = hb.checkReports[i];
    checkString('check_reports.command_id', r.commandId);
    checkString('check_reports.probe_detail', r.probeDetail);
    if (r.probeStatus !== HealthStatus.UNSPECIFIED && r.probeStatus !== HealthStatus.HEALTHY && r.probeStatus !== HealthStatus.DEGRADED && r.probeStatus !== HealthStatus.UNHEALTHY)
      throw invalidArgument(`check_reports.probe_status ${r.probeStatus} is not a HealthStatus`);
    checkFinite('check_reports.probe_latency_seconds', r.probeLatencySeconds, 0, 86400);
    checkFinite('check_reports.hive_rtt_seconds', r.hiveRttSeconds, 0, 86400);
    checkFinite('check_reports.uptime_seconds', r.uptimeSeconds, 0, 1e10);
    const st = r.stats;
    if (st) {
      if (st.gpus.length > LIMITS.maxGpus || st.disks.length > LIMITS.maxDisks || st.collectors.length > LIMITS.maxCollectors) throw invalidArgument('check_reports.stats has too many gpus, disks or collectors');
      if (st.memoryUsedBytes > st.memoryTotalBytes && st.memoryTotalBytes !== 0n) throw invalidArgument('check_reports.stats: memory_used_bytes exceeds memory_total_bytes');
      checkFinite('check_reports.stats.load1', st.load1, 0, 1e6);
      for (const g of st.gpus) {
        checkString('check_reports.stats.gpus.uuid', g.uuid);
        checkString('check_reports.stats.gpus.name', g.name);
        if (g.memoryUsedBytes > g.memoryTotalBytes && g.memoryTotalBytes !== 0n) throw invalidArgument('check_reports.stats.gpus: memory_used_bytes exceeds memory_total_bytes');
      }
      for (const d of st.disks) {
        checkString('check_reports.stats.disks.path', d.path);
        if (d.freeBytes > d.totalBytes) throw invalidArgument('check_reports.stats.disks: free_bytes exceeds total_bytes');
      }
      for (const c of st.collectors) {
        checkString('check_reports.stats.collectors.name', c.name);
        checkString('check_reports.stats.collectors.error', c.error);
        checkFinite('check_reports.stats.collectors.duration_seconds', c.durationSeconds, 0, 86400);
      }
    }
  }
  for (let i = 0; i < hb.commandResults.length; i++) {
    checkString('command_results.command_id', hb.commandResults[i].commandId);
    checkString('command_results.message', hb.commandResults[i].message);
  }
}
