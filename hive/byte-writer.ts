import { writeVarint } from './varint.js';

// A scratch buffer that grows on demand, for the hand-written encoders that
// write into one buffer reused across calls (hive/watch-codec.ts,
// hive/packed-stats.ts) and copy the result out once.

export class ByteWriter {
  buf: Buffer;
  pos = 0;

  constructor(initialBytes: number) {
    this.buf = Buffer.allocUnsafe(initialBytes);
  }

  /** Room for n more bytes. */
  reserve(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  byte(v: number): void {
    this.reserve(1);
    this.buf[this.pos++] = v;
  }

  /** A varint of a non-negative safe integer (a protobuf tag included). */
  varint(v: number): void {
    this.reserve(8);
    this.pos = writeVarint(this.buf, this.pos, v);
  }

  raw(bytes: Uint8Array): void {
    this.reserve(bytes.length);
    this.buf.set(bytes, this.pos);
    this.pos += bytes.length;
  }

  /** A little-endian double. */
  double(v: number): void {
    this.reserve(8);
    this.buf.writeDoubleLE(v, this.pos);
    this.pos += 8;
  }
}
