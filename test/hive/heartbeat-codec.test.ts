import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { HeartbeatRequestSchema, HeartbeatStreamRequestSchema, HealthStatus, type HeartbeatRequest } from '../../gen/hive/v1/registry_pb.js';
import { decodeHeartbeatRequest, decodeHeartbeatStreamRequest } from '../../hive/heartbeat-codec.js';
import { compactHeartbeat, realisticHeartbeat } from '../../bench/lib/wire.js';

// The hand-written decoder of heartbeats gives what fromBinary gives, or
// declines (null) and leaves the message to fromBinary. fromBinary is the
// reference: every case here is decoded both ways.

// Mostly in the fast path's range, sometimes past 2^53 (declined there).
const u64 = fc.oneof({ arbitrary: fc.bigInt({ min: 0n, max: 2n ** 53n - 1n }), weight: 19 }, { arbitrary: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), weight: 1 });
const text = fc.oneof(fc.string({ maxLength: 24 }), fc.constantFrom('', 'w-1', 'sess-abc', 'ünïcode', '\u0000'));
const finite = fc.double({ noNaN: true });

const compactHeartbeats = fc.record({
  workerId: text,
  sessionId: text,
  seq: u64,
  status: fc.oneof({ arbitrary: fc.integer({ min: 0, max: 5 }), weight: 9 }, { arbitrary: fc.integer({ min: -2, max: -1 }), weight: 1 }),
  statusDetail: text,
  memoryUsedBytes: u64,
  memoryTotalBytes: u64,
  disks: fc.array(fc.record({ path: text, freeBytes: u64, totalBytes: u64 }), { maxLength: 3 }),
  load1: finite,
  collectors: fc.array(fc.record({ name: text, success: fc.boolean(), error: text, durationSeconds: finite }), { maxLength: 3 }),
  probeLatencyP50Seconds: fc.option(finite, { nil: undefined }),
  probeLatencyP95Seconds: fc.option(finite, { nil: undefined }),
  probeLatencyP99Seconds: fc.option(finite, { nil: undefined }),
  compact: fc.option(
    fc.record({
      inventorySeq: u64,
      gpuMemoryUsedMib: fc.array(u64, { maxLength: 9 }),
      gpuUtilizationPercent: fc.array(fc.integer({ min: 0, max: 2 ** 32 - 1 }), { maxLength: 9 }),
      gpuTemperatureCelsius: fc.array(fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }), { maxLength: 9 }),
    }),
    { nil: undefined },
  ),
});

const encode = (init: object) => Buffer.from(toBinary(HeartbeatRequestSchema, create(HeartbeatRequestSchema, init as never)));
const wrap = (inner: Uint8Array) => Buffer.from(toBinary(HeartbeatStreamRequestSchema, { $typeName: 'hive.v1.HeartbeatStreamRequest', heartbeat: fromBinary(HeartbeatRequestSchema, inner) }));
const isAscii = (s: string) => /^[\x00-\x7f]*$/.test(s);

/** fromBinary's answer, or the error it throws. */
function reference<T>(decode: () => T): { ok: T } | { err: unknown } {
  try {
    return { ok: decode() };
  } catch (err) {
    return { err };
  }
}

function agrees(buf: Buffer): void {
  const fast = decodeHeartbeatRequest(buf);
  const ref = reference(() => fromBinary(HeartbeatRequestSchema, buf));
  if ('err' in ref) expect(fast).toBeNull();
  else if (fast !== null) expect(fast).toEqual(ref.ok);
  const streamed = decodeHeartbeatStreamRequest(buf);
  const refStream = reference(() => fromBinary(HeartbeatStreamRequestSchema, buf));
  if ('err' in refStream) expect(streamed).toBeNull();
  else if (streamed !== null) expect(streamed).toEqual(refStream.ok);
}

describe('heartbeat request decoder', () => {
  it('decodes the heartbeats an agent sends as fromBinary does', () => {
    const full = realisticHeartbeat('w-0001', 'sess-1');
    const compact = compactHeartbeat(full);
    compact.seq = 2n;
    compact.compact!.inventorySeq = 1n;
    const bytes = Buffer.from(toBinary(HeartbeatRequestSchema, compact));
    const fast = decodeHeartbeatRequest(bytes);
    expect(fast).not.toBeNull();
    expect(fast).toEqual(fromBinary(HeartbeatRequestSchema, bytes));
    const framed = wrap(bytes);
    expect(decodeHeartbeatStreamRequest(framed)).toEqual(fromBinary(HeartbeatStreamRequestSchema, framed));
    // The full form (GPUs) is fromBinary's.
    expect(decodeHeartbeatRequest(Buffer.from(toBinary(HeartbeatRequestSchema, full)))).toBeNull();
  });

  it('agrees with fromBinary on any compact heartbeat, and takes the ones in its range', () => {
    let taken = 0;
    fc.assert(
      fc.property(compactHeartbeats, (init) => {
        const buf = encode(init);
        agrees(buf);
        agrees(wrap(buf));
        const inRange =
          [init.workerId, init.sessionId, init.statusDetail, ...init.disks.map((d) => d.path), ...init.collectors.flatMap((c) => [c.name, c.error])].every(isAscii) &&
          [init.seq, init.memoryUsedBytes, init.memoryTotalBytes, ...init.disks.flatMap((d) => [d.freeBytes, d.totalBytes]), init.compact?.inventorySeq ?? 0n, ...(init.compact?.gpuMemoryUsedMib ?? [])].every(
            (v) => v <= BigInt(Number.MAX_SAFE_INTEGER),
          ) &&
          init.status >= 0;
        if (inRange) expect(decodeHeartbeatRequest(buf)).not.toBeNull();
        if (inRange) taken++;
      }),
      { numRuns: 2000 },
    );
    // The property is about the fast path: most cases must reach it.
    expect(taken).toBeGreaterThan(400);
  });

  it('declines or agrees on corrupted bytes (truncated, flipped, spliced)', () => {
    const full = realisticHeartbeat('w-0001', 'sess-1');
    const seed = Buffer.from(toBinary(HeartbeatRequestSchema, { ...compactHeartbeat(full), seq: 9n, probeLatencyP99Seconds: 0.25 }));
    fc.assert(
      fc.property(fc.integer({ min: 0, max: seed.length }), fc.integer({ min: 0, max: seed.length - 1 }), fc.integer({ min: 0, max: 255 }), fc.uint8Array({ maxLength: 8 }), (cut, at, byte, extra) => {
        const flipped = Buffer.from(seed);
        flipped[at] = byte;
        agrees(seed.subarray(0, cut));
        agrees(flipped);
        agrees(Buffer.concat([seed.subarray(0, at), extra, seed.subarray(at)]));
      }),
      { numRuns: 3000 },
    );
  });

  it('leaves unknown fields, unpacked lists and repeated sub-messages to fromBinary', () => {
    const base = encode({ workerId: 'w', seq: 3n, status: HealthStatus.HEALTHY });
    // Field 99, varint: kept by fromBinary as an unknown field.
    expect(decodeHeartbeatRequest(Buffer.concat([base, Buffer.from([0x98, 0x06, 0x01])]))).toBeNull();
    // compact.gpu_utilization_percent unpacked (field 3, varint).
    const unpacked = Buffer.concat([base, Buffer.from([0x8a, 0x01, 0x04, 0x18, 0x05, 0x18, 0x06])]);
    expect(fromBinary(HeartbeatRequestSchema, unpacked).compact?.gpuUtilizationPercent).toEqual([5, 6]);
    expect(decodeHeartbeatRequest(unpacked)).toBeNull();
    // Two compact fields merge.
    const twice = Buffer.concat([base, Buffer.from([0x8a, 0x01, 0x02, 0x08, 0x01, 0x8a, 0x01, 0x02, 0x08, 0x02])]);
    expect(decodeHeartbeatRequest(twice)).toBeNull();
  });

  it('shares one frozen list for absent repeated fields, so a decoded request cannot leak into the next', () => {
    const hb = decodeHeartbeatRequest(encode({ workerId: 'w', seq: 1n })) as HeartbeatRequest;
    expect(Object.isFrozen(hb.commandResults)).toBe(true);
    expect(() => hb.commandResults.push({} as never)).toThrow(TypeError);
  });
});
