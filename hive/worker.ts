import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import {
  HealthStatus,
  HeartbeatRequestSchema,
  type HeartbeatRequest,
  WorkerState,
  WorkerStatsSchema,
  type Worker,
  type WorkerStats,
} from '../gen/hive/v1/registry_pb.js';
import { RestartPolicySchema, type RestartPolicy } from '../gen/hive/v1/policy_pb.js';
import { msToDuration, msToTimestamp } from '../lib/duration.js';
import { decodeBeat } from './live-messages.js';
import type { SharedLive } from './live-state.js';
import type { StoredWorker, WorkerSnapshot } from './store/store.js';
import { encodeWorkerStats } from './stats-codec.js';
import { mergeStats } from './live-stats.js';
import { unpackHeld, type HotStats, type PackedStats } from './packed-stats.js';

/** A worker as the hive holds it in memory (plain fields, cheap to update per heartbeat). */
export interface LiveWorker {
  workerId: string;
  labels: Record<string, string>;
  intervalMs: number;
  registeredAt: number;
  state: WorkerState;
  stateSince: number;
  lastSeen: number | null;
  lastSeq: bigint;
  sessionId: string;
  status: HealthStatus;
  statusDetail: string;
  /**
   * The last heartbeat's stats, packed (hive/packed-stats.ts): the whole
   * fleet's stats are held and seldom read. lastBeatOf() unpacks them.
   */
  beat: PackedStats | null;
  /** What compact heartbeats changed since `beat` was packed, in place (hive/packed-stats.ts); absent until the first. */
  hot?: HotStats | null;
  /**
   * A newer heartbeat heard from another replica, still encoded (protobuf,
   * base64): merged into lastBeat on first read, or when the next arrives.
   */
  encodedBeat?: string | null;
  /**
   * Stats loaded from the store (WorkerStats protobuf, as stored), until the
   * first heartbeat of this run: decoded only when read, written back as is.
   * Held as a latin1 string (a byte a char) on V8's heap: a Uint8Array of
   * this size is a malloc of its own per worker, and a cold start's 100,000
   * of them, freed as workers heartbeat, left the process heap fragmented
   * (and its RSS up) for good.
   */
  storedStats: string | null;
  policy: RestartPolicy | null;
  dependsOn: string[];
  /** Every worker matching this label selector is a dependency too. */
  dependsOnSelector?: string;
  /** Dependencies not healthy right now (kept by the dependency tracker). */
  blockedBy?: string[];
  graceUntil: number | null;
  /** Open heartbeat streams on this hive. */
  streams: number;
  /** Earlier sessions of this run of the hive (bounded): their heartbeats are replays. */
  pastSessions?: string[];
  /** The session last told the heartbeat interval in a reply. */
  intervalToldSession?: string;
  /** The full heartbeat whose GPUs and collectors compact heartbeats refer to. */
  inventory?: { sessionId: string; seq: bigint };
}

/** The resource part of a heartbeat, as the hive keeps it (the fields of WorkerStats). */
export type LiveStats = Pick<
  WorkerStats,
  'gpus' | 'memoryUsedBytes' | 'memoryTotalBytes' | 'disks' | 'load1' | 'collectors' | 'probeLatencyP50Seconds' | 'probeLatencyP95Seconds' | 'probeLatencyP99Seconds'
>;

export const REPORTED_STATE: Record<number, WorkerState> = {
  [HealthStatus.UNSPECIFIED]: WorkerState.HEALTHY,
  [HealthStatus.HEALTHY]: WorkerState.HEALTHY,
  [HealthStatus.DEGRADED]: WorkerState.DEGRADED,
  [HealthStatus.UNHEALTHY]: WorkerState.UNHEALTHY,
};

/** The last heartbeat's stats, merging one heard from another replica on first read. */
export function lastBeatOf(w: LiveWorker): LiveStats | null {
  if (w.encodedBeat) {
    const encoded = w.encodedBeat;
    w.encodedBeat = null;
    try {
      mergeStats(w, decodeBeat(encoded));
    } catch {
      // Not decodable or not mergeable (another version?): the previous stats stand.
    }
  }
  return w.beat === null ? null : unpackHeld(w.beat, w.hot);
}

/** The stats loaded from the store, decoded (a fresh message each call). */
export function storedStatsOf(w: LiveWorker): WorkerStats | undefined {
  return w.storedStats !== null ? fromBinary(WorkerStatsSchema, storedBytes(w.storedStats)) : undefined;
}

/** The bytes of LiveWorker.storedStats. */
export function storedBytes(latin1: string): Uint8Array {
  const b = Buffer.from(latin1, 'latin1');
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

/** The worker's last heartbeat rebuilt in its full form from what the hive holds (to tell other replicas), or null before the first. */
export function heartbeatOf(w: LiveWorker): HeartbeatRequest | null {
  const s = lastBeatOf(w);
  if (!s) return null;
  return create(HeartbeatRequestSchema, { ...s, workerId: w.workerId, sessionId: w.sessionId, seq: w.lastSeq, status: w.status, statusDetail: w.statusDetail });
}

export function statsOf(w: LiveWorker): WorkerStats | undefined {
  const b = lastBeatOf(w);
  if (!b) return storedStatsOf(w);
  return {
    $typeName: 'hive.v1.WorkerStats',
    gpus: b.gpus,
    memoryUsedBytes: b.memoryUsedBytes,
    memoryTotalBytes: b.memoryTotalBytes,
    disks: b.disks,
    load1: b.load1,
    collectors: b.collectors,
    probeLatencyP50Seconds: b.probeLatencyP50Seconds,
    probeLatencyP95Seconds: b.probeLatencyP95Seconds,
    probeLatencyP99Seconds: b.probeLatencyP99Seconds,
  };
}

/**
 * The worker as a message. Built as a literal (what create() returns,
 * without its reflection): one per watched change. It shares the worker's
 * stats objects, labels and dependencies; messages are serialised, never
 * changed.
 */
export function toWorkerMessage(w: LiveWorker, opts?: { omitStats?: boolean }): Worker {
  return {
    $typeName: 'hive.v1.Worker',
    workerId: w.workerId,
    state: w.state,
    labels: w.labels,
    heartbeatInterval: msToDuration(w.intervalMs),
    lastSeen: w.lastSeen === null ? undefined : msToTimestamp(w.lastSeen),
    lastSeq: w.lastSeq,
    sessionId: w.sessionId,
    status: w.status,
    statusDetail: w.statusDetail,
    stats: opts?.omitStats ? undefined : statsOf(w),
    registeredAt: msToTimestamp(w.registeredAt),
    stateSince: msToTimestamp(w.stateSince),
    graceUntil: w.graceUntil === null ? undefined : msToTimestamp(w.graceUntil),
    restartPolicy: w.policy ?? undefined,
    connected: w.streams > 0,
    dependsOn: w.dependsOn,
    dependsOnSelector: w.dependsOnSelector ?? '',
    blockedBy: w.blockedBy ?? [],
  };
}

const NO_LABELS: Record<string, string> = Object.freeze({}) as Record<string, string>;
/** No ids: one frozen empty list shared by every worker without dependencies (an empty array each is ~16 B times the fleet). */
export const NONE: string[] = Object.freeze([]) as unknown as string[];

/**
 * A WORKER_CHANGE_TYPE_HEARTBEAT change's worker: what a heartbeat changes
 * (liveness and stats), every other field at its default. The watcher
 * merges it into the worker it already has.
 */
export function toHeartbeatDelta(w: LiveWorker, opts?: { omitStats?: boolean }): Worker {
  return {
    $typeName: 'hive.v1.Worker',
    workerId: w.workerId,
    state: 0,
    labels: NO_LABELS,
    lastSeen: w.lastSeen === null ? undefined : msToTimestamp(w.lastSeen),
    lastSeq: w.lastSeq,
    sessionId: w.sessionId,
    status: w.status,
    statusDetail: w.statusDetail,
    stats: opts?.omitStats ? undefined : statsOf(w),
    connected: false,
    dependsOn: NONE,
    dependsOnSelector: '',
    blockedBy: NONE,
  };
}

export function fromStored(s: StoredWorker): LiveWorker {
  return {
    workerId: s.workerId,
    labels: s.labels,
    intervalMs: s.intervalMs,
    registeredAt: s.registeredAt,
    state: s.state,
    stateSince: s.stateSince,
    lastSeen: s.lastSeen,
    lastSeq: s.lastSeq,
    sessionId: s.sessionId,
    status: s.status,
    statusDetail: s.statusDetail,
    beat: null,
    storedStats: s.stats ? Buffer.from(s.stats.buffer, s.stats.byteOffset, s.stats.byteLength).toString('latin1') : null,
    policy: s.policy ? fromBinary(RestartPolicySchema, s.policy) : null,
    dependsOn: s.dependsOn.length > 0 ? s.dependsOn : NONE,
    dependsOnSelector: s.dependsOnSelector ?? '',
    graceUntil: null,
    streams: 0,
  };
}

export function snapshotOf(w: LiveWorker): WorkerSnapshot {
  // Every flush encodes every heartbeating worker: the hand-written encoder
  // writes the same bytes as toBinary at a fraction of the cost.
  const stats = w.beat !== null ? encodeWorkerStats(unpackHeld(w.beat, w.hot)) : w.storedStats !== null ? storedBytes(w.storedStats) : null;
  return {
    workerId: w.workerId,
    lastSeen: w.lastSeen ?? w.registeredAt,
    lastSeq: w.lastSeq,
    sessionId: w.sessionId,
    status: w.status,
    statusDetail: w.statusDetail,
    stats,
  };
}

export function toStored(w: LiveWorker): StoredWorker {
  const snap = snapshotOf(w);
  return {
    workerId: w.workerId,
    labels: w.labels,
    intervalMs: w.intervalMs,
    registeredAt: w.registeredAt,
    state: w.state,
    stateSince: w.stateSince,
    lastSeen: w.lastSeen,
    lastSeq: w.lastSeq,
    sessionId: w.sessionId,
    status: w.status,
    statusDetail: w.statusDetail,
    stats: snap.stats,
    policy: w.policy ? toBinary(RestartPolicySchema, w.policy) : null,
    dependsOn: w.dependsOn,
    dependsOnSelector: w.dependsOnSelector ?? '',
  };
}

/**
 * Takes the shared live state's fields when they are newer than this
 * copy's: another session or a higher seq means a heartbeat this replica
 * has not seen; a differing state was set elsewhere. Returns whether
 * anything changed.
 */
export function applyShared(w: LiveWorker, sh: SharedLive, takeState = true): boolean {
  let changed = false;
  const newerBeat = sh.lastSeen !== null && (sh.sessionId !== w.sessionId ? (w.lastSeen ?? 0) <= sh.lastSeen : sh.lastSeq > w.lastSeq);
  if (newerBeat) {
    w.lastSeq = sh.lastSeq;
    w.sessionId = sh.sessionId;
    w.lastSeen = sh.lastSeen;
    w.status = sh.status;
    changed = true;
  }
  if (takeState && sh.state !== w.state && sh.state !== 0) {
    w.state = sh.state;
    w.stateSince = sh.stateSince;
    changed = true;
  }
  return changed;
}
