import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { flushMicrotasks, ManualClock } from '../../lib/clock.js';
import { createLogger } from '../../lib/logger.js';
import { createSupervisor, type ProcessExit, type Supervisor } from '../../worker-agent/supervisor.js';

const node = process.execPath;
const logger = createLogger('supervisor-test', 'silent');
const idle = ['-e', 'setInterval(() => {}, 1000)'];
// Ignores SIGTERM, and says so in <prefix>.<pid> once the handler is in place.
const stubborn = (prefix: string) => [
  '-e',
  "process.on('SIGTERM', () => {}); require('fs').writeFileSync(process.argv[1] + '.' + process.pid, 'ready'); setInterval(() => {}, 1000)",
  prefix,
];
const readyFor = async (prefix: string, supervisor: Supervisor) =>
  vi.waitFor(() => expect(existsSync(`${prefix}.${supervisor.state().pid}`)).toBe(true));

const dir = mkdtempSync(join(tmpdir(), 'hive-supervisor-'));
const started: Supervisor[] = [];
afterEach(async () => {
  // Never leave a child behind, even when a test fails half way.
  for (const s of started.splice(0)) {
    const pid = s.state().pid;
    if (s.state().running && pid) process.kill(pid, 'SIGKILL');
  }
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function supervise(args: string[], extra: Partial<Parameters<typeof createSupervisor>[0]> = {}) {
  const clock = new ManualClock();
  const supervisor = createSupervisor({ command: node, args, clock, logger, stopGraceMs: 10_000, ...extra });
  started.push(supervisor);
  return { clock, supervisor };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('supervisor', () => {
  it('starts the process and stops it with SIGTERM', async () => {
    const { clock, supervisor } = supervise(idle);
    expect(supervisor.state()).toEqual({ running: false, pid: null, exitCode: null, signal: null, restarts: 0, exitedAt: null });

    await supervisor.start();
    const { pid, running } = supervisor.state();
    expect(running).toBe(true);
    expect(alive(pid!)).toBe(true);
    await supervisor.start(); // already running: no second process
    expect(supervisor.state().pid).toBe(pid);

    await supervisor.stop();
    expect(supervisor.state()).toMatchObject({ running: false, pid, exitCode: null, signal: 'SIGTERM', exitedAt: clock.now() });
    expect(alive(pid!)).toBe(false);
    expect(clock.pending).toBe(0); // the grace timer was cancelled
  });

  it('stop is idempotent and every caller waits for the same stop', async () => {
    const { supervisor } = supervise(idle);
    await supervisor.start();
    const first = supervisor.stop();
    const second = supervisor.stop();
    expect(second).toBe(first);
    await Promise.all([first, second]);
    await supervisor.stop();
    expect(supervisor.state().running).toBe(false);
    await expect(supervisor.start()).rejects.toThrow('supervisor is stopped');
    await expect(supervisor.restart('too late')).resolves.toEqual({ ok: false, message: 'supervisor is stopped; not restarting' });
  });

  it('stop on a supervisor that never started is a no-op', async () => {
    const { supervisor } = supervise(idle);
    await supervisor.stop();
    expect(supervisor.state().pid).toBeNull();
  });

  it('a process that ignores SIGTERM is killed when the grace period runs out', async () => {
    const ready = join(dir, 'stubborn.ready');
    const { clock, supervisor } = supervise(stubborn(ready));
    await supervisor.start();
    await readyFor(ready, supervisor);
    const pid = supervisor.state().pid!;

    const stopping = supervisor.stop();
    await vi.waitFor(() => expect(clock.pending).toBe(1));
    await clock.advance(9_999);
    expect(supervisor.state().running).toBe(true);
    expect(alive(pid)).toBe(true);

    await clock.advance(1);
    await stopping;
    expect(supervisor.state()).toMatchObject({ running: false, signal: 'SIGKILL' });
    expect(alive(pid)).toBe(false);
  });

  it('restart stops the old process and starts a new one', async () => {
    const unexpected: ProcessExit[] = [];
    const { supervisor } = supervise(idle, { onUnexpectedExit: (e) => unexpected.push(e) });
    await supervisor.start();
    const oldPid = supervisor.state().pid!;

    const result = await supervisor.restart('hive: worker unhealthy');
    const { pid, running, restarts } = supervisor.state();
    expect(result).toEqual({ ok: true, message: `restarted (pid ${pid}): hive: worker unhealthy` });
    expect(running).toBe(true);
    expect(restarts).toBe(1);
    expect(pid).not.toBe(oldPid);
    expect(alive(oldPid)).toBe(false);
    expect(unexpected).toEqual([]); // we stopped it; that is not a crash
    await supervisor.stop();
  });

  it('restart of a stubborn process waits out the grace period first', async () => {
    const ready = join(dir, 'stubborn-restart.ready');
    const { clock, supervisor } = supervise(stubborn(ready));
    await supervisor.start();
    await readyFor(ready, supervisor);
    const oldPid = supervisor.state().pid!;

    const restarting = supervisor.restart('deploy');
    await vi.waitFor(() => expect(clock.pending).toBe(1));
    await clock.advance(10_000);
    const result = await restarting;
    expect(result.ok).toBe(true);
    expect(alive(oldPid)).toBe(false);
    expect(supervisor.state()).toMatchObject({ running: true, restarts: 1 });

    // The new one ignores SIGTERM too.
    await readyFor(ready, supervisor);
    const stopping = supervisor.stop();
    await vi.waitFor(() => expect(clock.pending).toBe(1));
    await clock.advance(10_000);
    await stopping;
  });

  it('reports an unexpected exit and does not restart by itself', async () => {
    const exits: ProcessExit[] = [];
    let exited!: () => void;
    const reported = new Promise<void>((r) => (exited = r));
    const { clock, supervisor } = supervise(['-e', 'process.exit(3)'], {
      onUnexpectedExit: (e) => {
        exits.push(e);
        exited();
      },
    });
    clock.set(1_700_000_123_000);
    await supervisor.start();
    await reported;

    expect(exits).toEqual([{ exitCode: 3, signal: null, exitedAt: 1_700_000_123_000 }]);
    expect(supervisor.state()).toMatchObject({ running: false, exitCode: 3, signal: null, restarts: 0, exitedAt: 1_700_000_123_000 });
    await flushMicrotasks();
    expect(supervisor.state().running).toBe(false);

    // The hive's restart command brings it back.
    await expect(supervisor.restart('crashed')).resolves.toMatchObject({ ok: true });
    expect(supervisor.state().restarts).toBe(1);
  });

  it('a command that cannot be spawned fails start and restart, without throwing from restart', async () => {
    const clock = new ManualClock();
    const supervisor = createSupervisor({ command: join(dir, 'no-such-worker'), clock, logger });
    await expect(supervisor.start()).rejects.toMatchObject({ code: 'ENOENT' });
    expect(supervisor.state()).toMatchObject({ running: false, pid: null });
    const result = await supervisor.restart('try again');
    expect(result.ok).toBe(false);
    expect(result.message).toMatch(/^restart failed: spawn .*no-such-worker ENOENT$/);
    expect(supervisor.state().restarts).toBe(0);
  });
});
