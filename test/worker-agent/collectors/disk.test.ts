import { mkdtempSync, rmSync } from 'node:fs';
import { statfs } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PartialCollectionError } from '../../../worker-agent/collectors/collector.js';
import { createDiskCollector, diskFreeRatio, diskFromStatfs } from '../../../worker-agent/collectors/disk.js';

describe('diskFromStatfs', () => {
  it('free is bavail blocks, total is all blocks, both times the block size', () => {
    expect(diskFromStatfs('/data', { bavail: 10, bsize: 4096, blocks: 100 })).toEqual({
      path: '/data',
      freeBytes: 40960n,
      totalBytes: 409600n,
    });
  });

  it('agrees with a real statfs, numbers or bigints', async () => {
    const big = await statfs('/', { bigint: true });
    const small = await statfs('/');
    const fromBig = diskFromStatfs('/', big);
    expect(fromBig.totalBytes).toBe(big.blocks * big.bsize);
    expect(fromBig.freeBytes).toBe(big.bavail * big.bsize);
    expect(diskFromStatfs('/', small).totalBytes).toBe(BigInt(small.blocks) * BigInt(small.bsize));
  });

  it('free ratio, undefined for an empty filesystem', () => {
    expect(diskFreeRatio({ freeBytes: 5n, totalBytes: 100n })).toBe(0.05);
    expect(diskFreeRatio({ freeBytes: 0n, totalBytes: 0n })).toBeUndefined();
  });
});

describe('createDiskCollector', () => {
  const dir = mkdtempSync(join(tmpdir(), 'hive-disk-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('defaults to /', async () => {
    const { disks } = await createDiskCollector().collect();
    expect(disks).toHaveLength(1);
    expect(disks![0]!.path).toBe('/');
    expect(disks![0]!.totalBytes).toBeGreaterThan(0n);
  });

  it('reports every configured path', async () => {
    const { disks } = await createDiskCollector({ paths: ['/', dir] }).collect();
    expect(disks!.map((d) => d.path)).toEqual(['/', dir]);
  });

  it('one unreadable path fails the collector but keeps the others', async () => {
    const missing = join(dir, 'missing');
    const err = await createDiskCollector({ paths: ['/', missing] })
      .collect()
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PartialCollectionError);
    expect((err as Error).message).toContain(`${missing}: ENOENT`);
    expect((err as PartialCollectionError).partial.disks!.map((d) => d.path)).toEqual(['/']);
  });
});
