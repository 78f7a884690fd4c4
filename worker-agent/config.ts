import { Command } from 'commander';
import { parseDurationMs } from '../lib/duration.js';
import { clientTlsProblems } from '../lib/tls-client.js';
import { ConfigError, listSetting, loadConfig, parseAddr, parseLogLevel, setting, text } from '../lib/config.js';
import { checkIntervalMs, checkLabels, checkString, checkWorkerId, LIMITS } from '../hive/validate.js';

// The agent checks what it will send against the hive's own rules
// (hive/validate.ts) at start: a worker id, label or disk path the hive
// refuses would otherwise fail every registration or heartbeat at run time,
// with the agent retrying forever. A check that throws becomes a listed
// problem, like any other parse error.

function parseLabel(s: string): [string, string] {
  const i = s.indexOf('=');
  if (i <= 0) throw new Error(`label "${s.slice(0, 64)}" is not key=value`);
  const [key, value] = [s.slice(0, i), s.slice(i + 1)];
  checkLabels({ [key]: value });
  return [key, value];
}

function parseWorkerId(s: string): string {
  checkWorkerId(s);
  return s;
}

function parseInterval(s: string): number {
  return checkIntervalMs(parseDurationMs(s));
}

function parseDiskPath(s: string): string {
  checkString('disk path', s);
  return s;
}

function parseRatio(s: string): number {
  const n = Number(s);
  if (!Number.isFinite(n) || n < 0 || n > 1) throw new Error('must be a number between 0 and 1');
  return n;
}

function parseUrl(s: string): string {
  const u = new URL(s);
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('must be an http(s) URL');
  return s;
}

export const AGENT_SETTINGS = {
  hive: setting({ flag: 'hive', env: 'HIVE_ADDR', description: 'hive gRPC address (host:port or http(s):// URL)', default: '127.0.0.1:50051', parse: text }),
  joinToken: setting<string | undefined>({ flag: 'join-token', env: 'HIVE_JOIN_TOKEN', description: 'join token, used once to obtain the worker token', parse: text }),
  workerId: setting<string>({ flag: 'worker-id', env: 'WORKER_ID', description: 'this worker\'s id', required: true, parse: parseWorkerId }),
  interval: setting({ flag: 'interval', env: 'HEARTBEAT_INTERVAL', description: 'heartbeat interval', default: 5000, parse: parseInterval }),
  labels: listSetting({ flag: 'label', env: 'WORKER_LABELS', description: `label key=value (repeatable, at most ${LIMITS.maxLabels}; env: comma separated)`, parse: parseLabel }),
  dependsOn: listSetting({ flag: 'depends-on', env: 'WORKER_DEPENDS_ON', description: 'worker id this worker depends on (repeatable; env: comma separated), declared when joining', parse: text }),
  dependsOnSelector: setting<string | undefined>({ flag: 'depends-on-selector', env: 'WORKER_DEPENDS_ON_SELECTOR', description: 'label selector of workers this worker depends on, declared when joining', parse: text }),
  tokenFile: setting<string | undefined>({ flag: 'token-file', env: 'WORKER_TOKEN_FILE', description: 'where the worker token is kept (mode 0600); default ./worker-<id>.token', parse: text }),
  probe: setting<string | undefined>({ flag: 'probe', env: 'WORKER_PROBE_URL', description: 'HTTP health URL of the worker (200 = healthy)', parse: parseUrl }),
  probeTimeout: setting({ flag: 'probe-timeout', env: 'WORKER_PROBE_TIMEOUT', description: 'probe timeout', default: 5000, parse: parseDurationMs }),
  probeSlow: setting({ flag: 'probe-slow', env: 'WORKER_PROBE_SLOW', description: 'a probe slower than this is degraded', default: 2000, parse: parseDurationMs }),
  disks: listSetting({ flag: 'disk', env: 'WORKER_DISKS', description: `filesystem path to report (repeatable, at most ${LIMITS.maxDisks}; default /)`, parse: parseDiskPath }),
  diskFreeMin: setting({ flag: 'disk-free-min', env: 'WORKER_DISK_FREE_MIN', description: 'free-space ratio under which the worker is degraded', default: 0.05, parse: parseRatio }),
  memoryUsedMax: setting({ flag: 'memory-used-max', env: 'WORKER_MEMORY_USED_MAX', description: 'memory-used ratio over which the worker is degraded', default: 0.95, parse: parseRatio }),
  nvidiaSmi: setting({ flag: 'nvidia-smi', env: 'NVIDIA_SMI', description: 'nvidia-smi command (absent = no GPUs)', default: 'nvidia-smi', parse: text }),
  metricsAddr: setting({ flag: 'metrics-addr', env: 'AGENT_METRICS_ADDR', description: 'listen address for /metrics and /healthz', default: parseAddr('127.0.0.1:9465'), parse: parseAddr }),
  stopGrace: setting({ flag: 'stop-grace', env: 'WORKER_STOP_GRACE', description: 'how long the supervised process gets to exit on SIGTERM', default: 10_000, parse: parseDurationMs }),
  tlsCa: setting<string | undefined>({ flag: 'tls-ca', env: 'HIVE_TLS_CA', description: "PEM CA that signed the hive's certificate; connects over TLS and verifies the hive", parse: text }),
  tlsCert: setting<string | undefined>({ flag: 'tls-cert', env: 'HIVE_TLS_CLIENT_CERT', description: 'PEM client certificate for a hive that runs mutual TLS', parse: text }),
  tlsKey: setting<string | undefined>({ flag: 'tls-key', env: 'HIVE_TLS_CLIENT_KEY', description: 'PEM private key of --tls-cert', parse: text }),
  logLevel: setting({ flag: 'log-level', env: 'LOG_LEVEL', description: 'log level', default: 'info', parse: parseLogLevel }),
};

export function loadAgentConfig(argv: string[], env = process.env) {
  const program = new Command('worker-agent')
    .description('worker-agent: heartbeats for one worker, optionally supervising it')
    .usage('[options] [-- command args...]');
  // Counts are checked on what was given, so that they are reported
  // together with any other problem rather than after it is fixed.
  let disks = 0;
  const labelKeys = new Set<string>();
  const spec = {
    ...AGENT_SETTINGS,
    disks: { ...AGENT_SETTINGS.disks, parse: (s: string) => (disks++, AGENT_SETTINGS.disks.parse(s)) },
    labels: {
      ...AGENT_SETTINGS.labels,
      parse: (s: string) => {
        const kv = AGENT_SETTINGS.labels.parse(s);
        labelKeys.add(kv[0]);
        return kv;
      },
    },
  };
  const problems: string[] = [];
  let loaded: ReturnType<typeof loadConfig<typeof AGENT_SETTINGS>> | undefined;
  try {
    loaded = loadConfig(program, spec, argv, env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    problems.push(...err.problems);
  }
  if (disks > LIMITS.maxDisks) problems.push(`--disk / WORKER_DISKS: ${disks} paths; the hive accepts at most ${LIMITS.maxDisks}`);
  if (labelKeys.size > LIMITS.maxLabels) problems.push(`--label / WORKER_LABELS: ${labelKeys.size} labels; the hive accepts at most ${LIMITS.maxLabels}`);
  if (problems.length || !loaded) throw new ConfigError(problems);
  const { values, rest } = loaded;
  const tlsProblems = clientTlsProblems(values, { cert: '--tls-cert / HIVE_TLS_CLIENT_CERT', key: '--tls-key / HIVE_TLS_CLIENT_KEY' });
  if (tlsProblems.length) throw new ConfigError(tlsProblems);
  return {
    ...values,
    labels: Object.fromEntries(values.labels),
    disks: values.disks.length ? values.disks : ['/'],
    tokenFile: values.tokenFile ?? `./worker-${values.workerId}.token`,
    command: rest,
  };
}

export type AgentConfig = ReturnType<typeof loadAgentConfig>;
