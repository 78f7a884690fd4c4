// Runs every collector concurrently, each under a deadline, and reports each
// one's outcome the way node_exporter reports scrape success: a failing or hung
// collector costs its own stats, never the heartbeat.

import { create } from '@bufbuild/protobuf';
import { CollectorStatusSchema, type CollectorStatus } from '../../gen/hive/v1/registry_pb.js';
import type { Clock } from '../../lib/clock.js';
import { boundText } from '../wire-text.js';
import { emptyStats, PartialCollectionError, type CollectedStats, type Collector } from './collector.js';

export interface CollectorRun {
  stats: CollectedStats;
  statuses: CollectorStatus[];
}

export interface RunCollectorsOptions {
  clock: Clock;
  /** Per collector; a collector still running then is abandoned and aborted. */
  timeoutMs?: number;
}

export class CollectorTimeoutError extends Error {
  constructor(name: string, timeoutMs: number) {
    super(`collector ${name} did not finish within ${timeoutMs} ms`);
    this.name = 'CollectorTimeoutError';
  }
}

export async function runCollectors(
  collectors: readonly Collector[],
  options: RunCollectorsOptions,
): Promise<CollectorRun> {
  const { clock, timeoutMs = 10_000 } = options;
  const durationsMs: number[] = collectors.map(() => 0);

  const settled = await Promise.allSettled(
    collectors.map(async (collector, i) => {
      const started = clock.now();
      try {
        return await withDeadline(collector, clock, timeoutMs);
      } finally {
        durationsMs[i] = clock.now() - started;
      }
    }),
  );

  const stats = emptyStats();
  const statuses = settled.map((outcome, i) => {
    const name = collectors[i]!.name;
    const durationSeconds = durationsMs[i]! / 1000;
    if (outcome.status === 'fulfilled') {
      merge(stats, outcome.value);
      return create(CollectorStatusSchema, { name, success: true, error: '', durationSeconds });
    }
    const reason: unknown = outcome.reason;
    if (reason instanceof PartialCollectionError) merge(stats, reason.partial);
    // The hive refuses the whole heartbeat over one long or multi-line string.
    return create(CollectorStatusSchema, { name, success: false, error: boundText(describe(reason)), durationSeconds });
  });
  return { stats, statuses };
}

async function withDeadline(
  collector: Collector,
  clock: Clock,
  timeoutMs: number,
): Promise<Partial<CollectedStats>> {
  const abandon = new AbortController();
  const deadline = new AbortController();
  try {
    return await Promise.race([
      // A collector that throws synchronously still becomes a rejection here.
      Promise.resolve().then(() => collector.collect(abandon.signal)),
      clock.sleep(timeoutMs, deadline.signal).then(() => {
        const err = new CollectorTimeoutError(collector.name, timeoutMs);
        abandon.abort(err);
        throw err;
      }),
    ]);
  } finally {
    deadline.abort();
  }
}

function merge(into: CollectedStats, part: Partial<CollectedStats>): void {
  if (part.gpus) into.gpus.push(...part.gpus.map((g) => ({ ...g, uuid: boundText(g.uuid), name: boundText(g.name) })));
  if (part.disks) into.disks.push(...part.disks);
  if (part.memoryUsedBytes !== undefined) into.memoryUsedBytes = part.memoryUsedBytes;
  if (part.memoryTotalBytes !== undefined) into.memoryTotalBytes = part.memoryTotalBytes;
  if (part.load1 !== undefined) into.load1 = part.load1;
}

function describe(err: unknown): string {
  if (err instanceof Error) return err.message || err.name;
  return String(err);
}
