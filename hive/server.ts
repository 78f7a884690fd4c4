import * as grpc from '@grpc/grpc-js';
import { Registry as PromRegistry } from 'prom-client';
import { TokenScope } from '../gen/hive/v1/registry_pb.js';
import { systemClock, type Clock } from '../lib/clock.js';
import { ALWAYS_READ, watchLoopTurns } from './loop-turns.js';
import type { Logger } from '../lib/logger.js';
import { resolveAdminToken } from './admin-token.js';
import type { HiveConfig } from './config.js';
import { addService, grpcServerCredentials, listenGrpc } from './grpc-server.js';
import { createDependencyTracker } from './dependency-tracker.js';
import { HealthCheckTrigger } from '../gen/hive/v1/health_check_pb.js';
import { createHealthChecks } from './health-checks.js';
import { healthBand } from './health-score.js';
import { createHealthState } from './health-service.js';
import { createHttpHandler, listenHttp } from './http-server.js';
import { createHiveMetrics } from './metrics.js';
import { dependencyProblems, pingRedis, type DependencyProbe } from './readiness.js';
import { createRateLimiter, RATE_DEFAULTS } from './rate-limit.js';
import { createRegistry, type Registry } from './registry.js';
import { loadTlsFiles } from './tls.js';
import { createRetentionSweep } from './retention.js';
import { createServices } from './routes.js';
import { createStatusPages } from './status-page.js';
import { createMemoryLiveState } from './live-memory.js';
import { createRedisLiveState } from './live-redis.js';
import type { LiveState } from './live-state.js';
import { openStore } from './store/open.js';
import { watchStoreWrites } from './store/store-health.js';
import { hashToken } from './tokens.js';
import { LIMITS } from './validate.js';

// Wires one hive: store, registry, services on both ports. main.ts adds
// only configuration and signals; tests start hives in-process through it.

export interface HiveHandle {
  grpcPort: number;
  httpPort: number;
  adminToken: string;
  registry: Registry;
  prom: PromRegistry;
  stop(): Promise<void>;
}

export async function startHive(config: HiveConfig, opts: { log: Logger; clock?: Clock }): Promise<HiveHandle> {
  const clock = opts.clock ?? systemClock;
  const log = opts.log;
  const prom = new PromRegistry();
  let registry: Registry | undefined;
  const metrics = createHiveMetrics(prom, () => registry, {
    clock,
    perWorker: config.metricsPerWorker,
    labels: config.metricsLabels,
    maxWorkers: config.metricsMaxWorkers,
  });

  const tls = loadTlsFiles(config);
  const watched = watchStoreWrites(await openStore({ databaseUrl: config.databaseUrl, dataDir: config.dataDir, schema: config.databaseSchema }), {
    log: log.child({ component: 'store' }),
    prom,
  });
  const store = watched.store;
  const live: LiveState = config.redisUrl
    ? createRedisLiveState({ url: config.redisUrl, prefix: config.redisPrefix ?? 'hive', log: log.child({ component: 'live-state' }) })
    : createMemoryLiveState();
  // Turns of the event loop happen in wall-clock time: a test's clock that moves by hand gets none.
  const turns = opts.clock ? ALWAYS_READ : watchLoopTurns(clock, { onWaited: (ms) => metrics.markReadWait(ms / 1000) });
  try {
    registry = await createRegistry({
      store,
      clock,
      live,
      turns,
      configTokenIds: (id) => id === 'admin' || id.startsWith('config-join-'),
      log: log.child({ component: 'registry' }),
      writeBehindMs: config.writeBehind,
      onEvent: metrics.event,
      onFlush: metrics.flushed,
    });
  } catch (err) {
    turns.stop();
    await store.close();
    throw err;
  }
  const admin = await resolveAdminToken(config.adminToken, config.dataDir);
  if (admin.created) {
    // Shown once, on the terminal, never through the logger.
    process.stderr.write(`\nhive: generated admin token (stored in ${admin.path}, mode 0600):\n  ${admin.token}\n\n`);
  }
  registry.tokens.add({ tokenId: 'admin', hash: hashToken(admin.token), scope: TokenScope.ADMIN, workerId: null });
  config.joinTokens.forEach((t, i) => registry!.tokens.add({ tokenId: `config-join-${i + 1}`, hash: hashToken(t), scope: TokenScope.JOIN, workerId: null }));

  const healthChecks = createHealthChecks({
    registry,
    store,
    clock,
    log: log.child({ component: 'health-checks' }),
    onFinished: (run) => metrics.checkFinished(run.trigger === HealthCheckTrigger.SCHEDULED ? 'scheduled' : 'manual', healthBand(run.score)),
  });
  metrics.countRunningChecks(() => healthChecks.running);
  await healthChecks.recover();
  // The database down is an outage (503); Redis down is a degradation
  // (200, "degraded"): the replicas keep serving from memory meanwhile.
  const readiness: DependencyProbe[] = [{ name: config.databaseUrl ? 'postgresql' : 'postgresql (embedded)', check: () => store.ping() }];
  const degradable: DependencyProbe[] = [];
  if (config.redisUrl) {
    const url = config.redisUrl;
    degradable.push({ name: 'redis', check: () => pingRedis(url) });
  }
  const health = createHealthState(['hive.v1.RegistryService', 'hive.v1.ControlService']);
  const shutdown = new AbortController();
  const mounted = createServices({
    registry,
    store,
    clock,
    log: log.child({ component: 'rpc' }),
    health,
    onStream: metrics.stream,
    onHeartbeat: metrics.heartbeat,
    healthChecks,
    onCheckReports: healthChecks.report,
    limiter: createRateLimiter({ clock, perSecond: config.rateLimit ?? RATE_DEFAULTS.perSecond, burst: config.rateBurst ?? RATE_DEFAULTS.burst }),
    maxStreamsPerWorker: config.maxStreamsPerWorker ?? RATE_DEFAULTS.streamsPerWorker,
  });

  const grpcServer = new grpc.Server({
    // Our deserializer refuses anything over the limit with InvalidArgument;
    // grpc-js itself stops (ResourceExhausted) what is too large to be worth reading.
    'grpc.max_receive_message_length': LIMITS.maxMessageBytes * 4,
    'grpc.keepalive_time_ms': 60_000,
    'grpc.keepalive_permit_without_calls': 1,
    'grpc.http2.min_ping_interval_without_data_ms': 10_000,
  });
  for (const m of mounted) addService(grpcServer, m.service, m.impl, { log, maxMessageBytes: LIMITS.maxMessageBytes, keepHeartbeatBytes: live.kind !== 'memory' });
  const grpcPort = await listenGrpc(grpcServer, `${config.grpcAddr.host}:${config.grpcAddr.port}`, grpcServerCredentials(tls));

  const http = await listenHttp(
    createHttpHandler({
      mounted,
      log,
      prom,
      maxMessageBytes: LIMITS.maxMessageBytes,
      shutdownSignal: shutdown.signal,
      pages: createStatusPages(),
      degradations: async () => {
        const d = registry!.live.degraded();
        return [...(await dependencyProblems(degradable)), ...(d === null ? [] : [`live state: ${d}`])];
      },
      healthProblems: async () => {
        const problems = await dependencyProblems(readiness);
        if (!health.serving()) problems.unshift('not serving');
        const writes = watched.health.problem();
        if (writes !== null && problems.every((p) => !p.startsWith('postgres') && !p.startsWith('database'))) problems.push(writes);
        return problems;
      },
    }),
    config.httpAddr.host,
    config.httpAddr.port,
    tls,
  );
  const retention = createRetentionSweep({ store, clock, log: log.child({ component: 'retention' }), retentionMs: config.eventRetention });
  const dependencies = createDependencyTracker({ registry, log: log.child({ component: 'dependencies' }) });
  await registry.start();
  dependencies.start();
  retention.start();
  health.set(true);
  log.info({ grpc: `${config.grpcAddr.host}:${grpcPort}`, http: `${config.httpAddr.host}:${http.port}`, workers: registry.workers.size, store: config.databaseUrl ? 'postgresql' : 'pglite', tls: tls ? (tls.clientCa ? 'mutual' : 'server') : 'off', live: live.kind, replica: live.replicaId }, 'hive serving');

  let stopped: Promise<void> | null = null;
  return {
    grpcPort,
    httpPort: http.port,
    adminToken: admin.token,
    registry,
    prom,
    stop() {
      stopped ??= (async () => {
        health.set(false);
        shutdown.abort();
        turns.stop();
        registry!.hub.closeAll();
        await dependencies.stop();
        // In-flight calls get a moment to finish; a client that never
        // half-closes its stream must not hold the shutdown forever.
        await new Promise<void>((resolve) => {
          const force = setTimeout(() => grpcServer.forceShutdown(), 5000);
          grpcServer.tryShutdown(() => {
            clearTimeout(force);
            resolve();
          });
        });
        await http.close();
        await retention.stop();
        await healthChecks.stop();
        await registry!.stop();
        await store.close();
        log.info('hive stopped');
      })();
      return stopped;
    },
  };
}
