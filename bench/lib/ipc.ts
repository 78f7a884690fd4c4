import type { Child } from './spawn.js';
import type { DerivedFleet } from './fleet.js';

// The conversation between bench/main.ts and the load generator process:
// requests with an id, one reply each.

export type WorkerSource =
  | { mode: 'register'; prefix: string; count: number; intervalMs: number; registerInFlight?: number }
  | ({ mode: 'derived' } & DerivedFleet);

export interface LoadSpec {
  target: 'hive' | 'noop' | 'etcd';
  addr: string;
  mode: 'stream' | 'unary';
  /** Streams (stream mode) or requests in flight (unary mode). */
  concurrency: number;
  /** HTTP/2 connections the streams or requests are spread over. */
  conns: number;
  /**
   * 'agent' (default): what the agent sends, the full form (8 GPUs, 2 disks,
   * 4 collectors) as seq 1 and the compact form after; 'full': the full form
   * every time (a client without the compact form); 'minimal': worker id,
   * session, seq and status only.
   */
  payload?: 'agent' | 'full' | 'minimal';
  hive?: { adminToken: string; workers: WorkerSource; watchers: number };
  etcd?: { protoPath: string; ttlSeconds: number };
}

export interface SetupResult {
  setupMs: number;
  /** Encoded size of one heartbeat as sent after the first (HeartbeatRequest, bytes). */
  heartbeatBytes?: number;
  /** Encoded size of one HeartbeatStreamRequest frame payload after the first (bytes). */
  streamFrameBytes?: number;
}

export interface MeasureResult {
  ops: number;
  windowMs: number;
  opsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  meanMs: number;
  latencySamples: number;
  errors: number;
  lastError: string | null;
  mismatches: number;
  /** CPU seconds of the load generator over the window (all its threads). */
  loadgenCpuSec: number;
  watchMessages: number;
  watchBytes: number;
  /** Streams or slots still working at the end of the window. */
  alive: number;
}

export interface OnceResult {
  ok: number;
  errors: number;
  lastError: string | null;
  ms: number;
}

export interface FirstBeatResult {
  /** Date.now() when the port first accepted a TCP connection. */
  portOpenAt: number;
  /** Date.now() when the first heartbeat was acknowledged. */
  firstAckAt: number;
  attempts: number;
}

/** How a detection fleet beats and falls silent (the hive's and etcd's alike). */
export interface FleetTiming {
  addr: string;
  intervalMs: number;
  conns: number;
  /** Workers (by position in the fleet) that go silent, and when (ms after the fleet started). */
  silence: Array<{ k: number; atMs: number }>;
  /** Wait at most this long after the last silence for stale marks. */
  settleMs: number;
  runMs: number;
}

export interface FleetSpec extends FleetTiming {
  adminToken: string;
  fleet: DerivedFleet;
}

/** The same fleet on etcd: a lease per worker (TTL 2 x interval), a key on each, keep-alives every interval; a watch sees the keys deleted as leases expire. */
export interface EtcdFleetSpec extends FleetTiming {
  protoPath: string;
  count: number;
  /** Prefix of the keys, one per lease. */
  prefix: string;
  ttlSeconds: number;
}

export interface StaleMark {
  workerId: string;
  /**
   * Worker.state_since - Worker.last_seen - 2 x interval, hive clock (ms);
   * for an etcd lease, the delete's arrival minus the answer to its last
   * keep-alive minus the TTL (the load generator's clock).
   */
  lagMs: number;
  silenced: boolean;
  /**
   * For a worker that was not silenced: state_since minus the load
   * generator's last send before it (ms, same host clock; a send is when
   * the heartbeat was written to the connection). Over 2 x interval the
   * load generator itself went quiet (it is starved of CPU beside the load,
   * its event loop stalls for seconds), and the mark was right; under it,
   * the hive had a heartbeat in time and marked the worker anyway.
   */
  sinceSendMs?: number;
}

export interface FleetResult {
  beats: number;
  errors: number;
  lastError: string | null;
  marks: StaleMark[];
  silenced: number;
  /** Silenced workers never marked stale in time. */
  missed: number;
}

export type Command =
  | { type: 'ping' }
  | { type: 'setup'; spec: LoadSpec }
  | { type: 'resume'; warmupMs: number }
  | { type: 'measure'; windowMs: number }
  | { type: 'pause' }
  | { type: 'heartbeat-all'; addr: string; fleet: DerivedFleet; inFlight: number; conns: number }
  | { type: 'first-heartbeat'; port: number; fleet: DerivedFleet; timeoutMs: number }
  | { type: 'fleet'; spec: FleetSpec }
  | { type: 'etcd-fleet'; spec: EtcdFleetSpec }
  | { type: 'etcd-fleet-result' }
  | { type: 'close' };

export type Request = Command & { id: number };
export type Reply = { id: number; ok: true; result: unknown } | { id: number; ok: false; error: string };

export interface LoadgenHandle {
  child: Child;
  call<T>(cmd: Command, timeoutMs?: number): Promise<T>;
}

export function loadgenHandle(child: Child): LoadgenHandle {
  let next = 1;
  const waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  child.proc.on('message', (m: Reply) => {
    const w = waiting.get(m.id);
    if (!w) return;
    waiting.delete(m.id);
    if (m.ok) w.resolve(m.result);
    else w.reject(new Error(`loadgen: ${m.error}`));
  });
  void child.exited.then((code) => {
    for (const w of waiting.values()) w.reject(new Error(`loadgen exited (${code}):\n${child.tail()}`));
    waiting.clear();
  });
  return {
    child,
    call<T>(cmd: Command, timeoutMs = 600_000): Promise<T> {
      const id = next++;
      return new Promise<T>((resolve, reject) => {
        const timer = setTimeout(() => {
          waiting.delete(id);
          reject(new Error(`loadgen: ${cmd.type} timed out after ${timeoutMs} ms`));
        }, timeoutMs);
        waiting.set(id, {
          resolve: (v) => {
            clearTimeout(timer);
            resolve(v as T);
          },
          reject: (e) => {
            clearTimeout(timer);
            reject(e);
          },
        });
        child.proc.send({ ...cmd, id });
      });
    },
  };
}
