import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, freePort, ROOT, startHiveProc, startProc, tempDir, type HiveProc, type Proc } from '../support/procs.js';

// The foundation end to end: a real hive (embedded PGlite), real agents as
// child processes, a plain grpc-js client built from proto/ with
// proto-loader, and curl over Connect JSON.

const run = promisify(execFile);
const JOIN = 'join-token-for-e2e-tests-0001';

type AnyClient = grpc.Client & Record<string, (...args: unknown[]) => unknown>;

function loadRegistryClient(addr: string): AnyClient {
  const def = protoLoader.loadSync('hive/v1/registry.proto', { includeDirs: [join(ROOT, 'proto')], keepCase: false, longs: String, enums: String, defaults: true });
  const pkg = grpc.loadPackageDefinition(def) as unknown as { hive: { v1: { RegistryService: grpc.ServiceClientConstructor } } };
  return new pkg.hive.v1.RegistryService(addr, grpc.credentials.createInsecure()) as unknown as AnyClient;
}

function call<T>(client: AnyClient, method: string, req: object, token?: string): Promise<T> {
  const md = new grpc.Metadata();
  if (token) md.set('authorization', `Bearer ${token}`);
  return new Promise((resolve, reject) => client[method](req, md, (err: grpc.ServiceError | null, res: T) => (err ? reject(err) : resolve(res))));
}

async function curlJson(url: string, body: object, token?: string): Promise<{ status: number; json: Record<string, unknown> }> {
  const args = ['-s', '-w', '\n%{http_code}', '-H', 'content-type: application/json', '-d', JSON.stringify(body), url];
  if (token) args.unshift('-H', `authorization: Bearer ${token}`);
  const { stdout } = await run('curl', args);
  const i = stdout.lastIndexOf('\n');
  return { status: Number(stdout.slice(i + 1)), json: JSON.parse(stdout.slice(0, i)) };
}

interface WorkerJson {
  workerId: string;
  state: string;
  lastSeq: string;
  sessionId: string;
  stats?: { memoryTotalBytes: string; memoryUsedBytes: string; disks: Array<{ path: string; totalBytes: string }> };
}

describe('hive + agents end to end (embedded store)', () => {
  let dir: { path: string; remove: () => Promise<void> };
  let hive: HiveProc;
  let admin: string;
  let client: AnyClient;
  const agents: Proc[] = [];

  const startAgent = (id: string, extra: string[] = []) => {
    const a = startProc('worker-agent.mjs', [
      '--hive', hive.grpcAddr, '--join-token', JOIN, '--worker-id', id, '--interval', '500ms',
      '--label', 'pool=e2e', '--token-file', join(dir.path, `${id}.token`), '--metrics-addr', '127.0.0.1:0', ...extra,
    ]);
    agents.push(a);
    return a;
  };
  const workers = async () => (await call<{ workers: WorkerJson[] }>(client, 'listWorkers', {}, admin)).workers;
  const worker = async (id: string) => (await call<{ worker: WorkerJson }>(client, 'getWorker', { workerId: id }, admin)).worker;
  let ports: { grpc: number; http: number };
  const startTheHive = async () => {
    // Fixed ports: after a restart the agents must find the hive where it was.
    ports ??= { grpc: await freePort(), http: await freePort() };
    hive = await startHiveProc(['--data-dir', join(dir.path, 'data'), '--join-token', JOIN], {}, ports);
    client?.close();
    client = loadRegistryClient(hive.grpcAddr);
  };

  beforeAll(async () => {
    dir = await tempDir();
    await startTheHive();
    admin = (await readFile(join(dir.path, 'data', 'admin-token'), 'utf8')).trim();
    startAgent('gpu-a');
    startAgent('gpu-b');
  }, 90_000);

  afterAll(async () => {
    client?.close();
    await Promise.all(agents.map((a) => a.kill('SIGKILL')));
    await hive?.kill('SIGKILL');
    await dir?.remove();
  });

  it('two agents appear HEALTHY with memory and disk stats', async () => {
    const ws = await eventually(async () => {
      const list = await workers();
      return list.length === 2 && list.every((w) => w.state === 'WORKER_STATE_HEALTHY' && w.stats) ? list : null;
    }, 30_000, 'two healthy workers');
    expect(ws.map((w) => w.workerId).sort()).toEqual(['gpu-a', 'gpu-b']);
    for (const w of ws) {
      expect(BigInt(w.stats!.memoryTotalBytes)).toBeGreaterThan(0n);
      expect(BigInt(w.stats!.memoryUsedBytes)).toBeGreaterThan(0n);
      expect(w.stats!.disks[0].path).toBe('/');
      expect(BigInt(w.stats!.disks[0].totalBytes)).toBeGreaterThan(0n);
    }
  });

  it('curl with Connect JSON lists the workers', async () => {
    const res = await curlJson(`${hive.httpUrl}/hive.v1.RegistryService/ListWorkers`, { labelSelector: 'pool=e2e' }, admin);
    expect(res.status).toBe(200);
    expect((res.json.workers as WorkerJson[]).map((w) => w.workerId).sort()).toEqual(['gpu-a', 'gpu-b']);
  });

  it('rejects a call without a token as Unauthenticated, on both ports', async () => {
    await expect(call(client, 'listWorkers', {})).rejects.toMatchObject({ code: grpc.status.UNAUTHENTICATED });
    const res = await curlJson(`${hive.httpUrl}/hive.v1.RegistryService/ListWorkers`, {});
    expect(res.status).toBe(401);
    expect(res.json.code).toBe('unauthenticated');
  });

  it("rejects A's token used for B as PermissionDenied and changes nothing", async () => {
    const tokenA = (await readFile(join(dir.path, 'gpu-a.token'), 'utf8')).trim();
    const before = await worker('gpu-b');
    await expect(call(client, 'heartbeat', { workerId: 'gpu-b', sessionId: 'evil', seq: '999999', status: 'HEALTH_STATUS_UNHEALTHY' }, tokenA)).rejects.toMatchObject({
      code: grpc.status.PERMISSION_DENIED,
    });
    const after = await worker('gpu-b');
    expect(after.sessionId).toBe(before.sessionId);
    expect(after.state).toBe('WORKER_STATE_HEALTHY');
  });

  it('rejects a replayed seq with FailedPrecondition, state unchanged', async () => {
    const tokenA = (await readFile(join(dir.path, 'gpu-a.token'), 'utf8')).trim();
    // Our own session: one accepted beat, then its replay.
    await call(client, 'heartbeat', { workerId: 'gpu-a', sessionId: 'replay-test', seq: '10', status: 'HEALTH_STATUS_HEALTHY' }, tokenA);
    // Refused whether or not the agent beat in between: as the same seq of
    // the current session, or as a heartbeat of a session that has ended.
    await expect(
      call(client, 'heartbeat', { workerId: 'gpu-a', sessionId: 'replay-test', seq: '10', status: 'HEALTH_STATUS_UNHEALTHY' }, tokenA),
    ).rejects.toMatchObject({ code: grpc.status.FAILED_PRECONDITION });
    expect((await worker('gpu-a')).state).not.toBe('WORKER_STATE_UNHEALTHY');
    // Whatever the agent sent since, a replay of its latest seq is refused.
    const latest = await worker('gpu-a');
    await expect(
      call(client, 'heartbeat', { workerId: 'gpu-a', sessionId: latest.sessionId, seq: latest.lastSeq, status: 'HEALTH_STATUS_UNHEALTHY' }, tokenA),
    ).rejects.toMatchObject({ code: grpc.status.FAILED_PRECONDITION });
    expect((await worker('gpu-a')).state).toBe('WORKER_STATE_HEALTHY');
  });

  it('rejects malformed values with InvalidArgument', async () => {
    const tokenA = (await readFile(join(dir.path, 'gpu-a.token'), 'utf8')).trim();
    await expect(call(client, 'heartbeat', { workerId: 'gpu-a', sessionId: 's', seq: '1', load1: NaN }, tokenA)).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT });
    await expect(call(client, 'heartbeat', { workerId: 'gpu-a', sessionId: 'x'.repeat(300), seq: '1' }, tokenA)).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT });
    await expect(
      call(client, 'heartbeat', { workerId: 'gpu-a', sessionId: 's', seq: '1', gpus: Array.from({ length: 65 }, (_, i) => ({ index: i })) }, tokenA),
    ).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT });
  });

  it('survives SIGKILL of the hive: workers, tokens and events intact, agents resume by themselves', async () => {
    const eventsBefore = (await call<{ events: Array<{ eventId: string }> }>(client, 'listEvents', { pageSize: 1000 }, admin)).events;
    const seqBefore = BigInt((await worker('gpu-b')).lastSeq);
    await hive.kill('SIGKILL');
    await startTheHive();
    // Same admin token, same workers, same events (none lost).
    const ws = await workers();
    expect(ws.map((w) => w.workerId).sort()).toEqual(['gpu-a', 'gpu-b']);
    const eventsAfter = (await call<{ events: Array<{ eventId: string }> }>(client, 'listEvents', { pageSize: 1000 }, admin)).events;
    const after = new Set(eventsAfter.map((e) => e.eventId));
    for (const e of eventsBefore) expect(after.has(e.eventId)).toBe(true);
    // The agents reconnect with their stored tokens: no new registration.
    await eventually(async () => BigInt((await worker('gpu-b')).lastSeq) > seqBefore, 40_000, 'gpu-b to resume');
    await eventually(async () => (await workers()).every((w) => w.state === 'WORKER_STATE_HEALTHY'), 20_000, 'both healthy');
    const registrations = (await call<{ events: Array<{ kind: string }> }>(client, 'listEvents', { pageSize: 1000 }, admin)).events.filter((e) => e.kind === 'registered');
    expect(registrations).toHaveLength(2);
  }, 120_000);

  it('agent SIGTERM makes the worker LEFT', async () => {
    const a = agents[0];
    await a.kill('SIGTERM');
    expect(await a.exited).toBe(0);
    const w = await eventually(async () => {
      const w = await worker('gpu-a');
      return w.state === 'WORKER_STATE_LEFT' ? w : null;
    }, 10_000, 'gpu-a LEFT');
    expect(w.state).toBe('WORKER_STATE_LEFT');
    const events = (await call<{ events: Array<{ kind: string; actor: string }> }>(client, 'listEvents', { workerId: 'gpu-a', pageSize: 5 }, admin)).events;
    expect(events[0]).toMatchObject({ kind: 'left', actor: 'worker:gpu-a' });
  });
});
