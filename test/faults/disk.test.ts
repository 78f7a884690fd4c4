import { create } from '@bufbuild/protobuf';
import { Code, ConnectError, createClient } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HeartbeatRequestSchema, RegistryService } from '../../gen/hive/v1/registry_pb.js';
import { msToDuration } from '../../lib/duration.js';
import { report } from '../support/figures.js';
import { eventually, freePort, startHiveProc, tempDir, type HiveProc } from '../support/procs.js';

// The embedded database's disk fills up under a running hive, and later
// the data directory is read-only at start. Either way the hive says so
// (/healthz, hive_store_writable, an error log line) and keeps what it can
// (heartbeats), instead of failing requests as Internal or dying silently.
// Needs a small file system of its own: a tmpfs mounted for the test
// (root); skipped where mounting is not allowed.

const ADMIN = 'hive_adm_disk-test-admin-0123456789abcdef';

function canMount(): boolean {
  if (process.platform !== 'linux' || process.getuid?.() !== 0) return false;
  const probe = `/tmp/hive-mount-probe-${process.pid}`;
  mkdirSync(probe, { recursive: true });
  const ok = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', probe]).status === 0;
  if (ok) spawnSync('umount', [probe]);
  rmSync(probe, { recursive: true, force: true });
  return ok;
}

describe.skipIf(!canMount())('the embedded database on a full or read-only disk', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let mnt: string;
  let hive: HiveProc;
  let ports: { grpc: number; http: number };
  const admin = { headers: { authorization: `Bearer ${ADMIN}` }, timeoutMs: 10_000 };
  const start = () => startHiveProc(['--data-dir', join(mnt, 'data'), '--admin-token', ADMIN, '--write-behind', '500ms'], { LOG_LEVEL: 'info' }, ports);
  const metric = async (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(await (await fetch(`${hive.httpUrl}/metrics`)).text())?.[1]);

  beforeAll(async () => {
    dir = await tempDir('hive-disk-');
    mnt = join(dir.path, 'mnt');
    mkdirSync(mnt);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=96m', 'tmpfs', mnt]);
    ports = { grpc: await freePort(), http: await freePort() };
    hive = await start();
  }, 120_000);

  afterAll(async () => {
    await hive?.kill('SIGKILL');
    spawnSync('umount', ['-l', mnt]);
    await dir?.remove();
  });

  it('disk full: writes fail with Unavailable, /healthz, metrics and the log say why, heartbeats go on, and it recovers', async (ctx) => {
    const registry = createClient(RegistryService, createGrpcTransport({ baseUrl: `http://${hive.grpcAddr}` }));
    const { workerToken } = await registry.registerWorker({ workerId: 'disk-1', heartbeatInterval: msToDuration(1000) }, admin);
    expect(await metric('hive_store_writable')).toBe(1);
    // Fill the file system to the last byte.
    spawnSync('dd', ['if=/dev/zero', `of=${join(mnt, 'fill')}`, 'bs=1M'], { stdio: 'ignore' });
    const codes = new Map<string, number>();
    for (let i = 0; i < 400 && !codes.has('Unavailable'); i++) {
      const code = await registry
        .registerWorker({ workerId: `disk-n${i}`, heartbeatInterval: msToDuration(1000), labels: { pad: 'x'.repeat(250) } }, admin)
        .then(() => 'OK', (e) => Code[ConnectError.from(e).code]);
      codes.set(code, (codes.get(code) ?? 0) + 1);
    }
    expect([...codes.keys()].filter((c) => c !== 'OK' && c !== 'Unavailable')).toEqual([]);
    expect(codes.get('Unavailable')).toBeGreaterThan(0);
    const health = await fetch(`${hive.httpUrl}/healthz`);
    expect(health.status).toBe(503);
    expect(JSON.stringify(await health.json())).toMatch(/No space left on device/);
    expect(await metric('hive_store_writable')).toBe(0);
    expect(await metric('hive_store_write_failures_total')).toBeGreaterThan(0);
    await hive.waitForLog((e) => e.level === 50 && e.msg === String(e.msg) && /database refuses writes/.test(String(e.msg)) && /No space left/.test(String(e.err)), 5000);
    // The live registry keeps taking heartbeats.
    for (let seq = 1n; seq <= 3n; seq++) {
      const r = await registry.heartbeat(create(HeartbeatRequestSchema, { workerId: 'disk-1', sessionId: 'full', seq, status: 1 }), { headers: { authorization: `Bearer ${workerToken}` } });
      expect(r.ackSeq).toBe(seq);
    }

    rmSync(join(mnt, 'fill'));
    await eventually(async () => (await fetch(`${hive.httpUrl}/healthz`)).status === 200 && (await metric('hive_store_writable')) === 1, 20_000, 'the hive to take writes again');
    expect((await registry.registerWorker({ workerId: 'disk-after', heartbeatInterval: msToDuration(1000) }, admin)).workerToken).toMatch(/^hive_wkr_/);
    expect(hive.child.exitCode).toBeNull();
    report(ctx, { 'faults survived': 1 });
  }, 120_000);

  it('read-only data directory at start: the hive refuses to start and says why', async (ctx) => {
    await hive.kill('SIGTERM');
    execFileSync('mount', ['-o', 'remount,ro', mnt]);
    try {
      const err = await start().then(
        () => null,
        (e: Error) => e,
      );
      expect(err?.message).toMatch(/exited \(1\)/);
      expect(err?.message).toMatch(/hive failed to start/);
      expect(err?.message).toMatch(/EROFS|read-only file system/i);
    } finally {
      execFileSync('mount', ['-o', 'remount,rw', mnt]);
    }
    hive = await start();
    report(ctx, { 'faults survived': 1 });
  }, 120_000);
});
