import type { Command, HeartbeatRequest, WorkerState } from '../gen/hive/v1/registry_pb.js';
import type { RemoteBeat } from './live-messages.js';
import type { LiveWorker } from './worker.js';

// The live state a hive shares with its fellow replicas, behind one narrow
// interface: presence and the last seen/seq/session of each worker, the
// deadline index, the compare-and-set of monitor-owned states, the change
// fan-out and the routing of commands to whichever replica holds a
// worker's stream. Every replica keeps the whole fleet in memory (the
// registry's map); an implementation keeps those maps in step.
//
// memory: one replica; the map is the truth, every call is local.
// redis:  several replicas; Redis holds the shared truth and carries the
//         changes (live-redis.ts).

/**
 * What changed in the durable registry: these workers (their registration,
 * policy, tokens, or their removal), the tokens that belong to no worker,
 * or, when undefined, anything.
 */
export interface RegistryChange {
  workerIds?: string[];
  tokens?: boolean;
}

/** What other replicas did, delivered to this replica's registry. */
export interface LiveListener {
  /** Another replica accepted a heartbeat (at: its hive time). */
  beat(workerId: string, at: number, beat: RemoteBeat): void;
  /** Another replica changed a worker's state, deciding on the heartbeat (seq, session). */
  state(workerId: string, state: WorkerState, since: number, seq: bigint, session: string): void;
  /** Another replica changed the durable registry (a registration, token, policy, removal): reread that. */
  reload(change?: RegistryChange): void;
  /** The shared engine is back after an outage: converge (reread, republish, grace). */
  recovered(): void;
}

export interface CasExpect {
  seq: bigint;
  /** '' accepts any session. */
  session: string;
  /** States the worker may be in for the change to apply. */
  from: ReadonlySet<WorkerState>;
}

/** ver: the state version the change got in the shared engine (to announce it with). */
export type CasResult = { ok: true; ver?: number } | { ok: false; why: 'seq'; seq: bigint } | { ok: false; why: 'state'; state: WorkerState };

/** Live fields the shared engine holds for a worker (newer than the durable snapshot after a replica restart). */
export interface SharedLive {
  lastSeq: bigint;
  sessionId: string;
  lastSeen: number | null;
  status: number;
  state: WorkerState;
  stateSince: number;
}

export interface LiveState {
  readonly kind: 'memory' | 'redis';
  readonly replicaId: string;
  start(listener: LiveListener): Promise<void>;
  /**
   * Makes the workers known to the shared engine (at start, after a reread,
   * after an outage with force: this replica's copy wins). Returns what the
   * engine holds where it differs from what it was given.
   */
  seed(workers: readonly LiveWorker[], force?: boolean): Promise<Map<string, SharedLive>>;
  /** The hot path: records an accepted heartbeat without waiting. */
  beat(w: LiveWorker, hb: HeartbeatRequest, streamed: boolean): void;
  /**
   * Compare-and-set of a monitor-owned state on the last heartbeat. The
   * registry has checked its own copy first; this is the shared word.
   * Synchronous where the engine is local.
   */
  compareAndSet(w: LiveWorker, expect: CasExpect, to: WorkerState, now: number): CasResult | Promise<CasResult>;
  /**
   * Announces a state change decided here once it is durable: one from a
   * compare-and-set with the version it got (ver), any other (a report, a
   * leave) without, and then it is written to the shared engine too.
   */
  stateChanged(w: LiveWorker, ver?: number): void;
  /** The durable registry changed here: tell the others to reread what changed. */
  registryChanged(change?: RegistryChange): void;
  /** The worker was deregistered: drop its shared keys. */
  forget(workerId: string): void;

  /** Queues a command; resolves whether a stream to the worker is open on any replica. */
  enqueueCommand(workerId: string, command: Command): boolean | Promise<boolean>;
  /** Takes the worker's pending commands (the empty array, synchronously, when there are none). */
  takeCommands(workerId: string): Command[] | Promise<Command[]>;
  /** Calls fn when a command for the worker may be waiting; returns the unsubscribe. */
  listenCommands(workerId: string, fn: () => void): () => void;
  streamOpened(w: LiveWorker): void;
  streamClosed(w: LiveWorker): void;

  /**
   * Rejects a monitor call carrying a fencing token older than the newest
   * one handed out (FailedPrecondition); required: the caller has no
   * admin scope, so a missing (0) token counts as the oldest.
   */
  checkFence(token: bigint, required: boolean): void | Promise<void>;
  /** Why the replica is degraded (the shared engine unreachable), or null. */
  degraded(): string | null;
  /** Workers whose deadline in the shared index has passed (metrics), null when unknown. */
  overdue(now: number): Promise<number | null>;
  stop(): Promise<void>;
}
