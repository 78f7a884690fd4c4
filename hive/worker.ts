import { fromBinary, toBinary } from '@bufbuild/protobuf';
import {
  HealthStatus,
  WorkerState,
  WorkerStatsSchema,
  type Worker,
  type WorkerStats,
} from '../gen/hive/v1/registry_pb.js';
import { RestartPolicySchema, type RestartPolicy } from '../gen/hive/v1/policy_pb.js';
import { msToDuration, msToTimestamp } from '../lib/duration.js';
import type { StoredWorker, WorkerSnapshot } from './store/store.js';
import { encodeWorkerStats } from './stats-codec.js';

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
   * The last heartbeat's stats, merged into objects the hive owns and
   * updates in place (hive/live-stats.ts): no decoded request is retained.
   */
  lastBeat: LiveStats | null;
  /** Stats loaded from the store before the first heartbeat of this run. */
  storedStats: WorkerStats | null;
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

export function statsOf(w: LiveWorker): WorkerStats | undefined {
  const b = w.lastBeat;
  if (!b) return w.storedStats ?? undefined;
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
    dependsOnSelector: s.dependsOnSelector ?? '',
    graceUntil: null,
    streams: 0,
  };
}

export function snapshotOf(w: LiveWorker): WorkerSnapshot {
  // Every flush encodes every heartbeating worker: the hand-written encoder
  // writes the same bytes as toBinary at a fraction of the cost.
  const stats = w.lastBeat ? encodeWorkerStats(w.lastBeat) : w.storedStats ? toBinary(WorkerStatsSchema, w.storedStats) : null;
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
