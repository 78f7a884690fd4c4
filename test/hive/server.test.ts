import { create, fromBinary } from '@bufbuild/protobuf';
import { FileDescriptorProtoSchema } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError, createClient } from '@connectrpc/connect';
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from '@connectrpc/connect-node';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Health, HealthCheckResponse_ServingStatus } from '../../gen/grpc/health/v1/health_pb.js';
import { ServerReflection } from '../../gen/grpc/reflection/v1/reflection_pb.js';
import { ServerReflection as ServerReflectionAlpha } from '../../gen/grpc/reflection/v1alpha/reflection_pb.js';
import { HeartbeatRequestSchema, RegistryService, TokenScope, WorkerChangeType, WorkerState } from '../../gen/hive/v1/registry_pb.js';
import { parseAddr } from '../../lib/config.js';
import { createLogger } from '../../lib/logger.js';
import { msToDuration, timestampToMs } from '../../lib/duration.js';
import { startHive, type HiveHandle } from '../../hive/server.js';
import { dropSchema, PG_URL, uniqueSchema } from '../support/pg.js';
import { tempDir } from '../support/procs.js';
import { createHiveApi } from '../../monitor/hive-client.js';
import { withHeartbeat } from '../../monitor/informer.js';
import { WATCH_BATCH_LIVENESS } from '../../hive/handlers.js';
import { workerPrincipal } from '../support/principals.js';

// One in-process hive on PostgreSQL, reached over every transport it
// serves: gRPC on the grpc-js port; Connect, gRPC-Web and gRPC on the HTTP
// port. Same handlers, same answers, same error codes.

describe('hive transports', () => {
  const schema = uniqueSchema('hive_srv');
  let hive: HiveHandle;
  let dir: Awaited<ReturnType<typeof tempDir>>;
  const auth = (t: string) => ({ headers: { authorization: `Bearer ${t}` } });

  beforeAll(async () => {
    dir = await tempDir();
    hive = await startHive(
      {
        grpcAddr: parseAddr('127.0.0.1:0'),
        httpAddr: parseAddr('127.0.0.1:0'),
        dataDir: dir.path,
        databaseUrl: PG_URL,
        databaseSchema: schema,
        adminToken: 'admin-token-for-transport-tests',
        joinTokens: [],
        writeBehind: 1000,
        eventRetention: 86_400_000,
        logLevel: 'silent',
      },
      { log: createLogger('test', 'silent') },
    );
  });
  afterAll(async () => {
    await hive?.stop();
    await dropSchema(schema);
    await dir?.remove();
  });

  const transports = () => ({
    'grpc (grpc-js port)': createGrpcTransport({ baseUrl: `http://127.0.0.1:${hive.grpcPort}` }),
    'grpc (http port, h2c)': createGrpcTransport({ baseUrl: `http://127.0.0.1:${hive.httpPort}` }),
    'connect json (http/1.1)': createConnectTransport({ baseUrl: `http://127.0.0.1:${hive.httpPort}`, httpVersion: '1.1', useBinaryFormat: false }),
    'grpc-web (http/1.1)': createGrpcWebTransport({ baseUrl: `http://127.0.0.1:${hive.httpPort}`, httpVersion: '1.1' }),
  });

  it('serves the same registry over every transport, with the same error codes', async () => {
    const admin = createClient(RegistryService, transports()['grpc (grpc-js port)']);
    const { workerToken } = await admin.registerWorker({ workerId: 'tx-1', heartbeatInterval: msToDuration(1000) }, auth(hive.adminToken));
    let seq = 0n;
    for (const [name, transport] of Object.entries(transports())) {
      const client = createClient(RegistryService, transport);
      const res = await client.heartbeat(create(HeartbeatRequestSchema, { workerId: 'tx-1', sessionId: 's', seq: ++seq, status: 1 }), auth(workerToken));
      expect(res.ackSeq, name).toBe(seq);
      const list = await client.listWorkers({}, auth(hive.adminToken));
      expect(list.workers.map((w) => w.workerId), name).toContain('tx-1');
      await expect(client.listWorkers({}), name).rejects.toMatchObject({ code: Code.Unauthenticated });
      await expect(client.listWorkers({}, auth(workerToken)), name).rejects.toMatchObject({ code: Code.PermissionDenied });
      await expect(client.getWorker({ workerId: 'nope' }, auth(hive.adminToken)), name).rejects.toMatchObject({ code: Code.NotFound });
      await expect(client.heartbeat(create(HeartbeatRequestSchema, { workerId: 'tx-1', sessionId: 's', seq, status: 1 }), auth(workerToken)), name).rejects.toMatchObject({
        code: Code.FailedPrecondition,
      });
    }
  });

  it('ends a stream the client cancels on the grpc-js port, and releases what it held', async () => {
    const client = createClient(RegistryService, transports()['grpc (grpc-js port)']);
    const before = hive.registry.hub.size;
    const ctl = new AbortController();
    const stream = client.watchWorkers({ omitStats: true }, { ...auth('admin-token-for-transport-tests'), signal: ctl.signal });
    const it = stream[Symbol.asyncIterator]();
    expect((await it.next()).value?.synced).toBe(true);
    expect(hive.registry.hub.size).toBe(before + 1);
    ctl.abort();
    await expect(it.next()).rejects.toThrow();
    // The hive hears the cancel and its handler unsubscribes.
    for (let i = 0; i < 100 && hive.registry.hub.size !== before; i++) await new Promise((r) => setTimeout(r, 20));
    expect(hive.registry.hub.size).toBe(before);
    // Unary calls that answered are not aborted afterwards: many in a row all succeed.
    const results = await Promise.all(Array.from({ length: 50 }, () => client.listWorkers({}, auth('admin-token-for-transport-tests'))));
    expect(results.every((r) => r.workers !== undefined)).toBe(true);
  });

  it('creates and revokes read tokens', async () => {
    const client = createClient(RegistryService, transports()['grpc (grpc-js port)']);
    const { token, info } = await client.createToken({ scope: TokenScope.READ, description: 'dashboards' }, auth(hive.adminToken));
    expect((await client.listWorkers({}, auth(token))).workers.length).toBeGreaterThan(0);
    await expect(client.deregisterWorker({ workerId: 'tx-1' }, auth(token))).rejects.toMatchObject({ code: Code.PermissionDenied });
    await client.revokeToken({ tokenId: info!.tokenId }, auth(hive.adminToken));
    await expect(client.listWorkers({}, auth(token))).rejects.toMatchObject({ code: Code.Unauthenticated });
  });

  it('answers grpc.health.v1 on both ports', async () => {
    for (const transport of [transports()['grpc (grpc-js port)'], transports()['connect json (http/1.1)']]) {
      const health = createClient(Health, transport);
      expect((await health.check({ service: '' })).status).toBe(HealthCheckResponse_ServingStatus.SERVING);
      expect((await health.check({ service: 'hive.v1.RegistryService' })).status).toBe(HealthCheckResponse_ServingStatus.SERVING);
      await expect(health.check({ service: 'nope.Service' })).rejects.toMatchObject({ code: Code.NotFound });
    }
  });

  it('answers server reflection v1 and v1alpha with our descriptors', async () => {
    for (const svc of [ServerReflection, ServerReflectionAlpha]) {
      const refl = createClient(svc as typeof ServerReflection, transports()['grpc (grpc-js port)']);
      async function* ask() {
        yield { messageRequest: { case: 'listServices' as const, value: '' } };
        yield { messageRequest: { case: 'fileContainingSymbol' as const, value: 'hive.v1.RegistryService' } };
        yield { messageRequest: { case: 'fileContainingSymbol' as const, value: 'no.such.Symbol' } };
      }
      const answers = [];
      for await (const a of refl.serverReflectionInfo(ask())) answers.push(a);
      const services = answers[0].messageResponse.case === 'listServicesResponse' ? answers[0].messageResponse.value.service.map((s) => s.name) : [];
      expect(services).toEqual(expect.arrayContaining(['hive.v1.RegistryService', 'hive.v1.ControlService', 'grpc.health.v1.Health']));
      expect(answers[1].messageResponse.case).toBe('fileDescriptorResponse');
      const files = answers[1].messageResponse.case === 'fileDescriptorResponse' ? answers[1].messageResponse.value.fileDescriptorProto.map((b) => fromBinary(FileDescriptorProtoSchema, b).name) : [];
      expect(files[0]).toBe('hive/v1/registry.proto');
      expect(files).toEqual(expect.arrayContaining(['google/protobuf/duration.proto', 'hive/v1/policy.proto']));
      expect(answers[2].messageResponse.case).toBe('errorResponse');
    }
  });

  it('rejects malformed and oversized protobuf bytes on the grpc-js port with InvalidArgument', async () => {
    const client = new grpc.Client(`127.0.0.1:${hive.grpcPort}`, grpc.credentials.createInsecure());
    const raw = (bytes: Buffer) =>
      new Promise<grpc.ServiceError | null>((resolve) => {
        const md = new grpc.Metadata();
        md.set('authorization', `Bearer ${hive.adminToken}`);
        client.makeUnaryRequest('/hive.v1.RegistryService/GetWorker', (b: Buffer) => b, (b: Buffer) => b, bytes, md, (err) => resolve(err));
      });
    expect((await raw(Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f])))?.code).toBe(grpc.status.INVALID_ARGUMENT);
    const big = Buffer.concat([Buffer.from([0x0a, 0x80, 0x80, 0x05]), Buffer.alloc(80 * 1024, 0x61)]);
    expect((await raw(big))?.code).toBe(grpc.status.INVALID_ARGUMENT);
    client.close();
  });

  it('serves /healthz and /metrics', async () => {
    const h = await fetch(`http://127.0.0.1:${hive.httpPort}/healthz`);
    expect(h.status).toBe(200);
    expect(await h.json()).toEqual({ status: 'ok', problems: [] });
    const m = await (await fetch(`http://127.0.0.1:${hive.httpPort}/metrics`)).text();
    expect(m).toMatch(/hive_heartbeats_received_total\{result="ok"\} [1-9]/);
  });

  it('ConnectError from the agent side carries the rawMessage, never a token', async () => {
    const client = createClient(RegistryService, transports()['connect json (http/1.1)']);
    const err = await client.listWorkers({}, auth('hive_read_not-a-real-token')).catch((e) => e as ConnectError);
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).rawMessage).not.toContain('not-a-real-token');
  });

  it('a burst of heartbeats in one turn reaches a liveness watcher as one message, coalesced, none lost, complete through all of them', async () => {
    const admin = createClient(RegistryService, transports()['grpc (grpc-js port)']);
    const n = 2100;
    const ids = Array.from({ length: n }, (_, i) => `burst-${String(i).padStart(5, '0')}`);
    for (let i = 0; i < n; i += 100) {
      await Promise.all(ids.slice(i, i + 100).map((workerId) => admin.registerWorker({ workerId, labels: { pool: 'burst' }, heartbeatInterval: msToDuration(1000) }, auth(hive.adminToken))));
    }
    const beat = (workerId: string, seq: bigint) => hive.registry.heartbeat(workerPrincipal(hive.registry, workerId), create(HeartbeatRequestSchema, { workerId, sessionId: 's', seq, status: 1 }));
    await Promise.all(ids.map((id) => beat(id, 1n)));

    const ctl = new AbortController();
    const iter = createHiveApi(`127.0.0.1:${hive.grpcPort}`, hive.adminToken).watch(ctl.signal, 'pool=burst')[Symbol.asyncIterator]();
    let msg = (await iter.next()).value!;
    while (!msg.synced) msg = (await iter.next()).value!;
    // One turn of the event loop: every worker heartbeats once more.
    for (const id of ids) void beat(id, 2n);
    const sizes: number[] = [];
    const seen = new Map<string, bigint>();
    let lastSeen = 0;
    while (seen.size < n) {
      msg = (await iter.next()).value!;
      if (msg.changes.length === 0) continue; // a progress message
      sizes.push(msg.changes.length);
      for (const c of msg.changes) {
        seen.set(c.worker!.workerId, c.worker!.lastSeq);
        lastSeen = Math.max(lastSeen, timestampToMs(c.worker!.lastSeen)!);
      }
    }
    ctl.abort();
    expect(sizes).toEqual([n]);
    expect(n).toBeLessThan(WATCH_BATCH_LIVENESS);
    expect([...seen.values()].every((seq) => seq === 2n)).toBe(true);
    expect(timestampToMs(msg.completeThrough)).toBeGreaterThanOrEqual(lastSeen);
  });

  it('WatchWorkers says how far the view is complete: from the snapshot on, past every heartbeat it carries, and every progress_interval in a quiet registry', async () => {
    const admin = createClient(RegistryService, transports()['grpc (grpc-js port)']);
    await admin.registerWorker({ workerId: 'w-ct', labels: { pool: 'ct' }, heartbeatInterval: msToDuration(60_000) }, auth(hive.adminToken));
    const ctl = new AbortController();
    const iter = admin
      .watchWorkers({ labelSelector: 'pool=ct', omitStats: true, heartbeatDeltas: true, progressInterval: msToDuration(20) }, { ...auth(hive.adminToken), signal: ctl.signal })
      [Symbol.asyncIterator]();
    const through = (m: { completeThrough?: Parameters<typeof timestampToMs>[0] }) => timestampToMs(m.completeThrough)!;
    const synced = (await iter.next()).value!;
    expect(synced.synced).toBe(true);
    expect(through(synced)).toBeLessThanOrEqual(timestampToMs(synced.hiveTime)!);
    const quiet = [(await iter.next()).value!, (await iter.next()).value!];
    expect(quiet.map((m) => m.changes.length)).toEqual([0, 0]);
    expect(through(quiet[0])).toBeGreaterThan(through(synced));
    expect(through(quiet[1])).toBeGreaterThan(through(quiet[0]));
    await hive.registry.heartbeat(workerPrincipal(hive.registry, 'w-ct'), create(HeartbeatRequestSchema, { workerId: 'w-ct', sessionId: 's', seq: 1n, status: 1 }));
    let msg = (await iter.next()).value!;
    while (msg.changes.length === 0) msg = (await iter.next()).value!;
    expect(msg.changes[0].worker!.workerId).toBe('w-ct');
    expect(through(msg)).toBeGreaterThanOrEqual(timestampToMs(msg.changes[0].worker!.lastSeen)!);
    ctl.abort();
    for (const ms of [5, 61_000]) {
      const err = await (async () => {
        for await (const _ of admin.watchWorkers({ progressInterval: msToDuration(ms) }, auth(hive.adminToken))) void _;
      })().catch((e: unknown) => e);
      expect(ConnectError.from(err).code).toBe(Code.InvalidArgument);
      expect(ConnectError.from(err).rawMessage).toContain('progress_interval must be between 10 ms and 60 s');
    }
  });

  it('WatchWorkers with omit_stats sends workers without stats; with heartbeat_deltas a heartbeat is its liveness fields only; the monitor watches both ways', async () => {
    const admin = createClient(RegistryService, transports()['grpc (grpc-js port)']);
    const reg = await admin.registerWorker({ workerId: 'w-slim', heartbeatInterval: msToDuration(5000), labels: { pool: 'slim' } }, auth(hive.adminToken));
    const worker = createClient(RegistryService, transports()['grpc (grpc-js port)']);
    const beat = (seq: bigint) =>
      worker.heartbeat(
        { workerId: 'w-slim', sessionId: 's', seq, status: 1, statusDetail: 'warm', memoryUsedBytes: 1n, memoryTotalBytes: 2n, gpus: [{ index: 0, uuid: 'GPU-1', name: 'H100', memoryUsedBytes: 1n, memoryTotalBytes: 2n }] },
        auth(reg.workerToken),
      );
    await beat(1n);

    /** The snapshot's change and the change a heartbeat brings next. */
    const watchOne = async (how: 'full' | 'slim' | 'monitor') => {
      const ctl = new AbortController();
      const it =
        how === 'monitor'
          ? createHiveApi(`127.0.0.1:${hive.grpcPort}`, hive.adminToken).watch(ctl.signal, 'pool=slim')
          : admin.watchWorkers({ labelSelector: 'pool=slim', omitStats: how === 'slim' }, { ...auth(hive.adminToken), signal: ctl.signal });
      const iter = it[Symbol.asyncIterator]();
      const snapshot = (await iter.next()).value!;
      const seq = BigInt(Date.now());
      const next = (await beat(seq).then(() => iter.next())).value!;
      ctl.abort();
      return { snapshot: snapshot.changes[0]!, next: next.changes[0]!, seq };
    };
    const full = await watchOne('full');
    expect(full.snapshot.worker?.stats?.gpus).toHaveLength(1);
    expect(full.next.type).toBe(WorkerChangeType.UPDATED);
    expect(full.next.worker?.stats?.gpus).toHaveLength(1);
    expect(full.next.worker?.labels).toEqual({ pool: 'slim' });

    const slim = await watchOne('slim');
    for (const c of [slim.snapshot, slim.next]) {
      expect(c.worker?.stats).toBeUndefined();
      expect(c.worker?.labels).toEqual({ pool: 'slim' });
      expect(c.worker?.heartbeatInterval?.seconds).toBe(5n);
    }
    expect(slim.next.type).toBe(WorkerChangeType.UPDATED);

    const mon = await watchOne('monitor');
    expect(mon.snapshot.type).toBe(WorkerChangeType.ADDED);
    expect(mon.snapshot.worker).toMatchObject({ workerId: 'w-slim', labels: { pool: 'slim' }, sessionId: 's', state: WorkerState.HEALTHY });
    expect(mon.snapshot.worker?.stats).toBeUndefined();
    expect(mon.snapshot.worker?.heartbeatInterval?.seconds).toBe(5n);
    expect(mon.next.type).toBe(WorkerChangeType.HEARTBEAT);
    const delta = mon.next.worker!;
    expect(delta).toMatchObject({ workerId: 'w-slim', lastSeq: mon.seq, sessionId: 's', status: 1, statusDetail: 'warm' });
    expect(delta.stats).toBeUndefined();
    expect(delta.lastSeen).toBeDefined();
    // Nothing else: the watcher keeps those from the worker it has.
    expect(delta).toMatchObject({ state: WorkerState.UNSPECIFIED, labels: {}, connected: false, dependsOn: [] });
    expect([delta.heartbeatInterval, delta.registeredAt, delta.stateSince, delta.restartPolicy]).toEqual([undefined, undefined, undefined, undefined]);
    expect(withHeartbeat(mon.snapshot.worker!, delta)).toEqual({ ...mon.snapshot.worker, lastSeen: delta.lastSeen, lastSeq: mon.seq, statusDetail: 'warm' });
  });
});
