import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { EXIT } from '../../hivectl/errors.js';
import { freePort, ROOT, tempDir } from '../support/procs.js';
import { ADMIN, startTestHive, type TestHive } from './fixture.js';

// The real bin (node bin/hivectl.mjs), as an operator runs it, against a
// real hive: what it prints and the exit codes scripts rely on.

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

function hivectl(args: string[], env: Record<string, string>, opts: { until?: (stdout: string) => boolean } = {}): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(ROOT, 'bin', 'hivectl.mjs'), ...args], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.stdout.on('data', (c: Buffer) => {
      stdout += c.toString();
      if (opts.until?.(stdout)) child.kill('SIGINT');
    });
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('error', reject);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

describe('bin/hivectl.mjs', () => {
  let t: TestHive;
  let env: Record<string, string>;

  beforeAll(async () => {
    t = await startTestHive('hivectl_bin');
    await t.seed('gpu-1', { labels: { pool: 'h100' }, gpus: 1 });
    await t.seed('gpu-2', { labels: { pool: 'h100' } });
    env = { HIVE_URL: t.url, HIVE_TOKEN: ADMIN };
  });
  afterAll(async () => {
    await t?.stop();
  });

  it('--help on the program and on a command, exit 0; the exit codes are documented', async () => {
    const [top, sub] = await Promise.all([hivectl(['--help'], {}), hivectl(['workers', '--help'], {})]);
    expect(top.code).toBe(0);
    for (const cmd of ['workers', 'get', 'events', 'register', 'deregister', 'tokens', 'policy', 'silence', 'health-report']) expect(top.stdout).toContain(cmd);
    expect(top.stdout).toMatch(/3\s+the hive is unreachable/);
    expect(top.stdout).toContain('HIVE_URL');
    expect(sub.code).toBe(0);
    expect(sub.stdout).toContain('--watch');
    expect(sub.stdout).toContain('--selector');
  });

  it('prints the workers table, and the same workers as JSON and YAML', async () => {
    const [table, json, yaml] = await Promise.all([hivectl(['workers'], env), hivectl(['workers', '-o', 'json'], env), hivectl(['workers', '-o', 'yaml'], env)]);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/^WORKER\s+STATE\s+LAST SEEN/);
    expect(table.stdout).toMatch(/\ngpu-1\s+HEALTHY\s+\d+s\s+5s\s+1x 40\/80G\s+32\/64G\s+100G 10%\s+1\.00\n/);
    expect(table.stdout).not.toContain('\x1b['); // a pipe gets no colour
    expect(json.code).toBe(0);
    const parsed = JSON.parse(json.stdout);
    expect(parsed.workers.map((w: { workerId: string }) => w.workerId)).toEqual(['gpu-1', 'gpu-2']);
    expect(yaml.code).toBe(0);
    expect(parseYaml(yaml.stdout)).toEqual(parsed);
  });

  it('exit codes: 3 unreachable, 4 refused token, 5 unknown worker, 2 usage', async () => {
    const closed = await freePort();
    // (No token, and bad values of options, are covered in-process by commands.test.ts.)
    const [unreachable, badToken, unknown, usage] = await Promise.all([
      hivectl(['workers'], { HIVE_URL: `http://127.0.0.1:${closed}`, HIVE_TOKEN: ADMIN }),
      hivectl(['workers'], { ...env, HIVE_TOKEN: 'wrong-token-0000000000' }),
      hivectl(['get', 'no-such-worker'], env),
      hivectl(['workers', '--frobnicate'], env),
    ]);
    expect(unreachable.code).toBe(EXIT.UNREACHABLE);
    expect(unreachable.stderr).toContain(`cannot reach the hive at http://127.0.0.1:${closed}`);
    expect(badToken.code).toBe(EXIT.AUTH);
    expect(badToken.stderr).toContain('refused the token');
    expect(unknown.code).toBe(EXIT.NOT_FOUND);
    expect(unknown.stderr).toContain('"no-such-worker" is not registered');
    expect(usage.code).toBe(EXIT.USAGE);
    expect(usage.stderr).toContain("unknown option '--frobnicate'");
    for (const r of [unreachable, badToken, unknown]) expect(r.stdout).toBe('');
  });

  it('register prints the token alone on stdout; flags and --token-file instead of the environment', async () => {
    const dir = await tempDir();
    try {
      await writeFile(join(dir.path, 'admin-token'), ADMIN + '\n', { mode: 0o600 });
      const r = await hivectl(['--hive-url', t.url, '--token-file', join(dir.path, 'admin-token'), 'register', 'gpu-3', '--label', 'pool=a100'], {});
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/^\S{20,}\n$/);
      expect(r.stderr).toContain('shown only this once');
      const byFlag = await hivectl(['--hive-url', t.url, '--token', ADMIN, 'get', 'gpu-3', '-o', 'json'], {});
      expect(JSON.parse(byFlag.stdout).labels).toEqual({ pool: 'a100' });
    } finally {
      await dir.remove();
    }
  });

  it('workers --watch -o json streams changes until SIGINT, then exits 0', async () => {
    const r = await hivectl(['workers', '--watch', '-o', 'json'], env, { until: (out) => out.split('\n').filter(Boolean).length >= 2 });
    expect(r.code).toBe(0);
    const lines = r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l));
    expect(lines.map((l) => l.worker.workerId).sort()).toEqual(expect.arrayContaining(['gpu-1', 'gpu-2']));
    expect(lines[0].type).toBe('WORKER_CHANGE_TYPE_ADDED');
  });
});
