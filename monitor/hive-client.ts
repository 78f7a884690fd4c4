import { Code, ConnectError, createClient, type Client } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import { ControlService, type DefaultPolicy, type Silence } from '../gen/hive/v1/control_pb.js';
import { CommandType, RegistryService, WorkerState, type WatchWorkersResponse, type Worker } from '../gen/hive/v1/registry_pb.js';

// The monitor's side of the hive's API, as the narrow interface its parts
// depend on (tests hand them fakes), and its implementation over gRPC with
// the monitor's token on every call.

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
}

export interface HiveApiOptions {
  callTimeoutMs?: number;
  /**
   * The fencing token of this monitor's leadership for each acting call; null
   * while it is not the leader, and then the call is not sent at all.
   */
  fence?: () => bigint | null;
}

export function createHiveApi(addr: string, token: string, opts: HiveApiOptions = {}): HiveApi {
  const baseUrl = /^https?:\/\//.test(addr) ? addr : `http://${addr}`;
  const transport = createGrpcTransport({
    baseUrl,
    // Notice a dead connection without waiting for TCP; 15 s stays above
    // the hive's minimum ping interval (10 s).
    pingIntervalMs: 15_000,
    pingTimeoutMs: 10_000,
    idleConnectionTimeoutMs: 0,
  });
  const registry: Client<typeof RegistryService> = createClient(RegistryService, transport);
  const control: Client<typeof ControlService> = createClient(ControlService, transport);
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
      return registry.watchWorkers({ labelSelector }, { headers, signal });
    },
    async markStale(ref, reason) {
      const res = await control.markStale({ ...ref, reason, fencingToken: fencingToken() }, call);
      return { worker: res.worker, applied: res.applied };
    },
    async setWorkerState(ref, state, reason) {
      return (await control.setWorkerState({ ...ref, state, reason, fencingToken: fencingToken() }, call)).worker;
    },
    async sendRestart(workerId, reason) {
      const res = await control.sendCommand({ workerId, type: CommandType.RESTART, reason, fencingToken: fencingToken() }, call);
      return { commandId: res.command?.commandId ?? '', delivered: res.delivered };
    },
    async recordEvent(workerId, kind, reason) {
      await control.recordEvent({ workerId, kind, reason: reason.slice(0, 256), fencingToken: fenceOf() ?? 0n }, call);
    },
    async listDefaultPolicies() {
      return (await control.listDefaultPolicies({}, call)).defaultPolicies;
    },
    async listSilences() {
      return (await control.listSilences({}, call)).silences;
    },
  };
}
