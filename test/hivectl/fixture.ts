import { create } from '@bufbuild/protobuf';
import { createClient, type Client } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import { ControlService } from '../../gen/hive/v1/control_pb.js';
import { HeartbeatRequestSchema, HealthStatus, RegistryService } from '../../gen/hive/v1/registry_pb.js';
import { msToDuration } from '../../lib/duration.js';
import { createLogger } from '../../lib/logger.js';
import { loadHiveConfig } from '../../hive/config.js';
import { startHive, type HiveHandle } from '../../hive/server.js';
import { dropSchema, PG_URL, uniqueSchema } from '../support/pg.js';
import { tempDir } from '../support/procs.js';

// An in-process hive on PostgreSQL (a schema of its own) for the hivectl
// suites, and workers fed by heartbeats sent straight to it, so every
// number hivectl prints is known in advance.

export const ADMIN = 'admin-token-for-hivectl-tests';
const GIB = 1024n ** 3n;

export interface TestHive {
  hive: HiveHandle;
  url: string;
  registry: Client<typeof RegistryService>;
  control: Client<typeof ControlService>;
  /** Registers a worker and sends one heartbeat with the given stats; returns its token. */
  seed(id: string, opts?: SeedOpts): Promise<string>;
  beat(id: string, token: string, opts?: SeedOpts & { seq?: bigint; session?: string }): Promise<void>;
  stop(): Promise<void>;
}

export interface SeedOpts {
  labels?: Record<string, string>;
  intervalMs?: number;
  status?: HealthStatus;
  gpus?: number;
  detail?: string;
}

export const auth = (t: string) => ({ headers: { authorization: `Bearer ${t}` } });

export async function startTestHive(prefix: string): Promise<TestHive> {
  const schema = uniqueSchema(prefix);
  const dir = await tempDir();
  // Through the hive's own config loader, so settings added later keep their defaults.
  const config = loadHiveConfig(
    ['--grpc-addr', '127.0.0.1:0', '--http-addr', '127.0.0.1:0', '--data-dir', dir.path, '--database-url', PG_URL, '--database-schema', schema, '--admin-token', ADMIN, '--write-behind', '1s', '--log-level', 'silent'],
    {},
  );
  const hive = await startHive(config, { log: createLogger('test', 'silent') });
  const url = `http://127.0.0.1:${hive.httpPort}`;
  const transport = createConnectTransport({ baseUrl: url, httpVersion: '1.1' });
  const registry = createClient(RegistryService, transport);
  const control = createClient(ControlService, transport);
  const seqs = new Map<string, bigint>();
  const beat: TestHive['beat'] = async (id, token, opts = {}) => {
    const seq = opts.seq ?? (seqs.get(id) ?? 0n) + 1n;
    seqs.set(id, seq);
    const gpus = Array.from({ length: opts.gpus ?? 0 }, (_, i) => ({
      index: i,
      uuid: `GPU-${id}-${i}`,
      name: 'NVIDIA H100 80GB HBM3',
      memoryUsedBytes: 40n * GIB,
      memoryTotalBytes: 80n * GIB,
      utilization: 0.5,
      temperatureCelsius: 50,
    }));
    await registry.heartbeat(
      create(HeartbeatRequestSchema, {
        workerId: id,
        sessionId: opts.session ?? 'test-session',
        seq,
        status: opts.status ?? HealthStatus.HEALTHY,
        statusDetail: opts.detail ?? 'ok',
        gpus,
        memoryUsedBytes: 32n * GIB,
        memoryTotalBytes: 64n * GIB,
        disks: [{ path: '/', freeBytes: 100n * GIB, totalBytes: 1000n * GIB }],
        load1: 0.5,
        collectors: [{ name: 'memory', success: true }],
      }),
      auth(token),
    );
  };
  return {
    hive,
    url,
    registry,
    control,
    beat,
    async seed(id, opts = {}) {
      const { workerToken } = await registry.registerWorker(
        { workerId: id, labels: opts.labels ?? {}, heartbeatInterval: msToDuration(opts.intervalMs ?? 5000) },
        auth(ADMIN),
      );
      await beat(id, workerToken, opts);
      return workerToken;
    },
    async stop() {
      await hive.stop();
      await dropSchema(schema);
      await dir.remove();
    },
  };
}
