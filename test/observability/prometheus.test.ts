import { createClient } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import { chmod, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RegistryService } from '../../gen/hive/v1/registry_pb.js';
import { msToDuration } from '../../lib/duration.js';
import { NVIDIA_SMI_FIELDS } from '../../worker-agent/collectors/gpu.js';
import { eventually, freePort, startHiveProc, startProc, tempDir, type HiveProc, type Proc } from '../support/procs.js';
import { projectQueryGpu, readFixture } from '../worker-agent/support/nvidia-smi-capture.js';
import {
  fetchText,
  GRAFANA,
  instantQuery,
  loadDashboard,
  panelQueries,
  promtoolCheckMetrics,
  regexEscape,
  rules,
  runVariableQuery,
  startPrometheus,
  substitute,
  targets,
  variableQueries,
  type PrometheusProc,
} from './support.js';

// The dashboard against a real Prometheus scraping the real processes: a
// hive (embedded PGlite), the monitor, two agents with 1 s heartbeats and
// fake nvidia-smi replaying real captures, and Prometheus started with
// grafana/prometheus.yml rewritten to the test's ports. Every panel query
// and every template variable query must return data, so a renamed metric
// breaks the build here, naming the panel.

const JOIN = 'join-token-for-observability-01';
const ADMIN = 'admin-token-for-observability-01';
const POOL = 'obs';
const AGENTS = [
  { id: 'obs-h200', capture: 'nvidia-smi/linux-x86_64__nvidia-h200__580.173.02__idle.query-gpu-all.csv' },
  { id: 'obs-h100', capture: 'nvidia-smi/linux-x86_64__nvidia-h100-mig__590.48.01__idle.query-gpu-all.csv' },
];
const GHOST = 'obs-ghost';

const dashboard = loadDashboard();
const queries = panelQueries(dashboard);
const variables = variableQueries(dashboard);
const ALL: Record<string, string> = Object.fromEntries(
  (dashboard.templating.list as Array<{ name: string; type: string; allValue?: string }>).filter((v) => v.type === 'query').map((v) => [v.name, v.allValue ?? '.*']),
);

describe('the Grafana dashboard against a real Prometheus', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let hive: HiveProc;
  let monitor: Proc | undefined;
  let monitorUrl: string;
  const agents: Array<Proc & { metricsUrl: string }> = [];
  let prom: PrometheusProc;
  /** One concrete value per variable, as a user would pick it. */
  const picked: Record<string, string> = {};

  beforeAll(async () => {
    dir = await tempDir('hive-obs-');
    hive = await startHiveProc(['--data-dir', join(dir.path, 'data'), '--admin-token', ADMIN, '--join-token', JOIN, '--write-behind', '500ms'], {
      HIVE_METRICS_LABELS: 'pool',
      LOG_LEVEL: 'info',
    });

    // A worker that registers and never heartbeats: it goes stale, which
    // gives the monitor a detection to measure, and is deregistered at the end.
    const admin = createClient(RegistryService, createConnectTransport({ baseUrl: hive.httpUrl, httpVersion: '1.1' }));
    await admin.registerWorker({ workerId: GHOST, labels: { pool: POOL }, heartbeatInterval: msToDuration(500) }, { headers: { authorization: `Bearer ${ADMIN}` } });

    // The real monitor: if it does not start, the whole suite fails here.
    const port = await freePort();
    monitor = startProc('hive-monitor.mjs', ['--hive', hive.grpcAddr, '--token', ADMIN], { MONITOR_HTTP_ADDR: `127.0.0.1:${port}`, LOG_LEVEL: 'info' });
    const monitorServing = monitor.waitForLog((e) => e.msg === 'monitor serving', 45_000).then((e) => (monitorUrl = `http://${String(e.http ?? `127.0.0.1:${port}`)}`));
    monitorServing.catch(() => {}); // awaited below, once the agents are started

    for (const a of AGENTS) {
      const capture = join(dir.path, `${a.id}.csv`);
      await writeFile(capture, projectQueryGpu(readFixture(a.capture), NVIDIA_SMI_FIELDS));
      const smi = join(dir.path, `${a.id}-nvidia-smi`);
      await writeFile(smi, `#!/bin/sh\nexec cat '${capture}'\n`);
      await chmod(smi, 0o755);
      const port = await freePort();
      const p = startProc(
        'worker-agent.mjs',
        [
          '--hive', hive.grpcAddr, '--join-token', JOIN, '--worker-id', a.id, '--interval', '1s', '--label', `pool=${POOL}`,
          '--token-file', join(dir.path, `${a.id}.token`), '--metrics-addr', `127.0.0.1:${port}`, '--nvidia-smi', smi,
          // A real HTTP endpoint that answers 200: the probe latency panels get data.
          '--probe', `${hive.httpUrl}/healthz`,
        ],
        { LOG_LEVEL: 'info' },
      );
      agents.push(Object.assign(p, { metricsUrl: `http://127.0.0.1:${port}` }));
    }
    await monitorServing;
    await eventually(async () => /hive_workers\{state="healthy"\} 2\b/.test(await fetchText(`${hive.httpUrl}/metrics`)), 45_000, 'both agents healthy at the hive');

    // The example configuration, with the test's addresses and intervals.
    const config = parse(await readFile(join(GRAFANA, 'prometheus.yml'), 'utf8'));
    config.global = { ...config.global, scrape_interval: '1s', scrape_timeout: '1s', evaluation_interval: '1s' };
    config.rule_files = (config.rule_files as string[]).map((f) => join(GRAFANA, f));
    const addresses: Record<string, string[]> = {
      hive: [hive.httpUrl.replace('http://', '')],
      'hive-monitor': [monitorUrl.replace('http://', '')],
      'hive-agent': agents.map((a) => a.metricsUrl.replace('http://', '')),
    };
    for (const job of config.scrape_configs as Array<{ job_name: string; static_configs: unknown }>) {
      expect(addresses[job.job_name], `job ${job.job_name} of grafana/prometheus.yml`).toBeDefined();
      job.static_configs = [{ targets: addresses[job.job_name] }];
    }
    prom = await startPrometheus(config, dir.path);

    const expected = Object.values(addresses).flat().length;
    await eventually(async () => Number((await instantQuery(prom.url, 'count(up == 1)'))[0]?.value[1]) === expected, 20_000, `${expected} targets up`);
    // A few scrapes of history, so rate() has samples to work with.
    await eventually(async () => Number((await instantQuery(prom.url, 'min(count_over_time(up[1m]))'))[0]?.value[1]) >= 4, 20_000, 'four scrapes of every target');
    await eventually(async () => (await rules(prom.url)).every((r) => r.lastEvaluation && !r.lastEvaluation.startsWith('0001')), 20_000, 'every rule evaluated');

    // An agent's worker: the one kind of worker every per-worker panel has data for.
    const prefer: Record<string, string> = { worker: AGENTS[0].id, pool: POOL };
    for (const v of variables) {
      const values = await runVariableQuery(prom.url, substitute(v.query, { ...ALL, ...picked }));
      picked[v.name] = values.find((x) => x === prefer[v.name]) ?? values[0] ?? '';
    }
  }, 120_000);

  afterAll(async () => {
    await prom?.stop();
    await Promise.all(agents.map((a) => a.kill('SIGKILL')));
    await monitor?.kill('SIGKILL');
    await hive?.kill('SIGKILL');
    await dir?.remove();
  });

  it('Prometheus scrapes the hive, the monitor and both agents', async () => {
    const down = (await targets(prom.url)).filter((t) => t.health !== 'up').map((t) => `${t.labels.job} ${t.scrapeUrl}: ${t.lastError}`);
    expect(down.join('\n')).toBe('');
  });

  for (const v of variables) {
    it(`template variable $${v.name} returns values`, async () => {
      const values = await runVariableQuery(prom.url, substitute(v.query, { ...ALL, ...picked }));
      expect(values.length, `variable $${v.name}: ${v.query}`).toBeGreaterThan(0);
    });
  }

  for (const q of queries) {
    it(`panel "${q.panel}" query ${q.refId} returns data`, async () => {
      const expr = substitute(q.expr, ALL);
      const result = await instantQuery(prom.url, expr);
      expect(result.length, `panel "${q.panel}" (id ${q.panelId}) query ${q.refId} returned no data: ${expr}`).toBeGreaterThan(0);
    });
  }

  for (const q of queries.filter((q) => Object.keys(ALL).some((name) => q.expr.includes(`$${name}`)))) {
    it(`panel "${q.panel}" query ${q.refId} returns data for one picked worker`, async () => {
      const one = Object.fromEntries(Object.entries(picked).map(([k, v]) => [k, regexEscape(v)]));
      const expr = substitute(q.expr, one);
      const result = await instantQuery(prom.url, expr);
      expect(result.length, `panel "${q.panel}" (id ${q.panelId}) query ${q.refId} returned no data for ${JSON.stringify(picked)}: ${expr}`).toBeGreaterThan(0);
      expect(new Set(result.map((s) => s.metric.worker_id).filter(Boolean))).toEqual(new Set(result.some((s) => s.metric.worker_id) ? [picked.worker] : []));
    });
  }

  it('per-worker panels show every running worker, with VRAM from each GPU', async () => {
    const states = await instantQuery(prom.url, 'hive_worker_state == 1');
    expect(states.map((s) => s.metric.worker_id).sort()).toEqual([...AGENTS.map((a) => a.id), GHOST].sort());
    for (const s of states) expect(s.metric.pool).toBe(POOL);
    const vram = await instantQuery(prom.url, 'hive_worker_gpu_memory_total_bytes');
    expect(vram.map((s) => `${s.metric.worker_id} ${s.metric.gpu_name}`).sort()).toEqual(['obs-h100 NVIDIA H100 80GB HBM3', 'obs-h200 NVIDIA H200']);
    const score = await instantQuery(prom.url, 'hive_worker_health_score{worker_id=~"obs-h.*"}');
    expect(score).toHaveLength(AGENTS.length);
    for (const s of score) expect(Number(s.value[1]), s.metric.worker_id).toBeGreaterThanOrEqual(0.9);
    // Probe latency percentiles, reported by the agents in heartbeats, per worker at the hive and on each agent.
    for (const a of AGENTS) {
      const at = async (metric: string, p: string) => Number((await instantQuery(prom.url, `${metric}{worker_id="${a.id}", percentile="${p}"}`))[0]?.value[1]);
      const [p50, p95, p99] = [await at('hive_worker_probe_latency_seconds', '50'), await at('hive_worker_probe_latency_seconds', '95'), await at('hive_worker_probe_latency_seconds', '99')];
      expect(p50, a.id).toBeGreaterThan(0);
      expect(p50).toBeLessThanOrEqual(p95);
      expect(p95).toBeLessThanOrEqual(p99);
      expect(p99).toBeLessThan(2);
      expect(await at('hive_agent_probe_latency_window_seconds', '99')).toBeGreaterThan(0);
    }
  });

  it('the monitor marks the silent worker stale, and the stale and detection-lag panels see it', async () => {
    await eventually(async () => (await instantQuery(prom.url, `hive_worker_state{worker_id="${GHOST}", state="stale"} == 1`)).length === 1, 15_000, `${GHOST} stale in Prometheus`);
    await eventually(async () => Number((await instantQuery(prom.url, 'sum(hive_monitor_stale_detections_total)'))[0]?.value[1]) >= 1, 10_000, 'a stale detection counted');
    await eventually(async () => Number((await instantQuery(prom.url, 'sum(hive_monitor_detection_lag_seconds_count)'))[0]?.value[1]) >= 1, 10_000, 'a detection lag observed');
    const stale = await instantQuery(prom.url, 'sum(hive_workers{state="stale"})');
    expect(Number(stale[0].value[1])).toBe(1);
  });

  it('the alert rules load and evaluate without errors in Prometheus', async () => {
    const rs = await rules(prom.url);
    expect(rs.length).toBeGreaterThanOrEqual(7);
    expect(rs.filter((r) => r.health !== 'ok').map((r) => `${r.name}: ${r.health} ${r.lastError ?? ''}`)).toEqual([]);
  });

  it('promtool check metrics finds nothing on the hive\'s /metrics', async () => {
    const r = await promtoolCheckMetrics(await fetchText(`${hive.httpUrl}/metrics`));
    expect(r.output).toBe('');
    expect(r.ok).toBe(true);
  });

  it('promtool check metrics finds nothing on the monitor\'s /metrics', async () => {
    const r = await promtoolCheckMetrics(await fetchText(`${monitorUrl}/metrics`));
    expect(r.output).toBe('');
    expect(r.ok).toBe(true);
  });

  it('promtool check metrics finds nothing on the agents\' /metrics', async () => {
    for (const a of agents) {
      const r = await promtoolCheckMetrics(await fetchText(`${a.metricsUrl}/metrics`));
      expect(r.output, a.metricsUrl).toBe('');
      expect(r.ok).toBe(true);
    }
  });

  it('a deregistered worker disappears from /metrics and from Prometheus', async () => {
    const admin = createClient(RegistryService, createConnectTransport({ baseUrl: hive.httpUrl, httpVersion: '1.1' }));
    await admin.deregisterWorker({ workerId: GHOST, reason: 'observability test' }, { headers: { authorization: `Bearer ${ADMIN}` } });
    expect(await fetchText(`${hive.httpUrl}/metrics`)).not.toContain(`worker_id="${GHOST}"`);
    await eventually(async () => (await instantQuery(prom.url, `{worker_id="${GHOST}"}`)).length === 0, 10_000, 'the ghost gone from Prometheus');
  });
});
