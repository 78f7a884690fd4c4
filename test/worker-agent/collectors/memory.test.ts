import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { createMemoryCollector, memoryUsedRatio, parseMeminfo } from '../../../worker-agent/collectors/memory.js';
import { fixturesDir, readFixture } from '../support/nvidia-smi-capture.js';

const KIB = 1024n;

describe('parseMeminfo', () => {
  it('this VM (captured with cat /proc/meminfo)', () => {
    expect(parseMeminfo(readFixture('proc/meminfo-local-vm.txt'))).toEqual({
      totalBytes: 24684096n * KIB,
      availableBytes: 24115692n * KIB,
      usedBytes: (24684096n - 24115692n) * KIB,
    });
  });

  it('a laptop under slab pressure (unix.stackexchange.com/q/415814)', () => {
    const reading = parseMeminfo(readFixture('proc/meminfo-unix-se-415814.txt'));
    expect(reading).toEqual({
      totalBytes: 8055268n * KIB,
      availableBytes: 247984n * KIB,
      usedBytes: (8055268n - 247984n) * KIB,
    });
    expect(memoryUsedRatio(reading)).toBeCloseTo(0.9692, 4);
  });

  it('a kernel without MemAvailable is an error, not a guess', () => {
    const old = readFixture('proc/meminfo-unix-se-415814.txt')
      .split('\n')
      .filter((l) => !l.startsWith('MemAvailable:'))
      .join('\n');
    expect(() => parseMeminfo(old)).toThrow(/no MemAvailable/);
    expect(() => parseMeminfo('')).toThrow(/no MemTotal/);
  });
});

describe('createMemoryCollector', () => {
  it('reads the injected path', async () => {
    const stats = await createMemoryCollector({ path: fixturesDir + 'proc/meminfo-unix-se-415814.txt' }).collect();
    expect(stats).toEqual({ memoryTotalBytes: 8055268n * KIB, memoryUsedBytes: (8055268n - 247984n) * KIB });
  });

  it.runIf(existsSync('/proc/meminfo'))('reads this machine by default', async () => {
    const stats = await createMemoryCollector().collect();
    expect(stats.memoryTotalBytes).toBeGreaterThan(0n);
    expect(stats.memoryUsedBytes).toBeLessThanOrEqual(stats.memoryTotalBytes!);
  });

  it('a missing file rejects', async () => {
    await expect(createMemoryCollector({ path: fixturesDir + 'proc/no-such-file' }).collect()).rejects.toThrow(/ENOENT/);
  });
});
