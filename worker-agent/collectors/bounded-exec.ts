// Runs a helper binary (nvidia-smi) with a hard deadline. A wedged driver can
// leave nvidia-smi stuck in the kernel with its stdout open, so the deadline
// settles the promise on its own instead of waiting for the pipe to close, and
// the child runs in its own process group so anything it forked dies with it.

import { spawn, type ChildProcess } from 'node:child_process';
import { systemClock, type Clock } from '../../lib/clock.js';

export interface BoundedExecOptions {
  timeoutMs: number;
  clock?: Clock;
  /** Aborting kills the child and rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Cap on stdout and on stderr; a child that floods is killed. */
  maxOutputBytes?: number;
}

export interface BoundedExecResult {
  stdout: string;
  stderr: string;
}

export class CommandTimeoutError extends Error {
  constructor(
    readonly command: string,
    readonly timeoutMs: number,
  ) {
    super(`${command} did not finish within ${timeoutMs} ms and was killed`);
    this.name = 'CommandTimeoutError';
  }
}

export class CommandFailedError extends Error {
  constructor(
    readonly command: string,
    readonly exitCode: number | null,
    readonly signal: NodeJS.Signals | null,
    readonly stderr: string,
  ) {
    const how = exitCode !== null ? `exited with code ${exitCode}` : `was killed by ${signal}`;
    const said = stderr.trim().split('\n')[0]?.slice(0, 200);
    super(said ? `${command} ${how}: ${said}` : `${command} ${how}`);
    this.name = 'CommandFailedError';
  }
}

/** Spawns without a shell; rejects with the spawn error itself (ENOENT keeps its code). */
export function execBounded(
  command: string,
  args: readonly string[],
  options: BoundedExecOptions,
): Promise<BoundedExecResult> {
  const { timeoutMs, clock = systemClock, signal, maxOutputBytes = 1024 * 1024 } = options;
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    let child: ChildProcess;
    try {
      child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true, windowsHide: true });
    } catch (err) {
      return reject(err);
    }

    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let outBytes = 0;
    let errBytes = 0;
    let settled = false;
    const deadline = new AbortController();

    const settle = (done: () => void) => {
      if (settled) return;
      settled = true;
      deadline.abort();
      signal?.removeEventListener('abort', onAbort);
      done();
    };
    const killGroup = () => {
      const pid = child.pid;
      if (pid !== undefined) {
        try {
          process.kill(-pid, 'SIGKILL');
        } catch {
          child.kill('SIGKILL');
        }
      }
      // A child stuck in the kernel keeps its pipes open; stop listening so it
      // cannot hold the agent's event loop.
      child.stdout?.destroy();
      child.stderr?.destroy();
      child.unref();
    };
    const onAbort = () => {
      killGroup();
      settle(() => reject(signal!.reason));
    };

    child.stdout!.on('data', (chunk: Buffer) => {
      outBytes += chunk.length;
      if (outBytes > maxOutputBytes) {
        killGroup();
        settle(() => reject(new Error(`${command} wrote more than ${maxOutputBytes} bytes to stdout`)));
        return;
      }
      out.push(chunk);
    });
    child.stderr!.on('data', (chunk: Buffer) => {
      errBytes += chunk.length;
      if (errBytes <= maxOutputBytes) err.push(chunk);
    });
    child.on('error', (e) => settle(() => reject(e)));
    child.on('close', (code, sig) => {
      const stdout = Buffer.concat(out).toString('utf8');
      const stderr = Buffer.concat(err).toString('utf8');
      settle(() =>
        code === 0 ? resolve({ stdout, stderr }) : reject(new CommandFailedError(command, code, sig, stderr)),
      );
    });
    signal?.addEventListener('abort', onAbort, { once: true });
    clock.sleep(timeoutMs, deadline.signal).then(
      () => {
        if (settled) return;
        killGroup();
        settle(() => reject(new CommandTimeoutError(command, timeoutMs)));
      },
      () => {
        // deadline cancelled: the child finished first
      },
    );
  });
}
