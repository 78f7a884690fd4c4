// The wire bytes a heartbeat was decoded from, where the transport kept
// them. The Redis live state forwards a heartbeat to the other replicas as
// it arrived instead of encoding it again: encoding it is most of what a
// shared live state adds to the cost of a heartbeat. Taken once (and so
// forgotten): nothing outlives the turn in which the heartbeat is handled.

const kept = new WeakMap<object, Uint8Array>();

export function keepWireBytes(msg: object, bytes: Uint8Array): void {
  kept.set(msg, bytes);
}

/** The bytes the message was decoded from, once; undefined where none were kept. */
export function takeWireBytes(msg: object): Uint8Array | undefined {
  const b = kept.get(msg);
  if (b !== undefined) kept.delete(msg);
  return b;
}

/**
 * The value of field 1 (length-delimited) when that field is all the
 * message holds (a HeartbeatStreamRequest is a wrapped HeartbeatRequest),
 * else undefined.
 */
export function onlyField1(bytes: Uint8Array): Uint8Array | undefined {
  if (bytes.length < 2 || bytes[0] !== 0x0a) return undefined;
  let len = 0;
  let shift = 0;
  let i = 1;
  for (; i < bytes.length && i < 6; i++) {
    const b = bytes[i];
    len += (b & 0x7f) * 2 ** shift;
    shift += 7;
    if ((b & 0x80) === 0) break;
  }
  i++;
  return i + len === bytes.length ? bytes.subarray(i) : undefined;
}
