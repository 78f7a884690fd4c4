import { create, toBinary } from '@bufbuild/protobuf';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { HeartbeatRequestSchema, WorkerStatsSchema, type HeartbeatRequest } from '../../gen/hive/v1/registry_pb.js';
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
    expect(snapshotOf(w).stats).toEqual(stored);
    expect(toBinary(WorkerStatsSchema, statsOf(w)!)).toEqual(stored);
    // A compact heartbeat of a session whose inventory this hive never saw: the GPUs stay as stored.
    const enc = createHeartbeatEncoder();
    enc.encode({ ...agentHeartbeat(1), workerId: 'w' });
    expect(mergeStats(w, enc.encode({ ...agentHeartbeat(2), workerId: 'w' }))).toBe(true);
    expect(w.storedStats).toBeNull();
    expect(lastBeatOf(w)!.gpus).toEqual(statsOfStored(stored).gpus);
    expect(lastBeatOf(w)!.memoryUsedBytes).toBe(create(HeartbeatRequestSchema, agentHeartbeat(2)).memoryUsedBytes);
  });

  it('keeps stored stats that encode to no bytes at all: empty stats, not none', () => {
    const w = worker(new Uint8Array(0));
    expect(statsOf(w)).toEqual(create(WorkerStatsSchema));
    expect(snapshotOf(w).stats).toEqual(new Uint8Array(0));
    expect(statsOf(worker(null))).toBeUndefined();
  });
});

function statsOfStored(b: Uint8Array) {
  return statsOf(worker(b))!;
}

describe('compact merges into the packed form and its hot values', () => {
  // The reference: unpack, merge as objects, pack (what the merge did before).
  function reference(p: ReturnType<typeof packStats>, hb: HeartbeatRequest): ReturnType<typeof packStats> {
    const s = unpackStats(p);
    const c = hb.compact!;
    if (c.gpuMemoryUsedMib.length !== s.gpus.length) throw new Error(`compact.gpu_memory_used_mib has ${c.gpuMemoryUsedMib.length} values; the inventory has ${s.gpus.length} gpus`);
    for (let i = 0; i < s.gpus.length; i++) {
      const total = s.gpus[i].memoryTotalBytes;
      if (total !== 0n && c.gpuMemoryUsedMib[i] * 1048576n > total) throw new Error(`gpu ${s.gpus[i].index}: memory used exceeds memory_total_bytes`);
    }
    Object.assign(s, { memoryUsedBytes: hb.memoryUsedBytes, memoryTotalBytes: hb.memoryTotalBytes, load1: hb.load1, disks: hb.disks });
    s.probeLatencyP50Seconds = hb.probeLatencyP50Seconds;
    s.probeLatencyP95Seconds = hb.probeLatencyP95Seconds;
    s.probeLatencyP99Seconds = hb.probeLatencyP99Seconds;
    s.gpus.forEach((g, i) => {
      g.memoryUsedBytes = c.gpuMemoryUsedMib[i] * 1048576n;
      g.utilization = c.gpuUtilizationPercent.length ? c.gpuUtilizationPercent[i] / 100 : undefined;
      g.temperatureCelsius = c.gpuTemperatureCelsius.length ? c.gpuTemperatureCelsius[i] : undefined;
    });
    return packStats(s);
  }

  // Mostly exact in a double (the hot values' range), sometimes past 2^53.
  const u64 = fc.oneof({ arbitrary: fc.bigInt({ min: 0n, max: 2n ** 53n - 1n }), weight: 9 }, { arbitrary: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), weight: 1 });

  it('gives what unpack, merge and pack give, heartbeat after heartbeat, for any inventory and compact values', () => {
    const gpu = fc.record({
      index: fc.nat(300),
      uuid: fc.constantFrom('', 'GPU-3f8a2c1e-5b7d-4e9a-8c6f-1d2e3f4a5b60', 'MIG-x', 'GPU-ü'),
      name: fc.constantFrom('', 'NVIDIA H100 80GB HBM3', 'A'.repeat(200)),
      memoryUsedBytes: u64,
      memoryTotalBytes: fc.oneof(fc.constant(0n), fc.bigInt({ min: 0n, max: 2n ** 40n }), u64),
      utilization: fc.option(fc.oneof(fc.double({ noNaN: true }), fc.integer({ min: 0, max: 100 }).map((k) => k / 100)), { nil: undefined }),
      temperatureCelsius: fc.option(fc.oneof(fc.double({ noNaN: true }), fc.integer({ min: -300, max: 2000 })), { nil: undefined }),
    });
    const disk = fc.record({ path: fc.constantFrom('/', '/data', '/données'), freeBytes: u64, totalBytes: fc.bigInt({ min: 0n, max: 2n ** 60n }) });
    const collector = fc.record({ name: fc.constantFrom('gpu', 'disk', 'x'.repeat(150)), success: fc.boolean(), error: fc.constantFrom('', 'boom'), durationSeconds: fc.double({ noNaN: true }) });
    const optDouble = fc.option(fc.double({ noNaN: true, noDefaultInfinity: true }), { nil: undefined });
    fc.assert(
      fc.property(
        fc.array(gpu, { maxLength: 9 }),
        fc.array(disk, { maxLength: 3 }),
        fc.array(collector, { maxLength: 3 }),
        fc.array(disk, { maxLength: 3 }),
        fc.record({ mem: u64, load1: fc.double({ noNaN: true }), p50: optDouble, p99: optDouble }),
        fc.integer({ min: -1, max: 1 }),
        fc.boolean(),
        fc.boolean(),
        fc.nat(),
        (gpus, disks, collectors, newDisks, plain, countDelta, util, temp, seed) => {
          const inv: LiveStats = {
            ...emptyLiveStats(),
            memoryUsedBytes: 5n,
            load1: 1.5,
            gpus: gpus.map((g) => ({ $typeName: 'hive.v1.GpuStats' as const, ...g })),
            disks: disks.map((d) => ({ $typeName: 'hive.v1.DiskStats' as const, ...d })),
            collectors: collectors.map((c) => ({ $typeName: 'hive.v1.CollectorStatus' as const, ...c })),
          };
          const p = packStats(inv);
          const n = Math.max(0, gpus.length + countDelta);
          const rnd = (i: number, m: number) => (seed * 31 + i * 7) % m;
          const hb = create(HeartbeatRequestSchema, {
            memoryUsedBytes: plain.mem,
            memoryTotalBytes: plain.mem / 2n,
            load1: plain.load1,
            probeLatencyP50Seconds: plain.p50,
            probeLatencyP99Seconds: plain.p99,
            disks: newDisks,
            compact: {
              inventorySeq: 1n,
              gpuMemoryUsedMib: Array.from({ length: n }, (_, i) => BigInt(rnd(i, 90_000))),
              gpuUtilizationPercent: util ? Array.from({ length: n }, (_, i) => rnd(i, 101)) : [],
              gpuTemperatureCelsius: temp ? Array.from({ length: n }, (_, i) => rnd(i, 1274) - 273) : [],
            },
          });
          // The worker holds the inventory; two compact heartbeats follow (the
          // second finds the hot values the first made, or the slow way's result).
          const w = worker();
          w.beat = p;
          w.inventory = { sessionId: '', seq: 1n };
          let ref: ReturnType<typeof packStats> | Error = p;
          for (const seq of [2n, 3n]) {
            const beat = create(HeartbeatRequestSchema, { ...hb, seq, compact: hb.compact });
            if (seq === 3n) beat.load1 = plain.load1 / 2;
            if (typeof ref === 'string') {
              try {
                ref = reference(ref, beat);
              } catch (err) {
                ref = err as Error;
              }
            }
            let got: Error | null = null;
            try {
              mergeStats(w, beat);
            } catch (err) {
              got = err as Error;
            }
            if (typeof ref !== 'string') {
              expect(got?.message).toContain(ref.message);
              return;
            }
            expect(got).toBeNull();
            expect(asStats(lastBeatOf(w)!)).toEqual(asStats(unpackStats(ref)));
            expect(Buffer.from(snapshotOf(w).stats!).toString('hex')).toBe(bytesOf(unpackStats(ref)));
          }
        },
      ),
      { numRuns: 1500 },
    );
  });
});
