import { create, fromBinary, toBinary, type DescMessage, type MessageShape } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import {
  HealthStatus,
  HeartbeatRequestSchema,
  HeartbeatStreamResponseSchema,
  type HeartbeatRequest,
} from '../../gen/hive/v1/registry_pb.js';
import { createHeartbeatEncoder } from '../../worker-agent/compact.js';
import { varintSize, writeVarint } from '../../hive/varint.js';

// What goes over the wire in the benchmark: realistic heartbeats (8 GPUs, 2
// disks, memory, load, 4 collector statuses, as the agent sends them),
// encoded by protobuf-es, and the grpc-js plumbing every client shares.

export const PATHS = {
  heartbeatStream: '/hive.v1.RegistryService/HeartbeatStream',
  heartbeat: '/hive.v1.RegistryService/Heartbeat',
  registerWorker: '/hive.v1.RegistryService/RegisterWorker',
  getWorker: '/hive.v1.RegistryService/GetWorker',
  watchWorkers: '/hive.v1.RegistryService/WatchWorkers',
  leaseGrant: '/etcdserverpb.Lease/LeaseGrant',
  leaseKeepAlive: '/etcdserverpb.Lease/LeaseKeepAlive',
  kvPut: '/etcdserverpb.KV/Put',
  watch: '/etcdserverpb.Watch/Watch',
} as const;

const GIB = 1024n * 1024n * 1024n;
const MIB = 1024n * 1024n;

/** A stable fake GPU UUID in nvidia-smi's format (GPU-8-4-4-4-12 hex). */
export function gpuUuid(worker: number, index: number): string {
  const h = (n: number, len: number) => (n >>> 0).toString(16).padStart(len, '0').slice(-len);
  return `GPU-${h(worker * 2654435761, 8)}-${h(index * 40503, 4)}-${h(worker, 4)}-${h(index + 0x8000, 4)}-${h(worker * 97, 8)}${h(index * 131, 4)}`;
}

/** A heartbeat as an agent on an 8-GPU H100 box sends it (seq left at 0: the frames add it). */
export function realisticHeartbeat(workerId: string, sessionId: string, worker = 0): HeartbeatRequest {
  return create(HeartbeatRequestSchema, {
    workerId,
    sessionId,
    status: HealthStatus.HEALTHY,
    statusDetail: '',
    gpus: Array.from({ length: 8 }, (_, i) => ({
      index: i,
      uuid: gpuUuid(worker, i),
      name: 'NVIDIA H100 80GB HBM3',
      memoryUsedBytes: BigInt(30_000 + i * 1_117) * MIB,
      memoryTotalBytes: 81_559n * MIB,
      utilization: 0.87,
      temperatureCelsius: 61,
    })),
    memoryUsedBytes: 412n * GIB,
    memoryTotalBytes: 2015n * GIB,
    disks: [
      { path: '/', freeBytes: 312n * GIB, totalBytes: 879n * GIB },
      { path: '/data', freeBytes: 11_402n * GIB, totalBytes: 28_000n * GIB },
    ],
    load1: 7.42,
    collectors: [
      { name: 'gpu', success: true, durationSeconds: 0.031 },
      { name: 'memory', success: true, durationSeconds: 0.001 },
      { name: 'disk', success: true, durationSeconds: 0.002 },
      { name: 'load', success: true, durationSeconds: 0.001 },
    ],
  });
}

/**
 * A heartbeat as the agent sends it after the first of its session: the
 * compact form (per-GPU values, no healthy collectors) referring to seq 1,
 * made by the agent's own encoder (seq left at 0: the frames add it).
 */
export function compactHeartbeat(hb: HeartbeatRequest): HeartbeatRequest {
  const enc = createHeartbeatEncoder();
  enc.encode({ ...hb, seq: 1n });
  const compact = enc.encode({ ...hb, seq: 2n });
  if (!compact.compact) throw new Error('the template heartbeat has no compact form');
  compact.seq = 0n;
  return compact;
}

/** The smallest valid heartbeat: who, which session, and a status (seq added by the frames). */
export function minimalHeartbeat(workerId: string, sessionId: string): HeartbeatRequest {
  return create(HeartbeatRequestSchema, { workerId, sessionId, status: HealthStatus.HEALTHY });
}

/**
 * Pre-encoded heartbeats of one worker. protobuf-es encodes the heartbeat
 * once (seq = 0, so absent); each frame appends field 3 (seq) and, for the
 * stream, wraps it as field 1 of HeartbeatStreamRequest. Field order is free
 * in protobuf, so the server decodes exactly what a fresh encode would give.
 * This keeps the load generator's CPU per message small and equal for every
 * target: it writes one buffer and reads one buffer per operation.
 */
export class HeartbeatFrames {
  private readonly body: Uint8Array;
  private readonly later: Uint8Array;

  /** With `then`, seq 1 carries `hb` (the full form) and every later seq `then` (the compact form that refers to it). */
  constructor(hb: HeartbeatRequest, then?: HeartbeatRequest) {
    if (hb.seq !== 0n || (then && then.seq !== 0n)) throw new Error('template heartbeat must have seq 0');
    this.body = toBinary(HeartbeatRequestSchema, hb);
    this.later = then ? toBinary(HeartbeatRequestSchema, then) : this.body;
  }

  /** Encoded HeartbeatRequest with the given seq. */
  unary(seq: number): Buffer {
    const body = seq === 1 ? this.body : this.later;
    const inner = body.length + 1 + varintSize(seq);
    const buf = Buffer.allocUnsafe(inner);
    buf.set(body, 0);
    buf[body.length] = 0x18; // field 3, varint
    writeVarint(buf, body.length + 1, seq);
    return buf;
  }

  /** Encoded HeartbeatStreamRequest { heartbeat = 1 } with the given seq. */
  stream(seq: number): Buffer {
    const body = seq === 1 ? this.body : this.later;
    const inner = body.length + 1 + varintSize(seq);
    const buf = Buffer.allocUnsafe(1 + varintSize(inner) + inner);
    buf[0] = 0x0a; // field 1, length-delimited
    let at = writeVarint(buf, 1, inner);
    buf.set(body, at);
    at += body.length;
    buf[at++] = 0x18;
    writeVarint(buf, at, seq);
    return buf;
  }

  get bodyBytes(): number {
    return this.later.length;
  }
}

/** The frames of one worker for a payload kind (see LoadSpec.payload). */
export function framesFor(payload: 'agent' | 'full' | 'minimal' | undefined, workerId: string, sessionId: string, worker: number): HeartbeatFrames {
  if (payload === 'minimal') return new HeartbeatFrames(minimalHeartbeat(workerId, sessionId));
  const hb = realisticHeartbeat(workerId, sessionId, worker);
  return payload === 'full' ? new HeartbeatFrames(hb) : new HeartbeatFrames(hb, compactHeartbeat(hb));
}

export const identity = (b: Buffer): Buffer => b;

export function serializer<D extends DescMessage>(schema: D) {
  return (msg: MessageShape<D>): Buffer => {
    const b = toBinary(schema, msg);
    return Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  };
}

export function deserializer<D extends DescMessage>(schema: D) {
  return (buf: Buffer): MessageShape<D> => fromBinary(schema, buf);
}

/** Decodes an ack from the hive or the no-op server (for the sampled correctness check). */
export function ackSeqOfStream(buf: Buffer): bigint {
  return fromBinary(HeartbeatStreamResponseSchema, buf).heartbeat?.ackSeq ?? -1n;
}

export function bearer(token: string): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set('authorization', `Bearer ${token}`);
  return md;
}

/**
 * `count` clients to one address, each on its own HTTP/2 connection (a
 * local subchannel pool per client; grpc-js would otherwise share one).
 */
export function clients(addr: string, count: number): grpc.Client[] {
  return Array.from(
    { length: count },
    () =>
      new grpc.Client(addr, grpc.credentials.createInsecure(), {
        'grpc.use_local_subchannel_pool': 1,
        'grpc.max_receive_message_length': 256 * 1024 * 1024,
        'grpc.max_send_message_length': 256 * 1024 * 1024,
      }),
  );
}

export function unary<Req, Res>(
  client: grpc.Client,
  path: string,
  ser: (r: Req) => Buffer,
  de: (b: Buffer) => Res,
  req: Req,
  md: grpc.Metadata,
  timeoutMs = 30_000,
): Promise<Res> {
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(path, ser, de, req, md, { deadline: Date.now() + timeoutMs }, (err, res) => (err ? reject(err) : resolve(res as Res)));
  });
}

/** Runs fn over items with at most `limit` in flight. */
export async function pool<T>(items: readonly T[], limit: number, fn: (item: T, i: number) => Promise<void>): Promise<void> {
  let next = 0;
  let failed = false;
  const run = async () => {
    while (next < items.length && !failed) {
      const i = next++;
      try {
        await fn(items[i], i);
      } catch (err) {
        failed = true; // the others take no new items
        throw err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, run));
}
