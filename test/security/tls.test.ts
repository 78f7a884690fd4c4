import { create } from '@bufbuild/protobuf';
import { Code, ConnectError, createClient, type Transport } from '@connectrpc/connect';
import { createConnectTransport, createGrpcTransport } from '@connectrpc/connect-node';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HeartbeatRequestSchema, RegistryService, WorkerState } from '../../gen/hive/v1/registry_pb.js';
import { loadHiveConfig } from '../../hive/config.js';
import { startHive, type HiveHandle } from '../../hive/server.js';
import { parseAddr } from '../../lib/config.js';
import { msToDuration } from '../../lib/duration.js';
import { createLogger } from '../../lib/logger.js';
import { createClients, resolveConnection } from '../../hivectl/client.js';
import { loadClientTls } from '../../lib/tls-client.js';
import { createHiveApi } from '../../monitor/hive-client.js';
import { pki } from '../support/certs.js';
import { dropSchema, PG_URL, uniqueSchema } from '../support/pg.js';
import { eventually, startProc, tempDir, type Proc } from '../support/procs.js';

// Transport security with a throwaway PKI: both ports speak TLS only, the
// agent verifies the hive's certificate, and under mutual TLS a worker's
// certificate must name the worker it speaks for.

const JOIN = 'join-token-for-tls-tests-0001';
const ADMIN = 'admin-token-for-tls-tests-0001';

describe('TLS and mutual TLS on both hive ports', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let certs: ReturnType<typeof pki>;
  const schemas: string[] = [];
  const hives: HiveHandle[] = [];
  const procs: Proc[] = [];
  let server: { cert: string; key: string };
  let w1: { cert: string; key: string };
  let w2: { cert: string; key: string };
  let ops: { cert: string; key: string };
  let rogue: { cert: string; key: string };

  async function hive(mutual: boolean): Promise<HiveHandle> {
    const schema = uniqueSchema('hive_tls');
    schemas.push(schema);
    const h = await startHive(
      {
        grpcAddr: parseAddr('127.0.0.1:0'),
        httpAddr: parseAddr('127.0.0.1:0'),
        dataDir: dir.path,
        databaseUrl: PG_URL,
        databaseSchema: schema,
        adminToken: ADMIN,
        joinTokens: [JOIN],
        writeBehind: 1000,
        eventRetention: 86_400_000,
        logLevel: 'silent',
        tlsCert: server.cert,
        tlsKey: server.key,
        tlsClientCa: mutual ? certs.ca('clients-ca') : undefined,
      },
      { log: createLogger('test', 'silent') },
    );
    hives.push(h);
    return h;
  }

  const read = (f: string) => readFileSync(f);
  const tlsOpts = (ca: string | null, client?: { cert: string; key: string }) => ({
    ...(ca ? { ca: read(ca) } : {}),
    ...(client ? { cert: read(client.cert), key: read(client.key) } : {}),
  });
  const grpcT = (port: number, ca: string | null, client?: { cert: string; key: string }): Transport =>
    createGrpcTransport({ baseUrl: `https://127.0.0.1:${port}`, nodeOptions: tlsOpts(ca, client) });
  const connectT = (port: number, ca: string | null, client?: { cert: string; key: string }): Transport =>
    createConnectTransport({ baseUrl: `https://127.0.0.1:${port}`, httpVersion: '1.1', nodeOptions: tlsOpts(ca, client) });
  const auth = (t: string) => ({ headers: { authorization: `Bearer ${t}` }, timeoutMs: 5000 });
  const codeOf = async (p: Promise<unknown>) => {
    try {
      await p;
      return 'ok';
    } catch (err) {
      return Code[ConnectError.from(err).code];
    }
  };

  beforeAll(async () => {
    dir = await tempDir('hive-tls-');
    certs = pki(dir.path);
    await certs.makeCa('server-ca');
    await certs.makeCa('clients-ca');
    await certs.makeCa('rogue-ca');
    server = await certs.issue('server-ca', 'hive', { cn: 'hive', san: 'IP:127.0.0.1,DNS:localhost', server: true });
    w1 = await certs.issue('clients-ca', 'w1', { cn: 'tls-w1' });
    w2 = await certs.issue('clients-ca', 'w2', { cn: 'tls-w2', san: 'DNS:tls-w2' });
    ops = await certs.issue('clients-ca', 'ops', { cn: 'ops-admin' });
    rogue = await certs.issue('rogue-ca', 'rogue', { cn: 'tls-w1' });
  }, 60_000);

  afterAll(async () => {
    await Promise.all(procs.map((p) => p.kill('SIGKILL')));
    for (const h of hives) await h.stop();
    for (const s of schemas) await dropSchema(s);
    await dir?.remove();
  });

  it('reads the TLS settings from flags and environment and reports a half-given pair', () => {
    expect(() => loadHiveConfig(['--tls-cert', server.cert], {})).toThrow(/must be given together/);
    expect(() => loadHiveConfig(['--tls-client-ca', certs.ca('clients-ca')], {})).toThrow(/needs --tls-cert/);
    expect(() => loadHiveConfig(['--tls-cert', join(dir.path, 'missing.pem'), '--tls-key', server.key], {})).toThrow(/cannot read/);
    const c = loadHiveConfig([], { HIVE_TLS_CERT: server.cert, HIVE_TLS_KEY: server.key, HIVE_TLS_CLIENT_CA: certs.ca('clients-ca') });
    expect(c).toMatchObject({ tlsCert: server.cert, tlsKey: server.key, tlsClientCa: certs.ca('clients-ca') });
  });

  it('TLS: verified clients work on both ports; plaintext and a wrong CA are refused', async () => {
    const h = await hive(false);
    for (const port of [h.grpcPort, h.httpPort]) {
      const good = createClient(RegistryService, grpcT(port, certs.ca('server-ca')));
      expect((await good.listWorkers({}, auth(ADMIN))).workers).toEqual([]);
      // Connect JSON over HTTP/1.1 on the HTTP port (curl --cacert).
      if (port === h.httpPort) expect((await createClient(RegistryService, connectT(port, certs.ca('server-ca'))).listWorkers({}, auth(ADMIN))).totalSize).toBe(0);
      const plain = createClient(RegistryService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}` }));
      expect(await codeOf(plain.listWorkers({}, auth(ADMIN)))).not.toBe('ok');
      const plainH1 = createClient(RegistryService, createConnectTransport({ baseUrl: `http://127.0.0.1:${port}`, httpVersion: '1.1' }));
      expect(await codeOf(plainH1.listWorkers({}, auth(ADMIN)))).not.toBe('ok');
      // A client that trusts another CA does not accept the hive's certificate.
      const wrongCa = createClient(RegistryService, grpcT(port, certs.ca('rogue-ca')));
      const err = await wrongCa.listWorkers({}, auth(ADMIN)).catch((e) => ConnectError.from(e));
      expect(err).toBeInstanceOf(ConnectError);
      expect(`${(err as ConnectError).message} ${String((err as ConnectError).cause)}`).toMatch(/certificate/i);
    }
  });

  it('mutual TLS: no certificate or a foreign CA is refused; a worker certificate must name its worker', async () => {
    const h = await hive(true);
    const adminGrpc = createClient(RegistryService, grpcT(h.grpcPort, certs.ca('server-ca'), ops));
    // Join with the worker's own certificate: allowed. Join as another worker with it: refused.
    const joinAs = (client: typeof adminGrpc, id: string) => client.registerWorker({ workerId: id, heartbeatInterval: msToDuration(1000) }, auth(JOIN));
    const w1Grpc = createClient(RegistryService, grpcT(h.grpcPort, certs.ca('server-ca'), w1));
    const w2Grpc = createClient(RegistryService, grpcT(h.grpcPort, certs.ca('server-ca'), w2));
    const t1 = (await joinAs(w1Grpc, 'tls-w1')).workerToken;
    const t2 = (await joinAs(w2Grpc, 'tls-w2')).workerToken;
    expect(await codeOf(joinAs(w1Grpc, 'tls-w3'))).toBe('PermissionDenied');
    expect((await adminGrpc.getWorker({ workerId: 'tls-w3' }, auth(ADMIN)).catch((e) => ConnectError.from(e))) instanceof ConnectError).toBe(true);

    const beat = (seq: bigint, status = 1) => create(HeartbeatRequestSchema, { workerId: 'tls-w1', sessionId: 'mtls', seq, status });
    let seq = 0n;
    for (const port of [h.grpcPort, h.httpPort]) {
      const own = createClient(RegistryService, grpcT(port, certs.ca('server-ca'), w1));
      const other = createClient(RegistryService, grpcT(port, certs.ca('server-ca'), w2));
      seq += 10n;
      expect((await own.heartbeat(beat(seq), auth(t1))).ackSeq).toBe(seq);
      // The token is w1's, the certificate w2's: a stolen token is not enough.
      const before = (await adminGrpc.getWorker({ workerId: 'tls-w1' }, auth(ADMIN))).worker!;
      expect(await codeOf(other.heartbeat(beat(seq + 1n, 3), auth(t1)))).toBe('PermissionDenied');
      expect(await codeOf(other.leave({ workerId: 'tls-w1' }, auth(t1)))).toBe('PermissionDenied');
      const after = (await adminGrpc.getWorker({ workerId: 'tls-w1' }, auth(ADMIN))).worker!;
      expect(after.lastSeq).toBe(before.lastSeq);
      expect(after.state).toBe(WorkerState.HEALTHY);
      // w2's own token with w2's certificate still works.
      expect(await codeOf(other.heartbeat(create(HeartbeatRequestSchema, { workerId: 'tls-w2', sessionId: 'm', seq, status: 1 }), auth(t2)))).toBe('ok');

      const noCert = createClient(RegistryService, grpcT(port, certs.ca('server-ca')));
      expect(await codeOf(noCert.listWorkers({}, auth(ADMIN)))).not.toBe('ok');
      const foreign = createClient(RegistryService, grpcT(port, certs.ca('server-ca'), rogue));
      expect(await codeOf(foreign.heartbeat(beat(seq + 2n), auth(t1)))).not.toBe('ok');
      const plain = createClient(RegistryService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}` }));
      expect(await codeOf(plain.listWorkers({}, auth(ADMIN)))).not.toBe('ok');
    }
    expect((await adminGrpc.getWorker({ workerId: 'tls-w1' }, auth(ADMIN))).worker!.lastSeq).toBe(20n);

    // The monitor and hivectl carry a CA and a client certificate too.
    const monitorApi = createHiveApi(`127.0.0.1:${h.grpcPort}`, ADMIN, { tls: loadClientTls({ tlsCa: certs.ca('server-ca'), tlsCert: ops.cert, tlsKey: ops.key }) });
    expect(await monitorApi.listSilences()).toEqual([]);
    const ctl = createClients(resolveConnection({ hiveUrl: `https://127.0.0.1:${h.httpPort}`, token: ADMIN, timeoutMs: 5000 }, { HIVE_TLS_CA: certs.ca('server-ca'), HIVE_TLS_CLIENT_CERT: ops.cert, HIVE_TLS_CLIENT_KEY: ops.key }));
    expect((await ctl.registry.listWorkers({}, { timeoutMs: 5000 })).totalSize).toBe(2);
    expect(() => resolveConnection({ hiveUrl: `http://127.0.0.1:${h.httpPort}`, tlsCa: certs.ca('server-ca'), timeoutMs: 1 }, {})).toThrow(/not https/);
  });

  it('a real agent verifies the hive and heartbeats over mutual TLS; with the wrong CA it never connects', async () => {
    const h = await hive(true);
    const admin = createClient(RegistryService, grpcT(h.grpcPort, certs.ca('server-ca'), ops));
    const agent = (id: string, ca: string, cert: { cert: string; key: string }) => {
      const p = startProc('worker-agent.mjs', [
        '--hive', `127.0.0.1:${h.grpcPort}`, '--join-token', JOIN, '--worker-id', id, '--interval', '300ms',
        '--token-file', join(dir.path, `${id}-${h.grpcPort}.token`), '--metrics-addr', '127.0.0.1:0',
        '--tls-ca', ca, '--tls-cert', cert.cert, '--tls-key', cert.key,
      ], { LOG_LEVEL: 'warn' });
      procs.push(p);
      return p;
    };
    agent('tls-w1', certs.ca('server-ca'), w1);
    const distrustful = agent('tls-w2', certs.ca('rogue-ca'), w2);
    await eventually(async () => (await admin.getWorker({ workerId: 'tls-w1' }, auth(ADMIN))).worker?.state === WorkerState.HEALTHY, 30_000, 'tls-w1 healthy over mTLS');
    // The agent that distrusts the hive's certificate says why, and registered nothing.
    await distrustful.waitForLog((e) => /certificate/i.test(String(e.err ?? '')), 20_000);
    expect((await admin.listWorkers({}, auth(ADMIN))).workers.map((w) => w.workerId)).toEqual(['tls-w1']);
  }, 60_000);
});
