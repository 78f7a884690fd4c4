import type { CollectorStatus, CompactStats, DiskStats, HeartbeatRequest, HeartbeatStreamRequest } from '../gen/hive/v1/registry_pb.js';

// The request side of the hot path, decoded by hand: the compact heartbeat
// an agent sends every interval (scalars, disks, collectors, the compact
// GPU values), into the same objects protobuf-es's fromBinary makes, at a
// fraction of its reflective cost and allocations. Anything else (the full
// form with its GPUs, command results, check reports, unknown fields,
// unpacked repeated values, non-ASCII text, numbers past 2^53, malformed
// input) returns null, and the caller decodes it with fromBinary, which also
// words the error for input that does not decode.

/** Thrown inside the decoder to leave the fast path; never escapes it. */
const BAIL: unique symbol = Symbol('bail');
const MAX_SAFE = Number.MAX_SAFE_INTEGER;
/** Absent repeated fields share one frozen array: nothing may add to a decoded request's lists. */
const EMPTY: never[] = Object.freeze([]) as never[];

class Cursor {
  constructor(
    readonly buf: Buffer,
    public pos: number,
    readonly end: number,
  ) {}

  /** A varint as a safe integer. */
  varint(): number {
    const buf = this.buf;
    let v = 0;
    let scale = 1;
    for (let i = 0; i < 8; i++) {
      if (this.pos >= this.end) throw BAIL;
      const b = buf[this.pos++];
      v += (b & 0x7f) * scale;
      if (b < 0x80) {
        if (v > MAX_SAFE) throw BAIL;
        return v;
      }
      scale *= 128;
    }
    throw BAIL;
  }

  uint32(): number {
    const v = this.varint();
    if (v > 0xffffffff) throw BAIL;
    return v;
  }

  /** The end of a length-delimited field that starts here. */
  delimited(): number {
    const len = this.varint();
    const end = this.pos + len;
    if (end > this.end) throw BAIL;
    return end;
  }

  /** ASCII only: other text goes to fromBinary, whose UTF-8 decoding is the reference. */
  string(): string {
    const end = this.delimited();
    const buf = this.buf;
    for (let i = this.pos; i < end; i++) if (buf[i] >= 0x80) throw BAIL;
    const s = buf.toString('latin1', this.pos, end);
    this.pos = end;
    return s;
  }

  double(): number {
    if (this.pos + 8 > this.end) throw BAIL;
    const v = this.buf.readDoubleLE(this.pos);
    this.pos += 8;
    return v;
  }

  bool(): boolean {
    const v = this.varint();
    if (v > 1) throw BAIL;
    return v === 1;
  }

  /** The next tag as [field, wire type] packed into one number (field * 8 + type). */
  tag(): number {
    return this.varint();
  }
}

function disk(c: Cursor, end: number): DiskStats {
  const d: DiskStats = { $typeName: 'hive.v1.DiskStats', path: '', freeBytes: 0n, totalBytes: 0n };
  while (c.pos < end) {
    switch (c.tag()) {
      case 0x0a: d.path = c.string(); break;
      case 0x10: d.freeBytes = BigInt(c.varint()); break;
      case 0x18: d.totalBytes = BigInt(c.varint()); break;
      default: throw BAIL;
    }
  }
  if (c.pos !== end) throw BAIL;
  return d;
}

function collector(c: Cursor, end: number): CollectorStatus {
  const s: CollectorStatus = { $typeName: 'hive.v1.CollectorStatus', name: '', success: false, error: '', durationSeconds: 0 };
  while (c.pos < end) {
    switch (c.tag()) {
      case 0x0a: s.name = c.string(); break;
      case 0x10: s.success = c.bool(); break;
      case 0x1a: s.error = c.string(); break;
      case 0x21: s.durationSeconds = c.double(); break;
      default: throw BAIL;
    }
  }
  if (c.pos !== end) throw BAIL;
  return s;
}

function packed<T>(c: Cursor, read: (c: Cursor) => T): T[] {
  const end = c.delimited();
  const out: T[] = [];
  while (c.pos < end) out.push(read(c));
  if (c.pos !== end) throw BAIL;
  return out;
}

const readMib = (c: Cursor) => BigInt(c.varint());
const readUint32 = (c: Cursor) => c.uint32();
const readSint32 = (c: Cursor) => {
  const n = c.uint32();
  return (n >>> 1) ^ -(n & 1);
};

function compact(c: Cursor, end: number): CompactStats {
  const s: CompactStats = { $typeName: 'hive.v1.CompactStats', inventorySeq: 0n, gpuMemoryUsedMib: EMPTY, gpuUtilizationPercent: EMPTY, gpuTemperatureCelsius: EMPTY };
  // A repeated field given twice appends; that stays with fromBinary.
  let seen = 0;
  while (c.pos < end) {
    const tag = c.tag();
    const bit = 1 << (tag >>> 3);
    if (tag !== 0x08 && seen & bit) throw BAIL;
    seen |= bit;
    switch (tag) {
      case 0x08: s.inventorySeq = BigInt(c.varint()); break;
      case 0x12: s.gpuMemoryUsedMib = packed(c, readMib); break;
      case 0x1a: s.gpuUtilizationPercent = packed(c, readUint32); break;
      case 0x22: s.gpuTemperatureCelsius = packed(c, readSint32); break;
      default: throw BAIL;
    }
  }
  if (c.pos !== end) throw BAIL;
  return s;
}

function heartbeat(c: Cursor, end: number): HeartbeatRequest {
  // Every property in one order, so that all decoded heartbeats share one shape.
  const hb: HeartbeatRequest = {
    $typeName: 'hive.v1.HeartbeatRequest',
    workerId: '',
    sessionId: '',
    seq: 0n,
    status: 0,
    statusDetail: '',
    gpus: EMPTY,
    memoryUsedBytes: 0n,
    memoryTotalBytes: 0n,
    disks: EMPTY,
    load1: 0,
    collectors: EMPTY,
    commandResults: EMPTY,
    checkReports: EMPTY,
    probeLatencyP50Seconds: undefined,
    probeLatencyP95Seconds: undefined,
    probeLatencyP99Seconds: undefined,
    compact: undefined,
  };
  while (c.pos < end) {
    switch (c.tag()) {
      case 0x0a: hb.workerId = c.string(); break;
      case 0x12: hb.sessionId = c.string(); break;
      case 0x18: hb.seq = BigInt(c.varint()); break;
      case 0x20: {
        // An enum is an int32: a negative one is ten bytes, left to fromBinary.
        const v = c.varint();
        if (v > 0x7fffffff) throw BAIL;
        hb.status = v;
        break;
      }
      case 0x2a: hb.statusDetail = c.string(); break;
      case 0x38: hb.memoryUsedBytes = BigInt(c.varint()); break;
      case 0x40: hb.memoryTotalBytes = BigInt(c.varint()); break;
      case 0x4a: {
        const e = c.delimited();
        if (hb.disks === EMPTY) hb.disks = [];
        hb.disks.push(disk(c, e));
        break;
      }
      case 0x51: hb.load1 = c.double(); break;
      case 0x5a: {
        const e = c.delimited();
        if (hb.collectors === EMPTY) hb.collectors = [];
        hb.collectors.push(collector(c, e));
        break;
      }
      case 0x69: hb.probeLatencyP50Seconds = c.double(); break;
      case 0x71: hb.probeLatencyP95Seconds = c.double(); break;
      case 0x79: hb.probeLatencyP99Seconds = c.double(); break;
      case 0x8a: {
        // Field 17 has a two-byte tag (0x8a 0x01): varint() read both.
        if (hb.compact) throw BAIL; // a second one merges into the first: fromBinary's job
        const e = c.delimited();
        hb.compact = compact(c, e);
        break;
      }
      default:
        throw BAIL;
    }
  }
  if (c.pos !== end) throw BAIL;
  return hb;
}

/** A HeartbeatRequest as fromBinary decodes it, or null when it is outside the fast path. */
export function decodeHeartbeatRequest(buf: Buffer): HeartbeatRequest | null {
  try {
    return heartbeat(new Cursor(buf, 0, buf.length), buf.length);
  } catch (err) {
    if (err === BAIL) return null;
    throw err;
  }
}

/** A HeartbeatStreamRequest as fromBinary decodes it, or null when it is outside the fast path. */
export function decodeHeartbeatStreamRequest(buf: Buffer): HeartbeatStreamRequest | null {
  try {
    const c = new Cursor(buf, 0, buf.length);
    if (buf.length === 0) return { $typeName: 'hive.v1.HeartbeatStreamRequest' };
    if (c.tag() !== 0x0a) return null;
    const end = c.delimited();
    if (end !== buf.length) return null;
    return { $typeName: 'hive.v1.HeartbeatStreamRequest', heartbeat: heartbeat(c, end) };
  } catch (err) {
    if (err === BAIL) return null;
    throw err;
  }
}
