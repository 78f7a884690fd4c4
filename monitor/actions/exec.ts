import { spawn } from 'node:child_process';
import type { Worker } from '../../gen/hive/v1/registry_pb.js';
import type { Clock } from '../../lib/clock.js';
import type { Logger } from '../../lib/logger.js';
import type { ActionResult, RestartAction } from './action.js';

// The exec action: a command run by the monitor, e.g.
//   ["systemctl", "restart", "hive-worker@{worker_id}.service"]
//   ["kubectl", "delete", "pod", "-n", "{label:namespace}", "{label:pod}"]
// The template is argv, never a shell line: no shell runs, a substituted
// worker id or label value stays inside the one argument it was written
// in (it cannot become a second argument, let alone a second command), and
// a value that would start an argument with "-" (an option) is refused.
// Only programs the monitor's operator allowed (--exec-allow) are run: a
// registry admin can set policies, but cannot pick what runs on this host.

const PLACEHOLDER = /\{(worker_id|label:[A-Za-z0-9._/-]+)\}/g;
const OUTPUT_LIMIT = 2048;

export class TemplateError extends Error {}

/** Renders an argv template for one worker; throws TemplateError when it cannot be rendered safely. */
export function renderArgv(template: readonly string[], w: Pick<Worker, 'workerId' | 'labels'>): string[] {
  if (template.length === 0) throw new TemplateError('exec_argv is empty');
  if (template[0].includes('{')) throw new TemplateError('exec_argv[0] (the program) cannot hold a placeholder');
  return template.map((arg, i) => {
    const out = arg.replace(PLACEHOLDER, (_, name: string, offset: number) => {
      const value = name === 'worker_id' ? w.workerId : w.labels[name.slice('label:'.length)];
      if (value === undefined) throw new TemplateError(`worker has no label "${name.slice('label:'.length)}" (exec_argv[${i}])`);
      if (value.includes('\u0000')) throw new TemplateError(`value for {${name}} contains NUL`);
      if (offset === 0 && value.startsWith('-')) throw new TemplateError(`value for {${name}} starts with "-" and would be read as an option (exec_argv[${i}])`);
      if (offset === 0 && value === '') throw new TemplateError(`value for {${name}} is empty (exec_argv[${i}])`);
      return value;
    });
    // Anything brace-like left over is a placeholder we do not know.
    if (/[{}]/.test(arg.replace(PLACEHOLDER, ''))) throw new TemplateError(`exec_argv[${i}] has an unknown placeholder (use {worker_id} or {label:NAME})`);
    return out;
  });
}

/** The monitor's environment for child commands, minus its own secret. */
export function childEnv(base: NodeJS.ProcessEnv, secret: string | undefined, extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(base)) {
    if (k === 'HIVE_TOKEN' || (secret && v === secret)) continue;
    env[k] = v;
  }
  return { ...env, ...extra };
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  output: string;
  error?: string;
}

/** Runs argv without a shell, in its own process group, killed as a group on timeout. */
export function runCommand(argv: readonly string[], o: { clock: Clock; timeoutMs: number; env: NodeJS.ProcessEnv; signal?: AbortSignal }): Promise<RunResult> {
  return new Promise((resolve) => {
    let output = '';
    const keep = (chunk: Buffer) => {
      output = (output + chunk.toString()).slice(-OUTPUT_LIMIT);
    };
    let timedOut = false;
    const timer = new AbortController();
    let child: ReturnType<typeof spawn>;
    try {
      child = spawn(argv[0], argv.slice(1), { shell: false, detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: o.env });
    } catch (err) {
      resolve({ code: null, signal: null, timedOut: false, output: '', error: (err as Error).message });
      return;
    }
    const killGroup = () => {
      try {
        if (child.pid) process.kill(-child.pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    };
    const onAbort = () => killGroup();
    o.signal?.addEventListener('abort', onAbort, { once: true });
    void o.clock.sleep(o.timeoutMs, timer.signal).then(
      () => {
        timedOut = true;
        killGroup();
      },
      () => undefined,
    );
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    let spawnError: string | undefined;
    child.once('error', (err) => {
      spawnError = err.message;
    });
    child.once('close', (code, signal) => {
      timer.abort();
      o.signal?.removeEventListener('abort', onAbort);
      resolve({ code, signal, timedOut, output: output.trim(), error: spawnError });
    });
  });
}

export interface ExecActionDeps {
  clock: Clock;
  log: Logger;
  /** Programs (exec_argv[0], exactly as written in the policy) the monitor may run. */
  allow: readonly string[];
  /** The monitor's token, kept out of the child's environment. */
  secret?: string;
  baseEnv?: NodeJS.ProcessEnv;
}

export function createExecAction(deps: ExecActionDeps): RestartAction {
  const allow = new Set(deps.allow);
  return async (req, signal): Promise<ActionResult> => {
    let argv: string[];
    try {
      argv = renderArgv(req.policy.execArgv, req.worker);
    } catch (err) {
      return { ok: false, detail: `exec template: ${(err as Error).message}` };
    }
    if (!allow.has(argv[0])) return { ok: false, detail: `exec: "${argv[0]}" is not allowed on this monitor (--exec-allow)` };
    const env = childEnv(deps.baseEnv ?? process.env, deps.secret, {
      HIVE_WORKER_ID: req.worker.workerId,
      HIVE_RESTART_TRIGGER: req.trigger,
      HIVE_RESTART_ATTEMPT: String(req.attempt),
      HIVE_RESTART_ID: req.attemptId,
    });
    deps.log.info({ workerId: req.worker.workerId, argv, timeoutMs: req.policy.actionTimeoutMs }, 'running exec action');
    const r = await runCommand(argv, { clock: deps.clock, timeoutMs: req.policy.actionTimeoutMs, env, signal });
    const tail = r.output ? `: ${r.output.slice(-256)}` : '';
    if (r.error) return { ok: false, detail: `exec ${argv[0]} failed to start: ${r.error}` };
    if (r.timedOut) return { ok: false, detail: `exec ${argv[0]} timed out after ${req.policy.actionTimeoutMs} ms and was killed${tail}` };
    if (r.code !== 0) return { ok: false, detail: `exec ${argv[0]} exited with ${r.code ?? r.signal}${tail}` };
    return { ok: true, detail: `exec ${argv.join(' ')} exited 0${tail}` };
  };
}
