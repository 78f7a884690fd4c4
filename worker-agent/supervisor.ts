// Runs the worker process beside the agent. It does not restart on its own:
// an exit is reported (log, callback, state) and the hive decides, through a
// restart command, whether this worker comes back. That keeps one place in
// charge of restart policy and stops a crash loop from hiding behind the agent.
//
// Stopping is graceful: SIGTERM, up to stopGraceMs on the injected clock, then
// SIGKILL. Operations are serialised, so a restart arriving during a stop waits
// for it instead of racing it.

import { spawn, type ChildProcess } from 'node:child_process';
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/logger.js';

export interface ProcessExit {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  exitedAt: number;
}

export interface SupervisorOptions {
  command: string;
  args?: readonly string[];
  clock: Clock;
  logger: Logger;
  stopGraceMs?: number;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Called when the process exits without the supervisor having stopped it. */
  onUnexpectedExit?: (exit: ProcessExit) => void;
}

export interface SupervisorState {
  running: boolean;
  /** The current process, or the last one. */
  pid: number | null;
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  /** Successful restarts since the supervisor was created. */
  restarts: number;
  /** Clock time of the last exit; null while running or before the first start. */
  exitedAt: number | null;
}

export interface RestartResult {
  ok: boolean;
  message: string;
}

export interface Supervisor {
  /** Starts the process if it is not running; rejects when it cannot be spawned. */
  start(): Promise<void>;
  /** Stops (gracefully) and starts again; never rejects. */
  restart(reason: string): Promise<RestartResult>;
  /** Stops for good; idempotent, and every call waits for the same stop. */
  stop(): Promise<void>;
  state(): SupervisorState;
}

interface Running {
  proc: ChildProcess;
  exited: Promise<void>;
  /** Set before we signal it, so its exit is not reported as a crash. */
  expected: boolean;
}

export function createSupervisor(options: SupervisorOptions): Supervisor {
  const { command, args = [], clock, logger, stopGraceMs = 10_000, cwd, env, onUnexpectedExit } = options;
  const log = logger.child({ component: 'supervisor' });

  let current: Running | undefined;
  let stopped = false;
  let stopping: Promise<void> | undefined;
  let queue: Promise<unknown> = Promise.resolve();
  const last = {
    pid: null as number | null,
    exitCode: null as number | null,
    signal: null as NodeJS.Signals | null,
    exitedAt: null as number | null,
    restarts: 0,
  };

  function serialised<T>(op: () => Promise<T>): Promise<T> {
    const result = queue.then(op, op);
    queue = result.catch(() => {});
    return result;
  }

  function launch(): Promise<void> {
    return new Promise((resolve, reject) => {
      let proc: ChildProcess;
      try {
        proc = spawn(command, args, { stdio: 'inherit', cwd, env });
      } catch (err) {
        return reject(err);
      }
      let started = false;
      let markExited!: () => void;
      const record: Running = { proc, exited: new Promise<void>((r) => (markExited = r)), expected: false };

      proc.on('error', (err) => {
        if (!started) return reject(err);
        log.error({ err, pid: proc.pid }, 'supervised process error');
      });
      proc.once('spawn', () => {
        started = true;
        current = record;
        last.pid = proc.pid ?? null;
        last.exitCode = null;
        last.signal = null;
        last.exitedAt = null;
        log.info({ pid: proc.pid, command }, 'supervised process started');
        resolve();
      });
      proc.once('exit', (exitCode, signal) => {
        if (!started) return;
        if (current === record) current = undefined;
        last.exitCode = exitCode;
        last.signal = signal;
        last.exitedAt = clock.now();
        const exit: ProcessExit = { exitCode, signal, exitedAt: last.exitedAt };
        if (record.expected) {
          log.info({ pid: proc.pid, exitCode, signal }, 'supervised process stopped');
        } else {
          log.warn({ pid: proc.pid, exitCode, signal }, 'supervised process exited unexpectedly');
          onUnexpectedExit?.(exit);
        }
        markExited();
      });
    });
  }

  async function terminate(running: Running): Promise<void> {
    running.expected = true;
    running.proc.kill('SIGTERM');
    const grace = new AbortController();
    const graceOver = clock.sleep(stopGraceMs, grace.signal).then(
      () => true,
      () => false,
    );
    const mustKill = await Promise.race([running.exited.then(() => false), graceOver]);
    grace.abort();
    if (mustKill) {
      log.warn({ pid: running.proc.pid, stopGraceMs }, 'supervised process ignored SIGTERM; sending SIGKILL');
      running.proc.kill('SIGKILL');
      await running.exited;
    }
  }

  return {
    start() {
      return serialised(async () => {
        if (stopped) throw new Error('supervisor is stopped');
        if (current) return;
        await launch();
      });
    },

    restart(reason) {
      return serialised(async (): Promise<RestartResult> => {
        if (stopped) return { ok: false, message: 'supervisor is stopped; not restarting' };
        log.info({ reason, pid: current?.proc.pid }, 'restarting supervised process');
        if (current) await terminate(current);
        try {
          await launch();
        } catch (err) {
          const message = `restart failed: ${err instanceof Error ? err.message : String(err)}`;
          log.error({ err, reason }, 'restart failed');
          return { ok: false, message };
        }
        last.restarts += 1;
        return { ok: true, message: `restarted (pid ${last.pid}): ${reason}` };
      });
    },

    stop() {
      stopping ??= serialised(async () => {
        stopped = true;
        if (current) await terminate(current);
      });
      return stopping;
    },

    state() {
      return {
        running: current !== undefined,
        pid: last.pid,
        exitCode: last.exitCode,
        signal: last.signal,
        restarts: last.restarts,
        exitedAt: last.exitedAt,
      };
    },
  };
}
