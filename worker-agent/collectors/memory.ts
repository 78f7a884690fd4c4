// Host memory from /proc/meminfo. "Used" is MemTotal - MemAvailable: the
// kernel's own estimate of what could be handed out without swapping, so page
// cache does not count as used.

import { readFile } from 'node:fs/promises';
import type { Collector } from './collector.js';

export interface MemoryReading {
  totalBytes: bigint;
  availableBytes: bigint;
  usedBytes: bigint;
}

export function parseMeminfo(text: string): MemoryReading {
  const values = new Map<string, bigint>();
  for (const raw of text.split('\n')) {
    const m = /^([^:\s]+):\s+(\d+)(?:\s+(kB))?$/.exec(raw.trim());
    if (m) values.set(m[1]!, BigInt(m[2]!) * (m[3] ? 1024n : 1n));
  }
  const totalBytes = values.get('MemTotal');
  const availableBytes = values.get('MemAvailable');
  if (totalBytes === undefined) throw new Error('meminfo has no MemTotal line');
  if (availableBytes === undefined) throw new Error('meminfo has no MemAvailable line (kernel older than 3.14?)');
  const usedBytes = totalBytes > availableBytes ? totalBytes - availableBytes : 0n;
  return { totalBytes, availableBytes, usedBytes };
}

export function memoryUsedRatio(reading: { totalBytes: bigint; usedBytes: bigint }): number | undefined {
  return reading.totalBytes === 0n ? undefined : Number(reading.usedBytes) / Number(reading.totalBytes);
}

export function createMemoryCollector(options: { path?: string } = {}): Collector {
  const { path = '/proc/meminfo' } = options;
  return {
    name: 'memory',
    async collect() {
      const reading = parseMeminfo(await readFile(path, 'utf8'));
      return { memoryTotalBytes: reading.totalBytes, memoryUsedBytes: reading.usedBytes };
    },
  };
}
