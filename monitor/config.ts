import { Command } from 'commander';
import { clientTlsProblems } from '../lib/tls-client.js';
import { ConfigError, listSetting, loadConfig, parseAddr, parseLogLevel, setting, text } from '../lib/config.js';
import { parseDurationMs } from '../lib/duration.js';
import { parseSelector } from '../hive/selector.js';
import { checkPrefix } from '../lib/redis-keys.js';
import type { Severity } from './alerts.js';

// Every setting is a flag and an environment variable; problems are
// reported together.

function parseShare(s: string): number {
  const t = s.trim();
  const n = t.endsWith('%') ? Number(t.slice(0, -1)) / 100 : Number(t);
  if (!Number.isFinite(n) || n <= 0 || n > 1) throw new Error('must be a share in (0, 1] such as 0.5 or 50%');
  return n;
}

function parseCount(s: string): number {
  const n = Number(s);
  if (!Number.isInteger(n) || n < 1 || n > 1_000_000) throw new Error('must be a whole number >= 1');
  return n;
}

function parseFactor(s: string): number {
  const n = Number(s);
  if (!Number.isFinite(n) || n < 0 || n > 100) throw new Error('must be a number between 0 and 100');
  return n;
}

function parseRetries(s: string): number {
  const n = Number(s);
  if (!Number.isInteger(n) || n < 0 || n > 10) throw new Error('must be a whole number between 0 and 10');
  return n;
}

function parseUrl(s: string): string {
  const u = new URL(s);
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('must be an http(s) URL');
  return s;
}

function parseSeverity(s: string): Severity {
  if (s !== 'critical' && s !== 'warning' && s !== 'info') throw new Error('must be critical, warning or info');
  return s;
}

function parseToken(s: string): string {
  if (s.length < 16) throw new Error('must be at least 16 characters');
  return s;
}

function parseSelectorText(s: string): string {
  try {
    parseSelector(s);
  } catch (err) {
    throw new Error((err as Error).message);
  }
  return s;
}

function positive(parse: (s: string) => number) {
  return (s: string) => {
    const ms = parse(s);
    if (ms <= 0) throw new Error('must be greater than zero');
    return ms;
  };
}

export const MONITOR_SETTINGS = {
  hive: setting({ flag: 'hive', env: 'HIVE_ADDR', description: 'hive gRPC address (host:port or http(s):// URL)', default: '127.0.0.1:50051', parse: text }),
  token: setting<string>({ flag: 'token', env: 'HIVE_TOKEN', description: 'monitor (or admin) token', required: true, parse: parseToken }),
  httpAddr: setting({ flag: 'http-addr', env: 'MONITOR_HTTP_ADDR', description: 'listen address for /metrics and /healthz', default: parseAddr('127.0.0.1:9464'), parse: parseAddr }),
  selector: setting({ flag: 'selector', env: 'MONITOR_SELECTOR', description: 'label selector of the workers this monitor watches (default: all)', default: '', parse: parseSelectorText }),
  massStaleShare: setting({ flag: 'mass-stale-share', env: 'MONITOR_MASS_STALE_SHARE', description: 'the mass-stale guard engages when more than this share of the fleet goes stale within the window', default: 0.5, parse: parseShare }),
  massStaleMin: setting({ flag: 'mass-stale-min', env: 'MONITOR_MASS_STALE_MIN', description: 'fewest stale workers that can engage the mass-stale guard', default: 3, parse: parseCount }),
  // Default 2x interval, not one: "within one interval" is when the workers
  // stop; their marks spread over a further interval (see mass-stale-guard.ts).
  massStaleWindow: setting<number | null>({
    flag: 'mass-stale-window',
    env: 'MONITOR_MASS_STALE_WINDOW',
    description: 'window of the mass-stale guard (default: 2x the heartbeat interval, as workers that die together go stale spread over one interval)',
    default: null,
    parse: positive(parseDurationMs),
  }),
  guardResumeInterval: setting({ flag: 'guard-resume-interval', env: 'MONITOR_GUARD_RESUME_INTERVAL', description: 'after the guard releases, at most one restart action per this interval until the backlog drains', default: 10_000, parse: positive(parseDurationMs) }),
  outageGraceFactor: setting({ flag: 'outage-grace-factor', env: 'MONITOR_OUTAGE_GRACE_FACTOR', description: 'after the registry was out of sight for D, deadlines wait factor x D more (agents reconnect on a jittered backoff)', default: 6, parse: parseFactor }),
  outageGraceMax: setting({ flag: 'outage-grace-max', env: 'MONITOR_OUTAGE_GRACE_MAX', description: 'cap of the outage grace (at least the agents\' reconnect backoff cap, 30 s)', default: 60_000, parse: parseDurationMs }),
  execAllow: listSetting({ flag: 'exec-allow', env: 'MONITOR_EXEC_ALLOW', description: 'program the exec restart action may run, exactly as exec_argv[0] names it (repeatable; env: comma separated); none: exec is off', parse: text }),
  webhookRetries: setting({ flag: 'webhook-retries', env: 'MONITOR_WEBHOOK_RETRIES', description: 'extra tries of a webhook (restart action and alerts) after a timeout, network error, 408, 429 or 5xx', default: 2, parse: parseRetries }),
  alertWebhooks: listSetting({ flag: 'alert-webhook', env: 'MONITOR_ALERT_WEBHOOKS', description: 'URL receiving alerts as generic JSON (repeatable; env: comma separated)', parse: parseUrl }),
  alertSlackWebhooks: listSetting({ flag: 'alert-slack-webhook', env: 'MONITOR_ALERT_SLACK_WEBHOOKS', description: 'URL receiving alerts as Slack-compatible JSON (repeatable; env: comma separated)', parse: parseUrl }),
  alertTimeout: setting({ flag: 'alert-timeout', env: 'MONITOR_ALERT_TIMEOUT', description: 'timeout of one alert delivery try', default: 5000, parse: positive(parseDurationMs) }),
  alertCooldown: setting({ flag: 'alert-cooldown', env: 'MONITOR_ALERT_COOLDOWN', description: 'least time between two alerts of one rule for one worker', default: 5 * 60_000, parse: parseDurationMs }),
  alertStartupGrace: setting({ flag: 'alert-startup-grace', env: 'MONITOR_ALERT_STARTUP_GRACE', description: 'no alerts for this long after the monitor starts (a restarting stack does not page)', default: 90_000, parse: parseDurationMs }),
  alertMinSeverity: setting({ flag: 'alert-min-severity', env: 'MONITOR_ALERT_MIN_SEVERITY', description: 'least severity sent: critical, warning or info', default: 'info' as Severity, parse: parseSeverity }),
  refresh: setting({ flag: 'refresh', env: 'MONITOR_REFRESH', description: 'how often default policies, silences and health-check schedules are read from the hive', default: 30_000, parse: positive(parseDurationMs) }),
  tlsCa: setting<string | undefined>({ flag: 'tls-ca', env: 'HIVE_TLS_CA', description: "PEM CA that signed the hive's certificate; connects over TLS and verifies the hive", parse: text }),
  tlsCert: setting<string | undefined>({ flag: 'tls-cert', env: 'HIVE_TLS_CLIENT_CERT', description: 'PEM client certificate for a hive that runs mutual TLS', parse: text }),
  tlsKey: setting<string | undefined>({ flag: 'tls-key', env: 'HIVE_TLS_CLIENT_KEY', description: 'PEM private key of --tls-cert', parse: text }),
  redisUrl: setting<string | undefined>({
    flag: 'redis-url',
    env: 'REDIS_URL',
    description: 'Redis URL for leader election among several monitors (a lease with a fencing token); without it this monitor is the only one and always leads',
    parse: (s) => {
      const u = new URL(s);
      if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') throw new Error('must be a redis:// or rediss:// URL');
      return s;
    },
  }),
  redisPrefix: setting({ flag: 'redis-prefix', env: 'HIVE_REDIS_PREFIX', description: 'prefix of the Redis keys, the same as the hives\'', default: 'hive', parse: checkPrefix }),
  leaseTtl: setting({ flag: 'lease-ttl', env: 'MONITOR_LEASE_TTL', description: 'leader lease: a leader that stops renewing is replaced after this long', default: 10_000, parse: (s) => {
    const ms = parseDurationMs(s);
    if (ms < 300 || ms > 300_000) throw new Error('must be between 300ms and 5m');
    return ms;
  } }),
  logLevel: setting({ flag: 'log-level', env: 'LOG_LEVEL', description: 'log level', default: 'info', parse: parseLogLevel }),
};

export function loadMonitorConfig(argv: string[], env = process.env) {
  const program = new Command('hive-monitor').description('hive-monitor: stale detection, restart policies and alerts for a hive');
  const values = loadConfig(program, MONITOR_SETTINGS, argv, env).values;
  const problems = clientTlsProblems(values, { cert: '--tls-cert / HIVE_TLS_CLIENT_CERT', key: '--tls-key / HIVE_TLS_CLIENT_KEY' });
  if (problems.length) throw new ConfigError(problems);
  return values;
}

export type MonitorConfig = ReturnType<typeof loadMonitorConfig>;
