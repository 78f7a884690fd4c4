import { create } from '@bufbuild/protobuf';
import { Code, ConnectError } from '@connectrpc/connect';
import type { DefaultPolicy, Silence } from '../../gen/hive/v1/control_pb.js';
import type { RestartPolicy } from '../../gen/hive/v1/policy_pb.js';
import {
  WatchWorkersResponseSchema,
  WorkerChangeType,
  WorkerSchema,
  WorkerState,
  type WatchWorkersResponse,
  type Worker,
} from '../../gen/hive/v1/registry_pb.js';
import { checkString } from '../../hive/validate.js';
import { msToDuration, msToTimestamp } from '../../lib/duration.js';
import { createLogger } from '../../lib/logger.js';
import type { CasRef, HiveApi } from '../../monitor/hive-client.js';

// Test doubles for the monitor: Worker messages, and a fake hive that
// follows the real hive's rules closely enough (compare-and-set on seq,
// "not due for N ms") while recording every call.

export const silentLog = createLogger('monitor-test', 'silent');
export const T0 = 1_700_000_000_000;

export interface WorkerInit {
  id: string;
  state?: WorkerState;
  lastSeen?: number | null;
  seq?: number;
  session?: string;
  intervalMs?: number;
  labels?: Record<string, string>;
  policy?: RestartPolicy;
  graceUntil?: number;
  stateSince?: number;
  registeredAt?: number;
  blockedBy?: string[];
}

export function worker(i: WorkerInit): Worker {
  return create(WorkerSchema, {
    workerId: i.id,
    state: i.state ?? WorkerState.HEALTHY,
    labels: i.labels ?? {},
    heartbeatInterval: msToDuration(i.intervalMs ?? 1000),
    lastSeen: i.lastSeen === null ? undefined : msToTimestamp(i.lastSeen ?? T0),
    lastSeq: BigInt(i.seq ?? 1),
    sessionId: i.session ?? 's1',
    registeredAt: msToTimestamp(i.registeredAt ?? T0 - 60_000),
    stateSince: msToTimestamp(i.stateSince ?? i.lastSeen ?? T0),
    graceUntil: i.graceUntil === undefined ? undefined : msToTimestamp(i.graceUntil),
    restartPolicy: i.policy,
    blockedBy: i.blockedBy ?? [],
  });
}

export function watchMsg(changes: Array<[WorkerChangeType, Worker]>, o: { synced?: boolean; hiveTime: number; startedAt?: number; completeThrough?: number }): WatchWorkersResponse {
  return create(WatchWorkersResponseSchema, {
    changes: changes.map(([type, w]) => ({ type, worker: w })),
    synced: o.synced ?? false,
    hiveTime: msToTimestamp(o.hiveTime),
    hiveStartedAt: msToTimestamp(o.startedAt ?? T0 - 3_600_000),
    completeThrough: o.completeThrough === undefined ? undefined : msToTimestamp(o.completeThrough),
  });
}

/** A watch stream the test feeds by hand; end() or fail() closes it. */
export class FakeStream {
  private queue: WatchWorkersResponse[] = [];
  private wake: (() => void) | null = null;
  private done = false;
  private error: unknown = null;

  push(m: WatchWorkersResponse): void {
    this.queue.push(m);
    this.wake?.();
  }
  end(): void {
    this.done = true;
    this.wake?.();
  }
  fail(err: unknown = new ConnectError('hive went away', Code.Unavailable)): void {
    this.error = err;
    this.wake?.();
  }
  async *iterate(signal: AbortSignal): AsyncGenerator<WatchWorkersResponse> {
    const onAbort = () => this.wake?.();
    signal.addEventListener('abort', onAbort);
    try {
      for (;;) {
        while (this.queue.length) yield this.queue.shift()!;
        if (this.error) throw this.error;
        if (this.done || signal.aborted) return;
        await new Promise<void>((r) => (this.wake = r));
        this.wake = null;
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }
}

export interface FakeHiveOptions {
  now: () => number;
}

/** The hive's ControlService rules on an in-memory map, with every call recorded. */
export class FakeHive implements HiveApi {
  readonly workers = new Map<string, Worker>();
  readonly streams: FakeStream[] = [];
  readonly calls: Array<{ method: string; workerId?: string; args: unknown[] }> = [];
  defaults: DefaultPolicy[] = [];
  silences: Silence[] = [];
  /** Makes the next calls of a method fail with this error. */
  failNext = new Map<string, unknown[]>();
  /** Holds markStale calls until released (CAS race tests). */
  gate: Promise<void> | null = null;

  /** When set, every change is also pushed to the open watch stream (as the real hive's hub does). */
  publishing = false;

  constructor(private readonly o: FakeHiveOptions) {}

  put(w: Worker): void {
    this.workers.set(w.workerId, w);
    this.publish(w);
  }

  private publish(w: Worker): void {
    if (!this.publishing || !this.stream) return;
    this.stream.push(watchMsg([[WorkerChangeType.UPDATED, w]], { hiveTime: this.o.now(), startedAt: this.startedAt }));
  }

  /** hive_started_at for messages sent by publish() and snapshot(). */
  startedAt = T0 - 3_600_000;

  /** Sends the current registry as a snapshot on the open stream. */
  snapshot(): void {
    this.stream.push(watchMsg([...this.workers.values()].map((w) => [WorkerChangeType.ADDED, w] as [WorkerChangeType, Worker]), { hiveTime: this.o.now(), synced: true, startedAt: this.startedAt }));
  }

  private failure(method: string): unknown {
    const q = this.failNext.get(method);
    return q?.length ? q.shift() : undefined;
  }

  watch(signal: AbortSignal): AsyncIterable<WatchWorkersResponse> {
    const s = new FakeStream();
    this.streams.push(s);
    return s.iterate(signal);
  }

  get stream(): FakeStream {
    return this.streams[this.streams.length - 1];
  }

  /** A heartbeat reaching the hive: newer seq, last_seen now, the reported state. */
  beat(id: string, o: { state?: WorkerState; session?: string } = {}): Worker {
    const cur = this.workers.get(id)!;
    const next = create(WorkerSchema, {
      ...cur,
      lastSeq: cur.lastSeq + 1n,
      sessionId: o.session ?? cur.sessionId,
      lastSeen: msToTimestamp(this.o.now()),
      state: o.state ?? WorkerState.HEALTHY,
      stateSince: (o.state ?? WorkerState.HEALTHY) === cur.state ? cur.stateSince : msToTimestamp(this.o.now()),
      graceUntil: cur.graceUntil,
    });
    this.put(next);
    return next;
  }

  /** Calls the real hive would refuse with InvalidArgument (their reason breaks its limits). */
  readonly refused: Array<{ method: string; reason: string; why: string }> = [];

  /** The hive's own check of a reason (hive/validate.ts): too long or with control characters is InvalidArgument. */
  private checkReason(method: string, reason: string): void {
    try {
      checkString('reason', reason);
    } catch (err) {
      this.refused.push({ method, reason, why: (err as Error).message });
      throw new ConnectError((err as Error).message, Code.InvalidArgument);
    }
  }

  private cas(ref: CasRef): Worker {
    const w = this.workers.get(ref.workerId);
    if (!w) throw new ConnectError(`worker "${ref.workerId}" is not registered`, Code.NotFound);
    if (w.lastSeq !== ref.observedSeq || (ref.observedSessionId && w.sessionId !== ref.observedSessionId))
      throw new ConnectError(`worker "${w.workerId}" heartbeated since (seq ${w.lastSeq}, observed ${ref.observedSeq})`, Code.FailedPrecondition);
    return w;
  }

  async markStale(ref: CasRef, reason: string) {
    this.calls.push({ method: 'markStale', workerId: ref.workerId, args: [ref, reason] });
    this.checkReason('markStale', reason);
    if (this.gate) await this.gate;
    const f = this.failure('markStale');
    if (f) throw f;
    const w = this.workers.get(ref.workerId);
    if (w?.state === WorkerState.STALE && w.lastSeq === ref.observedSeq) return { worker: w, applied: false };
    const cur = this.cas(ref);
    const last = Number(cur.lastSeen!.seconds) * 1000 + Math.floor(cur.lastSeen!.nanos / 1e6);
    const interval = Number(cur.heartbeatInterval!.seconds) * 1000 + Math.floor(cur.heartbeatInterval!.nanos / 1e6);
    const due = last + 2 * interval;
    const now = this.o.now();
    if (now < due) throw new ConnectError(`worker "${cur.workerId}" is not due to be stale for ${due - now} ms`, Code.FailedPrecondition);
    const next = create(WorkerSchema, { ...cur, state: WorkerState.STALE, stateSince: msToTimestamp(now) });
    this.put(next);
    return { worker: next, applied: true };
  }

  async setWorkerState(ref: CasRef, state: WorkerState.RESTARTING | WorkerState.FAILED, reason: string) {
    this.calls.push({ method: 'setWorkerState', workerId: ref.workerId, args: [ref, state, reason] });
    this.checkReason('setWorkerState', reason);
    const f = this.failure('setWorkerState');
    if (f) throw f;
    const cur = this.workers.get(ref.workerId);
    if (cur?.state === WorkerState.LEFT) throw new ConnectError(`worker "${ref.workerId}" left cleanly; it is not restarted`, Code.FailedPrecondition);
    if (cur?.state === state) return cur;
    this.cas(ref);
    const next = create(WorkerSchema, { ...cur!, state, stateSince: msToTimestamp(this.o.now()) });
    this.put(next);
    return next;
  }

  async sendRestart(workerId: string, reason: string) {
    this.calls.push({ method: 'sendRestart', workerId, args: [reason] });
    this.checkReason('sendRestart', reason);
    const f = this.failure('sendRestart');
    if (f) throw f;
    return { commandId: `cmd_${this.calls.length}`, delivered: true };
  }

  async recordEvent(workerId: string, kind: string, reason: string) {
    this.calls.push({ method: 'recordEvent', workerId, args: [kind, reason] });
    this.checkReason('recordEvent', reason);
  }

  async listDefaultPolicies() {
    this.calls.push({ method: 'listDefaultPolicies', args: [] });
    return this.defaults;
  }

  async listSilences() {
    this.calls.push({ method: 'listSilences', args: [] });
    return this.silences;
  }

  async listHealthCheckSchedules() {
    this.calls.push({ method: 'listHealthCheckSchedules', args: [] });
    return [];
  }

  async startScheduledHealthCheck(scheduleId: string) {
    this.calls.push({ method: 'startScheduledHealthCheck', args: [scheduleId] });
    return `chk_${this.calls.length}`;
  }

  called(method: string, workerId?: string) {
    return this.calls.filter((c) => c.method === method && (workerId === undefined || c.workerId === workerId));
  }

  events(workerId?: string): string[] {
    return this.called('recordEvent', workerId).map((c) => c.args[0] as string);
  }
}
