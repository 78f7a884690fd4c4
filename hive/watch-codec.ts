import { create, toBinary } from '@bufbuild/protobuf';
import type { Duration, Timestamp } from '@bufbuild/protobuf/wkt';
import { WorkerSchema, type Worker, type WatchWorkersResponse } from '../gen/hive/v1/registry_pb.js';
import { ByteWriter } from './byte-writer.js';
import { varintSize, writeVarint } from './varint.js';

// WatchWorkers batches without stats (what the monitor asks for), encoded by
// hand: under load every heartbeat is one changed worker sent to each
// watcher, and toBinary's reflection over a Worker costs more than the rest
// of the heartbeat. The parts of a worker that change only on registration
// (labels, restart policy, dependencies) are encoded once per object with
// toBinary and reused; the rest is written here. Fields go out in field
// order, as toBinary writes them, so the bytes are the same. A batch with
// stats, unknown fields or numbers out of range returns null, and the caller
// encodes it with toBinary.

const MAX_SAFE = 0x1fffffffffffffn;
/** Bytes a nested message's length may take: lengths are reserved at this size and the body moved back after. */
const LEN_RESERVE = 5;

/** Thrown to leave the fast path; never escapes. */
const BAIL: unique symbol = Symbol('bail');

class Writer extends ByteWriter {
  string(field: number, s: string): void {
    if (s === '') return;
    const n = Buffer.byteLength(s);
    this.varint((field << 3) | 2);
    this.varint(n);
    this.reserve(n);
    this.pos += this.buf.write(s, this.pos);
  }

  enum(field: number, v: number): void {
    if (v === 0) return;
    if (v < 0) throw BAIL; // ten bytes of a negative int32: toBinary's
    this.varint(field << 3);
    this.varint(v);
  }

  uint64(field: number, v: bigint): void {
    if (v === 0n) return;
    if (v < 0n || v > MAX_SAFE) throw BAIL;
    this.varint(field << 3);
    this.varint(Number(v));
  }

  bool(field: number, v: boolean): void {
    if (!v) return;
    this.varint(field << 3);
    this.varint(1);
  }

  /** A Duration or Timestamp (both: int64 seconds = 1, int32 nanos = 2). */
  time(field: number, t: Duration | Timestamp | undefined): void {
    if (t === undefined) return;
    if (t.seconds < 0n || t.seconds > MAX_SAFE || t.nanos < 0 || !Number.isInteger(t.nanos) || t.$unknown) throw BAIL;
    const seconds = Number(t.seconds);
    const size = (seconds !== 0 ? 1 + varintSize(seconds) : 0) + (t.nanos !== 0 ? 1 + varintSize(t.nanos) : 0);
    this.varint((field << 3) | 2);
    this.varint(size);
    if (seconds !== 0) {
      this.varint(0x08);
      this.varint(seconds);
    }
    if (t.nanos !== 0) {
      this.varint(0x10);
      this.varint(t.nanos);
    }
  }

  /** Starts a length-delimited field; returns where its reserved length is. */
  open(field: number): number {
    this.varint((field << 3) | 2);
    this.reserve(LEN_RESERVE);
    const at = this.pos;
    this.pos += LEN_RESERVE;
    return at;
  }

  /** Ends the field opened at `at`: writes its length and moves the body next to it. */
  close(at: number): void {
    const len = this.pos - at - LEN_RESERVE;
    const end = writeVarint(this.buf, at, len);
    if (end !== at + LEN_RESERVE) {
      this.buf.copyWithin(end, at + LEN_RESERVE, this.pos);
      this.pos -= at + LEN_RESERVE - end;
    }
  }
}

/** Encoded once per object (they are replaced, never changed in place, when a worker re-registers). */
const encodedParts = new WeakMap<object, Uint8Array>();

function part(key: object, init: Pick<Worker, 'labels'> | Pick<Worker, 'restartPolicy'> | Pick<Worker, 'dependsOn'>): Uint8Array {
  let bytes = encodedParts.get(key);
  if (bytes === undefined) {
    bytes = toBinary(WorkerSchema, create(WorkerSchema, init));
    encodedParts.set(key, bytes);
  }
  return bytes;
}

function writeWorker(o: Writer, w: Worker): void {
  if (w.stats !== undefined || w.$unknown) throw BAIL;
  o.string(1, w.workerId);
  o.enum(2, w.state);
  o.raw(part(w.labels, { labels: w.labels }));
  o.time(4, w.heartbeatInterval);
  o.time(5, w.lastSeen);
  o.uint64(6, w.lastSeq);
  o.string(7, w.sessionId);
  o.enum(8, w.status);
  o.string(9, w.statusDetail);
  o.time(11, w.registeredAt);
  o.time(12, w.stateSince);
  o.time(13, w.graceUntil);
  if (w.restartPolicy !== undefined) o.raw(part(w.restartPolicy, { restartPolicy: w.restartPolicy }));
  o.bool(15, w.connected);
  if (w.dependsOn.length > 0) o.raw(part(w.dependsOn, { dependsOn: w.dependsOn }));
  if (w.blockedBy.length > 0) o.raw(toBinary(WorkerSchema, create(WorkerSchema, { blockedBy: w.blockedBy })));
  o.string(18, w.dependsOnSelector);
}

const writer = new Writer(64 * 1024);

/** The bytes toBinary writes for a WatchWorkersResponse whose workers carry no stats; null for anything else. */
export function encodeWatchWorkersResponse(m: WatchWorkersResponse): Buffer | null {
  const o = writer;
  o.pos = 0;
  try {
    if (m.$unknown) return null;
    for (const c of m.changes) {
      if (c.$unknown) return null;
      const change = o.open(1);
      o.enum(1, c.type);
      if (c.worker !== undefined) {
        const worker = o.open(2);
        writeWorker(o, c.worker);
        o.close(worker);
      }
      o.close(change);
    }
    o.bool(2, m.synced);
    o.time(3, m.hiveTime);
    o.time(4, m.hiveStartedAt);
    o.time(5, m.completeThrough);
    return Buffer.from(o.buf.subarray(0, o.pos));
  } catch (err) {
    if (err === BAIL) return null;
    throw err;
  }
}
