import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { stringify } from 'yaml';
import { freePort, ROOT } from '../support/procs.js';

// Real Prometheus tooling for the observability tests: promtool on metric
// output and rules, a Prometheus server on 127.0.0.1 with a temp config and
// storage, and the Grafana dashboard taken apart into the PromQL it runs.

export const GRAFANA = join(ROOT, 'grafana');

/** Absolute path of a binary on PATH; a clear failure (never a skip) when it is missing. */
export function requireBinary(name: 'prometheus' | 'promtool'): string {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const p = join(dir, name);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      /* next */
    }
  }
  throw new Error(`${name} is not on PATH: install the Debian package "prometheus" (.ci/run installs it)`);
}

export interface RunResult {
  code: number | null;
  output: string;
}

/** Runs a binary, optionally feeding stdin, and collects stdout and stderr together. */
export function runBinary(bin: string, args: string[], stdin?: string, cwd = ROOT): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { cwd, stdio: ['pipe', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr.on('data', (c: Buffer) => (output += c.toString()));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, output }));
    child.stdin.end(stdin ?? '');
  });
}

/** `promtool check metrics` on an exposition: ok when it exits 0 and says nothing. */
export async function promtoolCheckMetrics(text: string): Promise<RunResult & { ok: boolean }> {
  const r = await runBinary(requireBinary('promtool'), ['check', 'metrics'], text);
  return { ...r, ok: r.code === 0 && r.output.trim() === '' };
}

export async function fetchText(url: string): Promise<string> {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`GET ${url}: ${res.status}`);
  return res.text();
}

// ---- Prometheus server

export interface PrometheusProc {
  url: string;
  child: ChildProcess;
  log: string[];
  stop(): Promise<void>;
}

export async function startPrometheus(config: object, dir: string): Promise<PrometheusProc> {
  const bin = requireBinary('prometheus');
  const configFile = join(dir, 'prometheus.yml');
  await writeFile(configFile, stringify(config));
  const port = await freePort();
  const child = spawn(
    bin,
    [
      `--config.file=${configFile}`,
      `--storage.tsdb.path=${join(dir, 'tsdb')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--log.level=warn',
    ],
    { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const log: string[] = [];
  for (const s of [child.stdout!, child.stderr!]) s.on('data', (c: Buffer) => log.push(...c.toString().split('\n').filter(Boolean)));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`prometheus exited (${child.exitCode}):\n${log.slice(-20).join('\n')}`);
    try {
      if ((await fetch(`${url}/-/ready`)).ok) break;
    } catch {
      /* not listening yet */
    }
    if (Date.now() > deadline) throw new Error(`prometheus not ready within 30 s:\n${log.slice(-20).join('\n')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    child,
    log,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(timer);
      }
    },
  };
}

interface ApiResponse<T> {
  status: 'success' | 'error';
  data: T;
  error?: string;
  errorType?: string;
}

async function api<T>(url: string): Promise<T> {
  const res = await fetch(url);
  const body = (await res.json()) as ApiResponse<T>;
  if (body.status !== 'success') throw new Error(`${body.errorType ?? 'error'}: ${body.error ?? res.status}`);
  return body.data;
}

export interface Sample {
  metric: Record<string, string>;
  value: [number, string];
}

/** An instant query; the samples of a vector result (a scalar becomes one sample). */
export async function instantQuery(prom: string, expr: string): Promise<Sample[]> {
  const data = await api<{ resultType: string; result: unknown }>(`${prom}/api/v1/query?query=${encodeURIComponent(expr)}`);
  if (data.resultType === 'vector') return data.result as Sample[];
  if (data.resultType === 'scalar' || data.resultType === 'string') return [{ metric: {}, value: data.result as [number, string] }];
  throw new Error(`unexpected result type ${data.resultType}`);
}

export async function labelValues(prom: string, label: string, match?: string): Promise<string[]> {
  const q = match ? `?match[]=${encodeURIComponent(match)}` : '';
  return api<string[]>(`${prom}/api/v1/label/${encodeURIComponent(label)}/values${q}`);
}

export interface RuleState {
  name: string;
  type: string;
  health: string;
  lastError?: string;
  lastEvaluation: string;
}

export async function rules(prom: string): Promise<RuleState[]> {
  const data = await api<{ groups: Array<{ rules: RuleState[] }> }>(`${prom}/api/v1/rules`);
  return data.groups.flatMap((g) => g.rules);
}

export interface Target {
  labels: Record<string, string>;
  health: string;
  lastError: string;
  scrapeUrl: string;
}

export async function targets(prom: string): Promise<Target[]> {
  return (await api<{ activeTargets: Target[] }>(`${prom}/api/v1/targets`)).activeTargets;
}

// ---- The dashboard as PromQL

/* eslint-disable @typescript-eslint/no-explicit-any */
export type Dashboard = Record<string, any>;
export type Panel = Record<string, any>;

export function loadDashboard(): Dashboard {
  return JSON.parse(readFileSync(join(GRAFANA, 'dashboards', 'hive.json'), 'utf8'));
}

/** Every panel, rows' nested panels included, in order. */
export function allPanels(d: Dashboard): Panel[] {
  const out: Panel[] = [];
  const walk = (ps: Panel[] | undefined) => {
    for (const p of ps ?? []) {
      out.push(p);
      walk(p.panels);
    }
  };
  walk(d.panels);
  return out;
}

export interface PanelQuery {
  panel: string;
  panelId: number;
  refId: string;
  expr: string;
}

export function panelQueries(d: Dashboard): PanelQuery[] {
  return allPanels(d).flatMap((p) =>
    (p.targets ?? []).filter((t: any) => !t.hide).map((t: any) => ({ panel: p.title, panelId: p.id, refId: t.refId, expr: t.expr })),
  );
}

export interface VariableQuery {
  name: string;
  query: string;
}

export function variableQueries(d: Dashboard): VariableQuery[] {
  return (d.templating?.list ?? [])
    .filter((v: any) => v.type === 'query')
    .map((v: any) => ({ name: v.name, query: typeof v.query === 'string' ? v.query : v.query?.query ?? v.definition }));
}
/* eslint-enable @typescript-eslint/no-explicit-any */

/**
 * Grafana's built-in interval variables, for a Prometheus scraping every
 * second: windows long enough to hold several samples.
 */
export const BUILTINS: Record<string, string> = {
  __rate_interval: '20s',
  __interval: '2s',
  __interval_ms: '2000',
  __range: '1m',
  __range_s: '60',
  __range_ms: '60000',
};

/** Replaces $name, ${name}, ${name:format} and [[name]], as Grafana does before sending a query. */
export function substitute(expr: string, vars: Record<string, string>): string {
  const all = { ...BUILTINS, ...vars };
  const out = expr.replace(/\$\{(\w+)(?::[^}]*)?\}|\[\[(\w+)\]\]|\$(\w+)/g, (m, a?: string, b?: string, c?: string) => {
    const name = (a ?? b ?? c)!;
    return name in all ? all[name] : m;
  });
  const left = /\$\{?\w+|\[\[\w+\]\]/.exec(out);
  if (left) throw new Error(`no value for the variable ${left[0]} in: ${expr}`);
  return out;
}

/** Runs a Grafana Prometheus variable query: label_values(...) or query_result(...). */
export async function runVariableQuery(prom: string, query: string): Promise<string[]> {
  let m = /^\s*label_values\(\s*(?:(.+?)\s*,\s*)?(\w+)\s*\)\s*$/.exec(query);
  if (m) return labelValues(prom, m[2], m[1]);
  m = /^\s*query_result\((.+)\)\s*$/.exec(query);
  if (m) return (await instantQuery(prom, m[1])).map((s) => JSON.stringify(s.metric));
  throw new Error(`unsupported variable query: ${query}`);
}

/** Escapes a value for a Prometheus regex matcher, as Grafana's regex formatting does. */
export function regexEscape(v: string): string {
  return v.replace(/[\\^$*+?.()|[\]{}]/g, '\\\\$&');
}
