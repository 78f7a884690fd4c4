import { create, toBinary } from '@bufbuild/protobuf';
import { describe, expect, it } from 'vitest';
import { CommandSchema, HeartbeatResponseSchema, HeartbeatStreamResponseSchema, WorkerState, type HeartbeatResponse } from '../../gen/hive/v1/registry_pb.js';
import { msToDuration, msToTimestamp } from '../../lib/duration.js';
import { encodeHeartbeatResponse, encodeHeartbeatStreamResponse } from '../../hive/reply-codec.js';

// The hand-written encoder of heartbeat acknowledgements writes exactly
// toBinary's bytes, and declines what it does not cover.

const hex = (b: Uint8Array | null) => (b ? Buffer.from(b).toString('hex') : null);

describe('heartbeat reply encoder', () => {
  const replies: HeartbeatResponse[] = [
    create(HeartbeatResponseSchema, {}),
    create(HeartbeatResponseSchema, { ackSeq: 1n, state: WorkerState.HEALTHY }),
    create(HeartbeatResponseSchema, { ackSeq: 2n ** 40n, hiveTime: msToTimestamp(1_764_612_345_678), state: WorkerState.RESTARTING }),
    create(HeartbeatResponseSchema, { ackSeq: 127n, hiveTime: msToTimestamp(0), heartbeatInterval: msToDuration(5000), inventoryRequired: true }),
    create(HeartbeatResponseSchema, { ackSeq: 128n, hiveTime: msToTimestamp(1500), heartbeatInterval: msToDuration(250), state: WorkerState.DEGRADED }),
  ];

  it('writes the bytes toBinary writes', () => {
    for (const r of replies) {
      expect(hex(encodeHeartbeatResponse(r))).toBe(hex(toBinary(HeartbeatResponseSchema, r)));
      const m = create(HeartbeatStreamResponseSchema, { heartbeat: r });
      expect(hex(encodeHeartbeatStreamResponse(m))).toBe(hex(toBinary(HeartbeatStreamResponseSchema, m)));
    }
    const empty = create(HeartbeatStreamResponseSchema, {});
    expect(hex(encodeHeartbeatStreamResponse(empty))).toBe(hex(toBinary(HeartbeatStreamResponseSchema, empty)));
  });

  it('leaves commands and out-of-range numbers to toBinary', () => {
    const withCommand = create(HeartbeatResponseSchema, { ackSeq: 0n, commands: [create(CommandSchema, { commandId: 'c1', type: 1 })] });
    expect(encodeHeartbeatResponse(withCommand)).toBeNull();
    expect(encodeHeartbeatStreamResponse(create(HeartbeatStreamResponseSchema, { heartbeat: withCommand }))).toBeNull();
    expect(encodeHeartbeatResponse(create(HeartbeatResponseSchema, { ackSeq: 2n ** 63n }))).toBeNull();
    expect(encodeHeartbeatResponse(create(HeartbeatResponseSchema, { hiveTime: { seconds: -1n, nanos: 0 } }))).toBeNull();
  });
});
