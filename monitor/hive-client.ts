import { Code, ConnectError, createClient, type Client } from '@connectrpc/connect';
import { createGrpcTransport, Http2SessionManager } from '@connectrpc/connect-node';
import { ControlService, type DefaultPolicy, type Silence } from '../gen/hive/v1/control_pb.js';
import type { HealthCheckSchedule } from '../gen/hive/v1/health_check_pb.js';
import { hiveBaseUrl, type ClientTls } from '../lib/tls-client.js';
import { wideWindowSessionManager } from '../lib/http2-window.js';
import { CommandType, RegistryService, WorkerState, type WatchWorkersResponse, type Worker } from '../gen/hive/v1/registry_pb.js';
import { sanitizeReason } from './reason.js';
import { msToDuration } from '../lib/duration.js';

/** How often a quiet watch reports how far the monitor's view is complete (complete_through). */
export const WATCH_PROGRESS_MS = 50;

// The monitor's side of the hive's API, as the narrow interface its parts
// depend on (tests hand them fakes), and its implementation over gRPC with
// the monitor's token on every call. Every reason is sanitized here, the
// last step before the hive, whoever built it.

export interface CasRef {
  workerId: string;
  observedSeq: bigint;
  observedSessionId: string;
}

export interface HiveApi {
  watch(signal: AbortSignal, labelSelector?: string): AsyncIterable<WatchWorkersResponse>;
  /** Resolves with the worker and whether this call applied the mark (false: it was already STALE for that seq). */
  markStale(ref: CasRef, reason: string): Promise<{ worker: Worker | undefined; applied: boolean }>;
  setWorkerState(ref: CasRef, state: WorkerState.RESTARTING | WorkerState.FAILED, reason: string): Promise<Worker | undefined>;
  sendRestart(workerId: string, reason: string): Promise<{ commandId: string; delivered: boolean }>;
  recordEvent(workerId: string, kind: string, reason: string): Promise<void>;
  listDefaultPolicies(): Promise<DefaultPolicy[]>;
  listSilences(): Promise<Silence[]>;
  listHealthCheckSchedules(): Promise<HealthCheckSchedule[]>;
  /** Starts the run of a schedule; resolves with its check id. */
  startScheduledHealthCheck(scheduleId: string): Promise<string>;
}

export interface HiveApiOptions {
  callTimeoutMs?: number;
  tls?: ClientTls;
  /**
   * The fencing token of this monitor's leadership for each acting call; null
   * while it is not the leader, and then the call is not sent at all.
   */
  fence?: () => bigint | null;
}

export function createHiveApi(addr: string, token: string, opts: HiveApiOptions = {}): HiveApi {
  const baseUrl = hiveBaseUrl(addr, opts.tls);
  const nodeOptions = opts.tls ? { ca: opts.tls.ca, cert: opts.tls.cert, key: opts.tls.key } : undefined;
  // Notice a dead connection without waiting for TCP; 15 s stays above the
  // hive's minimum ping interval (10 s).
  const ping = { pingIntervalMs: 15_000, pingTimeoutMs: 10_000, idleConnectionTimeoutMs: 0 };
  // The watch of every worker is a busy stream: wide HTTP/2 windows keep a
  // saturated hive from making it wait a round trip per 64 KiB. It has a
  // connection of its own: acting calls (a stale mark) never queue behind
  // watch data, in either direction.
  const watchTransport = createGrpcTransport({ baseUrl, sessionManager: wideWindowSessionManager(baseUrl, ping, nodeOptions) });
  const callTransport = createGrpcTransport({ baseUrl, sessionManager: new Http2SessionManager(baseUrl, ping, nodeOptions) });
  const registry: Client<typeof RegistryService> = createClient(RegistryService, watchTransport);
  const control: Client<typeof ControlService> = createClient(ControlService, callTransport);
  const headers = { authorization: `Bearer ${token}` };
  const timeoutMs = opts.callTimeoutMs ?? 10_000;
  const call = { headers, timeoutMs };
  const fenceOf = opts.fence ?? (() => 0n);
  /** The token for an acting call; a monitor that is not the leader does not act. */
  const fencingToken = (): bigint => {
    const f = fenceOf();
    if (f === null) throw new ConnectError('this monitor is not the leader', Code.Unavailable);
    return f;
  };

  return {
    watch(signal, labelSelector = '') {
      // The monitor reads liveness only (state, last_seen, seq, session, interval,
      // labels, policy): the stats of every heartbeat would be wasted bytes,
      // and so would the unchanged rest of a worker that only heartbeated.
      // A quiet registry still says every WATCH_PROGRESS_MS how far the view is complete.
      return registry.watchWorkers({ labelSelector, omitStats: true, heartbeatDeltas: true, progressInterval: msToDuration(WATCH_PROGRESS_MS) }, { headers, signal });
    },
    async markStale(ref, reason) {
      const res = await control.markStale({ ...ref, reason: sanitizeReason(reason), fencingToken: fencingToken() }, call);
      return { worker: res.worker, applied: res.applied };
    },
    async setWorkerState(ref, state, reason) {
      return (await control.setWorkerState({ ...ref, state, reason: sanitizeReason(reason), fencingToken: fencingToken() }, call)).worker;
    },
    async sendRestart(workerId, reason) {
      const res = await control.sendCommand({ workerId, type: CommandType.RESTART, reason: sanitizeReason(reason), fencingToken: fencingToken() }, call);
      return { commandId: res.command?.commandId ?? '', delivered: res.delivered };
    },
    async recordEvent(workerId, kind, reason) {
      await control.recordEvent({ workerId, kind, reason: sanitizeReason(reason), fencingToken: fenceOf() ?? 0n }, call);
    },
    async listDefaultPolicies() {
      return (await control.listDefaultPolicies({}, call)).defaultPolicies;
    },
    async listSilences() {
      return (await control.listSilences({}, call)).silences;
    },
    async listHealthCheckSchedules() {
      return (await control.listHealthCheckSchedules({}, call)).schedules;
    },
    async startScheduledHealthCheck(scheduleId) {
      return (await control.startHealthCheck({ scheduleId }, call)).check?.checkId ?? '';
    },
  };
}
