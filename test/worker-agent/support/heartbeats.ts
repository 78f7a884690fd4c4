import { HealthStatus } from '../../../gen/hive/v1/registry_pb.js';
import { parseNvidiaSmiCsv } from '../../../worker-agent/collectors/gpu.js';
import type { HeartbeatRequest } from '../../../gen/hive/v1/registry_pb.js';
import type { HeartbeatInit } from '../../../worker-agent/compact.js';

type PlainInit = Exclude<HeartbeatInit, HeartbeatRequest>;

// Heartbeats shaped like the agent's on an 8-GPU box (GPUs through the real
// nvidia-smi parser), with values that move with seq.

const GIB = 1024n * 1024n * 1024n;

/** Eight GPUs in the agent's nvidia-smi query format, read by the real parser. */
export function eightGpus(usedBase = 30_000, util = 80, temp = 55): string {
  return Array.from({ length: 8 }, (_, i) => `${i}, GPU-3f8a2c1e-5b7d-4e9a-8c6f-1d2e3f4a5b${(60 + i).toString(16)}, NVIDIA H100 80GB HBM3, ${usedBase + i * 1117}, 81559, ${util + i}, ${temp + i}`).join('\n') + '\n';
}

export function agentHeartbeat(seq: number, opts: { smi?: string; collectors?: PlainInit['collectors']; sessionId?: string } = {}): PlainInit {
  return {
    workerId: 'gpu-node-0042',
    sessionId: opts.sessionId ?? '9f86d081884c7d65',
    seq: BigInt(seq),
    status: HealthStatus.HEALTHY,
    statusDetail: '',
    gpus: parseNvidiaSmiCsv(opts.smi ?? eightGpus(30_000 + seq)),
    memoryUsedBytes: 412n * GIB + BigInt(seq) * 4096n,
    memoryTotalBytes: 2015n * GIB,
    disks: [{ path: '/', freeBytes: 312n * GIB - BigInt(seq) * 4096n, totalBytes: 879n * GIB }],
    load1: 7.42,
    collectors: opts.collectors ?? [
      { name: 'gpu', success: true, error: '', durationSeconds: 0.031 },
      { name: 'memory', success: true, error: '', durationSeconds: 0.001 },
      { name: 'disk', success: true, error: '', durationSeconds: 0.002 },
      { name: 'load', success: true, error: '', durationSeconds: 0.001 },
    ],
  };
}

