import { execFile, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { copyFile, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, relative, resolve } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { ROOT, tempDir } from '../support/procs.js';

// What can be checked of the deploy files without docker or a cluster: the
// systemd units pass `systemd-analyze verify`, every YAML parses, the
// compose file uses only keys of the compose specification and pinned
// images, the Kubernetes manifests are complete and consistent, the
// Prometheus configuration passes promtool, and the Dockerfile builds a
// non-root image with a /healthz health check. Docker itself is not run.

const run = promisify(execFile);
const DEPLOY = join(ROOT, 'deploy');
type Obj = Record<string, unknown>;

function filesUnder(dir: string, pred: (f: string) => boolean): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...filesUnder(p, pred));
    else if (pred(p)) out.push(p);
  }
  return out.sort();
}

const readYaml = (path: string) => parseYaml(readFileSync(path, 'utf8')) as Obj;
const docsOf = (path: string) => parseAllDocuments(readFileSync(path, 'utf8')).map((d) => d.toJS() as Obj).filter(Boolean);

describe('systemd units', () => {
  const units = filesUnder(join(DEPLOY, 'systemd'), (f) => f.endsWith('.service'));
  const hasAnalyze = spawnSync('systemd-analyze', ['--version']).status === 0;

  it('exist for the agent, the hive and the monitor', () => {
    expect(units.map((u) => relative(DEPLOY, u))).toEqual(['systemd/hive-monitor.service', 'systemd/hive.service', 'systemd/worker-agent.service']);
  });

  it.each(units.map((u) => [relative(DEPLOY, u), u]))('%s passes systemd-analyze verify without a warning', async (_name, unit) => {
    expect(hasAnalyze, 'systemd-analyze is missing: install Debian\'s systemd package (.ci/run does)').toBe(true);
    const dir = await tempDir('hive-units-');
    try {
      // verify checks that ExecStart's program exists: where node is not
      // /usr/bin/node, the copy points at this node. Nothing else changes.
      let text = readFileSync(unit, 'utf8');
      if (!existsSync('/usr/bin/node')) text = text.replaceAll('/usr/bin/node ', `${process.execPath} `);
      const copy = join(dir.path, unit.split('/').pop()!);
      await writeFile(copy, text);
      const r = spawnSync('systemd-analyze', ['verify', '--man=no', '--generators=no', copy], { cwd: dir.path, encoding: 'utf8' });
      const warnings = r.stderr.split('\n').filter((l) => l.trim() && (l.includes(copy) || /ignoring|unknown|failed|not executable|invalid/i.test(l)));
      expect(warnings).toEqual([]);
      expect(r.status).toBe(0);
    } finally {
      await dir.remove();
    }
  });

  it('worker-agent.service restarts always, reads an EnvironmentFile and keeps its token under /var/lib', () => {
    const text = readFileSync(join(DEPLOY, 'systemd/worker-agent.service'), 'utf8');
    expect(text).toMatch(/^Restart=always$/m);
    expect(text).toMatch(/^EnvironmentFile=\/etc\/hive\/worker-agent\.env$/m);
    expect(text).toMatch(/^StateDirectory=hive-agent$/m);
    expect(text).toMatch(/^Environment=WORKER_TOKEN_FILE=\/var\/lib\/hive-agent\/worker\.token$/m);
    expect(text).toMatch(/^ExecStart=\/usr\/bin\/node \/opt\/hive\/bin\/worker-agent\.mjs$/m);
    expect(text).toMatch(/^User=hive-agent$/m);
    const hive = readFileSync(join(DEPLOY, 'systemd/hive.service'), 'utf8');
    expect(hive).toMatch(/^Restart=always$/m);
    expect(hive).toMatch(/^EnvironmentFile=\/etc\/hive\/hive\.env$/m);
    expect(hive).toMatch(/^Environment=HIVE_DATA_DIR=\/var\/lib\/hive$/m);
  });

  it('the example environment files name only settings the services know', async () => {
    const { HIVE_SETTINGS } = await import('../../hive/config.js');
    const { AGENT_SETTINGS } = await import('../../worker-agent/config.js');
    const { MONITOR_SETTINGS } = await import('../../monitor/config.js');
    const envNames = (s: Record<string, { env?: string }>) => new Set(Object.values(s).map((x) => x.env).filter(Boolean));
    for (const [file, settings] of [
      ['hive.env.example', HIVE_SETTINGS],
      ['worker-agent.env.example', AGENT_SETTINGS],
      ['hive-monitor.env.example', MONITOR_SETTINGS],
    ] as const) {
      const known = envNames(settings as Record<string, { env?: string }>);
      const used = readFileSync(join(DEPLOY, 'systemd', file), 'utf8')
        .split('\n')
        .map((l) => /^#?([A-Z][A-Z0-9_]+)=/.exec(l)?.[1])
        .filter((x): x is string => !!x);
      expect(used.length, file).toBeGreaterThan(2);
      for (const name of used) expect(known.has(name), `${file}: ${name}`).toBe(true);
    }
  });
});

describe('YAML under deploy/', () => {
  const files = filesUnder(DEPLOY, (f) => /\.ya?ml$/.test(f));
  it.each(files.map((f) => [relative(DEPLOY, f), f]))('%s parses', (_name, file) => {
    const docs = parseAllDocuments(readFileSync(file, 'utf8'));
    expect(docs.length).toBeGreaterThan(0);
    for (const d of docs) {
      expect(d.errors.map((e) => e.message)).toEqual([]);
      expect(d.warnings.map((e) => e.message)).toEqual([]);
    }
  });
});

// The compose specification's keys (compose-spec.io), as of 2025.
const COMPOSE_TOP = new Set(['version', 'name', 'services', 'networks', 'volumes', 'configs', 'secrets', 'include', 'models']);
const SERVICE_KEYS = new Set(
  `annotations attach blkio_config build cap_add cap_drop cgroup cgroup_parent command configs container_name cpu_count cpu_percent
   cpu_period cpu_quota cpu_rt_period cpu_rt_runtime cpu_shares cpus cpuset credential_spec depends_on deploy develop device_cgroup_rules
   devices dns dns_opt dns_search domainname entrypoint env_file environment expose extends external_links extra_hosts gpus group_add
   healthcheck hostname image init ipc isolation labels label_file links logging mac_address mem_limit mem_reservation mem_swappiness
   memswap_limit models network_mode networks oom_kill_disable oom_score_adj pid pids_limit platform ports post_start pre_stop privileged
   profiles provider pull_policy read_only restart runtime scale secrets security_opt shm_size stdin_open stop_grace_period stop_signal
   storage_opt sysctls tmpfs tty ulimits use_api_socket user userns_mode uts volumes volumes_from working_dir`.split(/\s+/),
);
const HEALTHCHECK_KEYS = new Set(['test', 'interval', 'timeout', 'retries', 'start_period', 'start_interval', 'disable']);
const BUILD_KEYS = new Set(['context', 'dockerfile', 'dockerfile_inline', 'args', 'ssh', 'cache_from', 'cache_to', 'additional_contexts', 'entitlements', 'extra_hosts', 'isolation', 'labels', 'network', 'no_cache', 'platforms', 'privileged', 'pull', 'secrets', 'shm_size', 'tags', 'target', 'ulimits']);
const DEPENDS_KEYS = new Set(['condition', 'restart', 'required']);
const RESTART = new Set(['no', 'always', 'on-failure', 'unless-stopped']);
// Images the compose file may use: official or vendor images, pinned.
const KNOWN_IMAGES = new Set(['postgres', 'redis', 'prom/prometheus', 'grafana/grafana-oss', 'grafana/grafana', 'hive']);

describe('deploy/compose.yaml', () => {
  const compose = readYaml(join(DEPLOY, 'compose.yaml'));
  const services = compose.services as Record<string, Obj>;

  it('has the hive, the monitor, PostgreSQL, Redis, Prometheus and Grafana', () => {
    expect(Object.keys(services)).toEqual(expect.arrayContaining(['hive', 'monitor', 'postgres', 'redis', 'prometheus', 'grafana']));
  });

  it('uses only keys of the compose specification', () => {
    for (const k of Object.keys(compose)) expect(COMPOSE_TOP.has(k) || k.startsWith('x-'), `top-level ${k}`).toBe(true);
    for (const [name, svc] of Object.entries(services)) {
      for (const k of Object.keys(svc)) expect(SERVICE_KEYS.has(k), `${name}.${k}`).toBe(true);
      for (const k of Object.keys((svc.healthcheck as Obj) ?? {})) expect(HEALTHCHECK_KEYS.has(k), `${name}.healthcheck.${k}`).toBe(true);
      for (const k of Object.keys((svc.build as Obj) ?? {})) expect(BUILD_KEYS.has(k), `${name}.build.${k}`).toBe(true);
      if (svc.restart !== undefined) expect(RESTART.has(svc.restart as string), `${name}.restart`).toBe(true);
      const deps = svc.depends_on as Record<string, Obj> | string[] | undefined;
      for (const [dep, spec] of Array.isArray(deps) ? deps.map((d) => [d, {}] as const) : Object.entries(deps ?? {})) {
        expect(services[dep], `${name} depends on ${dep}`).toBeDefined();
        for (const k of Object.keys(spec)) expect(DEPENDS_KEYS.has(k), `${name}.depends_on.${dep}.${k}`).toBe(true);
        if ((spec as Obj).condition === 'service_healthy') expect(services[dep].healthcheck, `${dep} needs a healthcheck`).toBeDefined();
      }
    }
  });

  it('uses known images with pinned tags; our image is built from the repository Dockerfile', () => {
    for (const [name, svc] of Object.entries(services)) {
      expect(svc.image, `${name}.image`).toBeTypeOf('string');
      const [repo, tag] = (svc.image as string).split(':');
      expect(KNOWN_IMAGES.has(repo), `${name}: ${svc.image}`).toBe(true);
      expect(tag, `${name}: a pinned tag`).toMatch(/^(?!latest$)\S+$/);
      if (repo === 'hive') {
        const build = svc.build as Obj;
        expect(resolve(DEPLOY, build.context as string)).toBe(ROOT);
        expect(existsSync(join(ROOT, build.dockerfile as string))).toBe(true);
      }
    }
  });

  it('mounts files that exist, and every required variable is in .env.example', () => {
    for (const [name, svc] of Object.entries(services)) {
      for (const v of (svc.volumes as string[]) ?? []) {
        const source = v.split(':')[0];
        if (source.startsWith('.') || source.startsWith('/')) expect(existsSync(resolve(DEPLOY, source)), `${name}: ${source}`).toBe(true);
        else expect((compose.volumes as Obj)[source] !== undefined, `${name}: named volume ${source}`).toBe(true);
      }
    }
    const text = readFileSync(join(DEPLOY, 'compose.yaml'), 'utf8');
    const example = readFileSync(join(DEPLOY, '.env.example'), 'utf8');
    const required = [...text.matchAll(/\$\{([A-Z_][A-Z0-9_]*):\?/g)].map((m) => m[1]);
    expect(required.length).toBeGreaterThan(0);
    for (const v of required) expect(example).toMatch(new RegExp(`^${v}=`, 'm'));
  });

  it('health checks hit /healthz; the hive and the monitor listen where the others look', () => {
    expect(JSON.stringify(services.hive.healthcheck)).toContain('http://127.0.0.1:8080/healthz');
    expect(JSON.stringify(services.monitor.healthcheck)).toContain('http://127.0.0.1:9464/healthz');
    expect((services.monitor.environment as Obj).HIVE_ADDR).toBe('hive:50051');
    expect((services.monitor.environment as Obj).MONITOR_HTTP_ADDR).toBe('0.0.0.0:9464');
    expect((services.hive.environment as Obj).DATABASE_URL).toMatch(/@postgres:5432\//);
  });

  it("Prometheus's configuration passes promtool with grafana/alerts.yml beside it, scraping the jobs the dashboard expects", async () => {
    const promtool = spawnSync('promtool', ['--version']).status === 0;
    expect(promtool, "promtool is missing: install Debian's prometheus package (.ci/run does)").toBe(true);
    const dir = await tempDir('hive-prom-');
    try {
      await copyFile(join(DEPLOY, 'prometheus/prometheus.yml'), join(dir.path, 'prometheus.yml'));
      await copyFile(join(ROOT, 'grafana/alerts.yml'), join(dir.path, 'alerts.yml'));
      const { stdout } = await run('promtool', ['check', 'config', join(dir.path, 'prometheus.yml')]);
      expect(stdout).toContain('SUCCESS');
    } finally {
      await dir.remove();
    }
    const prom = readYaml(join(DEPLOY, 'prometheus/prometheus.yml'));
    const jobs = Object.fromEntries((prom.scrape_configs as Obj[]).map((j) => [j.job_name, ((j.static_configs as Obj[])[0].targets as string[])[0]]));
    expect(jobs).toEqual({ hive: 'hive:8080', 'hive-monitor': 'monitor:9464', 'hive-agent': 'agent:9465' });
    const ds = readYaml(join(DEPLOY, 'grafana/datasources/prometheus.yaml'));
    expect((ds.datasources as Obj[])[0]).toMatchObject({ type: 'prometheus', url: 'http://prometheus:9090' });
  });
});

describe('deploy/k8s', () => {
  const files = filesUnder(join(DEPLOY, 'k8s'), (f) => f.endsWith('.yaml'));
  const objects = files.flatMap((f) => docsOf(f).map((o) => ({ file: relative(DEPLOY, f), o })));
  const find = (kind: string, name: string) => objects.find((x) => x.o.kind === kind && (x.o.metadata as Obj)?.name === name)?.o;
  const podSpec = (o: Obj) => ((o.spec as Obj).template as Obj).spec as Obj;
  const containers = (o: Obj) => podSpec(o).containers as Obj[];

  it('every manifest has apiVersion, kind and metadata.name', () => {
    expect(objects.length).toBeGreaterThanOrEqual(8);
    for (const { file, o } of objects) {
      expect(o.apiVersion, file).toBeTypeOf('string');
      expect(o.kind, file).toBeTypeOf('string');
      if (o.kind !== 'Kustomization') expect((o.metadata as Obj)?.name, `${file} ${o.kind}`).toBeTypeOf('string');
    }
  });

  it('the kustomization lists files that exist, and every resource but the example secret', () => {
    const k = readYaml(join(DEPLOY, 'k8s/kustomization.yaml'));
    const resources = k.resources as string[];
    for (const r of resources) expect(existsSync(join(DEPLOY, 'k8s', r)), r).toBe(true);
    const all = files.map((f) => f.split('/').pop()!).filter((f) => f !== 'kustomization.yaml' && f !== 'secret.example.yaml');
    expect([...resources].sort()).toEqual(all.sort());
  });

  it('the agent DaemonSet runs on GPU nodes with hostPath mounts, one worker per node', () => {
    const ds = find('DaemonSet', 'worker-agent')!;
    expect(ds).toBeDefined();
    const spec = podSpec(ds);
    expect(spec.nodeSelector).toEqual({ 'nvidia.com/gpu.present': 'true' });
    expect(spec.tolerations).toEqual(expect.arrayContaining([expect.objectContaining({ key: 'nvidia.com/gpu', operator: 'Exists' })]));
    const volumes = Object.fromEntries((spec.volumes as Obj[]).map((v) => [v.name, v]));
    const agent = containers(ds)[0];
    const mounts = agent.volumeMounts as Obj[];
    const hostPaths = mounts.filter((m) => (volumes[m.name as string] as Obj).hostPath).map((m) => [((volumes[m.name as string] as Obj).hostPath as Obj).path, m.mountPath]);
    expect(hostPaths).toEqual(expect.arrayContaining([['/var/lib/hive-agent', '/var/lib/hive-agent'], ['/', '/host/root']]));
    expect(mounts.find((m) => m.mountPath === '/host/root')?.readOnly).toBe(true);
    const env = Object.fromEntries((agent.env as Obj[]).map((e) => [e.name, e]));
    expect(env.WORKER_ID.valueFrom).toEqual({ fieldRef: { fieldPath: 'spec.nodeName' } });
    expect((env.WORKER_TOKEN_FILE as Obj).value).toBe('/var/lib/hive-agent/worker.token');
    expect((env.NVIDIA_DRIVER_CAPABILITIES as Obj).value).toBe('utility');
    expect((env.HIVE_ADDR as Obj).value).toBe('hive.hive.svc:50051');
    // The agent claims no GPU: the workloads keep them all.
    expect(JSON.stringify(agent.resources)).not.toContain('nvidia.com/gpu');
  });

  it('Deployments for the hive and the monitor, behind Services that select them, probing /healthz', () => {
    for (const [name, port] of [['hive', 8080], ['hive-monitor', 9464]] as const) {
      const dep = find('Deployment', name)!;
      expect(dep, name).toBeDefined();
      const svc = find('Service', name)!;
      const labels = ((dep.spec as Obj).template as Obj).metadata as Obj;
      for (const [k, v] of Object.entries((svc.spec as Obj).selector as Obj)) expect((labels.labels as Obj)[k], `${name} selector ${k}`).toBe(v);
      const c = containers(dep)[0];
      expect(((c.readinessProbe as Obj).httpGet as Obj).path).toBe('/healthz');
      expect((c.ports as Obj[]).map((p) => p.containerPort)).toContain(port);
      expect((podSpec(dep).securityContext as Obj).runAsNonRoot).toBe(true);
    }
  });

  it('every secret key the manifests read is in the example secret', () => {
    const secret = docsOf(join(DEPLOY, 'k8s/secret.example.yaml'))[0];
    const keys = new Set(Object.keys(secret.stringData as Obj));
    const refs = [...JSON.stringify(objects.map((x) => x.o)).matchAll(/"secretKeyRef":\{"name":"hive","key":"([^"]+)"\}/g)].map((m) => m[1]);
    expect(refs.length).toBeGreaterThanOrEqual(4);
    for (const r of refs) expect(keys.has(r), r).toBe(true);
  });

  it('the env names the containers set are settings the programs know', async () => {
    const { HIVE_SETTINGS } = await import('../../hive/config.js');
    const { AGENT_SETTINGS } = await import('../../worker-agent/config.js');
    const { MONITOR_SETTINGS } = await import('../../monitor/config.js');
    const known = (s: Record<string, { env?: string }>) => new Set([...Object.values(s).map((x) => x.env), 'NVIDIA_VISIBLE_DEVICES', 'NVIDIA_DRIVER_CAPABILITIES']);
    for (const [kind, name, settings] of [
      ['Deployment', 'hive', HIVE_SETTINGS],
      ['Deployment', 'hive-monitor', MONITOR_SETTINGS],
      ['DaemonSet', 'worker-agent', AGENT_SETTINGS],
    ] as const) {
      const k = known(settings as Record<string, { env?: string }>);
      for (const e of containers(find(kind, name)!)[0].env as Obj[]) expect(k.has(e.name as string), `${name}: ${e.name}`).toBe(true);
    }
  });
});

describe('Dockerfile', () => {
  const text = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
  const lines = text.split('\n').filter((l) => l.trim() && !l.trim().startsWith('#'));

  it('is multi-stage: dependencies in one stage, copied into the runtime stage', () => {
    expect(lines.filter((l) => /^FROM\s/.test(l)).length).toBeGreaterThanOrEqual(2);
    expect(text).toMatch(/^COPY --from=deps /m);
    expect(text).toMatch(/npm ci --omit=dev/);
  });

  it('runs as a non-root user, with a HEALTHCHECK on /healthz', () => {
    const runtime = lines.slice(lines.findLastIndex((l) => /^FROM\s/.test(l)));
    const user = runtime.filter((l) => /^USER\s/.test(l)).pop();
    expect(user).toBeDefined();
    expect(user!.split(/\s+/)[1]).not.toMatch(/^(root|0)(:.*)?$/);
    expect(runtime.findIndex((l) => /^USER\s/.test(l))).toBeLessThan(runtime.findIndex((l) => /^CMD\s/.test(l)));
    expect(text).toMatch(/^HEALTHCHECK .*\n?.*\/healthz/m);
    expect(text).toMatch(/^EXPOSE 8080 50051$/m);
  });

  it('copies only paths that exist, and everything the bins import', () => {
    const sources = lines.filter((l) => /^COPY\s/.test(l) && !l.includes('--from=')).flatMap((l) => l.trim().split(/\s+/).slice(1, -1));
    for (const s of sources) expect(existsSync(join(ROOT, s)), s).toBe(true);
    for (const dir of ['bin', 'lib', 'gen', 'hive', 'monitor', 'worker-agent', 'hivectl']) expect(sources, dir).toContain(dir);
  });

  it('its health check script exits 0 on 200 and 1 on 503 or no answer', async () => {
    let status = 200;
    const server = http.createServer((_req, res) => {
      res.writeHead(status);
      res.end('{}');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/healthz`;
    const check = (u: string) => new Promise<number | null>((r) => execFile(process.execPath, [join(ROOT, 'deploy/healthcheck.mjs'), u], (err) => r(err ? ((err as { code?: number }).code ?? 1) : 0)));
    try {
      expect(await check(url)).toBe(0);
      status = 503;
      expect(await check(url)).toBe(1);
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
    expect(await check('http://127.0.0.1:9/healthz')).toBe(1);
  });
});

