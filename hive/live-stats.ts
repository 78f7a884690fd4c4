import type { CollectorStatus, CompactStats, DiskStats, GpuStats, HeartbeatRequest } from '../gen/hive/v1/registry_pb.js';
import { invalidArgument } from './errors.js';
import type { LiveStats, LiveWorker } from './worker.js';

// A worker's last reported stats, merged from heartbeats in either form.
//
// Full form: the heartbeat carries every GPU and collector; it becomes the
// worker's inventory for its session (keyed by session and seq). Compact
// form: per-GPU values in inventory order and only the collectors that
// failed or changed; it names the inventory it refers to. Both end up in one
// structure per worker whose objects are updated in place, so the decoded
// request is never retained and dies young. A field is assigned only when
// its value changed: a decoded string or bigint that replaced an equal one
// would live until the next heartbeat, long enough to be promoted to the old
// generation, and every heartbeat would feed the major GC.

const MIB = 1024n * 1024n;

export function emptyLiveStats(): LiveStats {
  return { gpus: [], memoryUsedBytes: 0n, memoryTotalBytes: 0n, disks: [], load1: 0, collectors: [] };
}

/** A copy the hive owns, so nothing of a decoded request (or of a stored message) is shared. */
function liveStatsFrom(s: LiveStats): LiveStats {
  const out = emptyLiveStats();
  copyPlain(out, s);
  copyGpus(out.gpus, s.gpus);
  copyCollectors(out.collectors, s.collectors);
  return out;
}

function copyPlain(to: LiveStats, from: LiveStats): void {
  if (to.memoryUsedBytes !== from.memoryUsedBytes) to.memoryUsedBytes = from.memoryUsedBytes;
  if (to.memoryTotalBytes !== from.memoryTotalBytes) to.memoryTotalBytes = from.memoryTotalBytes;
  if (to.load1 !== from.load1) to.load1 = from.load1;
  if (to.probeLatencyP50Seconds !== from.probeLatencyP50Seconds) to.probeLatencyP50Seconds = from.probeLatencyP50Seconds;
  if (to.probeLatencyP95Seconds !== from.probeLatencyP95Seconds) to.probeLatencyP95Seconds = from.probeLatencyP95Seconds;
  if (to.probeLatencyP99Seconds !== from.probeLatencyP99Seconds) to.probeLatencyP99Seconds = from.probeLatencyP99Seconds;
  copyDisks(to.disks, from.disks);
}

function copyGpus(to: GpuStats[], from: readonly GpuStats[]): void {
  to.length = Math.min(to.length, from.length);
  for (let i = 0; i < from.length; i++) {
    const s = from[i];
    const d = (to[i] ??= { $typeName: 'hive.v1.GpuStats', index: 0, uuid: '', name: '', memoryUsedBytes: 0n, memoryTotalBytes: 0n });
    d.index = s.index;
    if (d.uuid !== s.uuid) d.uuid = s.uuid;
    if (d.name !== s.name) d.name = s.name;
    if (d.memoryUsedBytes !== s.memoryUsedBytes) d.memoryUsedBytes = s.memoryUsedBytes;
    if (d.memoryTotalBytes !== s.memoryTotalBytes) d.memoryTotalBytes = s.memoryTotalBytes;
    d.utilization = s.utilization;
    d.temperatureCelsius = s.temperatureCelsius;
  }
}

function copyDisks(to: DiskStats[], from: readonly DiskStats[]): void {
  to.length = Math.min(to.length, from.length);
  for (let i = 0; i < from.length; i++) {
    const s = from[i];
    const d = (to[i] ??= { $typeName: 'hive.v1.DiskStats', path: '', freeBytes: 0n, totalBytes: 0n });
    if (d.path !== s.path) d.path = s.path;
    if (d.freeBytes !== s.freeBytes) d.freeBytes = s.freeBytes;
    if (d.totalBytes !== s.totalBytes) d.totalBytes = s.totalBytes;
  }
}

function copyCollector(d: CollectorStatus, s: CollectorStatus): void {
  if (d.name !== s.name) d.name = s.name;
  d.success = s.success;
  if (d.error !== s.error) d.error = s.error;
  d.durationSeconds = s.durationSeconds;
}

function copyCollectors(to: CollectorStatus[], from: readonly CollectorStatus[]): void {
  to.length = Math.min(to.length, from.length);
  for (let i = 0; i < from.length; i++) {
    copyCollector((to[i] ??= { $typeName: 'hive.v1.CollectorStatus', name: '', success: false, error: '', durationSeconds: 0 }), from[i]);
  }
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

/** Checks of a compact heartbeat against the inventory it refers to. */
function checkAgainstInventory(s: LiveStats, hb: HeartbeatRequest, c: CompactStats): void {
  const n = s.gpus.length;
  if (c.gpuMemoryUsedMib.length !== n) throw invalidArgument(`compact.gpu_memory_used_mib has ${c.gpuMemoryUsedMib.length} values; the inventory has ${n} gpus`);
  // In bigints throughout: V8's optimised code does 64-bit bigint arithmetic
  // and comparison in registers, where Number(bigint) is a call that costs
  // several times as much.
  for (let i = 0; i < n; i++) {
    const total = s.gpus[i].memoryTotalBytes;
    if (total !== 0n && c.gpuMemoryUsedMib[i] * MIB > total) throw invalidArgument(`gpu ${s.gpus[i].index}: memory used exceeds memory_total_bytes`);
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
    const s = (w.lastBeat ??= emptyLiveStats());
    copyPlain(s, hb);
    copyGpus(s.gpus, hb.gpus);
    copyCollectors(s.collectors, hb.collectors);
    const inv = (w.inventory ??= { sessionId: '', seq: 0n });
    if (inv.sessionId !== hb.sessionId) inv.sessionId = hb.sessionId;
    inv.seq = hb.seq;
    return false;
  }
  checkCompactShape(hb, c);
  const inv = w.inventory;
  const held = w.lastBeat !== null && inv !== undefined && inv.sessionId === hb.sessionId && inv.seq === c.inventorySeq;
  if (!held) {
    // Liveness never waits for the inventory: keep the GPUs and collectors
    // as last known and take the rest.
    const s = (w.lastBeat ??= w.storedStats ? liveStatsFrom(w.storedStats) : emptyLiveStats());
    copyPlain(s, hb);
    return true;
  }
  const s = w.lastBeat!;
  checkAgainstInventory(s, hb, c);
  copyPlain(s, hb);
  const util = c.gpuUtilizationPercent.length > 0;
  const temp = c.gpuTemperatureCelsius.length > 0;
  for (let i = 0; i < s.gpus.length; i++) {
    const g = s.gpus[i];
    const used = c.gpuMemoryUsedMib[i] * MIB;
    if (used !== g.memoryUsedBytes) g.memoryUsedBytes = used;
    // Compared first: an equal double assigned anew is a new heap number.
    const u = util ? c.gpuUtilizationPercent[i] / 100 : undefined;
    if (g.utilization !== u) g.utilization = u;
    const t = temp ? c.gpuTemperatureCelsius[i] : undefined;
    if (g.temperatureCelsius !== t) g.temperatureCelsius = t;
  }
  // A collector named here replaces its entry until it is named again.
  for (let i = 0; i < hb.collectors.length; i++) copyCollector(s.collectors[indexOfCollector(s.collectors, hb.collectors[i].name)], hb.collectors[i]);
  return false;
}
