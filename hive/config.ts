import { Command } from 'commander';
import { parseDurationMs } from '../lib/duration.js';
import { accessSync, constants } from 'node:fs';
import { ConfigError, listSetting, loadConfig, parseAddr, parseLogLevel, setting, text } from '../lib/config.js';
import { checkPrefix } from '../lib/redis-keys.js';
import { METRICS_DEFAULTS, metricLabelNames } from './metrics.js';
import { RATE_DEFAULTS } from './rate-limit.js';
import { tlsProblems } from './tls.js';

export const HIVE_SETTINGS = {
  grpcAddr: setting({ flag: 'grpc-addr', env: 'HIVE_GRPC_ADDR', description: 'gRPC listen address (agents, grpc-js)', default: parseAddr('127.0.0.1:50051'), parse: parseAddr }),
  httpAddr: setting({ flag: 'http-addr', env: 'HIVE_HTTP_ADDR', description: 'HTTP listen address (Connect, gRPC-Web, /metrics, status page)', default: parseAddr('127.0.0.1:8080'), parse: parseAddr }),
  dataDir: setting({ flag: 'data-dir', env: 'HIVE_DATA_DIR', description: 'data directory (embedded database, generated admin token)', default: './data', parse: text }),
  databaseUrl: setting<string | undefined>({
    flag: 'database-url',
    env: 'DATABASE_URL',
    description: 'PostgreSQL URL; without it the embedded PGlite in the data directory is used',
    parse: (s) => {
      const u = new URL(s);
      if (u.protocol !== 'postgres:' && u.protocol !== 'postgresql:') throw new Error('must be a postgres:// URL');
      return s;
    },
  }),
  databaseSchema: setting<string | undefined>({
    flag: 'database-schema',
    env: 'HIVE_DATABASE_SCHEMA',
    description: 'PostgreSQL schema to use (created if missing)',
    parse: (s) => {
      if (!/^[a-z_][a-z0-9_]{0,62}$/.test(s)) throw new Error('must be a lower-case SQL identifier');
      return s;
    },
  }),
  redisUrl: setting<string | undefined>({
    flag: 'redis-url',
    env: 'REDIS_URL',
    description: 'Redis URL for the live state shared by several replicas (presence, deadlines, change fan-out, command routing); without it the live state is this process\'s memory. /healthz demands an exact PONG from it',
    parse: (s) => {
      const u = new URL(s);
      if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') throw new Error('must be a redis:// or rediss:// URL');
      return s;
    },
  }),
  redisPrefix: setting({ flag: 'redis-prefix', env: 'HIVE_REDIS_PREFIX', description: 'prefix of every Redis key and channel (several fleets or test runs share one Redis)', default: 'hive', parse: checkPrefix }),
  adminToken: setting<string | undefined>({
    flag: 'admin-token',
    env: 'HIVE_ADMIN_TOKEN',
    description: 'admin token; generated on first start and stored in the data directory when unset',
    parse: (s) => {
      if (s.length < 16) throw new Error('must be at least 16 characters');
      return s;
    },
  }),
  joinTokens: listSetting({
    flag: 'join-token',
    env: 'HIVE_JOIN_TOKENS',
    description: 'join token(s) agents may register with (env: comma separated)',
    parse: (s) => {
      if (s.length < 16) throw new Error('join tokens must be at least 16 characters');
      return s;
    },
  }),
  writeBehind: setting({ flag: 'write-behind', env: 'HIVE_WRITE_BEHIND', description: 'how often heartbeat snapshots are written to the database', default: 2000, parse: parseDurationMs }),
  eventRetention: setting({ flag: 'event-retention', env: 'HIVE_EVENT_RETENTION', description: 'how long events are kept', default: 30 * 86_400_000, parse: parseDurationMs }),
  logLevel: setting({ flag: 'log-level', env: 'LOG_LEVEL', description: 'log level', default: 'info', parse: parseLogLevel }),
  tlsCert: setting<string | undefined>({ flag: 'tls-cert', env: 'HIVE_TLS_CERT', description: 'PEM certificate (chain) of the hive; with --tls-key both ports speak TLS only', parse: readablePath }),
  tlsKey: setting<string | undefined>({ flag: 'tls-key', env: 'HIVE_TLS_KEY', description: 'PEM private key of --tls-cert', parse: readablePath }),
  tlsClientCa: setting<string | undefined>({
    flag: 'tls-client-ca',
    env: 'HIVE_TLS_CLIENT_CA',
    description: "PEM CA for mutual TLS: every client needs a certificate it signed, and a worker's certificate must name its worker id (CN or SAN)",
    parse: readablePath,
  }),
  rateLimit: setting({
    flag: 'rate-limit',
    env: 'HIVE_RATE_LIMIT',
    description: 'requests per second one worker or join token may make, on average (0: no limit); more get ResourceExhausted',
    default: RATE_DEFAULTS.perSecond as number,
    parse: nonNegative,
  }),
  rateBurst: setting({ flag: 'rate-burst', env: 'HIVE_RATE_BURST', description: 'requests one worker or join token may make at once above --rate-limit', default: RATE_DEFAULTS.burst as number, parse: nonNegative }),
  maxStreamsPerWorker: setting({
    flag: 'max-streams-per-worker',
    env: 'HIVE_MAX_STREAMS_PER_WORKER',
    description: 'open HeartbeatStreams one worker may hold (0: no limit); more get ResourceExhausted',
    default: RATE_DEFAULTS.streamsPerWorker as number,
    parse: (s) => {
      const n = nonNegative(s);
      if (!Number.isInteger(n)) throw new Error('must be a whole number');
      return n;
    },
  }),
  metricsPerWorker: setting({
    flag: 'metrics-per-worker',
    env: 'HIVE_METRICS_PER_WORKER',
    description: 'export per-worker series on /metrics (state, heartbeat age, VRAM, memory, disk, health score); false for very large fleets',
    default: METRICS_DEFAULTS.perWorker as boolean,
    parse: parseBool,
  }),
  metricsLabels: setting<string[]>({
    flag: 'metrics-labels',
    env: 'HIVE_METRICS_LABELS',
    description: 'worker labels copied onto per-worker series, comma separated ("none" for none)',
    default: [...METRICS_DEFAULTS.labels],
    parse: (s) => {
      const keys = s.trim() === 'none' ? [] : s.split(',').map((k) => k.trim()).filter(Boolean);
      metricLabelNames(keys); // throws when two keys would become one metric label
      return keys;
    },
  }),
  metricsMaxWorkers: setting({
    flag: 'metrics-max-workers',
    env: 'HIVE_METRICS_MAX_WORKERS',
    description: 'at most this many workers get per-worker series',
    default: METRICS_DEFAULTS.maxWorkers as number,
    parse: (s) => {
      const n = Number(s);
      if (!Number.isInteger(n) || n < 0) throw new Error('must be a whole number >= 0');
      return n;
    },
  }),
};

function readablePath(s: string): string {
  try {
    accessSync(s, constants.R_OK);
  } catch {
    throw new Error(`cannot read ${s}`);
  }
  return s;
}

function nonNegative(s: string): number {
  const n = Number(s);
  if (!Number.isFinite(n) || n < 0) throw new Error('must be a number >= 0');
  return n;
}

function parseBool(s: string): boolean {
  if (/^(true|1|yes|on)$/i.test(s)) return true;
  if (/^(false|0|no|off)$/i.test(s)) return false;
  throw new Error('must be true or false');
}

export function loadHiveConfig(argv: string[], env = process.env) {
  const program = new Command('hive').description('hive: the heartbeat registry');
  const values = loadConfig(program, HIVE_SETTINGS, argv, env).values;
  const problems = tlsProblems(values);
  if (problems.length) throw new ConfigError(problems);
  return values;
}

type LoadedConfig = ReturnType<typeof loadHiveConfig>;
type MetricsSettings =
  | 'metricsPerWorker'
  | 'metricsLabels'
  | 'metricsMaxWorkers'
  | 'tlsCert'
  | 'tlsKey'
  | 'tlsClientCa'
  | 'rateLimit'
  | 'rateBurst'
  | 'maxStreamsPerWorker'
  | 'redisUrl'
  | 'redisPrefix';
/** Settings in-process hives (tests) may leave out: the defaults then apply (no TLS, no Redis). */
export type HiveConfig = Omit<LoadedConfig, MetricsSettings> & Partial<Pick<LoadedConfig, MetricsSettings>>;
