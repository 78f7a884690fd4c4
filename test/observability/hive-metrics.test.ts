import { createMemoryLiveState } from '../../hive/live-memory.js';
import { create, toBinary } from '@bufbuild/protobuf';
import { Registry as PromRegistry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { CollectorStatusSchema, HeartbeatRequestSchema, HealthStatus, WorkerState, WorkerStatsSchema } from '../../gen/hive/v1/registry_pb.js';
import type { Clock } from '../../lib/clock.js';
import { loadHiveConfig } from '../../hive/config.js';
import { createHiveMetrics, EVENT_KINDS, HEARTBEAT_RESULTS, metricLabelNames, type HiveMetricsOptions } from '../../hive/metrics.js';
import type { Registry } from '../../hive/registry.js';
import { packStats } from '../../hive/packed-stats.js';
import { lastBeatOf, type LiveWorker } from '../../hive/worker.js';
import { createAgentMetrics } from '../../worker-agent/metrics.js';
import { promtoolCheckMetrics } from './support.js';

// The hive's and the agent's /metrics in-process, against a fake live
// registry: what series exist, with which labels and values, and that
// promtool finds nothing to complain about.

const GIB = 1024n ** 3n;
const NOW = 1_800_000_000_000;
const clock: Clock = { now: () => NOW, sleep: () => Promise.resolve() } as unknown as Clock;

function worker(id: string, over: Partial<LiveWorker> = {}): LiveWorker {
  return {
    workerId: id,
    labels: { pool: 'a100', 'gpu.model': 'H100', team: 'ml' },
    intervalMs: 5000,
    registeredAt: NOW - 60_000,
    state: WorkerState.HEALTHY,
    stateSince: NOW - 50_000,
    lastSeen: NOW - 2_000,
    lastSeq: 7n,
    sessionId: 's',
    status: HealthStatus.HEALTHY,
    statusDetail: '',
    beat: packStats(create(HeartbeatRequestSchema, {
      workerId: id,
      gpus: [
        { index: 0, name: 'NVIDIA H100 80GB HBM3', uuid: 'GPU-0', memoryUsedBytes: 40n * GIB, memoryTotalBytes: 80n * GIB, utilization: 0.5, temperatureCelsius: 41 },
        { index: 1, name: 'NVIDIA H100 80GB HBM3', uuid: 'GPU-1', memoryUsedBytes: 1n * GIB, memoryTotalBytes: 80n * GIB },
      ],
      memoryUsedBytes: 16n * GIB,
      memoryTotalBytes: 64n * GIB,
      disks: [{ path: '/', freeBytes: 50n * GIB, totalBytes: 100n * GIB }, { path: '/data', freeBytes: 900n * GIB, totalBytes: 1000n * GIB }],
      load1: 1.5,
      collectors: [create(CollectorStatusSchema, { name: 'gpu', success: true })],
    })),
    storedStats: null,
    policy: null,
    dependsOn: [],
    graceUntil: null,
    streams: 1,
    ...over,
  };
}

function setup(options: HiveMetricsOptions = {}) {
  const workers = new Map<string, LiveWorker>();
  const fake = { workers, live: createMemoryLiveState(), writeBehind: { backlog: () => 3, outbox: () => 0 } } as unknown as Registry;
  const prom = new PromRegistry();
  const metrics = createHiveMetrics(prom, () => fake, { clock, ...options });
  return { prom, metrics, workers };
}

/** The exposition's samples as "name{labels} value" lines, for one metric name. */
async function samples(prom: PromRegistry, name: string): Promise<string[]> {
  const text = await prom.metrics();
  return text.split('\n').filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `));
}

describe('hive /metrics', () => {
  it('passes promtool check metrics, with workers and without', async () => {
    const { prom, workers, metrics } = setup();
    let r = await promtoolCheckMetrics(await prom.metrics());
    expect(r.output).toBe('');
    expect(r.ok).toBe(true);
    workers.set('w1', worker('w1'));
    workers.set('w2', worker('w2', { state: WorkerState.STALE }));
    metrics.heartbeat('ok', 0.0001);
    metrics.flushed(2, 0.003, true);
    metrics.markReadWait(0.12);
    r = await promtoolCheckMetrics(await prom.metrics());
    expect(r.output).toBe('');
    expect(r.ok).toBe(true);
  });

  it('initialises every known label value to 0 before anything happens', async () => {
    const { prom } = setup();
    const results = await samples(prom, 'hive_heartbeats_received_total');
    expect(results).toEqual(HEARTBEAT_RESULTS.map((r) => `hive_heartbeats_received_total{result="${r}"} 0`));
    const states = await samples(prom, 'hive_workers');
    expect(states).toContain('hive_workers{state="healthy"} 0');
    expect(states).toContain('hive_workers{state="stale"} 0');
    expect(states).toContain('hive_workers{state="failed"} 0');
    expect(states).toHaveLength(8);
    const events = await samples(prom, 'hive_events_written_total');
    expect(events).toHaveLength(EVENT_KINDS.length);
    expect(await samples(prom, 'hive_write_behind_flush_seconds_count')).toEqual([
      'hive_write_behind_flush_seconds_count{result="ok"} 0',
      'hive_write_behind_flush_seconds_count{result="error"} 0',
    ]);
    expect(await samples(prom, 'hive_heartbeat_handling_seconds_count')).toEqual(['hive_heartbeat_handling_seconds_count 0']);
    expect(await samples(prom, 'hive_stale_mark_read_wait_seconds_count')).toEqual(['hive_stale_mark_read_wait_seconds_count 0']);
  });

  it('times how long stale marks waited for the hive to read up to their deadline', async () => {
    const { prom, metrics } = setup();
    metrics.markReadWait(0.03);
    metrics.markReadWait(0.3);
    expect(await samples(prom, 'hive_stale_mark_read_wait_seconds_count')).toEqual(['hive_stale_mark_read_wait_seconds_count 2']);
    const [sum] = await samples(prom, 'hive_stale_mark_read_wait_seconds_sum');
    expect(Number(sum.split(' ')[1])).toBeCloseTo(0.33);
    const buckets = await samples(prom, 'hive_stale_mark_read_wait_seconds_bucket');
    expect(buckets).toContain('hive_stale_mark_read_wait_seconds_bucket{le="0.05"} 1');
    expect(buckets).toContain('hive_stale_mark_read_wait_seconds_bucket{le="0.5"} 2');
  });

  it('counts heartbeats by result and times them', async () => {
    const { prom, metrics } = setup();
    metrics.heartbeat('ok', 0.00002);
    metrics.heartbeat('ok', 0.0002);
    metrics.heartbeat('replay', 0.00003);
    expect(await samples(prom, 'hive_heartbeats_received_total')).toContain('hive_heartbeats_received_total{result="ok"} 2');
    expect(await samples(prom, 'hive_heartbeats_received_total')).toContain('hive_heartbeats_received_total{result="replay"} 1');
    expect(await samples(prom, 'hive_heartbeat_handling_seconds_count')).toEqual(['hive_heartbeat_handling_seconds_count 3']);
    expect(await samples(prom, 'hive_heartbeat_handling_seconds_bucket')).toContain('hive_heartbeat_handling_seconds_bucket{le="0.000025"} 1');
  });

  it('exports per-worker series with worker_id and the configured labels, sanitised', async () => {
    const { prom, workers } = setup({ labels: ['pool', 'gpu.model'] });
    workers.set('w1', worker('w1'));
    const L = 'worker_id="w1",pool="a100",gpu_model="H100"';
    expect(await samples(prom, 'hive_worker_state')).toEqual([`hive_worker_state{${L},state="healthy"} 1`]);
    expect(await samples(prom, 'hive_worker_last_seen_timestamp_seconds')).toEqual([`hive_worker_last_seen_timestamp_seconds{${L}} ${(NOW - 2000) / 1000}`]);
    expect(await samples(prom, 'hive_worker_heartbeat_age_seconds')).toEqual([`hive_worker_heartbeat_age_seconds{${L}} 2`]);
    expect(await samples(prom, 'hive_worker_heartbeat_interval_seconds')).toEqual([`hive_worker_heartbeat_interval_seconds{${L}} 5`]);
    expect(await samples(prom, 'hive_worker_connected')).toEqual([`hive_worker_connected{${L}} 1`]);
    expect(await samples(prom, 'hive_worker_health_score')).toEqual([`hive_worker_health_score{${L}} 1`]);
    expect(await samples(prom, 'hive_worker_gpu_memory_used_bytes')).toEqual([
      `hive_worker_gpu_memory_used_bytes{${L},gpu="0",gpu_name="NVIDIA H100 80GB HBM3"} ${40 * 2 ** 30}`,
      `hive_worker_gpu_memory_used_bytes{${L},gpu="1",gpu_name="NVIDIA H100 80GB HBM3"} ${2 ** 30}`,
    ]);
    expect(await samples(prom, 'hive_worker_gpu_memory_total_bytes')).toHaveLength(2);
    // Absent when the driver does not report it, not 0.
    expect(await samples(prom, 'hive_worker_gpu_utilization_ratio')).toEqual([`hive_worker_gpu_utilization_ratio{${L},gpu="0",gpu_name="NVIDIA H100 80GB HBM3"} 0.5`]);
    expect(await samples(prom, 'hive_worker_gpu_temperature_celsius')).toEqual([`hive_worker_gpu_temperature_celsius{${L},gpu="0",gpu_name="NVIDIA H100 80GB HBM3"} 41`]);
    expect(await samples(prom, 'hive_worker_memory_used_bytes')).toEqual([`hive_worker_memory_used_bytes{${L}} ${16 * 2 ** 30}`]);
    expect(await samples(prom, 'hive_worker_memory_total_bytes')).toEqual([`hive_worker_memory_total_bytes{${L}} ${64 * 2 ** 30}`]);
    expect(await samples(prom, 'hive_worker_disk_free_bytes')).toEqual([
      `hive_worker_disk_free_bytes{${L},path="/"} ${50 * 2 ** 30}`,
      `hive_worker_disk_free_bytes{${L},path="/data"} ${900 * 2 ** 30}`,
    ]);
    expect(await samples(prom, 'hive_worker_disk_total_bytes')).toHaveLength(2);
    expect(await samples(prom, 'hive_worker_load1')).toEqual([`hive_worker_load1{${L}} 1.5`]);
  });

  it('drops a deregistered worker\'s series at the next scrape', async () => {
    const { prom, workers } = setup();
    workers.set('w1', worker('w1'));
    workers.set('w2', worker('w2'));
    expect(await samples(prom, 'hive_worker_state')).toHaveLength(2);
    expect(await samples(prom, 'hive_worker_gpu_memory_used_bytes')).toHaveLength(4);
    workers.delete('w1');
    const text = await prom.metrics();
    expect(text).not.toMatch(/worker_id="w1"/);
    expect(await samples(prom, 'hive_worker_state')).toHaveLength(1);
    expect(await samples(prom, 'hive_worker_gpu_memory_used_bytes')).toHaveLength(2);
  });

  it('follows state changes: one state series per worker, resources only while it reports', async () => {
    const { prom, workers } = setup({ labels: [] });
    const w = worker('w1');
    workers.set('w1', w);
    w.state = WorkerState.STALE;
    expect(await samples(prom, 'hive_worker_state')).toEqual(['hive_worker_state{worker_id="w1",state="stale"} 1']);
    expect(await samples(prom, 'hive_worker_health_score')).toEqual(['hive_worker_health_score{worker_id="w1"} 0.2']);
    expect(await samples(prom, 'hive_worker_gpu_memory_used_bytes')).toEqual([]);
    expect(await samples(prom, 'hive_worker_disk_free_bytes')).toEqual([]);
    // Age runs from the last heartbeat and keeps growing while silent.
    expect(await samples(prom, 'hive_worker_heartbeat_age_seconds')).toEqual(['hive_worker_heartbeat_age_seconds{worker_id="w1"} 2']);
    w.state = WorkerState.DEGRADED;
    expect(await samples(prom, 'hive_worker_state')).toEqual(['hive_worker_state{worker_id="w1",state="degraded"} 1']);
    expect(await samples(prom, 'hive_worker_health_score')).toEqual(['hive_worker_health_score{worker_id="w1"} 0.8']);
    expect(await samples(prom, 'hive_worker_gpu_memory_used_bytes')).toHaveLength(2);
  });

  it('gives a pending worker an age since registration and no health score', async () => {
    const { prom, workers } = setup({ labels: [] });
    workers.set('p', worker('p', { state: WorkerState.PENDING, lastSeen: null, beat: null, streams: 0 }));
    expect(await samples(prom, 'hive_worker_state')).toEqual(['hive_worker_state{worker_id="p",state="pending"} 1']);
    expect(await samples(prom, 'hive_worker_last_seen_timestamp_seconds')).toEqual([]);
    expect(await samples(prom, 'hive_worker_heartbeat_age_seconds')).toEqual(['hive_worker_heartbeat_age_seconds{worker_id="p"} 60']);
    expect(await samples(prom, 'hive_worker_health_score')).toEqual([]);
    expect(await samples(prom, 'hive_worker_connected')).toEqual(['hive_worker_connected{worker_id="p"} 0']);
  });

  it('lowers the health score under resource pressure', async () => {
    const { prom, workers } = setup({ labels: [] });
    const w = worker('w1');
    w.beat = packStats({ ...lastBeatOf(w)!, disks: [{ $typeName: 'hive.v1.DiskStats', path: '/', freeBytes: 1n * GIB, totalBytes: 100n * GIB }] });
    workers.set('w1', w);
    const [line] = await samples(prom, 'hive_worker_health_score');
    const score = Number(line.split(' ')[1]);
    expect(score).toBeGreaterThanOrEqual(0.4);
    expect(score).toBeLessThan(0.7);
  });

  it('uses the stats loaded from the store until the first heartbeat of this run', async () => {
    const { prom, workers } = setup({ labels: [] });
    const beat = lastBeatOf(worker('w1'))!;
    workers.set('w1', worker('w1', { beat: null, storedStats: Buffer.from(toBinary(WorkerStatsSchema, create(WorkerStatsSchema, beat))).toString('latin1') }));
    expect(await samples(prom, 'hive_worker_memory_used_bytes')).toEqual([`hive_worker_memory_used_bytes{worker_id="w1"} ${16 * 2 ** 30}`]);
  });

  it('exports no per-worker series when switched off', async () => {
    const { prom, workers } = setup({ perWorker: false });
    workers.set('w1', worker('w1'));
    const text = await prom.metrics();
    expect(text).not.toMatch(/^hive_worker_/m);
    expect(text).not.toMatch(/hive_metrics_workers_omitted/);
    expect(await samples(prom, 'hive_workers')).toContain('hive_workers{state="healthy"} 1');
  });

  it('bounds per-worker series to the configured number of workers and says how many it left out', async () => {
    const { prom, workers } = setup({ maxWorkers: 2 });
    for (const id of ['w1', 'w2', 'w3', 'w4', 'w5']) workers.set(id, worker(id));
    expect(await samples(prom, 'hive_worker_state')).toHaveLength(2);
    expect(await samples(prom, 'hive_metrics_workers_omitted')).toEqual(['hive_metrics_workers_omitted 3']);
    workers.delete('w3');
    workers.delete('w4');
    workers.delete('w5');
    expect(await samples(prom, 'hive_metrics_workers_omitted')).toEqual(['hive_metrics_workers_omitted 0']);
  });

  it('fills fleets larger than one slice, and concurrent scrapes see the same workers', async () => {
    const { prom, workers } = setup({ labels: [] });
    for (let i = 0; i < 1000; i++) workers.set(`w${i}`, worker(`w${i}`));
    const [a, b] = await Promise.all([prom.metrics(), prom.metrics()]);
    const states = (text: string) => text.split('\n').filter((l) => l.startsWith('hive_worker_state{'));
    expect(states(a)).toHaveLength(1000);
    expect(states(b)).toEqual(states(a));
    expect(a.split('\n').filter((l) => l.startsWith('hive_worker_gpu_memory_used_bytes{'))).toHaveLength(2000);
  });

  it('gives an empty value for a configured label a worker does not have', async () => {
    const { prom, workers } = setup({ labels: ['zone'] });
    workers.set('w1', worker('w1'));
    expect(await samples(prom, 'hive_worker_state')).toEqual(['hive_worker_state{worker_id="w1",zone="",state="healthy"} 1']);
  });
});

describe('metricLabelNames', () => {
  it('turns worker label keys into valid Prometheus label names', () => {
    expect(metricLabelNames(['pool', 'gpu.model', 'example.com/zone', 'a-b', '1st'])).toEqual(['pool', 'gpu_model', 'example_com_zone', 'a_b', 'label_1st']);
  });

  it('prefixes names the hive uses itself or Prometheus reserves', () => {
    expect(metricLabelNames(['worker_id', 'state', 'gpu', 'path', 'job', 'instance', '__x'])).toEqual([
      'label_worker_id', 'label_state', 'label_gpu', 'label_path', 'label_job', 'label_instance', 'label___x',
    ]);
  });

  it('refuses two keys that would share one name', () => {
    expect(() => metricLabelNames(['gpu.model', 'gpu-model'])).toThrow(/both become the metric label "gpu_model"/);
  });
});

describe('hive metrics configuration', () => {
  it('defaults to per-worker series labelled with pool, for up to 2000 workers', () => {
    const c = loadHiveConfig([], {});
    expect(c.metricsPerWorker).toBe(true);
    expect(c.metricsLabels).toEqual(['pool']);
    expect(c.metricsMaxWorkers).toBe(2_000);
  });

  it('reads HIVE_METRICS_PER_WORKER, HIVE_METRICS_LABELS and HIVE_METRICS_MAX_WORKERS', () => {
    const c = loadHiveConfig([], { HIVE_METRICS_PER_WORKER: 'false', HIVE_METRICS_LABELS: 'pool, model', HIVE_METRICS_MAX_WORKERS: '500' });
    expect(c.metricsPerWorker).toBe(false);
    expect(c.metricsLabels).toEqual(['pool', 'model']);
    expect(c.metricsMaxWorkers).toBe(500);
    expect(loadHiveConfig(['--metrics-labels', 'none'], {}).metricsLabels).toEqual([]);
  });

  it('reports bad values together', () => {
    expect(() => loadHiveConfig([], { HIVE_METRICS_PER_WORKER: 'maybe', HIVE_METRICS_LABELS: 'a.b,a-b', HIVE_METRICS_MAX_WORKERS: '-1' })).toThrow(
      /HIVE_METRICS_PER_WORKER: must be true or false[\s\S]*HIVE_METRICS_LABELS: worker labels "a.b" and "a-b"[\s\S]*HIVE_METRICS_MAX_WORKERS/,
    );
  });
});

describe('worker-agent /metrics', () => {
  const run = {
    stats: {
      gpus: [{ index: 0, uuid: 'GPU-0', name: 'NVIDIA H200', memoryUsedBytes: 1n * GIB, memoryTotalBytes: 140n * GIB, utilization: 0, temperatureCelsius: 37 }],
      memoryUsedBytes: 8n * GIB,
      memoryTotalBytes: 32n * GIB,
      disks: [{ path: '/', freeBytes: 10n * GIB, totalBytes: 100n * GIB }],
      load1: 0.25,
    },
    statuses: ['gpu', 'memory', 'disk', 'load'].map((name) => create(CollectorStatusSchema, { name, success: name !== 'gpu', durationSeconds: 0.01 })),
  };

  it('passes promtool check metrics before and after a sample', async () => {
    const prom = new PromRegistry();
    const m = createAgentMetrics(prom, 'gpu-a');
    let r = await promtoolCheckMetrics(await prom.metrics());
    expect(r.output).toBe('');
    m.sample(run as never, { latencyMs: 12, httpStatus: 200 } as never);
    m.events.sent();
    m.events.failed('Unavailable');
    r = await promtoolCheckMetrics(await prom.metrics());
    expect(r.output).toBe('');
    expect(r.ok).toBe(true);
  });

  it('initialises collectors and failure codes to 0, and reports what it sent', async () => {
    const prom = new PromRegistry();
    const m = createAgentMetrics(prom, 'gpu-a');
    expect(await samples(prom, 'hive_agent_collector_success')).toHaveLength(4);
    const codes = await samples(prom, 'hive_agent_heartbeat_failures_total');
    expect(codes).toContain('hive_agent_heartbeat_failures_total{code="unavailable"} 0');
    expect(codes).toContain('hive_agent_heartbeat_failures_total{code="permission_denied"} 0');
    expect(codes).toContain('hive_agent_heartbeat_failures_total{code="unknown"} 0');
    m.sample(run as never, undefined);
    m.events.failed('PermissionDenied');
    m.events.failed('unknown');
    expect(await samples(prom, 'hive_agent_heartbeat_failures_total')).toContain('hive_agent_heartbeat_failures_total{code="permission_denied"} 1');
    expect(await samples(prom, 'hive_agent_heartbeat_failures_total')).toContain('hive_agent_heartbeat_failures_total{code="unknown"} 1');
    expect(await samples(prom, 'hive_agent_collector_success')).toContain('hive_agent_collector_success{collector="gpu"} 0');
    expect(await samples(prom, 'hive_agent_gpu_memory_total_bytes')).toEqual([`hive_agent_gpu_memory_total_bytes{worker_id="gpu-a",gpu="0",gpu_name="NVIDIA H200"} ${140 * 2 ** 30}`]);
    expect(await samples(prom, 'hive_agent_gpu_temperature_celsius')).toEqual(['hive_agent_gpu_temperature_celsius{worker_id="gpu-a",gpu="0",gpu_name="NVIDIA H200"} 37']);
    expect(await samples(prom, 'hive_agent_disk_total_bytes')).toEqual([`hive_agent_disk_total_bytes{worker_id="gpu-a",path="/"} ${100 * 2 ** 30}`]);
  });
});
