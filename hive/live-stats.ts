import { fromBinary } from '@bufbuild/protobuf';
import { WorkerStatsSchema, type CollectorStatus, type CompactStats, type HeartbeatRequest } from '../gen/hive/v1/registry_pb.js';
import { invalidArgument } from './errors.js';
import { hotStatsOf, mergeHot, packStats, unpackHeld, unpackStats } from './packed-stats.js';
import type { LiveStats, LiveWorker } from './worker.js';

// A worker's last reported stats, merged from heartbeats in either form.
//
// Full form: the heartbeat carries every GPU and collector; it becomes the
// worker's inventory for its session (keyed by session and seq). Compact
// form: per-GPU values in inventory order and only the collectors that
// failed or changed; it names the inventory it refers to. The worker holds
// its stats packed (hive/packed-stats.ts): a full heartbeat is packed as it
// is; a compact one is written in place into the worker's hot values beside
// them, and only one that does not fit there (collector news, other disks,
// numbers past 2^53) is merged into the unpacked stats, packed again.

const MIB = 1024n * 1024n;

export function emptyLiveStats(): LiveStats {
  return { gpus: [], memoryUsedBytes: 0n, memoryTotalBytes: 0n, disks: [], load1: 0, collectors: [] };
}

/** The values outside the inventory, taken from every heartbeat (into an unpacked copy, packed next). */
function copyPlain(to: LiveStats, from: LiveStats): void {
  to.memoryUsedBytes = from.memoryUsedBytes;
  to.memoryTotalBytes = from.memoryTotalBytes;
  to.load1 = from.load1;
  to.probeLatencyP50Seconds = from.probeLatencyP50Seconds;
  to.probeLatencyP95Seconds = from.probeLatencyP95Seconds;
  to.probeLatencyP99Seconds = from.probeLatencyP99Seconds;
  to.disks = from.disks;
}

function copyCollector(d: CollectorStatus, s: CollectorStatus): void {
  d.name = s.name;
  d.success = s.success;
  d.error = s.error;
  d.durationSeconds = s.durationSeconds;
}

function indexOfCollector(list: readonly CollectorStatus[], name: string): number {
  for (let i = 0; i < list.length; i++) if (list[i].name === name) return i;
  return -1;
}

/** Checks of the compact form that need no inventory (the rest of the heartbeat is checked by validateHeartbeat). */
export function checkCompactShape(hb: HeartbeatRequest, c: CompactStats): void {
  if (hb.gpus.length > 0) throw invalidArgument('gpus must be empty in a compact heartbeat (the values go in compact)');
  if (c.inventorySeq === 0n || c.inventorySeq >= hb.seq) throw invalidArgument(`compact.inventory_seq ${c.inventorySeq} must name an earlier heartbeat of the session (seq ${hb.seq})`);
  const n = c.gpuMemoryUsedMib.length;
  if (n > 64) throw invalidArgument('more than 64 gpus');
  if (c.gpuUtilizationPercent.length !== 0 && c.gpuUtilizationPercent.length !== n)
    throw invalidArgument(`compact.gpu_utilization_percent has ${c.gpuUtilizationPercent.length} values for ${n} gpus`);
  if (c.gpuTemperatureCelsius.length !== 0 && c.gpuTemperatureCelsius.length !== n)
    throw invalidArgument(`compact.gpu_temperature_celsius has ${c.gpuTemperatureCelsius.length} values for ${n} gpus`);
  for (let i = 0; i < c.gpuUtilizationPercent.length; i++)
    if (c.gpuUtilizationPercent[i] > 100) throw invalidArgument(`compact.gpu_utilization_percent[${i}] is ${c.gpuUtilizationPercent[i]}, more than 100`);
  for (let i = 0; i < c.gpuTemperatureCelsius.length; i++) {
    const t = c.gpuTemperatureCelsius[i];
    if (t < -273 || t > 1000) throw invalidArgument(`compact.gpu_temperature_celsius[${i}] is ${t}, out of range`);
  }
  for (let i = 0; i < hb.collectors.length; i++)
    if (indexOfCollector(hb.collectors, hb.collectors[i].name) !== i) throw invalidArgument(`collector "${hb.collectors[i].name}" is listed twice`);
}

const countMismatch = (values: number, gpus: number) => invalidArgument(`compact.gpu_memory_used_mib has ${values} values; the inventory has ${gpus} gpus`);
const overTotal = (gpuIndex: number) => invalidArgument(`gpu ${gpuIndex}: memory used exceeds memory_total_bytes`);

/** Checks of a compact heartbeat against the inventory it refers to. */
function checkAgainstInventory(s: LiveStats, hb: HeartbeatRequest, c: CompactStats): void {
  const n = s.gpus.length;
  if (c.gpuMemoryUsedMib.length !== n) throw countMismatch(c.gpuMemoryUsedMib.length, n);
  // In bigints throughout: V8's optimised code does 64-bit bigint arithmetic
  // and comparison in registers, where Number(bigint) is a call that costs
  // several times as much.
  for (let i = 0; i < n; i++) {
    const total = s.gpus[i].memoryTotalBytes;
    if (total !== 0n && c.gpuMemoryUsedMib[i] * MIB > total) throw overTotal(s.gpus[i].index);
  }
  for (let i = 0; i < hb.collectors.length; i++)
    if (indexOfCollector(s.collectors, hb.collectors[i].name) < 0) throw invalidArgument(`collector "${hb.collectors[i].name}" is not in the inventory; send a full heartbeat`);
}

/**
 * Merges a validated heartbeat into the worker's stats. Throws
 * InvalidArgument, before changing anything, for a compact form that does
 * not fit. Returns true when the heartbeat was compact and this hive does
 * not hold the inventory it names: the caller asks for the full form, and
 * only the values outside the inventory (memory, disks, load, latency) were
 * taken.
 */
export function mergeStats(w: LiveWorker, hb: HeartbeatRequest): boolean {
  // The registry copies these two from the request next: hand it the
  // strings it already holds when they are equal (see the top of the file).
  if (hb.sessionId === w.sessionId) hb.sessionId = w.sessionId;
  if (hb.statusDetail === w.statusDetail) hb.statusDetail = w.statusDetail;
  const c = hb.compact;
  if (!c) {
    w.beat = packStats(hb);
    w.hot = null;
    w.storedStats = null;
    const inv = (w.inventory ??= { sessionId: '', seq: 0n });
    if (inv.sessionId !== hb.sessionId) inv.sessionId = hb.sessionId;
    inv.seq = hb.seq;
    return false;
  }
  checkCompactShape(hb, c);
  const inv = w.inventory;
  const held = w.beat !== null && inv !== undefined && inv.sessionId === hb.sessionId && inv.seq === c.inventorySeq;
  if (!held) {
    // Liveness never waits for the inventory: keep the GPUs and collectors
    // as last known and take the rest.
    const s = w.beat !== null ? unpackHeld(w.beat, w.hot) : w.storedStats !== null ? fromBinary(WorkerStatsSchema, Buffer.from(w.storedStats, 'latin1')) : emptyLiveStats();
    copyPlain(s, hb);
    w.beat = packStats(s);
    w.hot = null;
    w.storedStats = null;
    return true;
  }
  // The common case (no collector news, the same disks): written in place
  // into the worker's hot values, made from its inventory on the first one.
  const hot = w.hot ?? (hb.collectors.length === 0 ? hotStatsOf(unpackStats(w.beat!), hb.disks.map((d) => d.path)) : null);
  if (hot !== null && mergeHot(hot, hb, c, hb.collectors.length, overTotal, countMismatch)) {
    w.hot = hot;
    return false;
  }
  const s = unpackHeld(w.beat!, w.hot);
  checkAgainstInventory(s, hb, c);
  copyPlain(s, hb);
  const util = c.gpuUtilizationPercent.length > 0;
  const temp = c.gpuTemperatureCelsius.length > 0;
  for (let i = 0; i < s.gpus.length; i++) {
    const g = s.gpus[i];
    g.memoryUsedBytes = c.gpuMemoryUsedMib[i] * MIB;
    g.utilization = util ? c.gpuUtilizationPercent[i] / 100 : undefined;
    g.temperatureCelsius = temp ? c.gpuTemperatureCelsius[i] : undefined;
  }
  // A collector named here replaces its entry until it is named again.
  for (let i = 0; i < hb.collectors.length; i++) copyCollector(s.collectors[indexOfCollector(s.collectors, hb.collectors[i].name)], hb.collectors[i]);
  w.beat = packStats(s);
  w.hot = null;
  return false;
}
