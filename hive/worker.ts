import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import {
  HealthStatus,
  WorkerSchema,
  WorkerState,
  WorkerStatsSchema,
  type HeartbeatRequest,
  type Worker,
  type WorkerStats,
} from '../gen/hive/v1/registry_pb.js';
import { RestartPolicySchema, type RestartPolicy } from '../gen/hive/v1/policy_pb.js';
import { msToDuration, msToTimestamp } from '../lib/duration.js';
import { decodeBeat } from './live-messages.js';
import type { SharedLive } from './live-state.js';
import type { StoredWorker, WorkerSnapshot } from './store/store.js';

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
  /** The last heartbeat's stats, kept as the request that carried them. */
  lastBeat: HeartbeatRequest | null;
  /**
   * A newer heartbeat heard from another replica, still encoded (protobuf,
   * base64): decoded on first read, as most are superseded unread.
   */
  encodedBeat?: string | null;
  /** Stats loaded from the store before the first heartbeat of this run. */
  storedStats: WorkerStats | null;
  policy: RestartPolicy | null;
  dependsOn: string[];
  graceUntil: number | null;
  /** Open heartbeat streams on this hive. */
  streams: number;
}

export const REPORTED_STATE: Record<number, WorkerState> = {
  [HealthStatus.UNSPECIFIED]: WorkerState.HEALTHY,
  [HealthStatus.HEALTHY]: WorkerState.HEALTHY,
  [HealthStatus.DEGRADED]: WorkerState.DEGRADED,
  [HealthStatus.UNHEALTHY]: WorkerState.UNHEALTHY,
};

/** The last heartbeat, decoding one heard from another replica on first read. */
export function lastBeatOf(w: LiveWorker): HeartbeatRequest | null {
  if (w.encodedBeat) {
    try {
      w.lastBeat = decodeBeat(w.encodedBeat);
    } catch {
      // Not decodable (another version?): the previous stats stand.
    }
    w.encodedBeat = null;
  }
  return w.lastBeat;
}

export function statsOf(w: LiveWorker): WorkerStats | undefined {
  const b = lastBeatOf(w);
  if (!b) return w.storedStats ?? undefined;
  return create(WorkerStatsSchema, {
    gpus: b.gpus,
    memoryUsedBytes: b.memoryUsedBytes,
    memoryTotalBytes: b.memoryTotalBytes,
    disks: b.disks,
    load1: b.load1,
    collectors: b.collectors,
    probeLatencyP50Seconds: b.probeLatencyP50Seconds,
    probeLatencyP95Seconds: b.probeLatencyP95Seconds,
    probeLatencyP99Seconds: b.probeLatencyP99Seconds,
  });
}

export function toWorkerMessage(w: LiveWorker): Worker {
  return create(WorkerSchema, {
    workerId: w.workerId,
    state: w.state,
    labels: w.labels,
    heartbeatInterval: msToDuration(w.intervalMs),
    lastSeen: w.lastSeen === null ? undefined : msToTimestamp(w.lastSeen),
    lastSeq: w.lastSeq,
    sessionId: w.sessionId,
    status: w.status,
    statusDetail: w.statusDetail,
    stats: statsOf(w),
    registeredAt: msToTimestamp(w.registeredAt),
    stateSince: msToTimestamp(w.stateSince),
    graceUntil: w.graceUntil === null ? undefined : msToTimestamp(w.graceUntil),
    restartPolicy: w.policy ?? undefined,
    connected: w.streams > 0,
    dependsOn: w.dependsOn,
  });
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
    lastBeat: null,
    storedStats: s.stats ? fromBinary(WorkerStatsSchema, s.stats) : null,
    policy: s.policy ? fromBinary(RestartPolicySchema, s.policy) : null,
    dependsOn: s.dependsOn,
    graceUntil: null,
    streams: 0,
  };
}

export function snapshotOf(w: LiveWorker): WorkerSnapshot {
  const stats = statsOf(w);
  return {
    workerId: w.workerId,
    lastSeen: w.lastSeen ?? w.registeredAt,
    lastSeq: w.lastSeq,
    sessionId: w.sessionId,
    status: w.status,
    statusDetail: w.statusDetail,
    stats: stats ? toBinary(WorkerStatsSchema, stats) : null,
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
