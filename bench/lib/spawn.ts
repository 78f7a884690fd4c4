import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { connect, createServer } from 'node:net';
import { resolve } from 'node:path';
import { sleep } from './procfs.js';

// Processes the benchmark starts: every server and the load generator run in
// a process of their own, so /proc accounts each one's CPU separately. All
// of them are tracked and killed when the benchmark ends, however it ends.

export const ROOT = resolve(import.meta.dirname, '../..');

export interface Child {
  name: string;
  proc: ChildProcess;
  pid: number;
  /** Last lines of stdout and stderr, for error messages. */
  tail(): string;
  exited: Promise<number | null>;
  alive(): boolean;
  /** SIGTERM, then SIGKILL after graceMs. Idempotent. */
  stop(graceMs?: number): Promise<void>;
}

const live = new Set<Child>();

export function spawnChild(name: string, command: string, args: string[], opts: { env?: Record<string, string>; ipc?: boolean; cwd?: string } = {}): Child {
  const stdio: StdioOptions = opts.ipc ? ['ignore', 'pipe', 'pipe', 'ipc'] : ['ignore', 'pipe', 'pipe'];
  const proc = spawn(command, args, { cwd: opts.cwd ?? ROOT, env: { ...process.env, ...opts.env }, stdio });
  if (proc.pid === undefined) throw new Error(`${name}: could not spawn ${command}`);
  const lines: string[] = [];
  const keep = (chunk: Buffer) => {
    for (const l of chunk.toString().split('\n')) if (l.trim()) lines.push(l);
    if (lines.length > 200) lines.splice(0, lines.length - 100);
  };
  proc.stdout?.on('data', keep);
  proc.stderr?.on('data', keep);
  const exited = new Promise<number | null>((res) => proc.once('exit', (code, signal) => res(code ?? (signal ? 128 : null))));
  let stopping: Promise<void> | null = null;
  const child: Child = {
    name,
    proc,
    pid: proc.pid,
    tail: () => lines.slice(-20).join('\n'),
    exited,
    alive: () => proc.exitCode === null && proc.signalCode === null,
    stop(graceMs = 10_000) {
      stopping ??= (async () => {
        if (child.alive()) {
          proc.kill('SIGTERM');
          const timer = setTimeout(() => child.alive() && proc.kill('SIGKILL'), graceMs);
          await exited;
          clearTimeout(timer);
        }
        live.delete(child);
      })();
      return stopping;
    },
  };
  live.add(child);
  void exited.then(() => live.delete(child));
  return child;
}

/** A Node process running a TypeScript (or .mjs) entry point of this repository. */
export function spawnNode(name: string, entry: string, args: string[], opts: { env?: Record<string, string>; ipc?: boolean; nodeArgs?: string[] } = {}): Child {
  const isTs = entry.endsWith('.ts');
  const argv = [...(opts.nodeArgs ?? []), ...(isTs ? [resolve(ROOT, 'bin/run-ts.mjs'), entry] : [resolve(ROOT, entry)]), ...args];
  return spawnChild(name, process.execPath, argv, opts);
}

/** Kills whatever is still running (the benchmark's own children only). */
export async function stopAll(): Promise<void> {
  await Promise.all([...live].map((c) => c.stop(3000)));
}

export function killAllSync(): void {
  for (const c of live) if (c.alive()) c.proc.kill('SIGKILL');
}

/** A port that was free a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolvePort(port));
    });
  });
}

/** Resolves once something accepts TCP connections on the port. */
export async function waitForPort(port: number, timeoutMs: number, child?: Child, pollMs = 20): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child && !child.alive()) throw new Error(`${child.name} exited before listening on ${port}:\n${child.tail()}`);
    const ok = await new Promise<boolean>((res) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        res(true);
      });
      s.once('error', () => res(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on 127.0.0.1:${port} after ${timeoutMs} ms${child ? `:\n${child.tail()}` : ''}`);
    await sleep(pollMs);
  }
}
