import type { CollectorStatus, DiskStats, GpuStats } from '../gen/hive/v1/registry_pb.js';
import type { LiveStats } from './worker.js';
import { bigVarintSize, varintSize } from './varint.js';

// Encodes a worker's stats as hive.v1.WorkerStats bytes, the same bytes
// protobuf-es's toBinary writes (field order, zero values skipped, optional
// values written when set), without its reflection and without the 8-byte
// array it allocates for every double. The write-behind encodes every
// heartbeating worker's stats on every flush; with 8 GPUs that is 20-odd
// doubles a worker. Sizes are computed first, so each message is written
// once into one buffer.

const Wire = { Varint: 0, Fixed64: 1, Bytes: 2 } as const;

const tag = (field: number, wire: number) => (field << 3) | wire;

const strSize = (s: string) => Buffer.byteLength(s, 'utf8');

function stringField(s: string): number {
  if (s === '') return 0;
  const n = strSize(s);
  return 1 + varintSize(n) + n;
}

function gpuSize(g: GpuStats): number {
  let n = 0;
  if (g.index !== 0) n += 1 + varintSize(g.index);
  n += stringField(g.uuid) + stringField(g.name);
  if (g.memoryUsedBytes !== 0n) n += 1 + bigVarintSize(g.memoryUsedBytes);
  if (g.memoryTotalBytes !== 0n) n += 1 + bigVarintSize(g.memoryTotalBytes);
  if (g.utilization !== undefined) n += 9;
  if (g.temperatureCelsius !== undefined) n += 9;
  return n;
}

function diskSize(d: DiskStats): number {
  let n = stringField(d.path);
  if (d.freeBytes !== 0n) n += 1 + bigVarintSize(d.freeBytes);
  if (d.totalBytes !== 0n) n += 1 + bigVarintSize(d.totalBytes);
  return n;
}

function collectorSize(c: CollectorStatus): number {
  let n = stringField(c.name);
  if (c.success) n += 2;
  n += stringField(c.error);
  if (c.durationSeconds !== 0) n += 9;
  return n;
}

class Writer {
  pos = 0;
  constructor(readonly buf: Buffer) {}

  varint(v: number): void {
    const b = this.buf;
    while (v >= 0x80) {
      b[this.pos++] = (v % 128) | 0x80;
      v = Math.floor(v / 128);
    }
    b[this.pos++] = v;
  }

  bigVarint(v: bigint): void {
    if (v <= 0x1fffffffffffffn) return this.varint(Number(v));
    const b = this.buf;
    while (v >= 0x80n) {
      b[this.pos++] = Number(v & 0x7fn) | 0x80;
      v >>= 7n;
    }
    b[this.pos++] = Number(v);
  }

  double(field: number, v: number): void {
    this.buf[this.pos++] = tag(field, Wire.Fixed64);
    this.buf.writeDoubleLE(v, this.pos);
    this.pos += 8;
  }

  string(field: number, s: string): void {
    if (s === '') return;
    this.buf[this.pos++] = tag(field, Wire.Bytes);
    this.varint(strSize(s));
    this.pos += this.buf.write(s, this.pos, 'utf8');
  }

  uint64(field: number, v: bigint): void {
    if (v === 0n) return;
    this.buf[this.pos++] = tag(field, Wire.Varint);
    this.bigVarint(v);
  }

  header(field: number, size: number): void {
    this.buf[this.pos++] = tag(field, Wire.Bytes);
    this.varint(size);
  }
}

export function encodeWorkerStats(s: LiveStats): Uint8Array {
  let size = 0;
  const gpuSizes = s.gpus.map(gpuSize);
  const diskSizes = s.disks.map(diskSize);
  const collectorSizes = s.collectors.map(collectorSize);
  for (const n of gpuSizes) size += 1 + varintSize(n) + n;
  if (s.memoryUsedBytes !== 0n) size += 1 + bigVarintSize(s.memoryUsedBytes);
  if (s.memoryTotalBytes !== 0n) size += 1 + bigVarintSize(s.memoryTotalBytes);
  for (const n of diskSizes) size += 1 + varintSize(n) + n;
  if (s.load1 !== 0) size += 9;
  for (const n of collectorSizes) size += 1 + varintSize(n) + n;
  if (s.probeLatencyP50Seconds !== undefined) size += 9;
  if (s.probeLatencyP95Seconds !== undefined) size += 9;
  if (s.probeLatencyP99Seconds !== undefined) size += 9;

  const w = new Writer(Buffer.allocUnsafe(size));
  for (let i = 0; i < s.gpus.length; i++) {
    const g = s.gpus[i];
    w.header(1, gpuSizes[i]);
    if (g.index !== 0) {
      w.buf[w.pos++] = tag(1, Wire.Varint);
      w.varint(g.index);
    }
    w.string(2, g.uuid);
    w.string(3, g.name);
    w.uint64(4, g.memoryUsedBytes);
    w.uint64(5, g.memoryTotalBytes);
    if (g.utilization !== undefined) w.double(6, g.utilization);
    if (g.temperatureCelsius !== undefined) w.double(7, g.temperatureCelsius);
  }
  w.uint64(2, s.memoryUsedBytes);
  w.uint64(3, s.memoryTotalBytes);
  for (let i = 0; i < s.disks.length; i++) {
    const d = s.disks[i];
    w.header(4, diskSizes[i]);
    w.string(1, d.path);
    w.uint64(2, d.freeBytes);
    w.uint64(3, d.totalBytes);
  }
  if (s.load1 !== 0) w.double(5, s.load1);
  for (let i = 0; i < s.collectors.length; i++) {
    const c = s.collectors[i];
    w.header(6, collectorSizes[i]);
    w.string(1, c.name);
    if (c.success) {
      w.buf[w.pos++] = tag(2, Wire.Varint);
      w.buf[w.pos++] = 1;
    }
    w.string(3, c.error);
    if (c.durationSeconds !== 0) w.double(4, c.durationSeconds);
  }
  if (s.probeLatencyP50Seconds !== undefined) w.double(7, s.probeLatencyP50Seconds);
  if (s.probeLatencyP95Seconds !== undefined) w.double(8, s.probeLatencyP95Seconds);
  if (s.probeLatencyP99Seconds !== undefined) w.double(9, s.probeLatencyP99Seconds);
  if (w.pos !== size) throw new Error(`encodeWorkerStats wrote ${w.pos} of ${size} bytes`);
  return w.buf;
}
