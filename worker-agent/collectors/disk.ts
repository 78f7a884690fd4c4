// Free and total space per configured path. Free is what an unprivileged
// process can still write (bavail), not what root could (bfree).

import { statfs as fsStatfs } from 'node:fs/promises';
import { PartialCollectionError, type Collector } from './collector.js';

/** One filesystem path, in the init shape of hive.v1.DiskStats. */
export interface DiskReading {
  path: string;
  freeBytes: bigint;
  totalBytes: bigint;
}

/** The statfs fields we use; fs.promises.statfs gives numbers or bigints. */
export interface StatfsLike {
  bavail: number | bigint;
  bsize: number | bigint;
  blocks: number | bigint;
}

export function diskFromStatfs(path: string, stats: StatfsLike): DiskReading {
  const bsize = BigInt(stats.bsize);
  return { path, freeBytes: BigInt(stats.bavail) * bsize, totalBytes: BigInt(stats.blocks) * bsize };
}

export function diskFreeRatio(disk: { freeBytes: bigint; totalBytes: bigint }): number | undefined {
  return disk.totalBytes === 0n ? undefined : Number(disk.freeBytes) / Number(disk.totalBytes);
}

export interface DiskCollectorOptions {
  paths?: readonly string[];
  statfs?: (path: string) => Promise<StatfsLike>;
}

export function createDiskCollector(options: DiskCollectorOptions = {}): Collector {
  const { paths = ['/'], statfs = (p: string) => fsStatfs(p, { bigint: true }) } = options;
  return {
    name: 'disk',
    async collect() {
      const results = await Promise.allSettled(paths.map(async (p) => diskFromStatfs(p, await statfs(p))));
      const disks: DiskReading[] = [];
      const failures: string[] = [];
      results.forEach((r, i) => {
        if (r.status === 'fulfilled') disks.push(r.value);
        else failures.push(`${paths[i]}: ${r.reason instanceof Error ? r.reason.message : String(r.reason)}`);
      });
      // One unreadable mount must not hide the others.
      if (failures.length > 0) throw new PartialCollectionError(`statfs failed for ${failures.join('; ')}`, { disks });
      return { disks };
    },
  };
}
