import { create, toBinary } from '@bufbuild/protobuf';
import { GpuStatsSchema, HeartbeatRequestSchema, HeartbeatStreamRequestSchema, type HeartbeatRequest } from '../../gen/hive/v1/registry_pb.js';
import type { Scenario } from '../lib/context.js';
import { compactHeartbeat, realisticHeartbeat } from '../lib/wire.js';

// The encoded size of the heartbeat the load generator sends (8 GPUs, 2
// disks, memory, load, 4 collector statuses) in both forms, made by the
// agent's own encoder, and where the full form's bytes go.

export const sizeScenario: Scenario = {
  name: 'size',
  title: 'encoded heartbeat, 8 GPUs',
  quick: true,
  async run() {
    const hb = realisticHeartbeat('gpu-node-0042', '9f86d081884c7d65', 42);
    const compact = compactHeartbeat(hb);
    hb.seq = 123_456n;
    compact.seq = 123_457n;
    compact.compact!.inventorySeq = 123_456n;
    const bytes = (m: HeartbeatRequest) => toBinary(HeartbeatRequestSchema, m).length;
    const total = bytes(hb);
    const frame = (m: HeartbeatRequest) => toBinary(HeartbeatStreamRequestSchema, create(HeartbeatStreamRequestSchema, { heartbeat: m })).length;
    const part = (patch: Partial<typeof hb>) => total - bytes(create(HeartbeatRequestSchema, { ...hb, ...patch }));
    const oneGpu = toBinary(GpuStatsSchema, hb.gpus[0]).length;
    const gpuIdentity = toBinary(GpuStatsSchema, create(GpuStatsSchema, { uuid: hb.gpus[0].uuid, name: hb.gpus[0].name })).length;
    const compactGpus = bytes(compact) - bytes(create(HeartbeatRequestSchema, { ...compact, compact: undefined }));
    return {
      status: 'ok',
      values: {
        heartbeatBytes: { value: bytes(compact), unit: 'B', note: 'HeartbeatRequest, compact form (every heartbeat after the first of a session)' },
        streamFrameBytes: { value: frame(compact), unit: 'B', note: 'HeartbeatStreamRequest, compact (gRPC adds 5 bytes of framing, HTTP/2 9 per DATA frame)' },
        compactGpuBytes: { value: compactGpus, unit: 'B', note: 'the compact field: inventory seq + memory, utilisation, temperature of 8 GPUs' },
        fullHeartbeatBytes: { value: total, unit: 'B', note: 'HeartbeatRequest, full form (first of a session, or after a change)' },
        fullStreamFrameBytes: { value: frame(hb), unit: 'B', note: 'HeartbeatStreamRequest, full form' },
        gpusBytes: { value: part({ gpus: [] }), unit: 'B', note: 'full form: 8 GpuStats' },
        perGpuBytes: { value: oneGpu + 2, unit: 'B', note: 'full form: one GpuStats with its tag and length' },
        gpuIdentityBytes: { value: gpuIdentity * 8, unit: 'B', note: 'full form: uuid + name of 8 GPUs (the inventory)' },
        collectorsBytes: { value: part({ collectors: [] }), unit: 'B', note: 'full form: 4 collector statuses (the compact form carries only failing or changed ones)' },
        disksBytes: { value: part({ disks: [] }), unit: 'B', note: '2 disks (both forms)' },
      },
      notes: ['Synthetic but shaped like the agent (nvidia-smi fields, /proc/meminfo, statfs of 2 paths, loadavg, 4 collectors), encoded by the agent\'s encoder; the agent scenario reads the real agent\'s hive_agent_heartbeat_bytes.'],
    };
  },
};
