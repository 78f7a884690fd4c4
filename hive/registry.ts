import {
  TokenScope,
  WorkerChangeType,
  WorkerState,
  type Command,
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
import { EMPTY, newCommand } from './commands.js';
import { createMemoryLiveState } from './live-memory.js';
import type { CasResult, LiveListener, LiveState, RegistryChange } from './live-state.js';
import { reconcile } from './reconcile.js';
import { newTokenRow, TokenIndex, type Principal } from './tokens.js';
import type { EventRow, Store, TokenRow } from './store/store.js';
import { validateHeartbeat, validateRegister } from './validate.js';
import { WatchHub } from './watch-hub.js';
import { ALWAYS_READ, type ReadThrough } from './loop-turns.js';
import { applyShared, fromStored, lastBeatOf, NONE, REPORTED_STATE, snapshotOf, toStored, type LiveWorker } from './worker.js';
import { createWriteBehind, type WriteBehind } from './write-behind.js';
import { mergeStats } from './live-stats.js';
import { validatePolicy } from './policy.js';
import { checkNoCycle } from './dependencies.js';

// The registry's domain core: the fleet in memory, kept in step with other
// replicas by the live state, durable state in the store, changes
// published to watchers. Transports and auth sit outside; every method
// takes the already-authenticated caller.

export interface RegistryDeps {
  store: Store;
  clock: Clock;
  log: Logger;
  writeBehindMs?: number;
  /** Live state shared with other replicas; a memory-only one by default. */
  live?: LiveState;
  /** Token ids that come from configuration, not the store (kept across rereads). */
  configTokenIds?: (id: string) => boolean;
  onEvent?: (kind: string) => void;
  onFlush?: (rows: number, seconds: number, ok: boolean) => void;
  /** When the hive has read what reached its sockets by a moment (hive/loop-turns.ts); everything at once by default. */
  turns?: ReadThrough;
}

/** What a reread covers: everything, or these workers and/or the tokens of no worker. */
interface RereadScope {
  all: boolean;
  ids: Set<string>;
  tokens: boolean;
}

function mergeScope(a: RereadScope | null, change: RegistryChange | undefined): RereadScope {
  const m: RereadScope = a ?? { all: false, ids: new Set(), tokens: false };
  if (!change) m.all = true;
  else {
    for (const id of change.workerIds ?? []) m.ids.add(id);
    if (change.tokens) m.tokens = true;
  }
  return m;
}

const CAN_GO_STALE = new Set([WorkerState.PENDING, WorkerState.HEALTHY, WorkerState.DEGRADED, WorkerState.UNHEALTHY]);
const MONITOR_STATES = new Set([WorkerState.RESTARTING, WorkerState.FAILED]);
const PAST_SESSIONS = 8;
const NOT_LEFT: ReadonlySet<WorkerState> = new Set(
  Object.values(WorkerState).filter((v): v is WorkerState => typeof v === 'number' && v !== WorkerState.LEFT && v !== WorkerState.UNSPECIFIED),
);

export type Registry = Awaited<ReturnType<typeof createRegistry>>;


/** Commands held by the shared live state cost a round trip; only then is the reply late. */
function withCommands(reply: HeartbeatResponse, pending: Promise<Command[]>): Promise<HeartbeatResponse> {
  return pending.then((commands) => {
    reply.commands = commands;
    return reply;
  });
}
export async function createRegistry(deps: RegistryDeps) {
  const { store, clock, log } = deps;
  const turns = deps.turns ?? ALWAYS_READ;
  const workers = new Map<string, LiveWorker>();
  const tokens = new TokenIndex();
  const hub = new WatchHub(() => clock.now());
  const live = deps.live ?? createMemoryLiveState();
  const startedAt = clock.now();
  // Durable writes of one worker happen in the order they were decided.
  const durableChain = new Map<string, Promise<unknown>>();
  const registering = new Set<string>();

  await store.forEachWorkerPage((page) => {
    for (const s of page) {
      const w = fromStored(s);
      // The hive's own downtime is not the worker's: every worker gets a full
      // 2x interval from now before its silence counts.
      w.graceUntil = startedAt + 2 * w.intervalMs;
      workers.set(w.workerId, w);
    }
  });
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
  async function transition(w: LiveWorker, to: WorkerState, kind: string, actor: string, reason: string, at = clock.now(), casVer?: number): Promise<void> {
    if (writeBehind.outboxFull()) throw unavailable('the registry database is unavailable and the outbox is full; nothing was changed, try again');
    const from = w.state;
    const now = at;
    w.state = to;
    w.stateSince = now;
    const ev = event(w, kind, from, to, actor, reason);
    hub.publish(w, WorkerChangeType.UPDATED);
    const snap = { ...snapshotOf(w), state: to, stateSince: now };
    try {
      await durably(w.workerId, () => store.transition(snap, [ev]));
    } finally {
      // Told to the other replicas once durable: what they do in reply (a
      // late heartbeat undoing a mark) is written after it, in order.
      live.stateChanged(w, casVer);
    }
    log.info({ workerId: w.workerId, from: WorkerState[from], to: WorkerState[to], kind, actor, reason }, 'worker state changed');
  }

  /** Outcomes of commands the agent carried out: events, written without holding up the reply. */
  function recordCommandResults(w: LiveWorker, hb: HeartbeatRequest): void {
    const rows = hb.commandResults.map((r) =>
      event(w, 'command_result', w.state, w.state, `worker:${w.workerId}`, `${r.commandId} ${r.success ? 'succeeded' : 'failed'}: ${r.message}`),
    );
    durably(w.workerId, () => store.appendEvents(rows)).catch((err) => log.error({ err, workerId: w.workerId }, 'command results dropped: outbox full'));
  }

  function shareRegistration(w: LiveWorker): void {
    live.registryChanged({ workerIds: [w.workerId] });
    adoptShared([w]).catch((err) => log.warn({ err, workerId: w.workerId }, 'live state not seeded'));
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

  /**
   * The shared word on a compare-and-set this replica's copy allowed: another
   * replica may have accepted a newer heartbeat that has not reached us yet.
   * Then runs the transition, already announced by the compare-and-set.
   */
  function casTransition(w: LiveWorker, from: ReadonlySet<WorkerState>, to: WorkerState, observedSeq: bigint, observedSession: string, kind: string, actor: string, reason: string): Promise<void> {
    const now = clock.now();
    const apply = async (r: CasResult): Promise<void> => {
      if (!r.ok && r.why === 'seq') throw failedPrecondition(`worker "${w.workerId}" heartbeated since (seq ${r.seq}, observed ${observedSeq})`);
      if (!r.ok) throw failedPrecondition(`worker "${w.workerId}" is ${WorkerState[r.state]}, not markable ${WorkerState[to]}`);
      await transition(w, to, kind, actor, reason, now, r.ver);
      // A heartbeat accepted here while the shared compare-and-set was on its
      // way came after it: it wins, as it would have a moment later. (One
      // heard from another replica is undone there, by the replica that has it.)
      const newer = w.lastSeq !== observedSeq || (observedSession !== '' && w.sessionId !== observedSession);
      if (newer && (live.kind === 'memory' || beatHere.has(w.workerId))) await lateBeatWins(w);
    };
    const r = live.compareAndSet(w, { seq: observedSeq, session: observedSession, from }, to, now);
    return r instanceof Promise ? r.then(apply) : apply(r);
  }

  function newWorker(id: string, intervalMs: number, now: number): LiveWorker {
    return {
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
      beat: null,
      storedStats: null,
      policy: null,
      dependsOn: NONE,
      graceUntil: null,
      streams: 0,
    };
  }

  // Rereading the durable registry after another replica changed it: only
  // what changed (a registration reads one worker and its tokens), one
  // reread at a time, and what is announced meanwhile is read together next.
  let rereading: Promise<void> | null = null;
  let wanted: RereadScope | null = null;
  function reread(change?: RegistryChange): Promise<void> {
    wanted = mergeScope(wanted, change);
    rereading ??= (async () => {
      while (wanted) {
        const scope = wanted;
        wanted = null;
        try {
          await rereadOnce(scope);
        } catch (err) {
          // Kept for the next announcement (or the reread after an outage).
          wanted = mergeScope(wanted, scope.all ? undefined : { workerIds: [...scope.ids], tokens: scope.tokens });
          log.warn({ err }, 'rereading the registry failed; the next change retries');
          break;
        }
      }
    })().finally(() => {
      rereading = null;
    });
    return rereading;
  }

  /** Counts registrations and removals made here: a reread that read before one of them must not undo it. */
  let localChanges = 0;
  const changedHereAt = new Map<string, number>();
  function changedHere(id: string): void {
    changedHereAt.set(id, ++localChanges);
  }

  async function rereadOnce(scope: RereadScope): Promise<void> {
    const startedAt = localChanges;
    const skip = (id: string) => (changedHereAt.get(id) ?? 0) > startedAt;
    const ids = [...scope.ids];
    const [stored, workerTokens, allTokens] = await Promise.all([
      scope.all ? store.loadWorkers() : ids.length ? store.loadWorkers(ids) : [],
      !scope.all && ids.length ? store.loadTokens(ids) : [],
      scope.all || scope.tokens ? store.loadTokens() : null,
    ]);
    const current = scope.all ? workers : new Map(ids.filter((id) => workers.has(id)).map((id) => [id, workers.get(id)!]));
    const plan = reconcile(current, stored, skip);
    // Changes made before this read began are in it: the next reread needs only later ones.
    for (const [id, n] of changedHereAt) if (n <= startedAt) changedHereAt.delete(id);
    for (const s of plan.added) {
      const w = fromStored(s);
      workers.set(w.workerId, w);
      hub.publish(w, WorkerChangeType.ADDED);
    }
    for (const s of plan.changed) {
      const w = workers.get(s.workerId)!;
      w.labels = s.labels;
      w.intervalMs = s.intervalMs;
      w.registeredAt = s.registeredAt;
      w.dependsOn = s.dependsOn;
      w.policy = fromStored(s).policy;
      hub.publish(w, WorkerChangeType.UPDATED);
    }
    for (const id of plan.removed) {
      const w = workers.get(id)!;
      workers.delete(id);
      beatHere.delete(id);
      tokens.removeWorker(id);
      live.forget(id);
      writeBehind.forget(id);
      hub.publish(w, WorkerChangeType.REMOVED);
    }
    if (allTokens) syncTokens(allTokens);
    else {
      for (const id of ids) if (!skip(id)) tokens.removeWorker(id);
      for (const t of workerTokens) if (!skip(t.workerId!)) tokens.add(t);
    }
    if (plan.added.length) await adoptShared(plan.added.map((s) => workers.get(s.workerId)!));
  }

  function syncTokens(rows: TokenRow[]): void {
    tokens.replaceStored(rows, deps.configTokenIds ?? (() => false));
  }

  /** Takes what the shared live state knows better (fresher heartbeats, states set elsewhere). */
  async function adoptShared(list: LiveWorker[]): Promise<void> {
    // A state that changed here meanwhile is newer than the answer; a
    // heartbeat is judged by its seq and session.
    const before = new Map(list.map((w) => [w.workerId, w.state]));
    const shared = await live.seed(list);
    for (const [id, sh] of shared) {
      const w = workers.get(id);
      if (w && applyShared(w, sh, before.get(id) === w.state)) hub.publish(w, WorkerChangeType.UPDATED);
    }
  }

  /** The last heartbeat of these workers was accepted by this replica (not heard from another). */
  const beatHere = new Set<string>();

  /** A heartbeat newer than a monitor's decision undoes it, with the same rule as a heartbeat arriving after it. */
  function lateBeatWins(w: LiveWorker): Promise<void> {
    const reported = REPORTED_STATE[w.status];
    if (w.state === reported || !CAN_GO_STALE.has(reported)) return Promise.resolve();
    if (w.state === WorkerState.RESTARTING && !isHealthyReport(reported)) return Promise.resolve();
    return transition(w, reported, 'recovered', `worker:${w.workerId}`, 'heartbeat newer than the mark');
  }

  const listener: LiveListener = {
    beat(id, at, hb) {
      const w = workers.get(id);
      if (!w) {
        void reread({ workerIds: [id] }); // registered elsewhere a moment ago
        return;
      }
      if (hb.sessionId === w.sessionId && hb.seq <= w.lastSeq) return; // older than what we hold
      beatHere.delete(id);
      if (hb.sessionId !== w.sessionId && w.sessionId !== '') rememberSession(w);
      // Every heard heartbeat is merged in order (one may carry the inventory
      // later compact ones refer to); each is decoded when the next arrives or
      // when someone reads the stats, whichever is first.
      if (w.encodedBeat) lastBeatOf(w);
      w.lastSeen = at;
      w.lastSeq = hb.seq;
      w.sessionId = hb.sessionId;
      w.status = hb.status;
      w.statusDetail = hb.statusDetail;
      w.encodedBeat = hb.encoded;
      hub.touch(w);
    },
    state(id, state, since, seq, session) {
      const w = workers.get(id);
      if (!w) return void reread({ workerIds: [id] });
      w.state = state;
      w.stateSince = since;
      hub.publish(w, WorkerChangeType.UPDATED);
      // Decided on an older heartbeat than one this replica accepted meanwhile:
      // this replica holds the newer truth and undoes the decision.
      if (beatHere.has(id) && (seq !== w.lastSeq || session !== w.sessionId)) {
        lateBeatWins(w).catch((err) => log.warn({ err, workerId: id }, 'late heartbeat not applied'));
      }
    },
    reload(change) {
      void reread(change);
    },
    recovered() {
      // What other replicas accepted while we could not hear them is on its
      // way now; until it is, nobody's silence counts (set at once, before
      // anything else can be asked of us).
      const now = clock.now();
      const grace = (w: LiveWorker) => {
        w.graceUntil = Math.max(w.graceUntil ?? 0, now + 2 * w.intervalMs);
        hub.publish(w, WorkerChangeType.UPDATED);
      };
      for (const w of workers.values()) grace(w);
      void (async () => {
        await reread();
        for (const w of workers.values()) if ((w.graceUntil ?? 0) < now + 2 * w.intervalMs) grace(w); // registered meanwhile
        await adoptShared([...workers.values()]);
      })().catch((err) => log.error({ err }, 'converging after the live state outage failed'));
    },
  };

  return {
    startedAt,
    hub,
    live,
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
        const w: LiveWorker = existing ? { ...existing } : newWorker(id, intervalMs, now);
        w.labels = { ...req.labels };
        w.intervalMs = intervalMs;
        if (req.restartPolicy) w.policy = req.restartPolicy;
        w.dependsOn = req.dependsOn.length > 0 ? [...req.dependsOn] : NONE;
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
          existing.dependsOnSelector = w.dependsOnSelector;
        }
        const lw = existing ?? w;
        changedHere(id);
        workers.set(id, lw);
        tokens.removeWorker(id);
        tokens.add(row);
        hub.publish(lw, existing ? WorkerChangeType.UPDATED : WorkerChangeType.ADDED);
        shareRegistration(lw);
        log.info({ workerId: id, actor, rotated: !!existing }, 'worker registered');
        return { worker: lw, token: secret };
      } finally {
        registering.delete(id);
      }
    },

    /** The hot path. Synchronous unless the heartbeat changes the worker's state. */
    heartbeat(p: Principal, hb: HeartbeatRequest, streamed = false): HeartbeatResponse | Promise<HeartbeatResponse> {
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
      // A newer heartbeat heard from another replica, not yet read, comes first.
      if (w.encodedBeat) lastBeatOf(w);
      const inventoryRequired = mergeStats(w, hb);
      const now = clock.now();
      if (hb.sessionId !== w.sessionId && w.sessionId !== '') rememberSession(w);
      w.lastSeen = now;
      w.lastSeq = hb.seq;
      w.sessionId = hb.sessionId;
      w.status = hb.status;
      w.statusDetail = hb.statusDetail;
      if (live.kind !== 'memory') beatHere.add(w.workerId);
      live.beat(w, hb, streamed);
      if (hb.commandResults.length > 0) recordCommandResults(w, hb);
      const pending = live.takeCommands(w.workerId);
      const reply: HeartbeatResponse = {
        $typeName: 'hive.v1.HeartbeatResponse',
        ackSeq: hb.seq,
        commands: pending instanceof Promise ? EMPTY : pending,
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
        hub.touch(w);
        // No closure on this path: each one costs an allocation per heartbeat.
        return pending instanceof Promise ? withCommands(reply, pending) : reply;
      }
      const kind =
        from === WorkerState.PENDING ? 'first_heartbeat'
        : from === WorkerState.LEFT ? 'rejoined'
        : from === WorkerState.STALE || from === WorkerState.FAILED || from === WorkerState.RESTARTING ? 'recovered'
        : 'status_changed';
      return transition(w, reported, kind, `worker:${w.workerId}`, hb.statusDetail || WorkerState[reported].toLowerCase()).then(() => (pending instanceof Promise ? withCommands(reply, pending) : reply));
    },

    async leave(p: Principal, workerId: string, reason: string): Promise<LiveWorker> {
      requireWorkerScope(p, workerId);
      const w = get(workerId);
      if (w.state !== WorkerState.LEFT) await transition(w, WorkerState.LEFT, 'left', p.workerId ? `worker:${workerId}` : 'admin', reason || 'clean shutdown');
      return w;
    },

    /**
     * Resolves with the worker and whether this call marked it (false: it
     * was already STALE for that seq, a repeat). A mark that has to wait for
     * the hive to read up to the deadline checks `wait.signal` (the call may
     * have ended) and runs `wait.after` (the caller's fence, say) before it
     * is decided afresh.
     */
    async markStale(
      workerId: string,
      observedSeq: bigint,
      observedSession: string,
      actor: string,
      reason: string,
      wait: { signal?: AbortSignal; after?: () => void | Promise<void> } = {},
    ): Promise<{ worker: LiveWorker; applied: boolean }> {
      for (;;) {
        const w = get(workerId);
        if (w.state === WorkerState.STALE && w.lastSeq === observedSeq) return { worker: w, applied: false }; // at-least-once: repeat is a no-op
        if (!CAN_GO_STALE.has(w.state)) throw failedPrecondition(`worker "${workerId}" is ${WorkerState[w.state]}, not markable stale`);
        checkCas(w, observedSeq, observedSession);
        const now = clock.now();
        if (w.graceUntil !== null && now < w.graceUntil) throw failedPrecondition(`worker "${workerId}" is in its post-restart grace for ${w.graceUntil - now} ms`);
        const due = (w.lastSeen ?? w.registeredAt) + 2 * w.intervalMs;
        if (now < due) throw failedPrecondition(`worker "${workerId}" is not due to be stale for ${due - now} ms`);
        if (!turns.readThrough(due)) {
          // A heartbeat sent in time may still wait unread in a busy hive's
          // sockets: the mark waits until a turn of the event loop begun
          // after the deadline has ended (two turns at most), then is
          // decided afresh.
          await turns.untilRead(due);
          if (wait.signal?.aborted) throw aborted('the call ended while the mark waited for the hive to read up to the deadline');
          await wait.after?.();
          continue;
        }
        await casTransition(w, CAN_GO_STALE, WorkerState.STALE, observedSeq, observedSession, 'marked_stale', actor, reason || `no heartbeat for ${now - (w.lastSeen ?? w.registeredAt)} ms`);
        return { worker: w, applied: true };
      }
    },

    async setState(workerId: string, to: WorkerState, observedSeq: bigint, observedSession: string, actor: string, reason: string): Promise<LiveWorker> {
      if (!MONITOR_STATES.has(to)) throw invalidArgument('state must be RESTARTING or FAILED');
      const w = get(workerId);
      if (w.state === WorkerState.LEFT) throw failedPrecondition(`worker "${workerId}" left cleanly; it is not restarted`);
      if (w.state === to) return w;
      checkCas(w, observedSeq, observedSession);
      await casTransition(w, NOT_LEFT, to, observedSeq, observedSession, to === WorkerState.FAILED ? 'gave_up' : 'restarting', actor, reason);
      return w;
    },

    async sendCommand(workerId: string, type: CommandType, reason: string) {
      get(workerId);
      const command = newCommand(type, reason, clock.now());
      return { command, delivered: await live.enqueueCommand(workerId, command) };
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
      live.registryChanged({ workerIds: [workerId] });
      return w;
    },

    async deregister(workerId: string, actor: string, reason: string): Promise<void> {
      const w = get(workerId);
      await serialize(workerId, () => store.deleteWorker(workerId, clock.now(), event(w, 'deregistered', w.state, 0, actor, reason || 'deregistered')));
      workers.delete(workerId);
      changedHere(workerId);
      beatHere.delete(workerId);
      tokens.removeWorker(workerId);
      live.forget(workerId);
      live.registryChanged({ workerIds: [workerId] });
      writeBehind.forget(workerId);
      hub.publish(w, WorkerChangeType.REMOVED);
      log.info({ workerId, actor }, 'worker deregistered');
    },

    /** Stream bookkeeping: whether the worker has an open HeartbeatStream here. */
    streamOpened(workerId: string): void {
      const w = workers.get(workerId);
      if (w) {
        w.streams++;
        live.streamOpened(w);
        if (w.streams === 1) hub.publish(w, WorkerChangeType.UPDATED);
      }
    },
    streamClosed(workerId: string): void {
      const w = workers.get(workerId);
      if (w && w.streams > 0) {
        w.streams--;
        if (w.streams === 0) {
          live.streamClosed(w);
          hub.publish(w, WorkerChangeType.UPDATED);
        }
      }
    },

    /** Tokens were created or revoked here: the other replicas reread them. */
    tokensChanged(): void {
      live.registryChanged({ tokens: true });
    },

    /** Rereads the durable registry (what another replica changed) and waits for it. */
    reread,

    async start(): Promise<void> {
      await live.start(listener);
      await adoptShared([...workers.values()]);
      writeBehind.start();
    },
    async stop(): Promise<void> {
      hub.closeAll();
      await writeBehind.stop();
      await Promise.all([...durableChain.values()]);
      await rereading;
      await live.stop();
    },
  };
}

function isHealthyReport(s: WorkerState): boolean {
  return s === WorkerState.HEALTHY || s === WorkerState.DEGRADED;
}
