import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import { randomBytes } from 'node:crypto';
import { HeartbeatRequestSchema, HeartbeatStreamRequestSchema, HeartbeatStreamResponseSchema, type HeartbeatStreamResponse } from '../../../gen/hive/v1/registry_pb.js';
import { fullJitterBackoffMs } from '../../../lib/backoff.js';

// A simulated fleet in one process: every worker holds its own
// HeartbeatStream over real gRPC (one HTTP/2 connection per channel),
// heartbeats on its interval with jitter, and reconnects with full-jitter
// exponential backoff like the agent does. Cheap enough for 1,000 workers.

export interface SimWorker {
  workerId: string;
  token: string;
  sessionId: string;
  seq: bigint;
  ackedSeq: bigint;
  status: number;
  connected: boolean;
  stopped: boolean;
  /** Wall-clock times (ms) of each successful (re)connection: the first ack on a new stream. */
  connects: number[];
  disconnects: number;
  /** Acks received, with the time they arrived. */
  acks: number;
  lastAckAt: number;
}

export interface FleetOptions {
  addr: string;
  intervalMs: number;
  backoffBaseMs?: number;
  backoffCapMs?: number;
  /** Channels (HTTP/2 connections) the streams are spread over. */
  channels?: number;
}

export function createFleet(o: FleetOptions) {
  const channels = Array.from({ length: o.channels ?? 4 }, (_, i) => new grpc.Client(o.addr, grpc.credentials.createInsecure(), { 'grpc.primary_user_agent': `sim-fleet-${i}`, 'grpc.initial_reconnect_backoff_ms': 200, 'grpc.max_reconnect_backoff_ms': 1000 }));
  const workers = new Map<string, SimWorker>();
  const calls = new Map<string, grpc.ClientDuplexStream<unknown, unknown>>();
  const nextBeat = new Map<string, number>();
  const attempts = new Map<string, number>();
  const timers = new Set<NodeJS.Timeout>();
  let ticker: NodeJS.Timeout | undefined;
  let n = 0;

  const ser = (m: unknown) => Buffer.from(toBinary(HeartbeatStreamRequestSchema, m as never));
  const de = (b: Buffer) => fromBinary(HeartbeatStreamResponseSchema, b);

  function beat(w: SimWorker): void {
    const call = calls.get(w.workerId);
    if (!call) return;
    w.seq++;
    call.write(create(HeartbeatStreamRequestSchema, { heartbeat: create(HeartbeatRequestSchema, { workerId: w.workerId, sessionId: w.sessionId, seq: w.seq, status: w.status, memoryTotalBytes: 1000n, memoryUsedBytes: 10n }) }));
  }

  function later(ms: number, fn: () => void): void {
    const t = setTimeout(() => {
      timers.delete(t);
      fn();
    }, ms);
    timers.add(t);
  }

  function open(w: SimWorker): void {
    if (w.stopped) return;
    const md = new grpc.Metadata();
    md.set('authorization', `Bearer ${w.token}`);
    const ch = channels[n++ % channels.length];
    const call = ch.makeBidiStreamRequest('/hive.v1.RegistryService/HeartbeatStream', ser, de, md) as grpc.ClientDuplexStream<unknown, HeartbeatStreamResponse>;
    calls.set(w.workerId, call);
    let fresh = true;
    call.on('data', (r: HeartbeatStreamResponse) => {
      if (!r.heartbeat || r.heartbeat.ackSeq === 0n) return;
      w.ackedSeq = r.heartbeat.ackSeq > w.ackedSeq ? r.heartbeat.ackSeq : w.ackedSeq;
      w.acks++;
      w.lastAckAt = Date.now();
      if (fresh) {
        fresh = false;
        w.connected = true;
        w.connects.push(Date.now());
        attempts.set(w.workerId, 0);
      }
    });
    call.on('error', () => undefined);
    call.on('status', (s: grpc.StatusObject) => {
      if (calls.get(w.workerId) === call) calls.delete(w.workerId);
      if (w.connected) w.disconnects++;
      w.connected = false;
      if (w.stopped) return;
      // A replayed seq (the hive forgot nothing but we raced it) starts a new session.
      if (s.code === grpc.status.FAILED_PRECONDITION) w.sessionId = `s-${randomBytes(4).toString('hex')}`;
      const a = attempts.get(w.workerId) ?? 0;
      attempts.set(w.workerId, a + 1);
      later(fullJitterBackoffMs(a, o.backoffBaseMs ?? 500, o.backoffCapMs ?? 5000), () => open(w));
    });
    // The first heartbeat goes out at once: the stream is only "connected" when acknowledged.
    beat(w);
  }

  return {
    workers,
    add(workerId: string, token: string): SimWorker {
      const w: SimWorker = { workerId, token, sessionId: `s-${randomBytes(4).toString('hex')}`, seq: 0n, ackedSeq: 0n, status: 1, connected: false, stopped: false, connects: [], disconnects: 0, acks: 0, lastAckAt: 0 };
      workers.set(workerId, w);
      return w;
    },
    start(): void {
      const now = Date.now();
      for (const w of workers.values()) {
        // A random first phase, so the fleet does not beat in lockstep.
        nextBeat.set(w.workerId, now + Math.random() * o.intervalMs);
        later(Math.random() * Math.min(1000, o.intervalMs), () => open(w));
      }
      ticker = setInterval(() => {
        const t = Date.now();
        for (const w of workers.values()) {
          if (w.stopped) continue;
          const due = nextBeat.get(w.workerId) ?? 0;
          if (t < due) continue;
          nextBeat.set(w.workerId, t + o.intervalMs * (0.9 + Math.random() * 0.2));
          beat(w);
        }
      }, 50);
    },
    /** Stops one worker's heartbeats and closes its stream (before a Leave). */
    stopWorker(workerId: string): void {
      const w = workers.get(workerId);
      if (!w) return;
      w.stopped = true;
      calls.get(workerId)?.end();
      calls.delete(workerId);
    },
    connectedCount: () => [...workers.values()].filter((w) => w.connected && !w.stopped).length,
    close(): void {
      if (ticker) clearInterval(ticker);
      for (const t of timers) clearTimeout(t);
      for (const w of workers.values()) w.stopped = true;
      for (const c of calls.values()) c.cancel();
      for (const ch of channels) ch.close();
    },
  };
}

export type Fleet = ReturnType<typeof createFleet>;
