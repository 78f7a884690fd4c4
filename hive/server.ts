import * as grpc from '@grpc/grpc-js';
import { Registry as PromRegistry } from 'prom-client';
import { TokenScope } from '../gen/hive/v1/registry_pb.js';
import { systemClock, type Clock } from '../lib/clock.js';
import type { Logger } from '../lib/logger.js';
import { resolveAdminToken } from './admin-token.js';
import type { HiveConfig } from './config.js';
import { addService, listenGrpc } from './grpc-server.js';
import { createHealthState } from './health-service.js';
import { createHttpHandler, listenHttp } from './http-server.js';
import { createHiveMetrics } from './metrics.js';
import { createRegistry, type Registry } from './registry.js';
import { createRetentionSweep } from './retention.js';
import { createServices } from './routes.js';
import { createStatusPages } from './status-page.js';
import { createMemoryLiveState } from './live-memory.js';
import { createRedisLiveState } from './live-redis.js';
import type { LiveState } from './live-state.js';
import { openStore } from './store/open.js';
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

  const store = await openStore({ databaseUrl: config.databaseUrl, dataDir: config.dataDir, schema: config.databaseSchema });
  const live: LiveState = config.redisUrl
    ? createRedisLiveState({ url: config.redisUrl, prefix: config.redisPrefix ?? 'hive', log: log.child({ component: 'live-state' }) })
    : createMemoryLiveState();
  try {
    registry = await createRegistry({
      store,
      clock,
      live,
      configTokenIds: (id) => id === 'admin' || id.startsWith('config-join-'),
      log: log.child({ component: 'registry' }),
      writeBehindMs: config.writeBehind,
      onEvent: metrics.event,
      onFlush: metrics.flushed,
    });
  } catch (err) {
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
  });

  const grpcServer = new grpc.Server({
    'grpc.max_receive_message_length': LIMITS.maxMessageBytes * 4,
    'grpc.keepalive_time_ms': 60_000,
    'grpc.keepalive_permit_without_calls': 1,
    'grpc.http2.min_ping_interval_without_data_ms': 10_000,
  });
  for (const m of mounted) addService(grpcServer, m.service, m.impl, { log, maxMessageBytes: LIMITS.maxMessageBytes, keepHeartbeatBytes: live.kind !== 'memory' });
  const grpcPort = await listenGrpc(grpcServer, `${config.grpcAddr.host}:${config.grpcAddr.port}`);

  const http = await listenHttp(
    createHttpHandler({
      mounted,
      log,
      prom,
      maxMessageBytes: LIMITS.maxMessageBytes,
      shutdownSignal: shutdown.signal,
      pages: createStatusPages(),
      degradations: () => {
        const d = registry!.live.degraded();
        return d === null ? [] : [`live state: ${d}`];
      },
      healthProblems: async () => {
        const problems: string[] = [];
        if (!health.serving()) problems.push('not serving');
        try {
          await store.ping();
        } catch (err) {
          problems.push(`database: ${(err as Error).message}`);
        }
        return problems;
      },
    }),
    config.httpAddr.host,
    config.httpAddr.port,
  );
  const retention = createRetentionSweep({ store, clock, log: log.child({ component: 'retention' }), retentionMs: config.eventRetention });
  await registry.start();
  retention.start();
  health.set(true);
  log.info({ grpc: `${config.grpcAddr.host}:${grpcPort}`, http: `${config.httpAddr.host}:${http.port}`, workers: registry.workers.size, store: config.databaseUrl ? 'postgresql' : 'pglite', live: live.kind, replica: live.replicaId }, 'hive serving');

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
        registry!.hub.closeAll();
        await new Promise<void>((resolve) => grpcServer.tryShutdown(() => resolve()));
        await http.close();
        await retention.stop();
        await registry!.stop();
        await store.close();
        log.info('hive stopped');
      })();
      return stopped;
    },
  };
}
