import { create, toBinary } from '@bufbuild/protobuf';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RestartPolicySchema } from '../../gen/hive/v1/policy_pb.js';
import { WatchWorkersResponseSchema, WorkerSchema, WorkerStatsSchema, type WatchWorkersResponse, type Worker } from '../../gen/hive/v1/registry_pb.js';
import { msToDuration, msToTimestamp } from '../../lib/duration.js';
import { encodeWatchWorkersResponse } from '../../hive/watch-codec.js';

// The hand-written encoder of WatchWorkers batches writes exactly the bytes
// toBinary writes, reuses the parts it cached only for the same objects, and
// declines what it does not cover.

const hex = (b: Uint8Array | null) => (b ? Buffer.from(b).toString('hex') : null);
const ms = fc.integer({ min: 0, max: 2 ** 42 });
const text = fc.oneof(fc.string({ maxLength: 12 }), fc.constantFrom('', 'w-1', 'zoë', '\u{1F600}'));

const workers = fc.record({
  workerId: text,
  state: fc.integer({ min: 0, max: 8 }),
  labels: fc.dictionary(fc.string({ minLength: 1, maxLength: 6 }), text, { maxKeys: 4 }),
  interval: ms,
  lastSeen: fc.option(ms, { nil: undefined }),
  lastSeq: fc.bigInt({ min: 0n, max: 2n ** 53n - 1n }),
  sessionId: text,
  status: fc.integer({ min: 0, max: 3 }),
  statusDetail: text,
  registeredAt: ms,
  stateSince: ms,
  graceUntil: fc.option(ms, { nil: undefined }),
  policy: fc.option(fc.record({ mode: fc.integer({ min: 0, max: 3 }), maxAttempts: fc.nat(20), execArgv: fc.array(text, { maxLength: 3 }), restartAfter: fc.option(ms, { nil: undefined }) }), { nil: undefined }),
  connected: fc.boolean(),
  dependsOn: fc.array(text, { maxLength: 3 }),
  blockedBy: fc.array(text, { maxLength: 2 }),
  dependsOnSelector: text,
});

type WorkerInit = typeof workers extends fc.Arbitrary<infer T> ? T : never;

function workerOf(w: WorkerInit): Worker {
  return create(WorkerSchema, {
    workerId: w.workerId,
    state: w.state,
    labels: w.labels,
    heartbeatInterval: msToDuration(w.interval),
    lastSeen: w.lastSeen === undefined ? undefined : msToTimestamp(w.lastSeen),
    lastSeq: w.lastSeq,
    sessionId: w.sessionId,
    status: w.status,
    statusDetail: w.statusDetail,
    registeredAt: msToTimestamp(w.registeredAt),
    stateSince: msToTimestamp(w.stateSince),
    graceUntil: w.graceUntil === undefined ? undefined : msToTimestamp(w.graceUntil),
    restartPolicy: w.policy && create(RestartPolicySchema, { ...w.policy, restartAfter: w.policy.restartAfter === undefined ? undefined : msToDuration(w.policy.restartAfter) }),
    connected: w.connected,
    dependsOn: w.dependsOn,
    blockedBy: w.blockedBy,
    dependsOnSelector: w.dependsOnSelector,
  });
}

const batch = (list: Worker[], synced = false): WatchWorkersResponse =>
  create(WatchWorkersResponseSchema, {
    changes: list.map((worker, i) => ({ type: (i % 3) + 1, worker })),
    synced,
    hiveTime: msToTimestamp(1_764_612_345_678),
    hiveStartedAt: msToTimestamp(1_764_612_000_000),
  });

describe('WatchWorkers batch encoder', () => {
  it('writes the bytes toBinary writes', () => {
    fc.assert(
      fc.property(fc.array(workers, { maxLength: 6 }), fc.boolean(), (list, synced) => {
        const m = batch(list.map(workerOf), synced);
        expect(hex(encodeWatchWorkersResponse(m))).toBe(hex(toBinary(WatchWorkersResponseSchema, m)));
      }),
      { numRuns: 1000 },
    );
    const empty = create(WatchWorkersResponseSchema, {});
    expect(hex(encodeWatchWorkersResponse(empty))).toBe(hex(toBinary(WatchWorkersResponseSchema, empty)));
  });

  it('reuses a cached part only for the same object: re-registered labels and policies are encoded anew', () => {
    const w = workerOf(fc.sample(workers, { numRuns: 1, seed: 7 })[0]);
    const first = batch([w]);
    expect(hex(encodeWatchWorkersResponse(first))).toBe(hex(toBinary(WatchWorkersResponseSchema, first)));
    const relabelled = { ...w, labels: { ...w.labels, zone: 'b' }, restartPolicy: create(RestartPolicySchema, { maxAttempts: 9 }), dependsOn: ['other'] };
    const second = batch([relabelled]);
    expect(hex(encodeWatchWorkersResponse(second))).toBe(hex(toBinary(WatchWorkersResponseSchema, second)));
  });

  it('leaves workers with stats and out-of-range numbers to toBinary', () => {
    const w = workerOf(fc.sample(workers, { numRuns: 1, seed: 3 })[0]);
    expect(encodeWatchWorkersResponse(batch([{ ...w, stats: create(WorkerStatsSchema, { load1: 1 }) }]))).toBeNull();
    expect(encodeWatchWorkersResponse(batch([{ ...w, lastSeq: 2n ** 60n }]))).toBeNull();
    expect(encodeWatchWorkersResponse(batch([{ ...w, state: -1 as never }]))).toBeNull();
  });

  it('encodes batches larger than its scratch buffer', () => {
    const many = fc.sample(workers, { numRuns: 2000, seed: 11 }).map(workerOf);
    const m = batch(many);
    expect(hex(encodeWatchWorkersResponse(m))).toBe(hex(toBinary(WatchWorkersResponseSchema, m)));
  });
});
