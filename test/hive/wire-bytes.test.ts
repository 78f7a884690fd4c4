import { create, toBinary } from '@bufbuild/protobuf';
import { describe, expect, it } from 'vitest';
import { HeartbeatRequestSchema, HeartbeatStreamRequestSchema } from '../../gen/hive/v1/registry_pb.js';
import { keepWireBytes, onlyField1, takeWireBytes } from '../../hive/wire-bytes.js';

// A wrapped heartbeat's own bytes are found in its wrapper's without a
// decode, and kept bytes are handed out once.

const hb = (gpus: number) =>
  create(HeartbeatRequestSchema, {
    workerId: 'w-1',
    sessionId: 's',
    seq: 42n,
    gpus: Array.from({ length: gpus }, (_, i) => ({ index: i, name: 'NVIDIA H100 80GB HBM3', memoryUsedBytes: 1n << 33n, memoryTotalBytes: 80n << 30n })),
  });

describe('wire bytes', () => {
  it('finds the heartbeat inside a HeartbeatStreamRequest, for one- and multi-byte lengths', () => {
    for (const n of [0, 1, 8, 64]) {
      const inner = toBinary(HeartbeatRequestSchema, hb(n));
      const outer = toBinary(HeartbeatStreamRequestSchema, create(HeartbeatStreamRequestSchema, { heartbeat: hb(n) }));
      expect(inner.length > 127 || n < 8).toBe(true);
      expect(Buffer.from(onlyField1(outer)!)).toEqual(Buffer.from(inner));
    }
  });

  it('refuses anything but a lone field 1', () => {
    const outer = toBinary(HeartbeatStreamRequestSchema, create(HeartbeatStreamRequestSchema, { heartbeat: hb(1) }));
    expect(onlyField1(new Uint8Array([...outer, 0x10, 0x01]))).toBeUndefined(); // another field after it
    expect(onlyField1(outer.subarray(0, outer.length - 1))).toBeUndefined(); // truncated
    expect(onlyField1(new Uint8Array([0x12, 0x00]))).toBeUndefined(); // field 2
    expect(onlyField1(new Uint8Array([]))).toBeUndefined();
  });

  it('hands kept bytes out once', () => {
    const msg = hb(0);
    keepWireBytes(msg, new Uint8Array([1, 2, 3]));
    expect(takeWireBytes(msg)).toEqual(new Uint8Array([1, 2, 3]));
    expect(takeWireBytes(msg)).toBeUndefined();
  });
});
