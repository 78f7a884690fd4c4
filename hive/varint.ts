// Protobuf varints for the hand-written encoders of the hot path
// (reply-codec.ts, stats-codec.ts) and the benchmark's frames. Numbers are
// safe integers (< 2^53); division, not bit operations, keeps them exact
// past 2^31.

/** Bytes the varint of a non-negative safe integer takes. */
export function varintSize(v: number): number {
  let n = 1;
  while (v >= 0x80) {
    v = Math.floor(v / 128);
    n++;
  }
  return n;
}

/** Bytes the varint of a non-negative 64-bit integer takes. */
export function bigVarintSize(v: bigint): number {
  if (v <= 0x1fffffffffffffn) return varintSize(Number(v));
  let n = 1;
  while (v >= 0x80n) {
    v >>= 7n;
    n++;
  }
  return n;
}

/** Writes the varint of a non-negative safe integer at `at`; returns the offset after it. */
export function writeVarint(buf: Uint8Array, at: number, v: number): number {
  while (v >= 0x80) {
    buf[at++] = (v % 128) | 0x80;
    v = Math.floor(v / 128);
  }
  buf[at++] = v;
  return at;
}
