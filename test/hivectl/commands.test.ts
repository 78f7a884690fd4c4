import { Code } from '@connectrpc/connect';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HealthStatus } from '../../gen/hive/v1/registry_pb.js';
import { runHivectl } from '../../hivectl/cli.js';
import { EXIT } from '../../hivectl/errors.js';
import { systemClock } from '../../lib/clock.js';
import { eventually } from '../support/procs.js';
import { ADMIN, auth, startTestHive, type TestHive } from './fixture.js';

// Every hivectl command, run in-process (runHivectl with captured streams)
// against a real hive on PostgreSQL. The bin itself, as a child process, is
// covered by bin.test.ts.

interface Run {
  code: number;
  out: string;
  err: string;
}

describe('hivectl commands against a real hive', () => {
  let t: TestHive;
  let tokenB: string;

  const run = async (args: string[], env: Record<string, string> = {}, signal = new AbortController().signal): Promise<Run> => {
    let out = '';
    let err = '';
    const code = await runHivectl(
      args,
      { stdout: { write: (s: string) => (out += s) }, stderr: { write: (s: string) => (err += s) }, env: { HIVE_URL: t.url, HIVE_TOKEN: ADMIN, ...env } },
      systemClock,
      signal,
    );
    return { code, out, err };
  };

  beforeAll(async () => {
    t = await startTestHive('hivectl_cmd');
    await t.seed('gpu-a', { labels: { pool: 'h100', env: 'prod' }, gpus: 2 });
    tokenB = await t.seed('gpu-b', { labels: { pool: 'cpu' }, status: HealthStatus.DEGRADED, detail: 'probe slow' });
    await t.seed('gpu-dead', { intervalMs: 500, gpus: 1 });
  });
  afterAll(async () => {
    await t?.stop();
  });

  it('lists workers as an aligned table with GPUs, memory, disk and the health score', async () => {
    const r = await run(['workers']);
    expect(r.code).toBe(0);
    const lines = r.out.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^WORKER\s+STATE\s+LAST SEEN\s+INTERVAL\s+GPUS \(VRAM\)\s+MEMORY\s+DISK FREE\s+HEALTH$/);
    expect(lines[1]).toMatch(/^gpu-a\s+HEALTHY\s+\d+s\s+5s\s+2x 80\/160G\s+32\/64G\s+100G 10%\s+1\.00$/);
    expect(lines[2]).toMatch(/^gpu-b\s+DEGRADED\s+\d+s\s+5s\s+-\s+32\/64G\s+100G 10%\s+0\.80$/);
    // Not a terminal: no colour codes.
    expect(r.out).not.toContain('\x1b[');
  });

  it('filters by state and label selector; -o wide adds labels and detail', async () => {
    const degraded = await run(['workers', '--state', 'degraded']);
    expect(degraded.out).toContain('gpu-b');
    expect(degraded.out).not.toContain('gpu-a');
    const selected = await run(['workers', '-l', 'pool=h100', '-o', 'wide']);
    expect(selected.out).toMatch(/LABELS\s+DETAIL/);
    expect(selected.out).toContain('env=prod,pool=h100');
    expect(selected.out).toContain('0:40/80G 1:40/80G');
    expect(selected.out).not.toContain('gpu-b');
    const badState = await run(['workers', '--state', 'sleepy']);
    expect(badState.code).toBe(EXIT.USAGE);
    expect(badState.err).toContain('unknown state "sleepy"');
    const none = await run(['workers', '--state', 'failed']);
    expect(none.code).toBe(0);
    expect(none.err).toContain('no workers match');
  });

  it('prints the API JSON with -o json and the same data as YAML with -o yaml', async () => {
    const json = JSON.parse((await run(['workers', '-o', 'json'])).out);
    expect(json.workers.map((w: { workerId: string }) => w.workerId)).toEqual(['gpu-a', 'gpu-b', 'gpu-dead']);
    expect(json.workers[0].state).toBe('WORKER_STATE_HEALTHY');
    const { parse } = await import('yaml');
    expect(parse((await run(['workers', '-o', 'yaml'])).out)).toEqual(json);
    const one = JSON.parse((await run(['get', 'gpu-a', '-o', 'json'])).out);
    expect(one.stats.gpus).toHaveLength(2);
  });

  it('shows one worker with its GPUs, disks and recent events', async () => {
    const r = await run(['get', 'gpu-a']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/State:\s+HEALTHY/);
    expect(r.out).toMatch(/Health score:\s+1\.00 \(healthy\)/);
    expect(r.out).toMatch(/0\s+NVIDIA H100 80GB HBM3\s+40\/80G\s+50%\s+50%\s+50C/);
    expect(r.out).toMatch(/\/\s+100G\s+1000G\s+10%/);
    expect(r.out).toContain('Recent events:');
    expect(r.out).toContain('first_heartbeat');
  });

  it('exits 5 for an unknown worker and 4 for a refused token', async () => {
    const missing = await run(['get', 'nope']);
    expect(missing.code).toBe(EXIT.NOT_FOUND);
    expect(missing.err).toContain('"nope" is not registered');
    const bad = await run(['workers'], { HIVE_TOKEN: 'not-a-real-token' });
    expect(bad.code).toBe(EXIT.AUTH);
    expect(bad.err).toContain('unknown or revoked token');
    const none = await run(['workers'], { HIVE_TOKEN: '' });
    expect(none.code).toBe(EXIT.AUTH);
    expect(none.err).toContain('no token');
  });

  it('prints the event log oldest first, filtered by worker and time, as table or JSON', async () => {
    const r = await run(['events', 'gpu-b', '--since', '1h']);
    expect(r.code).toBe(0);
    const lines = r.out.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^TIME\s+WORKER\s+KIND\s+STATE\s+ACTOR\s+REASON$/);
    expect(lines[1]).toMatch(/gpu-b\s+registered\s+PENDING\s+admin/);
    expect(lines[2]).toMatch(/gpu-b\s+first_heartbeat\s+PENDING->DEGRADED\s+worker:gpu-b\s+probe slow/);
    expect(r.out).not.toContain('gpu-a');
    const json = JSON.parse((await run(['events', '-o', 'json'])).out);
    expect(json.events.length).toBeGreaterThanOrEqual(4);
    expect((await run(['events', '--since', 'yesterday'])).code).toBe(EXIT.USAGE);
  });

  it('registers a worker once, prints only its token, and refuses a second registration', async () => {
    const r = await run(['register', 'gpu-new', '--label', 'pool=a100', '--interval', '2s']);
    expect(r.code).toBe(0);
    const token = r.out.trim();
    expect(token).toMatch(/^\S{20,}$/);
    expect(r.err).toContain('shown only this once');
    await t.beat('gpu-new', token);
    const again = await run(['register', 'gpu-new']);
    expect(again.code).toBe(EXIT.CONFLICT);
    expect(again.err).toContain('tokens rotate');
  });

  it('rotates a worker token: the old one stops working, labels stay', async () => {
    const r = await run(['tokens', 'rotate', 'gpu-b']);
    expect(r.code).toBe(0);
    const fresh = r.out.trim();
    await expect(t.beat('gpu-b', tokenB)).rejects.toMatchObject({ code: Code.Unauthenticated });
    await t.beat('gpu-b', fresh, { status: HealthStatus.DEGRADED, detail: 'probe slow' });
    tokenB = fresh;
    const { worker } = await t.registry.getWorker({ workerId: 'gpu-b' }, auth(ADMIN));
    expect(worker?.labels).toEqual({ pool: 'cpu' });
  });

  it('creates, lists and revokes tokens; a join token registers, a read token cannot administer', async () => {
    const join = await run(['tokens', 'create-join', '--description', 'ci agents']);
    expect(join.code).toBe(0);
    const joinToken = join.out.trim();
    const joined = await run(['register', 'gpu-joined'], { HIVE_TOKEN: joinToken });
    expect(joined.code).toBe(0);
    const read = (await run(['tokens', 'create', '--scope', 'read'])).out.trim();
    expect((await run(['workers'], { HIVE_TOKEN: read })).code).toBe(0);
    const denied = await run(['deregister', 'gpu-a'], { HIVE_TOKEN: read });
    expect(denied.code).toBe(EXIT.AUTH);
    expect(denied.err).toContain('not allowed');

    const list = await run(['tokens', 'list', '-o', 'json']);
    const joinInfo = JSON.parse(list.out).tokens.find((x: { description?: string }) => x.description === 'ci agents');
    expect(joinInfo.scope).toBe('TOKEN_SCOPE_JOIN');
    expect((await run(['tokens', 'list'])).out).toMatch(new RegExp(`${joinInfo.tokenId}\\s+join\\s+-\\s+ci agents`));
    expect((await run(['tokens', 'revoke', joinInfo.tokenId])).code).toBe(0);
    expect((await run(['register', 'gpu-late'], { HIVE_TOKEN: joinToken })).code).toBe(EXIT.AUTH);
    expect((await run(['tokens', 'revoke', 'tok_nope'])).code).toBe(EXIT.NOT_FOUND);
    expect((await run(['tokens', 'create'])).code).toBe(EXIT.USAGE); // --scope is mandatory
  });

  it('sets, shows and clears a restart policy; the exec command is split like a shell would', async () => {
    const set = await run(['policy', 'set', 'gpu-a', '--mode', 'on_stale', '--action', 'exec', '--exec', `systemctl restart 'vllm@{worker_id}' --no-block`, '--max-attempts', '3']);
    expect(set.code).toBe(0);
    const got = JSON.parse((await run(['policy', 'get', 'gpu-a', '-o', 'json'])).out);
    expect(got).toMatchObject({ mode: 'RESTART_MODE_ON_STALE', action: 'RESTART_ACTION_EXEC', execArgv: ['systemctl', 'restart', 'vllm@{worker_id}', '--no-block'], maxAttempts: 3 });
    expect((await run(['policy', 'get', 'gpu-a'])).out).toContain('on_stale, action exec');
    expect((await run(['policy', 'set', 'gpu-a', '--mode', 'on_stale', '--action', 'exec'])).code).toBe(EXIT.USAGE);
    expect((await run(['policy', 'set', 'gpu-a', '--mode', 'sometimes'])).code).toBe(EXIT.USAGE);
    expect((await run(['policy', 'set', 'nope', '--mode', 'never'])).code).toBe(EXIT.NOT_FOUND);
    expect((await run(['policy', 'clear', 'gpu-a'])).code).toBe(0);
    expect((await run(['policy', 'get', 'gpu-a'])).out).toContain('none');
  });

  it('adds, lists and removes silences', async () => {
    const add = await run(['silence', 'add', '--selector', 'pool=h100', '--for', '2h', '--comment', 'maintenance']);
    expect(add.code).toBe(0);
    const id = add.out.trim();
    expect(id).toMatch(/^sil_/);
    const list = await run(['silence', 'list']);
    expect(list.out).toMatch(new RegExp(`${id}\\s+-\\s+pool=h100\\s+in 1h59m\\s+admin\\s+maintenance`));
    expect((await run(['silence', 'add', '--for', '1h'])).code).toBe(EXIT.USAGE);
    expect((await run(['silence', 'remove', id])).code).toBe(0);
    expect((await run(['silence', 'remove', id])).code).toBe(EXIT.NOT_FOUND);
  });

  it('health-report: counts by state, worst workers first, the stale mark as an incident', async () => {
    // Seeded in beforeAll with a 500 ms interval; the hive takes the mark
    // once 2x the interval has passed since its heartbeat.
    const { worker } = await t.registry.getWorker({ workerId: 'gpu-dead' }, auth(ADMIN));
    const mark = { workerId: 'gpu-dead', observedSeq: worker!.lastSeq, observedSessionId: worker!.sessionId, reason: 'no heartbeat for 2s' };
    await eventually(() => t.control.markStale(mark, auth(ADMIN)).then(() => true), 10_000, 'the stale mark');
    const r = await run(['health-report']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/Workers:\s+\d+ \(0 connected\)/);
    expect(r.out).toContain('stale 1');
    const worst = r.out.slice(r.out.indexOf('Worst workers'));
    expect(worst.indexOf('gpu-dead')).toBeLessThan(worst.indexOf('gpu-b'));
    expect(r.out).toMatch(/gpu-dead\s+marked_stale\s+HEALTHY->STALE\s+admin\s+no heartbeat for 2s/);
    const json = JSON.parse((await run(['health-report', '-o', 'json'])).out);
    expect(json.byState.STALE).toBe(1);
    expect(json.worst[0]).toMatchObject({ workerId: 'gpu-dead', state: 'STALE', score: 0.2 });
    expect(json.incidents[0]).toMatchObject({ workerId: 'gpu-dead', kind: 'marked_stale' });
  });

  it('--watch -o json prints the snapshot, then each change, until aborted (exit 0)', async () => {
    const stop = new AbortController();
    let out = '';
    const done = runHivectl(
      ['workers', '--watch', '-o', 'json', '-l', 'pool=h100'],
      { stdout: { write: (s: string) => (out += s) }, stderr: { write: () => true }, env: { HIVE_URL: t.url, HIVE_TOKEN: ADMIN } },
      systemClock,
      stop.signal,
    );
    const lines = () => out.split('\n').filter(Boolean).map((l) => JSON.parse(l));
    await eventually(() => lines().length >= 1, 10_000, 'the snapshot');
    expect(lines()[0]).toMatchObject({ type: 'WORKER_CHANGE_TYPE_ADDED', worker: { workerId: 'gpu-a' } });
    const token = (await run(['tokens', 'rotate', 'gpu-a'])).out.trim();
    await t.beat('gpu-a', token, { status: HealthStatus.UNHEALTHY, detail: 'probe failed', gpus: 2 });
    await eventually(() => lines().some((l) => l.worker?.state === 'WORKER_STATE_UNHEALTHY'), 10_000, 'the UNHEALTHY change');
    stop.abort();
    expect(await done).toBe(0);
  });

  it('deregisters a worker; it is gone (exit 5) but its events stay', async () => {
    expect((await run(['deregister', 'gpu-new', '--reason', 'retired'])).code).toBe(0);
    expect((await run(['get', 'gpu-new'])).code).toBe(EXIT.NOT_FOUND);
    expect((await run(['events', 'gpu-new'])).out).toMatch(/deregistered\s+.*retired/);
    expect((await run(['deregister', 'gpu-new'])).code).toBe(EXIT.NOT_FOUND);
  });
});
