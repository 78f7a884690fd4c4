import { create, toBinary } from '@bufbuild/protobuf';
import { GpuStatsSchema, HeartbeatRequestSchema, HeartbeatStreamRequestSchema } from '../../gen/hive/v1/registry_pb.js';
import type { Scenario } from '../lib/context.js';
import { realisticHeartbeat } from '../lib/wire.js';

// The encoded size of the heartbeat the load generator sends (8 GPUs, 2
// disks, memory, load, 4 collector statuses), and where its bytes go.

export const sizeScenario: Scenario = {
  name: 'size',
  title: 'encoded heartbeat, 8 GPUs',
  quick: true,
  async run() {
    const hb = realisticHeartbeat('gpu-node-0042', '9f86d081884c7d65', 42);
    hb.seq = 123_456n;
    const total = toBinary(HeartbeatRequestSchema, hb).length;
    const frame = toBinary(HeartbeatStreamRequestSchema, create(HeartbeatStreamRequestSchema, { heartbeat: hb })).length;
    const part = (patch: Partial<typeof hb>) => total - toBinary(HeartbeatRequestSchema, create(HeartbeatRequestSchema, { ...hb, ...patch })).length;
    const oneGpu = toBinary(GpuStatsSchema, hb.gpus[0]).length;
    const gpuIdentity = toBinary(GpuStatsSchema, create(GpuStatsSchema, { uuid: hb.gpus[0].uuid, name: hb.gpus[0].name })).length;
    return {
      status: 'ok',
      values: {
        heartbeatBytes: { value: total, unit: 'B', note: 'HeartbeatRequest' },
        streamFrameBytes: { value: frame, unit: 'B', note: 'HeartbeatStreamRequest (gRPC adds 5 bytes of framing, HTTP/2 9 per DATA frame)' },
        gpusBytes: { value: part({ gpus: [] }), unit: 'B', note: '8 GpuStats' },
        perGpuBytes: { value: oneGpu + 2, unit: 'B', note: 'one GpuStats with its tag and length' },
        gpuIdentityBytes: { value: gpuIdentity * 8, unit: 'B', note: 'uuid + name of 8 GPUs: constant for a box, resent every beat' },
        collectorsBytes: { value: part({ collectors: [] }), unit: 'B', note: '4 collector statuses' },
        disksBytes: { value: part({ disks: [] }), unit: 'B', note: '2 disks' },
      },
      notes: ['Synthetic but shaped like the agent (nvidia-smi fields, /proc/meminfo, statfs of 2 paths, loadavg, 4 collectors); the agent scenario measures the real agent\'s.'],
    };
  },
};
