import { fromBinary, toBinary } from '@bufbuild/protobuf';
import type { Redis } from 'ioredis';
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { CommandSchema, type Command, type HeartbeatRequest, type WorkerState } from '../gen/hive/v1/registry_pb.js';
import type { Logger } from '../lib/logger.js';
import { connectRedis, openRedis } from '../lib/redis.js';
import { leaderKeys, liveKeys, shardOf, SHARDS } from '../lib/redis-keys.js';
import { CommandQueue, EMPTY, MAX_PER_WORKER } from './commands.js';
import { unavailable } from './errors.js';
import { checkAgainst } from './live-memory.js';
import { encodeBeatEntry, encodeBeats, encodeCommandNotice, encodeReload, ownPrefix, parseMessage, stateHead } from './live-messages.js';
import type { CasExpect, CasResult, LiveListener, LiveState, SharedLive } from './live-state.js';
import { BEATS, CAS, FORGET, PUSH_COMMAND, RELEASE_CONNECTION, SEED, SET_STATE, TAKE_COMMANDS } from './redis-scripts.js';
import { takeWireBytes } from './wire-bytes.js';
import { heartbeatOf, type LiveWorker } from './worker.js';

// The live state of a replica among several, in Redis. Each replica still
// keeps the whole fleet in memory (reads and WatchWorkers stay local and
// cheap); Redis holds the shared truth the compare-and-set runs against,
// and its pub/sub carries every change to the other replicas.
//
// The heartbeat path never waits for Redis: an accepted heartbeat joins a
// batch (the latest per worker) that is written at the end of the
// event-loop turn, one script call per shard and one publish for all, and
// auto-pipelining sends those in one write; results are only checked for
// failure. Any other call flushes the batch first, so Redis sees a
// worker's heartbeat before a later state change or compare-and-set. While Redis is out of
// reach the replica keeps accepting heartbeats into memory, says it is
// degraded, refuses what needs the shared word (stale marks, fencing), and
// remembers which workers it changed; when Redis is back it writes those
// back (its copy wins, as it is the newer) and the registry converges.

export interface RedisLiveOptions {
  url: string;
  prefix: string;
  log: Logger;
  replicaId?: string;
  commandTimeoutMs?: number;
}

type Arg = string | number | Buffer;
type ScriptFn = (...args: Arg[]) => Promise<unknown>;
interface Scripted {
  hiveBeats: ScriptFn;
  hiveCas: ScriptFn;
  hiveSetState: ScriptFn;
  hiveSeed: ScriptFn;
  hiveForget: ScriptFn;
  hivePushCommand: ScriptFn;
  hiveTakeCommands: ScriptFn;
  hiveReleaseConnection: ScriptFn;
}

/** The number of keys of each script; null: given first with each call. */
const SCRIPTS: Array<[keyof Scripted, number | null, string]> = [
  ['hiveBeats', null, BEATS],
  ['hiveCas', 1, CAS],
  ['hiveSetState', 1, SET_STATE],
  ['hiveSeed', 2, SEED],
  ['hiveForget', 4, FORGET],
  ['hivePushCommand', 2, PUSH_COMMAND],
  ['hiveTakeCommands', 1, TAKE_COMMANDS],
  ['hiveReleaseConnection', 1, RELEASE_CONNECTION],
];

/** How often a replica whose commands failed on an open connection asks Redis whether it answers again. */
const PROBE_MS = 500;

/** Most workers per script call (its keys and arguments are one command). */
const BATCH = 256;

interface PendingBeat {
  w: LiveWorker;
  seq: string;
  session: string;
  seen: number;
  status: number;
  due: number;
  connTtl: number;
  entry: string;
}

/** A stream's connection key outlives a few missed beats, not a dead replica. */
const connectionTtl = (w: LiveWorker) => Math.max(3 * w.intervalMs, 1000);

export function createRedisLiveState(o: RedisLiveOptions): LiveState {
  const log = o.log;
  const replicaId = o.replicaId ?? `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
  const keys = liveKeys(o.prefix);
  const fenceKey = leaderKeys(o.prefix).fence;
  const cmd = openRedis({ url: o.url, log, name: `hive-live-${replicaId}`, commandTimeoutMs: o.commandTimeoutMs });
  const sub = openRedis({ url: o.url, log, name: `hive-sub-${replicaId}`, commandTimeoutMs: o.commandTimeoutMs });
  // Every script call made in one event-loop turn leaves in one write.
  cmd.options.enableAutoPipelining = true;
  for (const [name, numberOfKeys, lua] of SCRIPTS) cmd.defineCommand(name, numberOfKeys === null ? { lua } : { numberOfKeys, lua });
  const r = cmd as unknown as Redis & Scripted;

  let listener: LiveListener | null = null;
  /** State versions this replica holds, per worker: a state message applies only when newer. */
  const vers = new Map<string, number>();
  /** Workers changed here while Redis could not be told; written back on recovery. */
  const dirty = new Set<string>();
  /** Workers for which a command was announced and not yet taken here. */
  const pending = new Set<string>();
  /** The heartbeat a compare-and-set decided on, until it is announced. */
  const casSeq = new Map<string, bigint>();
  const cmdListeners = new Map<string, Set<() => void>>();
  /** Commands queued while Redis was out of reach (only a stream on this replica can get them). */
  const local = new CommandQueue();
  let fence = 0n;
  const own = ownPrefix(replicaId);
  /** Heartbeats accepted this turn, the latest per worker. */
  let batch = new Map<string, PendingBeat>();
  let flushScheduled = false;
  let subscribed = false;
  /**
   * Scripts are loaded on every (re)connection before anything is sent: a
   * script call that finds its script missing is resent by ioredis, after
   * calls made later, and a worker's heartbeat could then land before its
   * seed.
   */
  let scriptsLoaded = false;
  function loadScripts(): void {
    scriptsLoaded = false;
    Promise.all(SCRIPTS.map(([, , lua]) => cmd.script('LOAD', lua))).then(
      () => {
        scriptsLoaded = true;
        failing = null;
        refresh();
      },
      (err) => failed(err),
    );
  }
  let failing: string | null = 'not connected yet';
  let wasDown = false;
  /** The first connection is no recovery: only a way back after having been up is. */
  let everUp = false;
  let stopping = false;

  function problem(): string | null {
    if (cmd.status !== 'ready') return `redis: ${cmd.status}`;
    if (!scriptsLoaded) return 'redis: loading scripts';
    if (sub.status !== 'ready' || !subscribed) return 'redis: change channel not subscribed';
    return failing;
  }

  /** Re-evaluates the degraded state; a way back from degraded is a recovery. */
  function refresh(): void {
    const p = problem();
    if (p !== null) {
      if (!everUp) return;
      if (!wasDown && !stopping) log.warn({ problem: p }, 'live state degraded: heartbeats kept in memory, stale marks refused');
      wasDown = true;
      return;
    }
    everUp = true;
    if (wasDown) {
      wasDown = false;
      log.info({ dirty: dirty.size }, 'live state reachable again: converging');
      listener?.recovered();
    }
  }

  function failed(err: unknown, workerId?: string): void {
    if (workerId !== undefined) dirty.add(workerId);
    if (stopping) return;
    const msg = (err as Error)?.message ?? String(err);
    if (failing === null) log.warn({ err: msg }, 'redis command failed');
    failing = msg;
    refresh();
    probeSoon();
  }

  // A failed command on a connection that stays open (a Redis that stalls)
  // leaves nothing to clear the failure, as a degraded replica sends
  // nothing: a ping every PROBE_MS finds out when Redis answers again. (A
  // lost connection is noticed by the client's own reconnects.) Plumbing,
  // not a decision, hence the plain timer.
  let probing = false;
  function probeSoon(): void {
    if (probing || stopping) return;
    probing = true;
    setTimeout(() => {
      probing = false;
      if (failing === null || stopping || cmd.status !== 'ready') return;
      cmd.ping().then(succeeded, (err) => failed(err));
    }, PROBE_MS).unref();
  }

  function succeeded(): void {
    if (failing === null) return;
    failing = null;
    refresh();
  }

  function notify(id: string): void {
    const ls = cmdListeners.get(id);
    if (ls) for (const l of ls) l();
  }

  function onMessage(_channel: string, text: string): void {
    // Our own heartbeats and state changes come back to us: skip them unparsed.
    if (text.startsWith(own) || !listener) return;
    const m = parseMessage(text);
    if (!m) return;
    if (m.t === 'c') {
      // Also our own: the stream may be open on this replica.
      pending.add(m.id);
      notify(m.id);
      return;
    }
    if (m.r === replicaId) return;
    switch (m.t) {
      case 'B':
        for (const b of m.beats) listener.beat(b.id, b.at, b);
        return;
      case 's':
        if (m.ver <= (vers.get(m.id) ?? 0)) return;
        vers.set(m.id, m.ver);
        listener.state(m.id, m.st, m.since, m.seq, m.s);
        return;
      case 'r':
        listener.reload(m.change);
        return;
    }
  }

  /** Writes the batch: one script call per shard (chunked), then one publish. */
  function flush(): void {
    flushScheduled = false;
    if (batch.size === 0) return;
    const beats = batch;
    batch = new Map();
    const byShard = new Map<number, PendingBeat[]>();
    const entries: string[] = [];
    for (const [id, p] of beats) {
      const s = shardOf(id);
      let list = byShard.get(s);
      if (!list) byShard.set(s, (list = []));
      list.push(p);
      entries.push(p.entry);
    }
    for (const list of byShard.values()) {
      for (let i = 0; i < list.length; i += BATCH) {
        const part = list.slice(i, i + BATCH);
        const ks: Arg[] = [keys.deadlines(part[0].w.workerId)];
        const args: Arg[] = [replicaId];
        for (const p of part) {
          ks.push(keys.worker(p.w.workerId), keys.connection(p.w.workerId));
          args.push(p.w.workerId, p.seq, p.session, p.seen, p.status, p.due, p.connTtl);
        }
        r.hiveBeats(ks.length, ...ks, ...args).then(succeeded, (err) => {
          for (const p of part) dirty.add(p.w.workerId);
          failed(err);
        });
      }
    }
    for (let i = 0; i < entries.length; i += BATCH) {
      cmd.publish(keys.channel, encodeBeats(replicaId, entries.slice(i, i + BATCH))).then(succeeded, (err) => failed(err));
    }
  }

  function queueBeat(w: LiveWorker, hb: HeartbeatRequest, streamed: boolean): void {
    const seen = w.lastSeen ?? 0;
    batch.set(w.workerId, {
      w,
      seq: String(hb.seq),
      session: hb.sessionId,
      seen,
      status: hb.status,
      due: seen + 2 * w.intervalMs,
      connTtl: streamed ? connectionTtl(w) : 0,
      entry: encodeBeatEntry(w.workerId, seen, hb, takeWireBytes(hb)),
    });
    if (!flushScheduled) {
      flushScheduled = true;
      setImmediate(flush);
    }
  }

  function publishState(w: LiveWorker): Promise<void> {
    flush();
    return r.hiveSetState(keys.worker(w.workerId), w.state, w.stateSince, keys.channel, stateHead(replicaId, w.workerId, w.state, w.stateSince, w.lastSeq, w.sessionId)).then(
      (ver) => {
        vers.set(w.workerId, Math.max(vers.get(w.workerId) ?? 0, Number(ver)));
        succeeded();
      },
      (err) => failed(err, w.workerId),
    );
  }


  sub.on('message', onMessage);
  sub.on('ready', () => {
    sub.subscribe(keys.channel).then(
      () => {
        subscribed = true;
        refresh();
      },
      (err) => log.warn({ err: err.message }, 'subscribing to the change channel failed'),
    );
  });
  cmd.on('ready', loadScripts);
  for (const c of [cmd, sub]) {
    c.on('ready', () => {
      if (c === cmd) failing = null;
      refresh();
    });
    c.on('close', () => {
      if (c === sub) subscribed = false;
      refresh();
    });
  }

  return {
    kind: 'redis',
    replicaId,

    async start(l) {
      listener = l;
      await Promise.all([connectRedis(cmd, log), connectRedis(sub, log)]);
      if (cmd.status === 'ready') failing = null;
      // Wait briefly for the subscription and the scripts, so a replica that starts with Redis up starts not degraded.
      for (let i = 0; i < 50 && problem() !== null && cmd.status === 'ready'; i++) await new Promise((res) => setTimeout(res, 20));
      if (problem() === null) everUp = true;
      else {
        // Down at start: every worker is written to Redis once it is reachable.
        everUp = true;
        wasDown = true;
        log.warn({ problem: problem() }, 'live state degraded at start: heartbeats kept in memory, stale marks refused');
      }
    },

    async seed(workers) {
      const out = new Map<string, SharedLive>();
      if (problem() !== null) {
        for (const w of workers) dirty.add(w.workerId);
        return out;
      }
      let allOk = true;
      await Promise.all(
        workers.map(async (w) => {
          const id = w.workerId;
          const force = dirty.has(id);
          try {
            const h = (await r.hiveSeed(
              keys.worker(id), keys.deadlines(id),
              id, String(w.lastSeq), w.sessionId, w.lastSeen ?? 0, w.status, w.state, w.stateSince, (w.lastSeen ?? w.registeredAt) + 2 * w.intervalMs, force ? '1' : '0',
            )) as Array<string | null>;
            const [seq, session, seen, status, state, since, ver] = h;
            vers.set(id, Math.max(vers.get(id) ?? 0, Number(ver ?? 0)));
            if (force) {
              dirty.delete(id);
              // The others missed what happened here: tell them now.
              const last = heartbeatOf(w);
              if (last) queueBeat(w, last, false);
              await publishState(w);
              return;
            }
            const shared: SharedLive = {
              lastSeq: BigInt(seq ?? '0'),
              sessionId: session ?? '',
              lastSeen: seen && seen !== '0' ? Number(seen) : null,
              status: Number(status ?? 0),
              state: Number(state ?? w.state) as WorkerState,
              stateSince: Number(since ?? w.stateSince),
            };
            if (shared.lastSeq !== w.lastSeq || shared.sessionId !== w.sessionId || shared.state !== w.state) out.set(id, shared);
          } catch (err) {
            allOk = false;
            failed(err, id);
          }
        }),
      );
      if (allOk && workers.length > 0) succeeded();
      return out;
    },

    beat(w, hb, streamed) {
      if (problem() !== null) {
        dirty.add(w.workerId);
        return;
      }
      queueBeat(w, hb, streamed);
    },

    async compareAndSet(w: LiveWorker, expect: CasExpect, to: WorkerState, now: number): Promise<CasResult> {
      const p = problem();
      if (p !== null) throw unavailable(`the shared live state is unreachable (${p}); nothing was changed, try again`);
      const from = expect.from.size ? `,${[...expect.from].join(',')},` : '';
      flush();
      let res: string[];
      try {
        res = (await r.hiveCas(keys.worker(w.workerId), String(expect.seq), expect.session, from, to, now)) as string[];
      } catch (err) {
        failed(err);
        throw unavailable('the shared live state did not answer; nothing was changed, try again');
      }
      succeeded();
      if (res[0] === 'ok') {
        const ver = Number(res[1]);
        vers.set(w.workerId, Math.max(vers.get(w.workerId) ?? 0, ver));
        casSeq.set(w.workerId, expect.seq);
        return { ok: true, ver };
      }
      if (res[0] === 'seq') return { ok: false, why: 'seq', seq: BigInt(res[1]) };
      return { ok: false, why: 'state', state: Number(res[1]) as WorkerState };
    },

    stateChanged(w, ver) {
      if (problem() !== null) {
        dirty.add(w.workerId);
        return;
      }
      if (ver === undefined) return void publishState(w);
      // Already in Redis by the compare-and-set: only the announcement is left.
      const seq = casSeq.get(w.workerId) ?? w.lastSeq;
      casSeq.delete(w.workerId);
      flush();
      cmd.publish(keys.channel, `${stateHead(replicaId, w.workerId, w.state, w.stateSince, seq, w.sessionId)}${ver}}`).then(succeeded, (err) => failed(err, w.workerId));
    },

    registryChanged(change) {
      if (problem() !== null) return; // the others reread everything when Redis is back
      flush();
      cmd.publish(keys.channel, encodeReload(replicaId, change)).then(succeeded, (err) => failed(err));
    },

    forget(id) {
      vers.delete(id);
      dirty.delete(id);
      pending.delete(id);
      local.drop(id);
      if (problem() !== null) return;
      r.hiveForget(keys.worker(id), keys.deadlines(id), keys.commands(id), keys.connection(id), id).then(succeeded, (err) => failed(err));
    },

    async enqueueCommand(id, command) {
      if (problem() !== null) return local.push(id, command);
      const bytes = Buffer.from(toBinary(CommandSchema, command)).toString('base64');
      flush();
      try {
        const open = await r.hivePushCommand(keys.commands(id), keys.connection(id), bytes, MAX_PER_WORKER, keys.channel, encodeCommandNotice(replicaId, id));
        succeeded();
        return Number(open) === 1;
      } catch (err) {
        failed(err);
        return local.push(id, command);
      }
    },

    takeCommands(id) {
      const here = local.take(id);
      if (!pending.has(id)) return here;
      pending.delete(id);
      return r.hiveTakeCommands(keys.commands(id)).then(
        (list) => {
          succeeded();
          const taken = (list as string[]).map((b) => fromBinary(CommandSchema, Buffer.from(b, 'base64')));
          return here.length ? [...here, ...taken] : taken.length ? taken : EMPTY;
        },
        (err) => {
          // Still in Redis: the next heartbeat tries again.
          pending.add(id);
          failed(err);
          return here;
        },
      );
    },

    listenCommands(id, fn) {
      let ls = cmdListeners.get(id);
      if (!ls) cmdListeners.set(id, (ls = new Set()));
      ls.add(fn);
      const unlistenLocal = local.listen(id, fn);
      return () => {
        unlistenLocal();
        ls!.delete(fn);
        if (ls!.size === 0) cmdListeners.delete(id);
      };
    },

    streamOpened(w) {
      if (problem() !== null) return;
      cmd.set(keys.connection(w.workerId), replicaId, 'PX', connectionTtl(w)).then(succeeded, (err) => failed(err));
    },

    streamClosed(w) {
      if (problem() !== null) return;
      r.hiveReleaseConnection(keys.connection(w.workerId), replicaId).then(succeeded, (err) => failed(err));
    },

    async checkFence(token, required) {
      if (token === 0n && !required) return;
      const p = problem();
      if (p !== null) throw unavailable(`the shared live state is unreachable (${p}); the fencing token cannot be checked`);
      let current: string | null;
      try {
        current = await cmd.get(fenceKey);
      } catch (err) {
        failed(err);
        throw unavailable('the shared live state did not answer; the fencing token cannot be checked');
      }
      succeeded();
      // Also the highest seen here: a Redis that lost its data does not let an old leader back in.
      fence = checkAgainst(fence > BigInt(current ?? '0') ? fence : BigInt(current ?? '0'), token, required);
    },

    degraded: problem,

    async overdue(now) {
      if (problem() !== null) return null;
      try {
        const p = cmd.pipeline();
        for (let s = 0; s < SHARDS; s++) p.zcount(keys.deadlinesOfShard(s), '-inf', now);
        const res = (await p.exec()) ?? [];
        return res.reduce((n, [err, v]) => (err ? n : n + Number(v)), 0);
      } catch {
        return null;
      }
    },

    async stop() {
      flush();
      stopping = true;
      listener = null;
      await Promise.allSettled([sub.quit(), cmd.quit()]);
      sub.disconnect();
      cmd.disconnect();
    },
  };
}
