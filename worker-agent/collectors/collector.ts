// The contract every collector honours: one named source of stats, read once
// per heartbeat. A collector reports trouble by rejecting; the runner turns that
// into a CollectorStatus, so a broken source never takes the heartbeat down.

import type { DiskReading } from './disk.js';
import type { GpuReading } from './gpu.js';

/** The resource part of a heartbeat, in the shape of the proto init objects. */
export interface CollectedStats {
  gpus: GpuReading[];
  memoryUsedBytes: bigint;
  memoryTotalBytes: bigint;
  disks: DiskReading[];
  load1: number;
}

export interface Collector {
  /** Short, stable name; it becomes CollectorStatus.name. */
  readonly name: string;
  /** Reads the source once. The signal aborts when the runner gives up on it. */
  collect(signal?: AbortSignal): Promise<Partial<CollectedStats>>;
}

/**
 * Rejection that still carries what could be read (one of several disk paths
 * failed): the runner keeps the partial stats and marks the collector failed.
 */
export class PartialCollectionError extends Error {
  constructor(
    message: string,
    readonly partial: Partial<CollectedStats>,
  ) {
    super(message);
    this.name = 'PartialCollectionError';
  }
}

export function emptyStats(): CollectedStats {
  return { gpus: [], memoryUsedBytes: 0n, memoryTotalBytes: 0n, disks: [], load1: 0 };
}
