import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { allPanels, GRAFANA, loadDashboard, panelQueries, requireBinary, runBinary, substitute, variableQueries, type Panel } from './support.js';

// The files under grafana/ checked without a server: the dashboard as a
// Grafana dashboard model, the provisioning files, the example Prometheus
// configuration (promtool check config) and the alert rules (promtool
// check rules, promtool test rules).

const dashboard = loadDashboard();
const panels = allPanels(dashboard);
const yamlFile = (rel: string) => parse(readFileSync(join(GRAFANA, rel), 'utf8'));

describe('grafana/dashboards/hive.json', () => {
  it('is a dashboard model: title, uid, schemaVersion, time range, panels', () => {
    expect(typeof dashboard.title).toBe('string');
    expect(dashboard.uid).toMatch(/^[A-Za-z0-9_-]{1,40}$/);
    expect(Number.isInteger(dashboard.schemaVersion)).toBe(true);
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(36);
    expect(dashboard.time).toEqual({ from: expect.any(String), to: expect.any(String) });
    // Provisioned dashboards carry no database id.
    expect(dashboard.id ?? null).toBeNull();
    expect(Array.isArray(dashboard.templating?.list)).toBe(true);
    expect(panels.length).toBeGreaterThan(20);
  });

  it('gives every panel a unique integer id and a title', () => {
    const ids = panels.map((p) => p.id);
    for (const id of ids) expect(Number.isInteger(id) && id > 0).toBe(true);
    expect(new Set(ids).size).toBe(ids.length);
    for (const p of panels) expect(p.title, `panel ${p.id}`).toMatch(/\S/);
  });

  it('places every panel on the 24-column grid without overlaps', () => {
    const boxes: Array<{ p: Panel; x: number; y: number; w: number; h: number }> = [];
    for (const p of panels) {
      const g = p.gridPos;
      expect(g, `gridPos of "${p.title}"`).toBeDefined();
      for (const k of ['x', 'y', 'w', 'h'] as const) expect(Number.isInteger(g[k]) && g[k] >= 0, `gridPos.${k} of "${p.title}"`).toBe(true);
      expect(g.w, `width of "${p.title}"`).toBeGreaterThan(0);
      expect(g.h, `height of "${p.title}"`).toBeGreaterThan(0);
      expect(g.x + g.w, `right edge of "${p.title}"`).toBeLessThanOrEqual(24);
      boxes.push({ p, ...g });
    }
    for (let i = 0; i < boxes.length; i++) {
      for (let j = i + 1; j < boxes.length; j++) {
        const a = boxes[i];
        const b = boxes[j];
        const overlap = a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
        expect(overlap, `"${a.p.title}" and "${b.p.title}" overlap`).toBe(false);
      }
    }
  });

  it('has a Prometheus data source variable, and every panel and query uses it (no hard-coded uid)', () => {
    const ds = dashboard.templating.list.find((v: Panel) => v.type === 'datasource');
    expect(ds).toMatchObject({ name: 'datasource', query: 'prometheus' });
    const uses = (d: unknown) => expect(d).toEqual({ type: 'prometheus', uid: '${datasource}' });
    for (const p of panels) {
      if (p.type === 'row') continue;
      uses(p.datasource);
      expect(p.targets?.length, `targets of "${p.title}"`).toBeGreaterThan(0);
      for (const t of p.targets) uses(t.datasource);
    }
    for (const v of dashboard.templating.list) if (v.type === 'query') uses(v.datasource);
    expect(JSON.stringify(dashboard)).not.toMatch(/"uid":\s*"(?!\$\{datasource\}|hive-fleet|-- Grafana --)/);
  });

  it('gives every query a refId unique in its panel and a PromQL expr', () => {
    for (const p of panels) {
      if (p.type === 'row') continue;
      const refIds = p.targets.map((t: Panel) => t.refId);
      expect(new Set(refIds).size, `refIds of "${p.title}"`).toBe(refIds.length);
      for (const t of p.targets) expect(t.expr, `expr of "${p.title}" ${t.refId}`).toMatch(/\S/);
    }
  });

  it('uses only variables it defines (and Grafana built-ins)', () => {
    const vars = Object.fromEntries(dashboard.templating.list.map((v: Panel) => [v.name, '.*']));
    for (const q of panelQueries(dashboard)) expect(() => substitute(q.expr, vars), `"${q.panel}" ${q.refId}`).not.toThrow();
    for (const v of variableQueries(dashboard)) expect(() => substitute(v.query, vars), `variable ${v.name}`).not.toThrow();
  });

  it('has the panels a fleet operator asked for', () => {
    const exprs = panelQueries(dashboard).map((q) => q.expr).join('\n');
    for (const metric of [
      'hive_workers', 'hive_heartbeats_received_total', 'hive_heartbeat_handling_seconds_bucket', 'hive_monitor_detection_lag_seconds_bucket',
      'hive_monitor_restarts_total', 'hive_monitor_workers_failed', 'hive_worker_state', 'hive_worker_heartbeat_age_seconds',
      'hive_worker_gpu_memory_used_bytes', 'hive_worker_gpu_memory_total_bytes', 'hive_worker_memory_used_bytes', 'hive_worker_disk_free_bytes',
      'hive_worker_health_score', 'hive_events_written_total', 'hive_monitor_alerts_sent_total', 'process_cpu_seconds_total', 'process_resident_memory_bytes',
      'hive_worker_probe_latency_seconds',
    ]) {
      expect(exprs, metric).toContain(metric);
    }
    const names = variableQueries(dashboard).map((v) => v.name);
    expect(names).toEqual(expect.arrayContaining(['worker', 'pool']));
    expect(panels.some((p) => p.type === 'table')).toBe(true);
  });
});

describe('grafana/provisioning', () => {
  it('provisions a Prometheus data source (apiVersion 1)', () => {
    const f = yamlFile('provisioning/datasources/prometheus.yaml');
    expect(f.apiVersion).toBe(1);
    expect(f.datasources).toHaveLength(1);
    expect(f.datasources[0]).toMatchObject({ name: expect.any(String), type: 'prometheus', access: 'proxy', url: expect.stringMatching(/^https?:\/\//) });
  });

  it('provisions the dashboards folder with a file provider (apiVersion 1)', () => {
    const f = yamlFile('provisioning/dashboards/hive.yaml');
    expect(f.apiVersion).toBe(1);
    expect(f.providers).toHaveLength(1);
    const p = f.providers[0];
    expect(p).toMatchObject({ name: expect.any(String), type: 'file', options: { path: expect.any(String) } });
    // The path is where the README's Grafana how-to mounts grafana/: it must end in the dashboards folder.
    expect(p.options.path).toMatch(/\/dashboards$/);
    const mount = p.options.path.replace(/\/dashboards$/, '');
    const readme = readFileSync(join(GRAFANA, '..', 'README.md'), 'utf8');
    expect(readme).toContain(`"$PWD/grafana:${mount}:ro"`);
    expect(readme).toContain(`GF_PATHS_PROVISIONING=${mount}/provisioning`);
  });
});

describe('grafana/prometheus.yml and grafana/alerts.yml', () => {
  it('the example configuration passes promtool check config and scrapes hive, hive-monitor and hive-agent', async () => {
    const r = await runBinary(requireBinary('promtool'), ['check', 'config', join(GRAFANA, 'prometheus.yml')]);
    expect(r.output).toMatch(/SUCCESS/);
    expect(r.code).toBe(0);
    const jobs = yamlFile('prometheus.yml').scrape_configs.map((s: { job_name: string }) => s.job_name);
    expect(jobs).toEqual(['hive', 'hive-monitor', 'hive-agent']);
  });

  it('the alert rules pass promtool check rules', async () => {
    const r = await runBinary(requireBinary('promtool'), ['check', 'rules', join(GRAFANA, 'alerts.yml')]);
    expect(r.output).toMatch(/SUCCESS/);
    expect(r.code).toBe(0);
  });

  it('the alert rules pass their unit tests (promtool test rules)', async () => {
    const r = await runBinary(requireBinary('promtool'), ['test', 'rules', join(GRAFANA, 'alerts.test.yml')]);
    expect(r.output).toMatch(/SUCCESS/);
    expect(r.code).toBe(0);
  });

  it('has every alert the issue names, each tested and with a severity', () => {
    const names = yamlFile('alerts.yml').groups.flatMap((g: { rules: Array<{ alert: string; labels?: { severity?: string } }> }) =>
      g.rules.map((r) => {
        expect(['critical', 'warning', 'info'], r.alert).toContain(r.labels?.severity);
        return r.alert;
      }),
    );
    expect(names).toEqual(
      expect.arrayContaining([
        'HiveWorkerStale', 'HiveWorkerFailed', 'HiveHeartbeatsRejectedSpike', 'HiveMassStaleGuardEngaged', 'HiveDown', 'HiveWorkerVramNearlyFull', 'HiveWorkerDiskNearlyFull',
        'HiveWorkersStale', 'HiveWorkersFailed', 'HiveMetricsWorkersOmitted',
      ]),
    );
    const tested = new Set(
      yamlFile('alerts.test.yml').tests.flatMap((t: { alert_rule_test: Array<{ alertname: string; exp_alerts?: unknown[] }> }) =>
        t.alert_rule_test.filter((a) => a.exp_alerts?.length).map((a) => a.alertname),
      ),
    );
    for (const n of names) expect(tested.has(n), `${n} has a firing test`).toBe(true);
  });

  it('stale and failed workers alert from fleet-wide series too, which stay when per-worker series are off', () => {
    const rules = yamlFile('alerts.yml').groups.flatMap((g: { rules: Array<{ alert: string; expr: string }> }) => g.rules);
    const expr = (name: string) => rules.find((r: { alert: string }) => r.alert === name)?.expr ?? '';
    expect(expr('HiveWorkersStale')).toContain('hive_workers{state="stale"}');
    expect(expr('HiveWorkersFailed')).toMatch(/hive_workers\{state="failed"\}|hive_monitor_workers_failed/);
    expect(expr('HiveMetricsWorkersOmitted')).toContain('hive_metrics_workers_omitted');
    for (const n of ['HiveWorkersStale', 'HiveWorkersFailed', 'HiveMetricsWorkersOmitted']) expect(expr(n), n).not.toMatch(/hive_worker_/);
  });
});
