import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, spawnChild, spawnNode, waitForPort, type Child } from './spawn.js';

// The servers under test, each its own process on 127.0.0.1: the hive (the
// real bin, PostgreSQL store), the no-op grpc-js server (the floor) and etcd
// (the industrial peer).

export interface Server {
  name: string;
  child: Child;
  port: number;
  addr: string;
  /** Date.now() at spawn. */
  spawnedAt: number;
  stop(): Promise<void>;
}

export interface HiveServer extends Server {
  adminToken: string;
  joinToken: string;
  httpPort: number;
  schema: string;
}

export const ETCD_BIN = process.env.ETCD_BIN || '/usr/bin/etcd';

export async function startNoop(opts: { nodeArgs?: string[] } = {}): Promise<Server> {
  const port = await freePort();
  const spawnedAt = Date.now();
  const child = spawnNode('noop-server', 'bench/noop-server.ts', ['--port', String(port)], { nodeArgs: opts.nodeArgs });
  await waitForPort(port, 30_000, child);
  return { name: 'noop', child, port, addr: `127.0.0.1:${port}`, spawnedAt, stop: () => child.stop() };
}

export function etcdMissing(): string | null {
  return existsSync(ETCD_BIN) ? null : `etcd not found at ${ETCD_BIN} (Debian: apt-get install etcd-server; or set ETCD_BIN)`;
}

export async function startEtcd(): Promise<Server> {
  const [client, peer] = [await freePort(), await freePort()];
  const dir = await mkdtemp(join(tmpdir(), 'hive-bench-etcd-'));
  const c = `http://127.0.0.1:${client}`;
  const p = `http://127.0.0.1:${peer}`;
  const spawnedAt = Date.now();
  const child = spawnChild('etcd', ETCD_BIN, [
    '--name', 'bench',
    '--data-dir', dir,
    '--listen-client-urls', c,
    '--advertise-client-urls', c,
    '--listen-peer-urls', p,
    '--initial-advertise-peer-urls', p,
    '--initial-cluster', `bench=${p}`,
    '--initial-cluster-state', 'new',
    '--logger', 'zap',
    '--log-level', 'warn',
  ]);
  try {
    await waitForPort(client, 30_000, child);
  } catch (err) {
    await child.stop();
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    name: 'etcd',
    child,
    port: client,
    addr: `127.0.0.1:${client}`,
    spawnedAt,
    async stop() {
      await child.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export interface HiveOptions {
  databaseUrl: string;
  schema: string;
  nodeArgs?: string[];
  env?: Record<string, string>;
  args?: string[];
  /** Do not wait for the port (cold-start measurement waits itself). */
  noWait?: boolean;
  grpcPort?: number;
}

export async function startHive(opts: HiveOptions): Promise<HiveServer> {
  const grpcPort = opts.grpcPort ?? (await freePort());
  const httpPort = await freePort();
  const dataDir = await mkdtemp(join(tmpdir(), 'hive-bench-data-'));
  const adminToken = `hive_adm_bench_${randomBytes(16).toString('hex')}`;
  const joinToken = `hive_join_bench_${randomBytes(16).toString('hex')}`;
  const spawnedAt = Date.now();
  const child = spawnNode(
    'hive',
    'bin/hive.mjs',
    [
      '--grpc-addr', `127.0.0.1:${grpcPort}`,
      '--http-addr', `127.0.0.1:${httpPort}`,
      '--database-url', opts.databaseUrl,
      '--database-schema', opts.schema,
      '--data-dir', dataDir,
      ...(opts.args ?? []),
    ],
    {
      // BENCH_HIVE_NODE_ARGS: extra node flags for every hive the bench starts (trying V8 settings).
      nodeArgs: [...(process.env.BENCH_HIVE_NODE_ARGS?.split(' ').filter(Boolean) ?? []), ...(opts.nodeArgs ?? [])],
      // Closed-loop streams send as fast as acknowledged, far past an agent's
      // rate: the per-token limit stays on (its cost is measured) but high
      // enough that no stream reaches it.
      env: { LOG_LEVEL: 'warn', HIVE_ADMIN_TOKEN: adminToken, HIVE_JOIN_TOKENS: joinToken, HIVE_RATE_LIMIT: '1000000', HIVE_RATE_BURST: '1000000', ...opts.env },
    },
  );
  const server: HiveServer = {
    name: 'hive',
    child,
    port: grpcPort,
    addr: `127.0.0.1:${grpcPort}`,
    httpPort,
    adminToken,
    joinToken,
    schema: opts.schema,
    spawnedAt,
    async stop() {
      await child.stop(15_000);
      await rm(dataDir, { recursive: true, force: true });
    },
  };
  if (!opts.noWait) {
    try {
      await waitForPort(grpcPort, 120_000, child);
    } catch (err) {
      await server.stop();
      throw err;
    }
  }
  return server;
}
