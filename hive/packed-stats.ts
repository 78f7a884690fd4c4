import type { CollectorStatus, DiskStats, GpuStats } from '../gen/hive/v1/registry_pb.js';
import type { LiveStats } from './worker.js';
import { ByteWriter } from './byte-writer.js';

// A worker's last reported stats, packed into one string of byte values
// (one byte a character). The hive holds the stats of every worker of the
// fleet and reads them rarely (a WatchWorkers snapshot, a scrape with
// per-worker series, a write-behind flush): as objects, eight GPUs with
// their bigints, doubles and strings take some 3 KB a worker; packed, about
// 350 bytes, in a single heap object the collector never has to trace.
//
// The layout is the hive's own, never stored or sent (the store gets
// WorkerStats protobuf, encoded from the unpacked form), so it can change
// with the code. Numbers are varints (uint64 past 2^53 included); doubles
// are 8 bytes little-endian, except a utilisation of whole percent and an
// integral temperature, the usual values, which take one or two. Strings
// repeated across a fleet (GPU models, disk paths, collector names and
// errors) are interned in a table shared by all workers; a canonical GPU
// UUID takes its 16 bytes; anything else is written out as UTF-8.
//
//   counts:    gpus, disks, collectors (varints), flags (load1, p50, p95, p99 present)
//   plain:     memory used, memory total, [load1], [p50], [p95], [p99]
//   per GPU:   index, uuid, name, memory used, memory total, flags, [utilisation], [temperature]
//   per disk:  path, free, total
//   per collector: name, success, error, [duration]

export type PackedStats = string & { readonly __packed: unique symbol };

const F_LOAD = 1;
const F_P50 = 2;
const F_P95 = 4;
const F_P99 = 8;
const G_UTIL_PERCENT = 1;
const G_UTIL_DOUBLE = 2;
const G_TEMP_INT = 4;
const G_TEMP_DOUBLE = 8;
const C_SUCCESS = 1;
const C_DURATION = 2;

// A string reference is a varint: 0 is '', otherwise its low two bits say
// what follows (the rest is the table index or the byte length).
const S_TABLE = 1;
const S_UUID = 2;
const S_INLINE = 3;

const UUID = /^GPU-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const MAX_SAFE = 2n ** 53n - 1n;

// The table only grows: bounded, so that workers reporting ever new names
// (or errors with a timestamp in them) cost their bytes, not the table's.
const MAX_INTERNED = 16_384;
const MAX_INTERNED_LENGTH = 128;
const interned = new Map<string, number>();
const table: string[] = [];

function internId(s: string): number | undefined {
  const id = interned.get(s);
  if (id !== undefined || s.length > MAX_INTERNED_LENGTH || table.length >= MAX_INTERNED) return id;
  table.push(s);
  interned.set(s, table.length - 1);
  return table.length - 1;
}

/** Bytes written into one scratch buffer (grown on demand), then copied once into the packed string. */
class Writer extends ByteWriter {
  big(v: bigint): void {
    if (v <= MAX_SAFE) return this.varint(Number(v));
    this.reserve(10);
    while (v >= 0x80n) {
      this.buf[this.pos++] = Number(v & 0x7fn) | 0x80;
      v >>= 7n;
    }
    this.buf[this.pos++] = Number(v);
  }

  /** A string repeated across a fleet: interned while the table has room. */
  common(s: string): void {
    if (s === '') return this.varint(0);
    const id = internId(s);
    if (id !== undefined) return this.varint(id * 4 + S_TABLE);
    this.inline(s);
  }

  /** A GPU UUID: unique to its GPU, never interned. */
  uuid(s: string): void {
    if (s === '') return this.varint(0);
    if (!UUID.test(s)) return this.inline(s);
    this.varint(S_UUID);
    this.reserve(16);
    this.pos += this.buf.write(s.slice(4).replaceAll('-', ''), this.pos, 'hex');
  }

  inline(s: string): void {
    const n = Buffer.byteLength(s, 'utf8');
    this.varint(n * 4 + S_INLINE);
    this.reserve(n);
    this.pos += this.buf.write(s, this.pos, 'utf8');
  }
}

class Reader {
  pos = 0;
  constructor(readonly buf: Buffer) {}

  byte(): number {
    return this.buf[this.pos++];
  }

  varint(): number {
    let v = 0;
    let scale = 1;
    for (;;) {
      const b = this.buf[this.pos++];
      v += (b & 0x7f) * scale;
      if (b < 0x80) return v;
      scale *= 128;
    }
  }

  big(): bigint {
    // Safe integers (the usual case) are read as numbers; longer varints bit by bit.
    const start = this.pos;
    let n = 0;
    while (this.buf[this.pos + n] >= 0x80) n++;
    if (n < 7) return BigInt(this.varint());
    let v = 0n;
    for (let i = n; i >= 0; i--) v = (v << 7n) | BigInt(this.buf[start + i] & 0x7f);
    this.pos = start + n + 1;
    return v;
  }

  double(): number {
    const v = this.buf.readDoubleLE(this.pos);
    this.pos += 8;
    return v;
  }

  string(): string {
    const ref = this.varint();
    if (ref === 0) return '';
    const kind = ref % 4;
    const n = Math.floor(ref / 4);
    if (kind === S_TABLE) return table[n];
    if (kind === S_UUID) {
      const h = this.buf.toString('hex', this.pos, this.pos + 16);
      this.pos += 16;
      return `GPU-${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
    }
    const s = this.buf.toString('utf8', this.pos, this.pos + n);
    this.pos += n;
    return s;
  }
}

const writer = new Writer(4096);
let scratch = Buffer.allocUnsafe(4096);

/** A whole percent as utilisation (k / 100) is written as k; anything else as a double. */
function utilPercent(u: number): number {
  const k = Math.round(u * 100);
  return k >= 0 && k <= 100 && k / 100 === u && !Object.is(u, -0) ? k : -1;
}

function intTemperature(t: number): boolean {
  return Number.isInteger(t) && t >= -(2 ** 30) && t < 2 ** 30 && !Object.is(t, -0);
}

function writeGpu(w: Writer, g: GpuStats): void {
  w.varint(g.index);
  w.uuid(g.uuid);
  w.common(g.name);
  w.big(g.memoryUsedBytes);
  w.big(g.memoryTotalBytes);
  const u = g.utilization;
  const t = g.temperatureCelsius;
  const k = u === undefined ? -1 : utilPercent(u);
  let flags = 0;
  if (u !== undefined) flags |= k >= 0 ? G_UTIL_PERCENT : G_UTIL_DOUBLE;
  if (t !== undefined) flags |= intTemperature(t) ? G_TEMP_INT : G_TEMP_DOUBLE;
  w.byte(flags);
  if (flags & G_UTIL_PERCENT) w.byte(k);
  else if (flags & G_UTIL_DOUBLE) w.double(u!);
  if (flags & G_TEMP_INT) w.varint(t! < 0 ? -2 * t! - 1 : 2 * t!);
  else if (flags & G_TEMP_DOUBLE) w.double(t!);
}

function readGpu(r: Reader): GpuStats {
  const g: GpuStats = {
    $typeName: 'hive.v1.GpuStats',
    index: r.varint(),
    uuid: r.string(),
    name: r.string(),
    memoryUsedBytes: r.big(),
    memoryTotalBytes: r.big(),
  };
  const flags = r.byte();
  if (flags & G_UTIL_PERCENT) g.utilization = r.byte() / 100;
  else if (flags & G_UTIL_DOUBLE) g.utilization = r.double();
  if (flags & G_TEMP_INT) {
    const z = r.varint();
    g.temperatureCelsius = z % 2 === 1 ? -(z + 1) / 2 : z / 2;
  } else if (flags & G_TEMP_DOUBLE) g.temperatureCelsius = r.double();
  return g;
}

function writeDisk(w: Writer, d: DiskStats): void {
  w.common(d.path);
  w.big(d.freeBytes);
  w.big(d.totalBytes);
}

function readDisk(r: Reader): DiskStats {
  return { $typeName: 'hive.v1.DiskStats', path: r.string(), freeBytes: r.big(), totalBytes: r.big() };
}

function writeCollector(w: Writer, c: CollectorStatus): void {
  w.common(c.name);
  w.byte((c.success ? C_SUCCESS : 0) | (c.durationSeconds !== 0 ? C_DURATION : 0));
  w.common(c.error);
  if (c.durationSeconds !== 0) w.double(c.durationSeconds);
}

function readCollector(r: Reader): CollectorStatus {
  const name = r.string();
  const flags = r.byte();
  const error = r.string();
  const durationSeconds = flags & C_DURATION ? r.double() : 0;
  return { $typeName: 'hive.v1.CollectorStatus', name, success: (flags & C_SUCCESS) !== 0, error, durationSeconds };
}

/** Packs the stats fields of a heartbeat, a WorkerStats or an unpacked LiveStats. */
export function packStats(s: LiveStats): PackedStats {
  const w = writer;
  w.pos = 0;
  w.varint(s.gpus.length);
  w.varint(s.disks.length);
  w.varint(s.collectors.length);
  // load1 0 is protobuf's default: WorkerStats does not tell 0 from unset either.
  const flags =
    (s.load1 !== 0 ? F_LOAD : 0) |
    (s.probeLatencyP50Seconds !== undefined ? F_P50 : 0) |
    (s.probeLatencyP95Seconds !== undefined ? F_P95 : 0) |
    (s.probeLatencyP99Seconds !== undefined ? F_P99 : 0);
  w.byte(flags);
  w.big(s.memoryUsedBytes);
  w.big(s.memoryTotalBytes);
  if (flags & F_LOAD) w.double(s.load1);
  if (flags & F_P50) w.double(s.probeLatencyP50Seconds!);
  if (flags & F_P95) w.double(s.probeLatencyP95Seconds!);
  if (flags & F_P99) w.double(s.probeLatencyP99Seconds!);
  for (const g of s.gpus) writeGpu(w, g);
  for (const d of s.disks) writeDisk(w, d);
  for (const c of s.collectors) writeCollector(w, c);
  return w.buf.toString('latin1', 0, w.pos) as PackedStats;
}

/** Fresh objects every call: the caller may change them (a merge) or hand them out. */
export function unpackStats(p: PackedStats): LiveStats {
  if (scratch.length < p.length) scratch = Buffer.allocUnsafe(Math.max(p.length, scratch.length * 2));
  scratch.write(p, 0, 'latin1');
  const r = new Reader(scratch);
  const nGpus = r.varint();
  const nDisks = r.varint();
  const nCollectors = r.varint();
  const flags = r.byte();
  const s: LiveStats = { gpus: [], memoryUsedBytes: r.big(), memoryTotalBytes: r.big(), disks: [], load1: flags & F_LOAD ? r.double() : 0, collectors: [] };
  if (flags & F_P50) s.probeLatencyP50Seconds = r.double();
  if (flags & F_P95) s.probeLatencyP95Seconds = r.double();
  if (flags & F_P99) s.probeLatencyP99Seconds = r.double();
  for (let i = 0; i < nGpus; i++) s.gpus.push(readGpu(r));
  for (let i = 0; i < nDisks; i++) s.disks.push(readDisk(r));
  for (let i = 0; i < nCollectors; i++) s.collectors.push(readCollector(r));
  return s;
}

/** What a compact heartbeat brings besides its GPU values: taken as it is (a HeartbeatRequest is one). */
export interface PlainValues {
  memoryUsedBytes: bigint;
  memoryTotalBytes: bigint;
  load1: number;
  probeLatencyP50Seconds?: number;
  probeLatencyP95Seconds?: number;
  probeLatencyP99Seconds?: number;
  disks: readonly DiskStats[];
}

/** The GPU values of a compact heartbeat, in inventory order (a CompactStats is one). */
export interface GpuValues {
  gpuMemoryUsedMib: readonly bigint[];
  gpuUtilizationPercent: readonly number[];
  gpuTemperatureCelsius: readonly number[];
}

const MIB_NUM = 1024 * 1024;
const MAX_EXACT_MIB = 2n ** 33n;

/**
 * The values compact heartbeats change, held beside the packed stats and
 * written in place: after the first compact heartbeat of an inventory, a
 * heartbeat allocates nothing for its stats and replaces nothing the old
 * generation holds (a new packed string per heartbeat would be promoted
 * garbage for every worker of a 1 s fleet). Doubles are exact below 2^53;
 * a heartbeat with a value past that, other disks or collector news goes
 * the slow way (unpack, merge, pack) and drops these.
 *
 * Layout of `v`: 0 memory used, 1 memory total, 2 load1, 3-5 probe latency
 * p50/p95/p99 (NaN: absent); GPU i at 6 + 5i: index, memory total, memory
 * used, utilisation, temperature (NaN: absent); disk j after the GPUs:
 * free, total.
 */
export interface HotStats {
  readonly v: Float64Array;
  readonly gpus: number;
  /** The disks' paths, in order (a heartbeat with other disks takes the slow way). */
  readonly disks: readonly string[];
}

const EXACT = 2n ** 53n;
const GPU_AT = 6;

/** Hot values for an inventory, or null when a GPU's total is past what a double holds exactly. */
export function hotStatsOf(s: LiveStats, diskPaths: readonly string[]): HotStats | null {
  const n = s.gpus.length;
  const v = new Float64Array(GPU_AT + 5 * n + 2 * diskPaths.length);
  for (let i = 0; i < n; i++) {
    const g = s.gpus[i];
    if (g.memoryTotalBytes >= EXACT) return null;
    v[GPU_AT + 5 * i] = g.index;
    v[GPU_AT + 5 * i + 1] = Number(g.memoryTotalBytes);
  }
  return { v, gpus: n, disks: diskPaths.map((p) => table[internId(p) ?? -1] ?? p) };
}

/** Whether the hot values can take this heartbeat (else the slow way); nothing is checked or changed yet. */
function hotTakes(h: HotStats, v: PlainValues, c: GpuValues, collectors: number): boolean {
  if (collectors !== 0 || v.disks.length !== h.disks.length) return false;
  if (v.memoryUsedBytes >= EXACT || v.memoryTotalBytes >= EXACT) return false;
  for (let j = 0; j < v.disks.length; j++) {
    const d = v.disks[j];
    if (d.path !== h.disks[j] || d.freeBytes >= EXACT || d.totalBytes >= EXACT) return false;
  }
  for (let i = 0; i < c.gpuMemoryUsedMib.length; i++) if (c.gpuMemoryUsedMib[i] >= MAX_EXACT_MIB) return false;
  return true;
}

/**
 * Merges a compact heartbeat into the hot values in place. False (nothing
 * changed) when it must go the slow way; throws, before changing anything,
 * what the merge throws for values that do not fit the inventory.
 */
export function mergeHot(
  h: HotStats,
  v: PlainValues,
  c: GpuValues,
  collectors: number,
  overTotal: (gpuIndex: number) => Error,
  countMismatch: (values: number, gpus: number) => Error,
): boolean {
  if (!hotTakes(h, v, c, collectors)) return false;
  const a = h.v;
  const n = h.gpus;
  if (c.gpuMemoryUsedMib.length !== n) throw countMismatch(c.gpuMemoryUsedMib.length, n);
  for (let i = 0; i < n; i++) {
    const total = a[GPU_AT + 5 * i + 1];
    if (total !== 0 && Number(c.gpuMemoryUsedMib[i]) * MIB_NUM > total) throw overTotal(a[GPU_AT + 5 * i]);
  }
  a[0] = Number(v.memoryUsedBytes);
  a[1] = Number(v.memoryTotalBytes);
  a[2] = v.load1;
  a[3] = v.probeLatencyP50Seconds ?? NaN;
  a[4] = v.probeLatencyP95Seconds ?? NaN;
  a[5] = v.probeLatencyP99Seconds ?? NaN;
  const util = c.gpuUtilizationPercent.length > 0;
  const temp = c.gpuTemperatureCelsius.length > 0;
  for (let i = 0; i < n; i++) {
    const at = GPU_AT + 5 * i;
    a[at + 2] = Number(c.gpuMemoryUsedMib[i]) * MIB_NUM;
    a[at + 3] = util ? c.gpuUtilizationPercent[i] / 100 : NaN;
    a[at + 4] = temp ? c.gpuTemperatureCelsius[i] : NaN;
  }
  const disksAt = GPU_AT + 5 * n;
  for (let j = 0; j < v.disks.length; j++) {
    a[disksAt + 2 * j] = Number(v.disks[j].freeBytes);
    a[disksAt + 2 * j + 1] = Number(v.disks[j].totalBytes);
  }
  return true;
}

const absentIfNaN = (x: number): number | undefined => (Number.isNaN(x) ? undefined : x);

/** Unpacked stats with the hot values laid over them: what the last heartbeat said. */
export function unpackHeld(p: PackedStats, h: HotStats | null | undefined): LiveStats {
  const s = unpackStats(p);
  if (!h) return s;
  const a = h.v;
  s.memoryUsedBytes = BigInt(a[0]);
  s.memoryTotalBytes = BigInt(a[1]);
  // The packed form keeps no -0 for load1 (protobuf's default reads back as 0): neither do these.
  s.load1 = a[2] === 0 ? 0 : a[2];
  s.probeLatencyP50Seconds = absentIfNaN(a[3]);
  s.probeLatencyP95Seconds = absentIfNaN(a[4]);
  s.probeLatencyP99Seconds = absentIfNaN(a[5]);
  if (s.probeLatencyP50Seconds === undefined) delete s.probeLatencyP50Seconds;
  if (s.probeLatencyP95Seconds === undefined) delete s.probeLatencyP95Seconds;
  if (s.probeLatencyP99Seconds === undefined) delete s.probeLatencyP99Seconds;
  for (let i = 0; i < h.gpus; i++) {
    const g = s.gpus[i];
    const at = GPU_AT + 5 * i;
    g.memoryUsedBytes = BigInt(a[at + 2]);
    const u = absentIfNaN(a[at + 3]);
    const t = absentIfNaN(a[at + 4]);
    if (u === undefined) delete g.utilization;
    else g.utilization = u;
    if (t === undefined) delete g.temperatureCelsius;
    else g.temperatureCelsius = t;
  }
  const disksAt = GPU_AT + 5 * h.gpus;
  s.disks = h.disks.map((path, j) => ({ $typeName: 'hive.v1.DiskStats', path, freeBytes: BigInt(a[disksAt + 2 * j]), totalBytes: BigInt(a[disksAt + 2 * j + 1]) }));
  return s;
}
