import { Registry as PromRegistry } from 'prom-client';
import { systemClock } from '../lib/clock.js';
import { ConfigError } from '../lib/config.js';
import { createLogger } from '../lib/logger.js';
import { loadClientTls } from '../lib/tls-client.js';
import { loadMonitorConfig } from './config.js';
import { createHiveApi } from './hive-client.js';
import { serveMonitorHttp } from './http.js';
import { createMonitor } from './monitor.js';
import { createLeaderLease } from './leader-lease.js';
import { connectRedis, openRedis } from '../lib/redis.js';
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';

// hive-monitor: configuration, logger, client, HTTP port, signals. The
// parts and their wiring live in monitor.ts.

let config;
try {
  config = loadMonitorConfig(process.argv.slice(2));
} catch (err) {
  if (err instanceof ConfigError) {
    process.stderr.write(`hive-monitor: ${err.message}\n`);
    process.exit(2);
  }
  throw err;
}
const log = createLogger('hive-monitor', config.logLevel);
const prom = new PromRegistry();
const holder = `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
const redis = config.redisUrl ? openRedis({ url: config.redisUrl, log, name: `hive-monitor-${holder}`, commandTimeoutMs: Math.max(200, Math.floor(config.leaseTtl / 4)) }) : null;
if (redis) await connectRedis(redis, log);
const leadership = redis
  ? createLeaderLease({ redis, prefix: config.redisPrefix, holder, ttlMs: config.leaseTtl, clock: systemClock, log: log.child({ component: 'leader-lease' }) })
  : undefined;
const monitor = createMonitor({
  hive: createHiveApi(config.hive, config.token, { tls: loadClientTls(config), fence: leadership ? () => (leadership.isLeader() ? leadership.fence() : null) : undefined }),
  leadership,
  clock: systemClock,
  log,
  prom,
  secret: config.token,
  options: {
    ...config,
    receivers: [...config.alertWebhooks.map((url) => ({ url, format: 'generic' as const })), ...config.alertSlackWebhooks.map((url) => ({ url, format: 'slack' as const }))],
  },
});

const http = await serveMonitorHttp({ prom, host: config.httpAddr.host, port: config.httpAddr.port, health: monitor.health, log }).catch((err) => {
  log.fatal({ err }, 'monitor HTTP port failed to start');
  process.exit(1);
});
await monitor.start();
log.info(
  {
    http: `${config.httpAddr.host}:${http.port}`,
    hive: config.hive,
    leaderElection: redis ? `redis lease ${config.leaseTtl} ms (holder ${holder})` : 'none (sole monitor)',
    selector: config.selector || undefined,
    execAllow: config.execAllow.length,
    alertReceivers: config.alertWebhooks.length + config.alertSlackWebhooks.length,
  },
  'monitor serving',
);

let stopping = false;
for (const sig of ['SIGTERM', 'SIGINT'] as const) {
  process.on(sig, () => {
    if (stopping) return;
    stopping = true;
    log.info({ signal: sig }, 'shutting down');
    const force = setTimeout(() => process.exit(1), 10_000);
    force.unref();
    void (async () => {
      await monitor.stop();
      redis?.disconnect();
      await http.close();
      log.info('monitor stopped');
      process.exit(0);
    })().catch((err) => {
      log.error({ err }, 'unclean shutdown');
      process.exit(1);
    });
  });
}
