import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { CommandTimeoutError } from '../../../worker-agent/collectors/bounded-exec.js';
import {
  createGpuCollector,
  isUnavailable,
  NVIDIA_SMI_ARGS,
  NVIDIA_SMI_FIELDS,
  NvidiaSmiParseError,
  parseNvidiaSmiCsv,
  parseNvidiaSmiCsvWithNotes,
} from '../../../worker-agent/collectors/gpu.js';
import { projectQueryGpu, readFixture } from '../support/nvidia-smi-capture.js';

const MIB = 1024n * 1024n;
const UUID = 'GPU-00000000-0000-0000-0000-000000000000';

const captures = {
  h100Mig: 'nvidia-smi/linux-x86_64__nvidia-h100-mig__590.48.01__idle.query-gpu-all.csv',
  h200: 'nvidia-smi/linux-x86_64__nvidia-h200__580.173.02__idle.query-gpu-all.csv',
  rtx2080: 'nvidia-smi/linux-x86_64__nvidia-geforce-rtx-2080-super__595.71.05__idle.query-gpu-all.csv',
};
const ourQuery = (fixture: string) => projectQueryGpu(readFixture(fixture), NVIDIA_SMI_FIELDS);

describe('parseNvidiaSmiCsv on real captures', () => {
  it('H100 with MIG enabled: utilization is [N/A] and stays absent', () => {
    const text = ourQuery(captures.h100Mig);
    expect(text).toBe(`0, ${UUID}, NVIDIA H100 80GB HBM3, 59, 81559, [N/A], 42\n`);
    const [gpu, ...rest] = parseNvidiaSmiCsv(text);
    expect(rest).toEqual([]);
    expect(gpu).toEqual({
      index: 0,
      uuid: UUID,
      name: 'NVIDIA H100 80GB HBM3',
      memoryUsedBytes: 59n * MIB,
      memoryTotalBytes: 81559n * MIB,
      temperatureCelsius: 42,
    });
    expect(gpu).not.toHaveProperty('utilization');
  });

  it('H200 idle', () => {
    expect(parseNvidiaSmiCsv(ourQuery(captures.h200))).toEqual([
      {
        index: 0,
        uuid: UUID,
        name: 'NVIDIA H200',
        memoryUsedBytes: 0n,
        memoryTotalBytes: 143771n * MIB,
        utilization: 0,
        temperatureCelsius: 37,
      },
    ]);
  });

  it('GeForce RTX 2080 SUPER: a name with spaces', () => {
    expect(parseNvidiaSmiCsv(ourQuery(captures.rtx2080))).toEqual([
      {
        index: 0,
        uuid: UUID,
        name: 'NVIDIA GeForce RTX 2080 SUPER',
        memoryUsedBytes: 214n * MIB,
        memoryTotalBytes: 8192n * MIB,
        utilization: 0,
        temperatureCelsius: 40,
      },
    ]);
  });

  it('reads several lines and ignores blank ones and CRLF', () => {
    const text = ['', ourQuery(captures.h100Mig), '', ourQuery(captures.rtx2080).replace('\n', '\r\n'), '  '].join('\n');
    const gpus = parseNvidiaSmiCsv(text);
    expect(gpus.map((g) => g.name)).toEqual(['NVIDIA H100 80GB HBM3', 'NVIDIA GeForce RTX 2080 SUPER']);
  });

  it('empty output is no GPUs', () => {
    expect(parseNvidiaSmiCsv('')).toEqual([]);
    expect(parseNvidiaSmiCsv('\n\n')).toEqual([]);
  });
});

describe('parseNvidiaSmiCsv on unavailable and malformed values', () => {
  it('knows the forms nvidia-smi uses for a value it cannot read', () => {
    // `N/A` bare and bracketed both occur in the RTX 2080 capture (temperature.memory, edpp_multiplier).
    for (const v of ['N/A', '[N/A]', '[Not Supported]', '[Insufficient Permissions]', '[Unknown Error]']) {
      expect(isUnavailable(v)).toBe(true);
    }
    for (const v of ['0', '42', 'NVIDIA H200', '']) expect(isUnavailable(v)).toBe(false);
  });

  it('unreadable memory becomes 0 with a note; unreadable utilization and temperature stay absent', () => {
    // The H100 line with the values a containerised MIG A100 gave for memory.*
    // (StableSwarmUI issue #388) and bare N/A temperature.
    const line = ourQuery(captures.h100Mig)
      .replace(', 59, 81559,', ', [Insufficient Permissions], [Not Supported],')
      .replace(', 42\n', ', N/A\n');
    const { gpus, notes } = parseNvidiaSmiCsvWithNotes(line);
    expect(gpus[0]).toEqual({ index: 0, uuid: UUID, name: 'NVIDIA H100 80GB HBM3', memoryUsedBytes: 0n, memoryTotalBytes: 0n });
    expect(notes).toEqual([
      `GPU 0 (${UUID}): memory.used is [Insufficient Permissions]; reported as 0`,
      `GPU 0 (${UUID}): memory.total is [Not Supported]; reported as 0`,
    ]);
  });

  it('a line with the wrong number of fields is an error naming the line', () => {
    const text = ourQuery(captures.h200) + 'No devices were found\n';
    expect(() => parseNvidiaSmiCsv(text)).toThrow(NvidiaSmiParseError);
    expect(() => parseNvidiaSmiCsv(text)).toThrow(/line 2 \("No devices were found"\): expected 7 fields/);
  });

  it('a value with units (a query without nounits) is an error naming the line and column', () => {
    const withUnits = projectQueryGpu(readFixture(captures.h200), NVIDIA_SMI_FIELDS).replace(', 0, 143771,', ', 0 MiB, 143771 MiB,');
    expect(() => parseNvidiaSmiCsv(withUnits)).toThrow(/line 1 .*memory\.used "0 MiB" is not a number of MiB/);
  });

  it('a non-numeric index is an error', () => {
    expect(() => parseNvidiaSmiCsv(`x, ${UUID}, NVIDIA H200, 0, 1, 0, 30`)).toThrow(/index "x" is not a number/);
  });
});

describe('createGpuCollector with a real process', () => {
  const dir = mkdtempSync(join(tmpdir(), 'hive-gpu-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  function script(name: string, body: string): string {
    const path = join(dir, name);
    writeFileSync(path, `#!/bin/sh\n${body}\n`, { mode: 0o755 });
    return path;
  }

  it('runs the command with our query and parses its output', async () => {
    const out = join(dir, 'h100.txt');
    writeFileSync(out, ourQuery(captures.h100Mig));
    const expected = NVIDIA_SMI_ARGS.join(' ');
    const fake = script('nvidia-smi-ok', `[ "$*" = "${expected}" ] || { echo "bad args: $*" >&2; exit 2; }\nexec cat '${out}'`);
    const stats = await createGpuCollector({ command: fake }).collect();
    expect(stats.gpus).toHaveLength(1);
    expect(stats.gpus![0]!.name).toBe('NVIDIA H100 80GB HBM3');
  });

  it('no nvidia-smi on the host means no GPUs, not a failure', async () => {
    await expect(createGpuCollector({ command: join(dir, 'not-installed') }).collect()).resolves.toEqual({ gpus: [] });
  });

  it('a failing nvidia-smi is a failure carrying its exit code and message', async () => {
    const fake = script(
      'nvidia-smi-broken',
      `echo "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver." >&2\nexit 9`,
    );
    await expect(createGpuCollector({ command: fake }).collect()).rejects.toThrow(
      /exited with code 9: NVIDIA-SMI has failed because it couldn't communicate/,
    );
  });

  it('a hung nvidia-smi is killed, with what it forked, after the timeout', async () => {
    const pidFile = join(dir, 'hung.pid');
    // `sleep` is a separate process holding stdout open, as a wedged child would.
    const fake = script('nvidia-smi-hung', `sleep 30 &\necho $! > '${pidFile}'\nwait`);
    const started = Date.now();
    const err = await createGpuCollector({ command: fake, timeoutMs: 300 })
      .collect()
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CommandTimeoutError);
    expect((err as Error).message).toMatch(/did not finish within 300 ms and was killed/);
    expect(Date.now() - started).toBeLessThan(5000);

    const sleepPid = Number(readFileSync(pidFile, 'utf8'));
    await vi.waitFor(() => expect(isGone(sleepPid)).toBe(true), { timeout: 5000 });
  });

  it('aborting the collect kills the command', async () => {
    const fake = script('nvidia-smi-slow', 'exec sleep 30');
    const abort = new AbortController();
    const pending = createGpuCollector({ command: fake, timeoutMs: 60_000 }).collect(abort.signal);
    abort.abort(new Error('runner gave up'));
    await expect(pending).rejects.toThrow('runner gave up');
  });
});

/** Gone, or a zombie nobody has reaped yet: either way it no longer runs. */
function isGone(pid: number): boolean {
  const stat = `/proc/${pid}/stat`;
  if (!existsSync(stat)) return true;
  try {
    return readFileSync(stat, 'utf8').split(') ')[1]?.startsWith('Z') ?? true;
  } catch {
    return true;
  }
}
