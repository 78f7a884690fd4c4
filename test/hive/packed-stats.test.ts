import { create, toBinary } from '@bufbuild/protobuf';
import { describe, expect, it } from 'vitest';
import { HeartbeatRequestSchema, WorkerStatsSchema } from '../../gen/hive/v1/registry_pb.js';
import { emptyLiveStats, mergeStats } from '../../hive/live-stats.js';
import { packStats, unpackStats } from '../../hive/packed-stats.js';
import { fromStored, heartbeatOf, lastBeatOf, snapshotOf, statsOf, type LiveStats } from '../../hive/worker.js';
import { createHeartbeatEncoder } from '../../worker-agent/compact.js';
import { agentHeartbeat, eightGpus } from '../worker-agent/support/heartbeats.js';

// The hive holds every worker's stats packed: what is read back (unpacked,
// as a message, as the bytes the write-behind stores) must be what was sent.

const asStats = (s: LiveStats) => create(WorkerStatsSchema, s);
const bytesOf = (s: LiveStats) => Buffer.from(toBinary(WorkerStatsSchema, asStats(s))).toString('hex');
const roundTrips = (s: LiveStats) => expect(asStats(unpackStats(packStats(s)))).toEqual(asStats(s));

function worker(stats: Uint8Array | null = null) {
  return fromStored({ workerId: 'w', labels: {}, intervalMs: 1000, registeredAt: 0, state: 1, stateSince: 0, lastSeen: null, lastSeq: 0n, sessionId: '', status: 0, statusDetail: '', stats, policy: null, dependsOn: [] });
}

describe('packed stats', () => {
  it('unpacks to what was packed: an agent heartbeat, empty stats, zeros, optionals, extremes', () => {
    roundTrips(create(HeartbeatRequestSchema, agentHeartbeat(1)));
    roundTrips(emptyLiveStats());
    const hb = create(HeartbeatRequestSchema, agentHeartbeat(3));
    roundTrips({ ...hb, probeLatencyP50Seconds: 0, probeLatencyP95Seconds: 0.25, probeLatencyP99Seconds: 1e-9, load1: 0 });
    roundTrips({
      ...emptyLiveStats(),
      memoryUsedBytes: 2n ** 63n + 5n,
      memoryTotalBytes: 2n ** 64n - 1n,
      load1: -0.5,
      gpus: hb.gpus.map((g, i) => ({
        ...g,
        index: i * 300,
        // Whole percents, other doubles, integral and fractional temperatures, absent values.
        utilization: [undefined, 0, 1, 0.87, 0.123, 1.5, Number.NaN, 0.005][i],
        temperatureCelsius: [0, -40, 61, 61.5, undefined, 2 ** 40, -(2 ** 31), 1000][i],
        memoryUsedBytes: [0n, 1n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 53n + 1n, 2n ** 56n, 2n ** 64n - 1n, 127n][i],
        uuid: ['', 'GPU-0', 'MIG-3f8a2c1e-5b7d-4e9a-8c6f-1d2e3f4a5b60', 'GPU-3F8A2C1E-5B7D-4E9A-8C6F-1D2E3F4A5B60', g.uuid, g.uuid, 'GPU-ü', g.uuid][i],
      })),
      disks: [{ $typeName: 'hive.v1.DiskStats', path: '/données/ünïcode', freeBytes: 0n, totalBytes: 2n ** 53n + 1n }],
      collectors: [
        { $typeName: 'hive.v1.CollectorStatus', name: 'x'.repeat(200), success: false, error: 'e'.repeat(5000), durationSeconds: 0 },
        { $typeName: 'hive.v1.CollectorStatus', name: 'gpu', success: true, error: '', durationSeconds: -0.25 },
      ],
    });
  });

  it('keeps a temperature of -0 and a utilisation of -0 as sent', () => {
    const s = unpackStats(packStats({ ...emptyLiveStats(), gpus: [{ $typeName: 'hive.v1.GpuStats', index: 0, uuid: '', name: '', memoryUsedBytes: 0n, memoryTotalBytes: 0n, utilization: -0, temperatureCelsius: -0 }] }));
    expect(Object.is(s.gpus[0].utilization, -0)).toBe(true);
    expect(Object.is(s.gpus[0].temperatureCelsius, -0)).toBe(true);
  });

  it('reads back many distinct names (past what is interned) unchanged', () => {
    const list = Array.from({ length: 20_000 }, (_, i) => ({ ...emptyLiveStats(), disks: [{ $typeName: 'hive.v1.DiskStats' as const, path: `/mnt/disk-${i}`, freeBytes: BigInt(i), totalBytes: 1n }] }));
    const packed = list.map(packStats);
    packed.forEach((p, i) => expect(unpackStats(p).disks[0].path).toBe(`/mnt/disk-${i}`));
  });

  it('gives every read fresh objects', () => {
    const p = packStats(create(HeartbeatRequestSchema, agentHeartbeat(1)));
    const a = unpackStats(p);
    a.gpus[0].memoryUsedBytes = 0n;
    a.collectors.length = 0;
    expect(unpackStats(p).gpus[0].memoryUsedBytes).not.toBe(0n);
    expect(unpackStats(p).collectors).toHaveLength(4);
  });

  it('reads merged full and compact heartbeats back as sent, in every form the hive hands out', () => {
    const w = worker();
    const enc = createHeartbeatEncoder();
    const failing = agentHeartbeat(1).collectors!.map((c) => (c.name === 'gpu' ? { ...c, success: false, error: 'nvidia-smi: exit 9' } : c));
    const plan = [{}, { collectors: failing }, { smi: eightGpus(0, 0, -5) }, {}];
    for (let i = 0; i < plan.length; i++) {
      const sent = create(HeartbeatRequestSchema, { ...agentHeartbeat(i + 1, plan[i]), workerId: 'w' });
      const hb = enc.encode({ ...agentHeartbeat(i + 1, plan[i]), workerId: 'w' });
      expect(mergeStats(w, hb)).toBe(false);
      w.sessionId = hb.sessionId;
      w.lastSeq = hb.seq;
      const expected = asStats(sent);
      expect(asStats(lastBeatOf(w)!)).toEqual(expected);
      expect(statsOf(w)).toEqual(expected);
      expect(Buffer.from(snapshotOf(w).stats!).toString('hex')).toBe(bytesOf(sent));
      expect(asStats(heartbeatOf(w)!)).toEqual(expected);
    }
  });

  it('keeps the stored stats, unchanged and undecoded, until the first heartbeat', () => {
    const stored = toBinary(WorkerStatsSchema, asStats(create(HeartbeatRequestSchema, agentHeartbeat(7))));
    const w = worker(stored);
    expect(lastBeatOf(w)).toBeNull();
    expect(snapshotOf(w).stats).toBe(stored);
    expect(toBinary(WorkerStatsSchema, statsOf(w)!)).toEqual(stored);
    // A compact heartbeat of a session whose inventory this hive never saw: the GPUs stay as stored.
    const enc = createHeartbeatEncoder();
    enc.encode({ ...agentHeartbeat(1), workerId: 'w' });
    expect(mergeStats(w, enc.encode({ ...agentHeartbeat(2), workerId: 'w' }))).toBe(true);
    expect(w.storedStats).toBeNull();
    expect(lastBeatOf(w)!.gpus).toEqual(statsOfStored(stored).gpus);
    expect(lastBeatOf(w)!.memoryUsedBytes).toBe(create(HeartbeatRequestSchema, agentHeartbeat(2)).memoryUsedBytes);
  });
});

function statsOfStored(b: Uint8Array) {
  return statsOf(worker(b))!;
}
