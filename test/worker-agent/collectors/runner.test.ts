import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { flushMicrotasks, ManualClock } from '../../../lib/clock.js';
import type { Collector } from '../../../worker-agent/collectors/collector.js';
import { createDiskCollector } from '../../../worker-agent/collectors/disk.js';
import { createGpuCollector } from '../../../worker-agent/collectors/gpu.js';
import { createLoadCollector } from '../../../worker-agent/collectors/load.js';
import { createMemoryCollector } from '../../../worker-agent/collectors/memory.js';
import { runCollectors } from '../../../worker-agent/collectors/runner.js';
import { fixturesDir } from '../support/nvidia-smi-capture.js';

const KIB = 1024n;

describe('runCollectors', () => {
  const dir = mkdtempSync(join(tmpdir(), 'hive-runner-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('a failing collector costs its own stats, not the run', async () => {
    const brokenSmi = join(dir, 'nvidia-smi');
    writeFileSync(brokenSmi, '#!/bin/sh\necho "Unable to determine the device handle for GPU0000:01:00.0: Unknown Error" >&2\nexit 255\n', { mode: 0o755 });
    const clock = new ManualClock();
    const { stats, statuses } = await runCollectors(
      [
        createGpuCollector({ command: brokenSmi }),
        createMemoryCollector({ path: fixturesDir + 'proc/meminfo-unix-se-415814.txt' }),
        createDiskCollector({ paths: ['/'] }),
        createLoadCollector({ loadavg: () => [0.25, 0.5, 0.75] }),
      ],
      { clock },
    );

    expect(statuses.map((s) => [s.name, s.success])).toEqual([
      ['gpu', false],
      ['memory', true],
      ['disk', true],
      ['load', true],
    ]);
    expect(statuses[0]!.error).toMatch(/exited with code 255: Unable to determine the device handle/);
    expect(statuses[1]!.error).toBe('');
    expect(stats.gpus).toEqual([]);
    expect(stats.memoryTotalBytes).toBe(8055268n * KIB);
    expect(stats.disks.map((d) => d.path)).toEqual(['/']);
    expect(stats.load1).toBe(0.25);
  });

  it('a collector that throws synchronously is reported, and partial results are kept', async () => {
    const throwsNow: Collector = {
      name: 'sync',
      collect() {
        throw new Error('boom');
      },
    };
    const halfDisks = createDiskCollector({ paths: ['/', join(dir, 'gone')] });
    const { stats, statuses } = await runCollectors([throwsNow, halfDisks], { clock: new ManualClock() });
    expect(statuses.map((s) => [s.name, s.success, s.error.split(':')[0]])).toEqual([
      ['sync', false, 'boom'],
      ['disk', false, 'statfs failed for ' + join(dir, 'gone')],
    ]);
    expect(stats.disks.map((d) => d.path)).toEqual(['/']);
  });

  it('times each collector on the clock and abandons one that hangs', async () => {
    const clock = new ManualClock();
    let hungSignal: AbortSignal | undefined;
    const fast: Collector = { name: 'fast', collect: async () => ({ load1: 1 }) };
    const slow: Collector = {
      name: 'slow',
      collect: async () => {
        await clock.sleep(250);
        return { memoryUsedBytes: 1n, memoryTotalBytes: 2n };
      },
    };
    const hung: Collector = {
      name: 'hung',
      collect: (signal) => {
        hungSignal = signal;
        return new Promise(() => {});
      },
    };

    const run = runCollectors([fast, slow, hung], { clock, timeoutMs: 1000 });
    await flushMicrotasks();
    await clock.advance(250);
    await clock.advance(750);
    const { stats, statuses } = await run;

    expect(statuses.map((s) => [s.name, s.success, s.durationSeconds])).toEqual([
      ['fast', true, 0],
      ['slow', true, 0.25],
      ['hung', false, 1],
    ]);
    expect(statuses[2]!.error).toBe('collector hung did not finish within 1000 ms');
    expect(hungSignal?.aborted).toBe(true);
    expect(stats).toMatchObject({ load1: 1, memoryUsedBytes: 1n, memoryTotalBytes: 2n });
    // Every deadline was cancelled or fired: nothing is left sleeping.
    expect(clock.pending).toBe(0);
  });

  it('no collectors, empty stats', async () => {
    await expect(runCollectors([], { clock: new ManualClock() })).resolves.toEqual({
      stats: { gpus: [], memoryUsedBytes: 0n, memoryTotalBytes: 0n, disks: [], load1: 0 },
      statuses: [],
    });
  });
});
