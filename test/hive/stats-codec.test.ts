import { create, toBinary } from '@bufbuild/protobuf';
import { describe, expect, it } from 'vitest';
import { HeartbeatRequestSchema, WorkerStatsSchema } from '../../gen/hive/v1/registry_pb.js';
import { emptyLiveStats, mergeStats } from '../../hive/live-stats.js';
import { encodeWorkerStats } from '../../hive/stats-codec.js';
import { fromStored, lastBeatOf, statsOf, type LiveStats } from '../../hive/worker.js';
import { createHeartbeatEncoder } from '../../worker-agent/compact.js';
import { agentHeartbeat, eightGpus } from '../worker-agent/support/heartbeats.js';

// The write-behind's encoder of a worker's stats writes exactly the bytes
// protobuf-es writes for the same WorkerStats.

const same = (s: LiveStats) => expect(Buffer.from(encodeWorkerStats(s)).toString('hex')).toBe(Buffer.from(toBinary(WorkerStatsSchema, create(WorkerStatsSchema, s))).toString('hex'));

describe('encodeWorkerStats', () => {
  it('writes what toBinary writes, for stats merged from full and compact heartbeats', () => {
    const w = fromStored({ workerId: 'w', labels: {}, intervalMs: 1000, registeredAt: 0, state: 1, stateSince: 0, lastSeen: null, lastSeq: 0n, sessionId: '', status: 0, statusDetail: '', stats: null, policy: null, dependsOn: [] });
    const enc = createHeartbeatEncoder();
    const failing = agentHeartbeat(1).collectors!.map((c) => (c.name === 'gpu' ? { ...c, success: false, error: 'nvidia-smi: exit 9 — «killed»' } : c));
    const plan = [{}, { collectors: failing }, { smi: eightGpus(0, 0, -5) }, {}];
    for (let i = 0; i < plan.length; i++) {
      mergeStats(w, enc.encode({ ...agentHeartbeat(i + 1, plan[i]), workerId: 'w' }));
      same(lastBeatOf(w)!);
      expect(Buffer.from(encodeWorkerStats(lastBeatOf(w)!)).equals(Buffer.from(toBinary(WorkerStatsSchema, statsOf(w)!)))).toBe(true);
    }
  });

  it('handles empty, zero, optional and large values', () => {
    same(emptyLiveStats());
    const hb = create(HeartbeatRequestSchema, agentHeartbeat(3));
    same({ ...hb, probeLatencyP50Seconds: 0, probeLatencyP95Seconds: 0.25, probeLatencyP99Seconds: 1e-9, load1: 0 });
    same({
      ...emptyLiveStats(),
      memoryUsedBytes: 2n ** 63n + 5n,
      memoryTotalBytes: 2n ** 64n - 1n,
      gpus: hb.gpus.map((g, i) => ({ ...g, index: i * 300, utilization: undefined, temperatureCelsius: i === 0 ? 0 : undefined, memoryUsedBytes: 0n })),
      disks: [{ $typeName: 'hive.v1.DiskStats', path: '/données/ünïcode', freeBytes: 0n, totalBytes: 2n ** 53n + 1n }],
      collectors: [{ $typeName: 'hive.v1.CollectorStatus', name: 'x'.repeat(200), success: false, error: '', durationSeconds: 0 }],
    });
  });
});
