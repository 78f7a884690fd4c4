import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { create, fromBinary } from '@bufbuild/protobuf';
import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { performance } from 'node:perf_hooks';
import {
  RegisterWorkerRequestSchema,
  RegisterWorkerResponseSchema,
  WatchWorkersRequestSchema,
  WatchWorkersResponseSchema,
  WorkerState,
} from '../gen/hive/v1/registry_pb.js';
import { fleetMembers, type DerivedFleet } from './lib/fleet.js';
import type { Command, EtcdFleetSpec, FirstBeatResult, FleetResult, FleetSpec, FleetTiming, LoadSpec, MeasureResult, OnceResult, Reply, Request, SetupResult, StaleMark } from './lib/ipc.js';
import { percentile, Reservoir } from './lib/stats.js';
import { ackSeqOfStream, bearer, clients, framesFor, HeartbeatFrames, identity, PATHS, pool, realisticHeartbeat, serializer, unary } from './lib/wire.js';

// The load generator: its own process, so the servers' CPU accounting holds
// only the servers. Started by bench/main.ts with an IPC channel; every
// command gets one reply. Load is closed-loop: each stream (or unary slot)
// sends its next message as soon as the previous one is acknowledged.

const sessionId = () => randomBytes(8).toString('hex');

interface Member {
  workerId: string;
  token: string;
  index: number;
}

/** One unit of closed-loop load: a stream or a unary slot. */
interface Lane {
  busy: boolean;
  dead: boolean;
  seq: number;
  sentAt: number;
  acks: number;
  fire(): void;
}

class Driver {
  lanes: Lane[] = [];
  running = false;
  measuring = false;
  count = 0;
  errors = 0;
  mismatches = 0;
  lastError: string | null = null;
  watchMessages = 0;
  watchBytes = 0;
  readonly latency = new Reservoir(20_000);
  private drained: (() => void) | null = null;
  private busyLanes = 0;
  closers: Array<() => void> = [];

  sent(lane: Lane): void {
    if (!lane.busy) {
      lane.busy = true;
      this.busyLanes++;
    }
  }

  /** An operation of `lane` finished; starts the next one while running. */
  done(lane: Lane, ok: boolean, err?: string): void {
    const now = performance.now();
    if (ok && this.measuring) {
      this.count++;
      this.latency.add(now - lane.sentAt);
    }
    if (!ok) {
      this.errors++;
      this.lastError = err ?? 'error';
    }
    if (this.running && !lane.dead) {
      lane.fire();
      return;
    }
    if (lane.busy) {
      lane.busy = false;
      this.busyLanes--;
    }
    if (this.busyLanes === 0 && this.drained) {
      const d = this.drained;
      this.drained = null;
      d();
    }
  }

  died(lane: Lane, err: string): void {
    if (lane.dead) return;
    lane.dead = true;
    this.errors++;
    this.lastError = err;
    if (lane.busy) {
      lane.busy = false;
      this.busyLanes--;
    }
    if (this.busyLanes === 0 && this.drained) {
      const d = this.drained;
      this.drained = null;
      d();
    }
  }

  resume(): void {
    this.running = true;
    for (const lane of this.lanes) if (!lane.busy && !lane.dead) lane.fire();
  }

  pause(): Promise<void> {
    this.running = false;
    if (this.busyLanes === 0) return Promise.resolve();
    return new Promise((resolve) => (this.drained = resolve));
  }
}

let driver: Driver | null = null;

/** The etcd methods the load generator calls, from the vendored proto (int64 as decimal strings). */
function etcdMethods(protoPath: string) {
  const def = protoLoader.loadSync(protoPath, { longs: String, enums: String, defaults: true });
  const method = (service: string, name: string) => (def[`etcdserverpb.${service}`] as grpc.ServiceDefinition)[name];
  return { grant: method('Lease', 'LeaseGrant'), keep: method('Lease', 'LeaseKeepAlive'), put: method('KV', 'Put'), watch: method('Watch', 'Watch') };
}

async function grantLease(conn: grpc.Client, grant: grpc.MethodDefinition<unknown, unknown>, ttlSeconds: number): Promise<{ ID: string; TTL: string }> {
  const res = await unary<unknown, { ID: string; TTL: string; error: string }>(
    conn,
    PATHS.leaseGrant,
    grant.requestSerialize as (r: unknown) => Buffer,
    grant.responseDeserialize as (b: Buffer) => { ID: string; TTL: string; error: string },
    { TTL: ttlSeconds },
    new grpc.Metadata(),
  );
  if (res.error) throw new Error(`LeaseGrant: ${res.error}`);
  return res;
}

async function hiveMembers(spec: LoadSpec, conns: grpc.Client[]): Promise<Member[]> {
  const src = spec.hive!.workers;
  if (src.mode === 'derived') return fleetMembers(src);
  const admin = bearer(spec.hive!.adminToken);
  const members: Member[] = Array.from({ length: src.count }, (_, i) => ({ workerId: `${src.prefix}${String(i).padStart(6, '0')}`, token: '', index: i }));
  const seconds = Math.floor(src.intervalMs / 1000);
  await pool(members, src.registerInFlight ?? 64, async (m, i) => {
    const res = await unary(
      conns[i % conns.length],
      PATHS.registerWorker,
      serializer(RegisterWorkerRequestSchema),
      (b: Buffer) => fromBinary(RegisterWorkerResponseSchema, b),
      create(RegisterWorkerRequestSchema, {
        workerId: m.workerId,
        labels: { pool: 'bench' },
        heartbeatInterval: { seconds: BigInt(seconds), nanos: (src.intervalMs - seconds * 1000) * 1e6 },
      }),
      admin,
    );
    m.token = res.workerToken;
  });
  return members;
}

async function setup(spec: LoadSpec): Promise<SetupResult> {
  const started = performance.now();
  const d = new Driver();
  const conns = clients(spec.addr, spec.conns);
  d.closers.push(() => conns.forEach((c) => c.close()));
  const result: SetupResult = { setupMs: 0 };

  if (spec.target === 'etcd') {
    const { grant, keep } = etcdMethods(spec.etcd!.protoPath);
    const ids: string[] = new Array(spec.concurrency);
    await pool(ids, 64, async (_, i) => {
      ids[i] = (await grantLease(conns[i % conns.length], grant, spec.etcd!.ttlSeconds)).ID;
    });
    for (let i = 0; i < spec.concurrency; i++) {
      const id = ids[i];
      const frame = keep.requestSerialize({ ID: id }) as Buffer;
      const call = conns[i % conns.length].makeBidiStreamRequest(PATHS.leaseKeepAlive, identity, identity, new grpc.Metadata(), {});
      const lane: Lane = {
        busy: false,
        dead: false,
        seq: 0,
        sentAt: 0,
        acks: 0,
        fire() {
          lane.seq++;
          lane.sentAt = performance.now();
          d.sent(lane);
          call.write(frame);
        },
      };
      call.on('data', (buf: Buffer) => {
        if ((lane.acks++ & 1023) === 0) {
          const r = keep.responseDeserialize(buf) as { ID: string; TTL: string };
          if (r.ID !== id || Number(r.TTL) <= 0) d.mismatches++;
        }
        d.done(lane, true);
      });
      call.on('error', (err: Error) => d.died(lane, err.message));
      d.closers.push(() => call.cancel());
      d.lanes.push(lane);
    }
    result.streamFrameBytes = keep.requestSerialize({ ID: ids[0] }).length;
  } else {
    const members: Member[] =
      spec.target === 'hive'
        ? await hiveMembers(spec, conns)
        : Array.from({ length: spec.concurrency }, (_, i) => ({ workerId: `noop-${i}`, token: 'hive_wkr_noop-bench-token', index: i }));
    if (members.length < spec.concurrency) throw new Error(`${members.length} workers for ${spec.concurrency} lanes`);
    for (let i = 0; i < spec.concurrency; i++) {
      const m = members[i];
      const frames = framesFor(spec.payload, m.workerId, sessionId(), m.index);
      const md = bearer(m.token);
      const client = conns[i % conns.length];
      if (i === 0) {
        result.heartbeatBytes = frames.unary(2).length;
        result.streamFrameBytes = frames.stream(2).length;
      }
      if (spec.mode === 'stream') {
        const call = client.makeBidiStreamRequest(PATHS.heartbeatStream, identity, identity, md, {});
        const lane: Lane = {
          busy: false,
          dead: false,
          seq: 0,
          sentAt: 0,
          acks: 0,
          fire() {
            lane.seq++;
            lane.sentAt = performance.now();
            d.sent(lane);
            call.write(frames.stream(lane.seq));
          },
        };
        call.on('data', (buf: Buffer) => {
          if ((lane.acks++ & 1023) === 0 && ackSeqOfStream(buf) !== BigInt(lane.seq)) d.mismatches++;
          d.done(lane, true);
        });
        call.on('error', (err: Error) => d.died(lane, err.message));
        call.on('end', () => d.died(lane, 'stream ended by the server'));
        d.closers.push(() => call.cancel());
        d.lanes.push(lane);
      } else {
        const lane: Lane = {
          busy: false,
          dead: false,
          seq: 0,
          sentAt: 0,
          acks: 0,
          fire() {
            lane.seq++;
            lane.sentAt = performance.now();
            d.sent(lane);
            client.makeUnaryRequest(PATHS.heartbeat, identity, identity, frames.unary(lane.seq), md, {}, (err) => {
              if (err) d.done(lane, false, err.message);
              else d.done(lane, true);
            });
          },
        };
        d.lanes.push(lane);
      }
    }
    if (spec.target === 'hive') {
      for (let w = 0; w < (spec.hive?.watchers ?? 0); w++) {
        const call = conns[w % conns.length].makeServerStreamRequest(
          PATHS.watchWorkers,
          serializer(WatchWorkersRequestSchema),
          identity,
          // As the monitor watches: liveness without the stats.
          create(WatchWorkersRequestSchema, { omitStats: true }),
          bearer(spec.hive!.adminToken),
          {},
        );
        call.on('data', (buf: Buffer) => {
          if (d.measuring) {
            d.watchMessages++;
            d.watchBytes += buf.length;
          }
        });
        call.on('error', (err: Error) => {
          if (!/cancel/i.test(err.message)) {
            d.errors++;
            d.lastError = `watch: ${err.message}`;
          }
        });
        d.closers.push(() => call.cancel());
      }
    }
  }
  driver = d;
  result.setupMs = performance.now() - started;
  // One round trip on every lane proves the setup (tokens, leases) works.
  d.resume();
  await new Promise((r) => setTimeout(r, 200));
  await d.pause();
  if (d.errors > 0) throw new Error(`setup: ${d.errors} errors, last: ${d.lastError}`);
  return result;
}

async function measure(windowMs: number): Promise<MeasureResult> {
  const d = driver!;
  d.count = 0;
  d.errors = 0;
  d.mismatches = 0;
  d.lastError = null;
  d.watchMessages = 0;
  d.watchBytes = 0;
  d.latency.reset();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  d.measuring = true;
  await new Promise((r) => setTimeout(r, windowMs));
  d.measuring = false;
  const elapsed = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  const sorted = d.latency.sorted();
  return {
    ops: d.count,
    windowMs: elapsed,
    opsPerSec: (d.count / elapsed) * 1000,
    p50Ms: percentile(sorted, 0.5),
    p99Ms: percentile(sorted, 0.99),
    meanMs: sorted.reduce((a, b) => a + b, 0) / (sorted.length || 1),
    latencySamples: sorted.length,
    errors: d.errors,
    lastError: d.lastError,
    mismatches: d.mismatches,
    loadgenCpuSec: (cpu.user + cpu.system) / 1e6,
    watchMessages: d.watchMessages,
    watchBytes: d.watchBytes,
    alive: d.lanes.filter((l) => !l.dead).length,
  };
}

/** Heartbeats every worker of a fleet once (unary), `inFlight` at a time. */
async function heartbeatAll(addr: string, fleet: DerivedFleet, inFlight: number, nConns: number): Promise<OnceResult> {
  const conns = clients(addr, nConns);
  const members = fleetMembers(fleet);
  const session = sessionId();
  let ok = 0;
  let errors = 0;
  let lastError: string | null = null;
  const t0 = performance.now();
  await pool(members, inFlight, async (m, i) => {
    const frames = new HeartbeatFrames(realisticHeartbeat(m.workerId, session, m.index));
    await new Promise<void>((resolve) => {
      conns[i % conns.length].makeUnaryRequest(PATHS.heartbeat, identity, identity, frames.unary(1), bearer(m.token), {}, (err) => {
        if (err) {
          errors++;
          lastError = err.message;
        } else ok++;
        resolve();
      });
    });
  });
  const ms = performance.now() - t0;
  conns.forEach((c) => c.close());
  return { ok, errors, lastError, ms };
}

const portOpen = (port: number) =>
  new Promise<boolean>((res) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      res(true);
    });
    s.once('error', () => res(false));
  });

/** Cold start: polls until the port opens, then heartbeats worker 0 of the fleet until it is acknowledged. */
async function firstHeartbeat(port: number, fleet: DerivedFleet, timeoutMs: number): Promise<FirstBeatResult> {
  const deadline = Date.now() + timeoutMs;
  while (!(await portOpen(port))) {
    if (Date.now() > deadline) throw new Error(`port ${port} did not open within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
  const portOpenAt = Date.now();
  const [m] = fleetMembers({ ...fleet, count: 1 });
  const frames = new HeartbeatFrames(realisticHeartbeat(m.workerId, sessionId(), m.index));
  const [client] = clients(`127.0.0.1:${port}`, 1);
  let attempts = 0;
  let lastErr = '';
  for (;;) {
    attempts++;
    const err = await new Promise<grpc.ServiceError | null>((resolve) =>
      client.makeUnaryRequest(PATHS.heartbeat, identity, identity, frames.unary(attempts), bearer(m.token), { deadline: Date.now() + 5000 }, (e) => resolve(e)),
    );
    if (!err) break;
    lastErr = err.message;
    if (Date.now() > deadline) throw new Error(`no heartbeat accepted within ${timeoutMs} ms: ${lastErr}`);
    await new Promise((r) => setTimeout(r, 5));
  }
  const firstAckAt = Date.now();
  client.close();
  return { portOpenAt, firstAckAt, attempts };
}

const tsMs = (t: { seconds: bigint; nanos: number } | undefined) => (t ? Number(t.seconds) * 1000 + t.nanos / 1e6 : NaN);

/** What a fleet counts: answers to its beats, errors (not the cancels that end it), the last error. */
class Tally {
  beats = 0;
  errors = 0;
  lastError: string | null = null;
  readonly onError = (what: string) => (err: Error) => {
    if (/cancel/i.test(err.message)) return;
    this.errors++;
    this.lastError = `${what}: ${err.message}`;
  };

  result(marks: Map<string, StaleMark>, silencedIds: Set<string>): FleetResult {
    return { beats: this.beats, errors: this.errors, lastError: this.lastError, marks: [...marks.values()], silenced: silencedIds.size, missed: [...silencedIds].filter((id) => !marks.has(id)).length };
  }
}

/**
 * Members that beat like agents: every interval (±10% jitter) from a
 * random first phase, until silenced (the stream stays open, nothing more
 * is sent). `send` writes member k's beat and calls `written` once the
 * connection has it; the last two of those times per member are kept,
 * enough to find the last one before a mark the watch reports at once.
 */
function agentBeats(count: number, spec: FleetTiming, started: number, send: (k: number, written: () => void) => void) {
  const silenced = new Map<number, number>(spec.silence.map((s) => [s.k, s.atMs]));
  const sentAt = new Float64Array(count * 2);
  const timers: NodeJS.Timeout[] = new Array(count);
  for (let k = 0; k < count; k++) {
    const silentAt = silenced.get(k);
    const written = () => {
      sentAt[2 * k] = sentAt[2 * k + 1];
      sentAt[2 * k + 1] = Date.now();
    };
    const beat = () => {
      if (silentAt !== undefined && Date.now() - started >= silentAt) return;
      // Written when grpc-js has handed it to the connection: a write made
      // just before this process stalls goes out after the stall.
      send(k, written);
      timers[k] = setTimeout(beat, spec.intervalMs * (0.9 + Math.random() * 0.2));
    };
    timers[k] = setTimeout(beat, Math.random() * spec.intervalMs);
  }
  return {
    lastSendBefore: (k: number, t: number) => (sentAt[2 * k + 1] <= t ? sentAt[2 * k + 1] : sentAt[2 * k]),
    stop: () => timers.forEach((t) => clearTimeout(t)),
  };
}

/** Waits until every silenced member is marked and the run's length has passed, or two intervals and the settle time after the last silence. */
async function untilMarked(spec: FleetTiming, started: number, marks: Map<string, StaleMark>, silencedIds: Set<string>): Promise<void> {
  const allMarked = () => [...silencedIds].every((id) => marks.has(id));
  const lastSilence = Math.max(0, ...spec.silence.map((s) => s.atMs));
  const until = Math.max(spec.runMs, lastSilence + 2 * spec.intervalMs + spec.settleMs);
  while (Date.now() - started < until) {
    await new Promise((r) => setTimeout(r, 250));
    if (Date.now() - started > lastSilence + 2 * spec.intervalMs && allMarked() && Date.now() - started >= spec.runMs) break;
  }
}

/**
 * Detection lag: a fleet heartbeating every interval over streams (like
 * agents), some of which go silent; stale marks arrive on a watch of STALE
 * workers, and each one's lag is read off the hive's own clock.
 */
async function runFleet(spec: FleetSpec): Promise<FleetResult> {
  const conns = clients(spec.addr, spec.conns);
  const members = fleetMembers(spec.fleet);
  const silencedIds = new Set(spec.silence.map((s) => members[s.k].workerId));
  const marks = new Map<string, StaleMark>();
  const indexOf = new Map(members.map((m, k) => [m.workerId, k]));
  const tally = new Tally();
  const calls: grpc.ClientDuplexStream<Buffer, Buffer>[] = [];
  const started = Date.now();
  let sends: ReturnType<typeof agentBeats> | null = null;

  const watch = conns[0].makeServerStreamRequest(
    PATHS.watchWorkers,
    serializer(WatchWorkersRequestSchema),
    identity,
    create(WatchWorkersRequestSchema, { states: [WorkerState.STALE], omitStats: true }),
    bearer(spec.adminToken),
    {},
  );
  watch.on('data', (buf: Buffer) => {
    const msg = fromBinary(WatchWorkersResponseSchema, buf);
    for (const c of msg.changes) {
      const w = c.worker;
      if (!w || w.state !== WorkerState.STALE || marks.has(w.workerId)) continue;
      const interval = w.heartbeatInterval ? Number(w.heartbeatInterval.seconds) * 1000 + w.heartbeatInterval.nanos / 1e6 : spec.intervalMs;
      const silenced = silencedIds.has(w.workerId);
      const k = indexOf.get(w.workerId);
      const sinceSendMs = silenced || k === undefined || !sends ? undefined : tsMs(w.stateSince) - sends.lastSendBefore(k, tsMs(w.stateSince));
      marks.set(w.workerId, { workerId: w.workerId, lagMs: tsMs(w.stateSince) - tsMs(w.lastSeen) - 2 * interval, silenced, sinceSendMs });
    }
  });
  watch.on('error', (err: Error) => {
    if (!/cancel/i.test(err.message)) tally.lastError = `watch: ${err.message}`;
  });

  const frames = members.map((m, k) => {
    const call = conns[k % conns.length].makeBidiStreamRequest(PATHS.heartbeatStream, identity, identity, bearer(m.token), {}) as grpc.ClientDuplexStream<Buffer, Buffer>;
    calls.push(call);
    call.on('data', () => void tally.beats++);
    call.on('error', tally.onError('stream'));
    return framesFor('agent', m.workerId, sessionId(), m.index);
  });
  const seqs = new Uint32Array(members.length);
  sends = agentBeats(members.length, spec, started, (k, written) => calls[k].write(frames[k].stream(++seqs[k]), written));

  await untilMarked(spec, started, marks, silencedIds);
  sends.stop();
  calls.forEach((c) => c.cancel());
  watch.cancel();
  conns.forEach((c) => c.close());
  return tally.result(marks, silencedIds);
}

/**
 * The same fleet on etcd, the way a service registers itself there: a
 * lease per member (TTL 2 x interval), a key on it, a keep-alive every
 * interval over the member's own LeaseKeepAlive stream (10,000 streams
 * over 20 connections, like the hive's fleet). etcd revokes an expired
 * lease and deletes its key; a watch of the keys reports it. etcd's events carry no time, so a lag is
 * read on this process's clock: the delete's arrival minus the answer to
 * the member's last keep-alive minus the TTL (the renewal happened before
 * its answer came, so this errs in etcd's favour by that answer's transit;
 * the delete's own transit errs against it).
 */
async function runEtcdFleet(spec: EtcdFleetSpec, ready: () => void): Promise<FleetResult> {
  const m = etcdMethods(spec.protoPath);
  const conns = clients(spec.addr, spec.conns);
  const frames: Buffer[] = new Array(spec.count);
  const silencedIds = new Set(spec.silence.map((s) => String(s.k)));
  const marks = new Map<string, StaleMark>();
  const lastAnswer = new Float64Array(spec.count);
  let ttlMs = spec.ttlSeconds * 1000;
  const tally = new Tally();
  let sends: ReturnType<typeof agentBeats> | null = null;
  // A stream per lease, as each worker would be its own etcd client: etcd
  // holds every keep-alive on a stream behind one for an expired lease
  // until that lease is revoked, so leases sharing a stream fall together.
  const streams: grpc.ClientDuplexStream<Buffer, Buffer>[] = [];
  const watch = conns[0].makeBidiStreamRequest(PATHS.watch, identity, identity, new grpc.Metadata(), {}) as grpc.ClientDuplexStream<Buffer, Buffer>;
  let meanwhile: NodeJS.Timeout | undefined;
  try {
    const created = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('etcd did not create the watch within 10 s')), 10_000);
      watch.on('data', (buf: Buffer) => {
        const now = Date.now();
        const res = m.watch.responseDeserialize(buf) as { created: boolean; canceled: boolean; cancelReason: string; events: Array<{ type: string; kv: { key: Buffer } | null }> };
        if (res.canceled) reject(new Error(`etcd canceled the watch: ${res.cancelReason}`));
        if (res.created) {
          clearTimeout(timer);
          resolve();
        }
        for (const e of res.events) {
          if (e.type !== 'DELETE' || !e.kv) continue;
          const id = e.kv.key.subarray(spec.prefix.length).toString();
          const k = Number(id);
          if (marks.has(id)) continue;
          const silenced = silencedIds.has(id);
          marks.set(id, { workerId: id, lagMs: now - lastAnswer[k] - ttlMs, silenced, sinceSendMs: silenced || !sends ? undefined : now - sends.lastSendBefore(k, now) });
        }
      });
      watch.on('error', (err: Error) => {
        clearTimeout(timer);
        reject(err);
        tally.onError('watch')(err);
      });
    });
    // The range [prefix, prefix with its last byte + 1): every key of the fleet.
    const end = Buffer.from(spec.prefix);
    end[end.length - 1]++;
    watch.write(m.watch.requestSerialize({ createRequest: { key: Buffer.from(spec.prefix), rangeEnd: end, filters: ['NOPUT'] } }) as Buffer);
    await created;

    const keepAlive = (k: number, written?: () => void) => streams[k].write(frames[k], written);
    // Granting 10,000 leases takes longer than their TTL: those granted are
    // kept alive four times a TTL until the fleet beats on its own timers.
    const granted: number[] = [];
    meanwhile = setInterval(() => granted.forEach((k) => keepAlive(k)), ttlMs / 4);
    await pool(frames, 64, async (_, k) => {
      const conn = conns[k % conns.length];
      const lease = await grantLease(conn, m.grant, spec.ttlSeconds);
      ttlMs = Number(lease.TTL) * 1000; // etcd raises a TTL under its minimum
      frames[k] = m.keep.requestSerialize({ ID: lease.ID }) as Buffer;
      const s = conn.makeBidiStreamRequest(PATHS.leaseKeepAlive, identity, identity, new grpc.Metadata(), {}) as grpc.ClientDuplexStream<Buffer, Buffer>;
      s.on('data', (buf: Buffer) => {
        if (Number((m.keep.responseDeserialize(buf) as { TTL: string }).TTL) <= 0) return;
        lastAnswer[k] = Date.now();
        tally.beats++;
      });
      s.on('error', tally.onError('keep-alive'));
      streams[k] = s;
      granted.push(k);
      await unary(conn, PATHS.kvPut, m.put.requestSerialize as (r: unknown) => Buffer, m.put.responseDeserialize, { key: Buffer.from(`${spec.prefix}${k}`), value: Buffer.alloc(0), lease: lease.ID }, new grpc.Metadata());
    });
    clearInterval(meanwhile);
    const started = Date.now();
    tally.beats = 0;
    sends = agentBeats(spec.count, spec, started, keepAlive);
    ready();
    await untilMarked(spec, started, marks, silencedIds);
    return tally.result(marks, silencedIds);
  } finally {
    clearInterval(meanwhile);
    sends?.stop();
    streams.forEach((s) => s?.cancel());
    watch.cancel();
    conns.forEach((c) => c.close());
  }
}

let etcdFleet: Promise<FleetResult> | null = null;

async function handle(cmd: Command): Promise<unknown> {
  switch (cmd.type) {
    case 'ping':
      return 'pong';
    case 'setup':
      return setup(cmd.spec);
    case 'resume': {
      driver!.resume();
      await new Promise((r) => setTimeout(r, cmd.warmupMs));
      return null;
    }
    case 'measure':
      return measure(cmd.windowMs);
    case 'pause':
      await driver!.pause();
      return null;
    case 'heartbeat-all':
      return heartbeatAll(cmd.addr, cmd.fleet, cmd.inFlight, cmd.conns);
    case 'first-heartbeat':
      return firstHeartbeat(cmd.port, cmd.fleet, cmd.timeoutMs);
    case 'fleet':
      return runFleet(cmd.spec);
    case 'etcd-fleet': {
      // Answers once the leases are granted and beating; the run's result comes from 'etcd-fleet-result'.
      let ready!: () => void;
      const started = new Promise<void>((r) => (ready = r));
      etcdFleet = runEtcdFleet(cmd.spec, ready);
      await Promise.race([started, etcdFleet]);
      return null;
    }
    case 'etcd-fleet-result':
      if (!etcdFleet) throw new Error('no etcd fleet is running');
      return etcdFleet;
    case 'close':
      if (driver) {
        await Promise.race([driver.pause(), new Promise((r) => setTimeout(r, 2000))]);
        driver.closers.forEach((c) => c());
      }
      driver = null;
      return null;
  }
}

if (!process.send) {
  process.stderr.write('loadgen: start me from bench/main.ts (needs an IPC channel)\n');
  process.exit(2);
}
process.on('message', (req: Request) => {
  handle(req).then(
    (result) => process.send!({ id: req.id, ok: true, result } satisfies Reply),
    (err: unknown) => process.send!({ id: req.id, ok: false, error: err instanceof Error ? err.message : String(err) } satisfies Reply),
  );
});
process.on('disconnect', () => process.exit(0));
