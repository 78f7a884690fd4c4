import { create } from '@bufbuild/protobuf';
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { RestartAction, RestartMode, RestartPolicySchema } from '../../../gen/hive/v1/policy_pb.js';
import { ManualClock, systemClock } from '../../../lib/clock.js';
import { msToDuration } from '../../../lib/duration.js';
import { childEnv, createExecAction, renderArgv, runCommand, TemplateError } from '../../../monitor/actions/exec.js';
import { effectivePolicy } from '../../../monitor/policy.js';
import { silentLog, worker } from '../support.js';

// The exec action: argv templates without a shell, whole-argument
// substitution, an allow-list, a timeout that kills the process group.

const dir = mkdtempSync(join(tmpdir(), 'hive-exec-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A script that appends its arguments (one per line, then a blank line) to a file. */
function recorder(): { path: string; out: string } {
  const out = join(dir, `argv-${Math.random().toString(36).slice(2)}.txt`);
  const path = join(dir, `record-${Math.random().toString(36).slice(2)}.sh`);
  writeFileSync(path, `#!/bin/sh\nfor a in "$@"; do printf '%s\\n' "$a" >> "${out}"; done\nprintf '\\n' >> "${out}"\necho "token=$HIVE_TOKEN id=$HIVE_WORKER_ID"\n`);
  chmodSync(path, 0o755);
  return { path, out };
}

const req = (argv: string[], labels: Record<string, string> = {}, timeoutMs = 5000) => ({
  worker: worker({ id: 'gpu-7', labels }),
  policy: effectivePolicy(create(RestartPolicySchema, { mode: RestartMode.ON_STALE, action: RestartAction.EXEC, execArgv: argv, actionTimeout: msToDuration(timeoutMs) }), 1000, 'worker'),
  trigger: 'stale' as const,
  attempt: 1,
  attemptId: 'rst_test',
  reason: 'test',
});

describe('renderArgv', () => {
  const w = { workerId: 'gpu-7', labels: { pod: 'worker-7', ns: 'gpu', evil: '$(rm -rf /); echo pwned', dash: '--force', space: 'a b c' } };

  it('substitutes {worker_id} and {label:NAME} inside their own argument', () => {
    expect(renderArgv(['systemctl', 'restart', 'hive-worker@{worker_id}.service'], w)).toEqual(['systemctl', 'restart', 'hive-worker@gpu-7.service']);
    expect(renderArgv(['kubectl', 'delete', 'pod', '-n', '{label:ns}', '{label:pod}'], w)).toEqual(['kubectl', 'delete', 'pod', '-n', 'gpu', 'worker-7']);
  });

  it('a value can never become a second argument or a command', () => {
    expect(renderArgv(['echo', '{label:evil}', '{label:space}'], w)).toEqual(['echo', '$(rm -rf /); echo pwned', 'a b c']);
  });

  it('refuses what it cannot render safely', () => {
    expect(() => renderArgv(['echo', '{label:dash}'], w)).toThrow(/would be read as an option/);
    expect(renderArgv(['echo', '--name={label:dash}'], w)).toEqual(['echo', '--name=--force']); // inside an argument it is only a value
    expect(() => renderArgv(['echo', '{label:missing}'], w)).toThrow(/no label "missing"/);
    expect(() => renderArgv(['{worker_id}', 'x'], w)).toThrow(/the program/);
    expect(() => renderArgv(['echo', '{hostname}'], w)).toThrow(/unknown placeholder/);
    expect(() => renderArgv([], w)).toThrow(TemplateError);
  });
});

describe('exec action', () => {
  it('runs an allowed program with the rendered argv, no shell, and without the monitor\'s token in its environment', async () => {
    const r = recorder();
    const exec = createExecAction({ clock: systemClock, log: silentLog, allow: [r.path], secret: 'secret-monitor-token', baseEnv: { PATH: process.env.PATH, HIVE_TOKEN: 'secret-monitor-token', OTHER: 'secret-monitor-token' } });
    const res = await exec(req([r.path, '{worker_id}', '--pod={label:pod}', '{label:evil}'], { pod: 'p1', evil: '`reboot`; $(id)' }), new AbortController().signal);
    expect(res.ok).toBe(true);
    expect(res.detail).toContain('token= id=gpu-7');
    expect(readFileSync(r.out, 'utf8')).toBe('gpu-7\n--pod=p1\n`reboot`; $(id)\n\n');
  });

  it('refuses a program that is not allowed, and a template it cannot render', async () => {
    const r = recorder();
    const exec = createExecAction({ clock: systemClock, log: silentLog, allow: [] });
    expect(await exec(req([r.path, '{worker_id}']), new AbortController().signal)).toMatchObject({ ok: false, detail: expect.stringMatching(/not allowed/) });
    const exec2 = createExecAction({ clock: systemClock, log: silentLog, allow: [r.path] });
    expect(await exec2(req([r.path, '{label:nope}']), new AbortController().signal)).toMatchObject({ ok: false, detail: expect.stringMatching(/no label/) });
    expect(existsSync(r.out)).toBe(false);
  });

  it('reports a non-zero exit and a program that cannot start', async () => {
    const exec = createExecAction({ clock: systemClock, log: silentLog, allow: ['/bin/sh', '/nonexistent/prog'] });
    expect(await exec(req(['/bin/sh', '-c', 'echo boom >&2; exit 3']), new AbortController().signal)).toMatchObject({ ok: false, detail: expect.stringMatching(/exited with 3: boom/) });
    expect(await exec(req(['/nonexistent/prog']), new AbortController().signal)).toMatchObject({ ok: false, detail: expect.stringMatching(/failed to start/) });
  });

  it('kills the whole process group on timeout (injected clock)', async () => {
    const clock = new ManualClock();
    const pidFifo = join(dir, 'grandchild.pid');
    execFileSync('mkfifo', [pidFifo]);
    const run = runCommand(['/bin/sh', '-c', `sleep 30 & echo $! > ${pidFifo}; wait`], { clock, timeoutMs: 1000, env: { PATH: process.env.PATH } });
    // Reading the FIFO waits for the shell to write its child's pid: both
    // are running before time moves.
    const grandchild = Number(await readFile(pidFifo, 'utf8'));
    expect(grandchild).toBeGreaterThan(0);
    await clock.advance(1000);
    const r = await run;
    expect(r.timedOut).toBe(true);
    expect(r.signal).toBe('SIGKILL');
    // run settles when the output pipes close, and the grandchild held them
    // too, so it has been killed: it is exiting (PF_EXITING is set before a
    // dying process closes its files), a zombie waiting for an init that
    // may not reap (containers), or gone.
    const PF_EXITING = 0x4;
    const running = () => {
      let stat: string;
      try {
        stat = readFileSync(`/proc/${grandchild}/stat`, 'utf8');
      } catch {
        return false;
      }
      const [state, , , , , , flags] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      return !/[ZX]/.test(state!) && (Number(flags) & PF_EXITING) === 0;
    };
    expect(running()).toBe(false);
  });

  it('childEnv drops the token by name and by value', () => {
    expect(childEnv({ PATH: '/bin', HIVE_TOKEN: 't', X: 'tok-123', Y: 'y' }, 'tok-123', { HIVE_WORKER_ID: 'w' })).toEqual({ PATH: '/bin', Y: 'y', HIVE_WORKER_ID: 'w' });
  });
});
