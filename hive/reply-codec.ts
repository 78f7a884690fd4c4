import type { Duration, Timestamp } from '@bufbuild/protobuf/wkt';
import type { HeartbeatResponse, HeartbeatStreamResponse } from '../gen/hive/v1/registry_pb.js';
import { varintSize, writeVarint } from './varint.js';

// The acknowledgement of a heartbeat, encoded by hand: the bytes
// protobuf-es's toBinary writes for the common reply (no commands), at a
// fraction of its reflective cost, once per heartbeat. Anything outside
// that shape (commands, negative or huge numbers) returns null, and the
// caller encodes it with toBinary.

const MAX_SAFE = 0x1fffffffffffffn;

/** Size of a Duration or Timestamp body, or -1 when it is outside the fast path. */
function timeSize(t: Duration | Timestamp): number {
  if (t.seconds < 0n || t.seconds > MAX_SAFE || t.nanos < 0 || !Number.isInteger(t.nanos)) return -1;
  let n = 0;
  if (t.seconds !== 0n) n += 1 + varintSize(Number(t.seconds));
  if (t.nanos !== 0) n += 1 + varintSize(t.nanos);
  return n;
}

function writeTime(buf: Buffer, at: number, field: number, t: Duration | Timestamp, size: number): number {
  buf[at++] = (field << 3) | 2;
  at = writeVarint(buf, at, size);
  if (t.seconds !== 0n) {
    buf[at++] = 0x08;
    at = writeVarint(buf, at, Number(t.seconds));
  }
  if (t.nanos !== 0) {
    buf[at++] = 0x10;
    at = writeVarint(buf, at, t.nanos);
  }
  return at;
}

function responseSize(r: HeartbeatResponse, interval: number, time: number): number {
  let n = 0;
  if (r.ackSeq !== 0n) n += 1 + varintSize(Number(r.ackSeq));
  if (r.heartbeatInterval) n += 1 + varintSize(interval) + interval;
  if (r.hiveTime) n += 1 + varintSize(time) + time;
  if (r.state !== 0) n += 1 + varintSize(r.state);
  if (r.inventoryRequired) n += 2;
  return n;
}

function writeResponse(buf: Buffer, at: number, r: HeartbeatResponse, interval: number, time: number): number {
  if (r.ackSeq !== 0n) {
    buf[at++] = 0x08;
    at = writeVarint(buf, at, Number(r.ackSeq));
  }
  if (r.heartbeatInterval) at = writeTime(buf, at, 3, r.heartbeatInterval, interval);
  if (r.hiveTime) at = writeTime(buf, at, 4, r.hiveTime, time);
  if (r.state !== 0) {
    buf[at++] = 0x28;
    at = writeVarint(buf, at, r.state);
  }
  if (r.inventoryRequired) {
    buf[at++] = 0x30;
    buf[at++] = 1;
  }
  return at;
}

function fits(r: HeartbeatResponse): [number, number] | null {
  if (r.commands.length > 0 || r.ackSeq < 0n || r.ackSeq > MAX_SAFE || r.state < 0 || r.$unknown) return null;
  const interval = r.heartbeatInterval ? timeSize(r.heartbeatInterval) : 0;
  const time = r.hiveTime ? timeSize(r.hiveTime) : 0;
  if (interval < 0 || time < 0) return null;
  return [interval, time];
}

export function encodeHeartbeatResponse(r: HeartbeatResponse): Buffer | null {
  const f = fits(r);
  if (!f) return null;
  const buf = Buffer.allocUnsafe(responseSize(r, f[0], f[1]));
  writeResponse(buf, 0, r, f[0], f[1]);
  return buf;
}

export function encodeHeartbeatStreamResponse(m: HeartbeatStreamResponse): Buffer | null {
  const r = m.heartbeat;
  if (!r) return m.$unknown ? null : Buffer.alloc(0);
  if (m.$unknown) return null;
  const f = fits(r);
  if (!f) return null;
  const inner = responseSize(r, f[0], f[1]);
  const buf = Buffer.allocUnsafe(1 + varintSize(inner) + inner);
  buf[0] = 0x0a;
  writeResponse(buf, writeVarint(buf, 1, inner), r, f[0], f[1]);
  return buf;
}
