import { create, type MessageInitShape } from '@bufbuild/protobuf';
import { CompactStatsSchema, HeartbeatRequestSchema, type CompactStats, type HeartbeatRequest } from '../gen/hive/v1/registry_pb.js';

// Which form each heartbeat takes. The GPUs' identity (index, uuid, name,
// memory total) and the collectors' statuses are constant for a box; they
// go in a full heartbeat, the session's inventory, and later heartbeats
// carry only what changes: per-GPU values in inventory order, and the
// collectors that fail or changed. The inventory is sent again whenever it
// changes, in every new session, and when the hive asks for it.

type GpuInit = NonNullable<MessageInitShape<typeof HeartbeatRequestSchema>['gpus']>[number];
type CollectorInit = NonNullable<MessageInitShape<typeof HeartbeatRequestSchema>['collectors']>[number];

/** A heartbeat in the full form, as the sampler and the agent assemble it. */
export type HeartbeatInit = MessageInitShape<typeof HeartbeatRequestSchema> & { seq: bigint };

const MIB = 1024n * 1024n;

/** What the hive holds for this session: the inventory, and each collector as last sent. */
export interface HeldInventory {
  seq: bigint;
  gpus: { index: number; uuid: string; name: string; memoryTotalBytes: bigint }[];
  collectors: Map<string, { success: boolean; error: string }>;
}

function gpuKeyEquals(held: HeldInventory['gpus'][number], g: GpuInit): boolean {
  return held.index === (g.index ?? 0) && held.uuid === (g.uuid ?? '') && held.name === (g.name ?? '') && held.memoryTotalBytes === (g.memoryTotalBytes ?? 0n);
}

export function inventoryOf(hb: HeartbeatInit): HeldInventory {
  return {
    seq: hb.seq,
    gpus: (hb.gpus ?? []).map((g) => ({ index: g.index ?? 0, uuid: g.uuid ?? '', name: g.name ?? '', memoryTotalBytes: g.memoryTotalBytes ?? 0n })),
    collectors: new Map((hb.collectors ?? []).map((c) => [c.name ?? '', { success: c.success ?? false, error: c.error ?? '' }])),
  };
}

/**
 * The compact values of a heartbeat against a held inventory, or null when
 * the compact form cannot say exactly what the full form would: another set
 * of GPUs or collectors, memory not in whole MiB, utilisation not in whole
 * percent, a temperature not in whole degrees, or a value only some GPUs report.
 */
export function compactOf(hb: HeartbeatInit, held: HeldInventory): { compact: CompactStats; collectors: CollectorInit[] } | null {
  const gpus = hb.gpus ?? [];
  if (gpus.length !== held.gpus.length) return null;
  const used: bigint[] = [];
  const util: number[] = [];
  const temp: number[] = [];
  let utilCount = 0;
  let tempCount = 0;
  for (let i = 0; i < gpus.length; i++) {
    const g = gpus[i];
    if (!gpuKeyEquals(held.gpus[i], g)) return null;
    const bytes = g.memoryUsedBytes ?? 0n;
    if (bytes % MIB !== 0n) return null;
    used.push(bytes / MIB);
    if (g.utilization !== undefined) {
      const p = Math.round(g.utilization * 100);
      if (p / 100 !== g.utilization || p < 0 || p > 100) return null;
      util.push(p);
      utilCount++;
    }
    if (g.temperatureCelsius !== undefined) {
      if (!Number.isInteger(g.temperatureCelsius)) return null;
      temp.push(g.temperatureCelsius);
      tempCount++;
    }
  }
  if ((utilCount !== 0 && utilCount !== gpus.length) || (tempCount !== 0 && tempCount !== gpus.length)) return null;
  const collectors = hb.collectors ?? [];
  if (collectors.length !== held.collectors.size) return null;
  const changed: CollectorInit[] = [];
  for (const c of collectors) {
    const was = held.collectors.get(c.name ?? '');
    if (!was) return null;
    if (!(c.success ?? false) || was.success !== (c.success ?? false) || was.error !== (c.error ?? '')) changed.push(c);
  }
  return {
    compact: create(CompactStatsSchema, { inventorySeq: held.seq, gpuMemoryUsedMib: used, gpuUtilizationPercent: util, gpuTemperatureCelsius: temp }),
    collectors: changed,
  };
}

export interface HeartbeatEncoder {
  /** The heartbeat to send for this full-form content: compact when the hive holds the inventory. */
  encode(hb: HeartbeatInit): HeartbeatRequest;
  /** The hive lacks the inventory (a reply asked for it), or a new session starts. */
  reset(): void;
  /** Whether a reply's inventory_required flag, for the heartbeat it acknowledges, means the next must be full. */
  required(ackSeq: bigint): void;
  readonly held: HeldInventory | null;
}

export function createHeartbeatEncoder(): HeartbeatEncoder {
  let held: HeldInventory | null = null;
  return {
    get held() {
      return held;
    },
    encode(hb) {
      const c = held ? compactOf(hb, held) : null;
      if (!c || !held) {
        held = inventoryOf(hb);
        return create(HeartbeatRequestSchema, hb);
      }
      for (const s of c.collectors) held.collectors.set(s.name ?? '', { success: s.success ?? false, error: s.error ?? '' });
      return create(HeartbeatRequestSchema, { ...hb, gpus: [], collectors: c.collectors, compact: c.compact } as MessageInitShape<typeof HeartbeatRequestSchema>);
    },
    reset() {
      held = null;
    },
    required(ackSeq) {
      // Replies to compact heartbeats sent before the new inventory went out
      // ask again; only one about a heartbeat after it counts.
      if (held && ackSeq > held.seq) held = null;
    },
  };
}
