import { create } from '@bufbuild/protobuf';
import {
  TokenScope,
  WorkerChangeType,
  WorkerState,
  type CommandType,
  type HeartbeatRequest,
  type HeartbeatResponse,
  type RegisterWorkerRequest,
} from '../gen/hive/v1/registry_pb.js';
import type { RestartPolicy } from '../gen/hive/v1/policy_pb.js';
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/logger.js';
import { msToDuration, msToTimestamp } from '../lib/duration.js';
import { aborted, alreadyExists, failedPrecondition, invalidArgument, isStoreUnavailable, notFound, permissionDenied, unauthenticated, unavailable } from './errors.js';
import { CommandQueue } from './commands.js';
import { newTokenRow, TokenIndex, type Principal } from './tokens.js';
import type { EventRow, Store } from './store/store.js';
import { validateHeartbeat, validateRegister } from './validate.js';
import { WatchHub } from './watch-hub.js';
import { fromStored, REPORTED_STATE, snapshotOf, toStored, type LiveWorker } from './worker.js';
import { createWriteBehind, type WriteBehind } from './write-behind.js';
import { mergeStats } from './live-stats.js';
import { validatePolicy } from './policy.js';
import { checkNoCycle } from './dependencies.js';

// The registry's domain core: live state in memory, durable state in the
// store, changes published to watchers. Transports and auth sit outside;
// every method takes the already-authenticated caller.

export interface RegistryDeps {
  store: Store;
  clock: Clock;
  log: Logger;
  writeBehindMs?: number;
  onEvent?: (kind: string) => void;
  onFlush?: (rows: number, seconds: number, ok: boolean) => void;
}

const CAN_GO_STALE = new Set([WorkerState.PENDING, WorkerState.HEALTHY, WorkerState.DEGRADED, WorkerState.UNHEALTHY]);
const MONITOR_STATES = new Set([WorkerState.RESTARTING, WorkerState.FAILED]);
const PAST_SESSIONS = 8;

export type Registry = Awaited<ReturnType<typeof createRegistry>>;

export async function createRegistry(deps: RegistryDeps) {
  const { store, clock, log } = deps;
  const workers = new Map<string, LiveWorker>();
  const tokens = new TokenIndex();
  const hub = new WatchHub();
  const commands = new CommandQueue();
  const startedAt = clock.now();
  // Durable writes of one worker happen in the order they were decided.
  const durableChain = new Map<string, Promise<unknown>>();
  const registering = new Set<string>();

  for (const s of await store.loadWorkers()) {
    const w = fromStored(s);
    // The hive's own downtime is not the worker's: every worker gets a full
    // 2x interval from now before its silence counts.
    w.graceUntil = startedAt + 2 * w.intervalMs;
    workers.set(w.workerId, w);
  }
  for (const t of await store.loadTokens()) tokens.add(t);

  const writeBehind: WriteBehind = createWriteBehind({
    store,
    clock,
    log: log.child({ component: 'write-behind' }),
    intervalMs: deps.writeBehindMs,
    onFlush: deps.onFlush,
    snapshot: (id) => {
      const w = workers.get(id);
      return w ? snapshotOf(w) : undefined;
    },
  });

  function event(w: Pick<LiveWorker, 'workerId'>, kind: string, from: WorkerState, to: WorkerState, actor: string, reason: string): EventRow {
    deps.onEvent?.(kind);
    return { workerId: w.workerId, at: clock.now(), kind, fromState: from, toState: to, actor, reason };
  }

  function serialize<T>(workerId: string, fn: () => Promise<T>): Promise<T> {
    const prev = durableChain.get(workerId) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const tail = next.catch(() => undefined);
    durableChain.set(workerId, tail);
    void tail.then(() => {
      if (durableChain.get(workerId) === tail) durableChain.delete(workerId);
    });
    return next;
  }

  /**
   * Runs a durable write in the worker's order. While the database is down
   * the write goes to the write-behind outbox (bounded) and is retried in
   * order; the live state has already moved, so the fleet keeps working.
   */
  async function durably(workerId: string, write: () => Promise<unknown>): Promise<void> {
    if (writeBehind.outbox() > 0) {
      if (!writeBehind.defer(write)) throw unavailable('the registry database is unavailable and the outbox is full');
      return;
    }
    try {
      await serialize(workerId, write);
    } catch (err) {
      if (!isStoreUnavailable(err)) throw err;
      log.warn({ err, workerId }, 'durable write failed; queued for retry');
      if (!writeBehind.defer(write)) throw unavailable('the registry database is unavailable and the outbox is full');
    }
  }

  /**
   * Moves a worker to a new state in memory and durably (state + event in
   * one transaction). The move happens in memory first, in the same tick as
   * the check that allowed it, so no heartbeat can slip in between. While
   * the database is down the write waits in the bounded outbox and the
   * fleet keeps working; when the outbox is full the move is refused
   * before anything changes.
   */
  async function transition(w: LiveWorker, to: WorkerState, kind: string, actor: string, reason: string): Promise<void> {
    if (writeBehind.outboxFull()) throw unavailable('the registry database is unavailable and the outbox is full; nothing was changed, try again');
    const from = w.state;
    const now = clock.now();
    w.state = to;
    w.stateSince = now;
    const ev = event(w, kind, from, to, actor, reason);
    hub.publish(w, WorkerChangeType.UPDATED);
    const snap = { ...snapshotOf(w), state: to, stateSince: now };
    await durably(w.workerId, () => store.transition(snap, [ev]));
    log.info({ workerId: w.workerId, from: WorkerState[from], to: WorkerState[to], kind, actor, reason }, 'worker state changed');
  }

  /** Outcomes of commands the agent carried out: events, written without holding up the reply. */
  function recordCommandResults(w: LiveWorker, hb: HeartbeatRequest): void {
    const rows = hb.commandResults.map((r) =>
      event(w, 'command_result', w.state, w.state, `worker:${w.workerId}`, `${r.commandId} ${r.success ? 'succeeded' : 'failed'}: ${r.message}`),
    );
    durably(w.workerId, () => store.appendEvents(rows)).catch((err) => log.error({ err, workerId: w.workerId }, 'command results dropped: outbox full'));
  }

  function get(id: string): LiveWorker {
    const w = workers.get(id);
    if (!w) throw notFound(`worker "${id}" is not registered`);
    return w;
  }

  function requireWorkerScope(p: Principal, workerId: string): void {
    if (p.scope === TokenScope.ADMIN) return;
    if (p.scope !== TokenScope.WORKER) throw permissionDenied('a worker token is required');
    if (p.workerId !== workerId) throw permissionDenied(`this token belongs to worker "${p.workerId}", not "${workerId}"`);
  }

  /** The last few sessions of a worker, so a heartbeat captured from one of them cannot be replayed. */
  function rememberSession(w: LiveWorker): void {
    const past = (w.pastSessions ??= []);
    past.push(w.sessionId);
    if (past.length > PAST_SESSIONS) past.shift();
  }

  function checkCas(w: LiveWorker, observedSeq: bigint, observedSession: string): void {
    // A late heartbeat must win over a stale mark: the mark applies only to
    // the exact heartbeat the monitor saw last.
    if (w.lastSeq !== observedSeq || (observedSession !== '' && w.sessionId !== observedSession))
      throw failedPrecondition(`worker "${w.workerId}" heartbeated since (seq ${w.lastSeq}, observed ${observedSeq})`);
  }

  return {
    startedAt,
    hub,
    commands,
    writeBehind,
    tokens,
    workers: workers as ReadonlyMap<string, LiveWorker>,

    get(id: string): LiveWorker {
      return get(id);
    },

    async register(p: Principal, req: RegisterWorkerRequest): Promise<{ worker: LiveWorker; token: string }> {
      const { intervalMs } = validateRegister(req);
      if (req.restartPolicy) validatePolicy(req.restartPolicy);
      if (p.scope !== TokenScope.ADMIN && p.scope !== TokenScope.JOIN) throw permissionDenied('registering needs an admin or join token');
      const id = req.workerId;
      if (registering.has(id)) throw aborted(`worker "${id}" is being registered by another call; try again`);
      const existing = workers.get(id);
      // Every InvalidArgument before any other refusal: a bad request is bad whoever sends it.
      checkNoCycle({ workerId: id, labels: req.labels, state: existing?.state ?? WorkerState.PENDING, dependsOn: req.dependsOn, dependsOnSelector: req.dependsOnSelector }, workers.values());
      if (existing && tokens.hasWorkerToken(id)) {
        if (p.scope === TokenScope.JOIN) throw alreadyExists(`worker "${id}" already exists with a token; an admin can rotate it`);
        if (!req.rotateToken) throw alreadyExists(`worker "${id}" already exists with a token; set rotate_token to replace it`);
      }
      registering.add(id);
      try {
        const now = clock.now();
        const w: LiveWorker = existing
          ? { ...existing }
          : {
              workerId: id,
              labels: {},
              intervalMs,
              registeredAt: now,
              state: WorkerState.PENDING,
              stateSince: now,
              lastSeen: null,
              lastSeq: 0n,
              sessionId: '',
              status: 0,
              statusDetail: '',
              lastBeat: null,
              storedStats: null,
              policy: null,
              dependsOn: [],
              graceUntil: null,
              streams: 0,
            };
        w.labels = { ...req.labels };
        w.intervalMs = intervalMs;
        if (req.restartPolicy) w.policy = req.restartPolicy;
        w.dependsOn = [...req.dependsOn];
        w.dependsOnSelector = req.dependsOnSelector;
        const { row, secret } = newTokenRow(TokenScope.WORKER, now, { workerId: id, description: `worker ${id}` });
        const actor = p.scope === TokenScope.ADMIN ? 'admin' : 'join';
        const ev = event(w, existing ? 'token_rotated' : 'registered', existing?.state ?? 0, w.state, actor, existing ? 're-registered' : 'registered');
        await serialize(id, () => store.registerWorker(toStored(w), row, true, ev));
        // Durable: now make it visible. Only what registration sets is
        // copied back: heartbeats during the write keep their seq and stats.
        if (existing) {
          existing.labels = w.labels;
          if (existing.intervalMs !== w.intervalMs) existing.intervalToldSession = undefined;
          existing.intervalMs = w.intervalMs;
          existing.policy = w.policy;
          existing.dependsOn = w.dependsOn;
        }
        const live = existing ?? w;
        workers.set(id, live);
        tokens.removeWorker(id);
        tokens.add(row);
        hub.publish(live, existing ? WorkerChangeType.UPDATED : WorkerChangeType.ADDED);
        log.info({ workerId: id, actor, rotated: !!existing }, 'worker registered');
        return { worker: live, token: secret };
      } finally {
        registering.delete(id);
      }
    },

    /** The hot path. Synchronous unless the heartbeat changes the worker's state. */
    heartbeat(p: Principal, hb: HeartbeatRequest): HeartbeatResponse | Promise<HeartbeatResponse> {
      validateHeartbeat(hb);
      if (p.workerId !== hb.workerId) {
        throw permissionDenied(`this token belongs to worker "${p.workerId ?? '(none)'}", not "${hb.workerId}"`);
      }
      const w = workers.get(hb.workerId);
      if (!w) throw notFound(`worker "${hb.workerId}" is not registered`);
      // A stream authenticates once; a token revoked or rotated since must
      // stop speaking for the worker at its next heartbeat.
      if (!tokens.isActive(p.tokenId)) throw unauthenticated('the token was revoked');
      if (hb.sessionId === w.sessionId) {
        if (hb.seq <= w.lastSeq && w.lastSeen !== null) {
          throw failedPrecondition(`seq ${hb.seq} is not greater than the last accepted seq ${w.lastSeq} of session "${hb.sessionId}"`);
        }
      } else if (w.pastSessions?.includes(hb.sessionId)) {
        // A heartbeat of an earlier session is a replay, never a comeback.
        throw failedPrecondition(`session "${hb.sessionId}" has ended; the worker's current session is "${w.sessionId}"`);
      }
      const reported = REPORTED_STATE[hb.status];
      const from = w.state;
      const steady = from === reported || (from === WorkerState.RESTARTING && !isHealthyReport(reported));
      // Refused before anything changes when the change could not be kept.
      if (!steady && writeBehind.outboxFull()) throw unavailable('the registry database is unavailable and the outbox is full');
      const inventoryRequired = mergeStats(w, hb);
      const now = clock.now();
      if (hb.sessionId !== w.sessionId && w.sessionId !== '') rememberSession(w);
      w.lastSeen = now;
      w.lastSeq = hb.seq;
      w.sessionId = hb.sessionId;
      w.status = hb.status;
      w.statusDetail = hb.statusDetail;
      if (hb.commandResults.length > 0) recordCommandResults(w, hb);
      const queued = commands.take(w.workerId);
      const reply: HeartbeatResponse = {
        $typeName: 'hive.v1.HeartbeatResponse',
        ackSeq: hb.seq,
        commands: queued,
        hiveTime: msToTimestamp(now),
        state: steady && from === WorkerState.RESTARTING ? from : reported,
        inventoryRequired,
      };
      // The interval rides along once per session, and again after it changed.
      if (w.intervalToldSession !== hb.sessionId) {
        reply.heartbeatInterval = msToDuration(w.intervalMs);
        w.intervalToldSession = hb.sessionId;
      }
      if (steady) {
        // Common case: no state change. Written behind, published coalesced.
        writeBehind.touch(w.workerId);
        hub.publish(w, WorkerChangeType.UPDATED);
        return reply;
      }
      const kind =
        from === WorkerState.PENDING ? 'first_heartbeat'
        : from === WorkerState.LEFT ? 'rejoined'
        : from === WorkerState.STALE || from === WorkerState.FAILED || from === WorkerState.RESTARTING ? 'recovered'
        : 'status_changed';
      return transition(w, reported, kind, `worker:${w.workerId}`, hb.statusDetail || WorkerState[reported].toLowerCase()).then(() => reply);
    },

    async leave(p: Principal, workerId: string, reason: string): Promise<LiveWorker> {
      requireWorkerScope(p, workerId);
      const w = get(workerId);
      if (w.state !== WorkerState.LEFT) await transition(w, WorkerState.LEFT, 'left', p.workerId ? `worker:${workerId}` : 'admin', reason || 'clean shutdown');
      return w;
    },

    async markStale(workerId: string, observedSeq: bigint, observedSession: string, actor: string, reason: string): Promise<LiveWorker> {
      const w = get(workerId);
      if (w.state === WorkerState.STALE && w.lastSeq === observedSeq) return w; // at-least-once: repeat is a no-op
      if (!CAN_GO_STALE.has(w.state)) throw failedPrecondition(`worker "${workerId}" is ${WorkerState[w.state]}, not markable stale`);
      checkCas(w, observedSeq, observedSession);
      const now = clock.now();
      if (w.graceUntil !== null && now < w.graceUntil) throw failedPrecondition(`worker "${workerId}" is in its post-restart grace for ${w.graceUntil - now} ms`);
      const due = (w.lastSeen ?? w.registeredAt) + 2 * w.intervalMs;
      if (now < due) throw failedPrecondition(`worker "${workerId}" is not due to be stale for ${due - now} ms`);
      await transition(w, WorkerState.STALE, 'marked_stale', actor, reason || `no heartbeat for ${now - (w.lastSeen ?? w.registeredAt)} ms`);
      return w;
    },

    async setState(workerId: string, to: WorkerState, observedSeq: bigint, observedSession: string, actor: string, reason: string): Promise<LiveWorker> {
      if (!MONITOR_STATES.has(to)) throw invalidArgument('state must be RESTARTING or FAILED');
      const w = get(workerId);
      if (w.state === WorkerState.LEFT) throw failedPrecondition(`worker "${workerId}" left cleanly; it is not restarted`);
      if (w.state === to) return w;
      checkCas(w, observedSeq, observedSession);
      await transition(w, to, to === WorkerState.FAILED ? 'gave_up' : 'restarting', actor, reason);
      return w;
    },

    sendCommand(workerId: string, type: CommandType, reason: string) {
      get(workerId);
      return commands.enqueue(workerId, type, reason, clock.now());
    },

    async recordEvent(workerId: string, kind: string, actor: string, reason: string): Promise<EventRow> {
      const w = workers.get(workerId);
      const state = w?.state ?? 0;
      const [row] = await serialize(workerId, () => store.appendEvents([event({ workerId }, kind, state, state, actor, reason)]));
      return row;
    },

    async setPolicy(workerId: string, policy: RestartPolicy | null, actor: string): Promise<LiveWorker> {
      if (policy) validatePolicy(policy);
      const w = get(workerId);
      const bytes = policy ? toStored({ ...w, policy }).policy : null;
      await serialize(workerId, () => store.setPolicy(workerId, bytes, event(w, 'policy_set', w.state, w.state, actor, policy ? 'restart policy set' : 'restart policy cleared')));
      w.policy = policy;
      hub.publish(w, WorkerChangeType.UPDATED);
      return w;
    },

    async deregister(workerId: string, actor: string, reason: string): Promise<void> {
      const w = get(workerId);
      await serialize(workerId, () => store.deleteWorker(workerId, clock.now(), event(w, 'deregistered', w.state, 0, actor, reason || 'deregistered')));
      workers.delete(workerId);
      tokens.removeWorker(workerId);
      commands.drop(workerId);
      writeBehind.forget(workerId);
      hub.publish(w, WorkerChangeType.REMOVED);
      log.info({ workerId, actor }, 'worker deregistered');
    },

    /** Stream bookkeeping: whether the worker has an open HeartbeatStream here. */
    streamOpened(workerId: string): void {
      const w = workers.get(workerId);
      if (w) {
        w.streams++;
        if (w.streams === 1) hub.publish(w, WorkerChangeType.UPDATED);
      }
    },
    streamClosed(workerId: string): void {
      const w = workers.get(workerId);
      if (w && w.streams > 0) {
        w.streams--;
        if (w.streams === 0) hub.publish(w, WorkerChangeType.UPDATED);
      }
    },

    start(): void {
      writeBehind.start();
    },
    async stop(): Promise<void> {
      hub.closeAll();
      await writeBehind.stop();
      await Promise.all([...durableChain.values()]);
    },
  };
}

function isHealthyReport(s: WorkerState): boolean {
  return s === WorkerState.HEALTHY || s === WorkerState.DEGRADED;
}
