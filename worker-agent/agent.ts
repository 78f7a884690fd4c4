import { Code, ConnectError } from '@connectrpc/connect';
import { create, toBinary, type MessageInitShape } from '@bufbuild/protobuf';
import { randomBytes } from 'node:crypto';
import {
  CheckReportSchema,
  CommandResultSchema,
  CommandType,
  HeartbeatRequestSchema,
  type CheckReport,
  HeartbeatStreamRequestSchema,
  type Command,
  type CommandResult,
  type HeartbeatStreamRequest,
  type HeartbeatStreamResponse,
} from '../gen/hive/v1/registry_pb.js';
import type { Clock } from '../lib/clock.js';
import { fullJitterBackoffMs } from '../lib/backoff.js';
import { durationToMs, msToDuration } from '../lib/duration.js';
import type { Logger } from '../lib/logger.js';
import type { CheckOutcome } from './check.js';
import { createHeartbeatEncoder } from './compact.js';
import type { RegistryClient } from './hive-client.js';
import { readTokenFile, writeTokenFile } from './token-file.js';
import { boundText } from './wire-text.js';

// The agent's connection to the hive: join once, keep the worker token,
// heartbeat over one long-lived stream, carry out commands, reconnect with
// full-jitter backoff, and leave cleanly on shutdown. What goes into a
// heartbeat (collectors, health) comes from `sample`.

export type Sample = Omit<MessageInitShape<typeof HeartbeatRequestSchema>, 'workerId' | 'sessionId' | 'seq' | 'commandResults' | '$typeName'>;

export interface AgentDeps {
  client: RegistryClient;
  clock: Clock;
  log: Logger;
  workerId: string;
  intervalMs: number;
  labels: Record<string, string>;
  /** Declared at registration: worker ids, and a label selector, this worker depends on. */
  dependsOn?: string[];
  dependsOnSelector?: string;
  joinToken?: string;
  tokenFile: string;
  /** Collects stats and evaluates health for one heartbeat. */
  sample: () => Promise<Sample>;
  /** Runs the probe and collectors now, for a CHECK command. */
  check?: () => Promise<CheckOutcome>;
  /** Carries out a command from the hive. */
  onCommand?: (command: Command) => Promise<{ success: boolean; message: string }>;
  random?: () => number;
  /** Jitter of each interval, as a fraction (default 0.1 = ±10%). */
  jitter?: number;
  backoffBaseMs?: number;
  backoffCapMs?: number;
  events?: {
    sent?: () => void;
    failed?: (reason: string) => void;
    reconnect?: () => void;
    acked?: () => void;
    /** The encoded size of each heartbeat sent (the HeartbeatStreamRequest), by form. */
    encoded?: (form: 'full' | 'compact', bytes: number) => void;
  };
}

export interface Agent {
  start(): void;
  /** Stops heartbeating and, unless told otherwise, sends Leave. Idempotent. */
  stop(opts?: { leave?: boolean; reason?: string }): Promise<void>;
  /** Sends the next heartbeat now (used by the CHECK command and tests). */
  beatNow(): void;
  readonly state: { connected: boolean; sessionId: string; seq: bigint; intervalMs: number; acked: number; rttMs: number | null };
}

/** Errors that mean our token no longer names us: get a new one with the join token. */
const REJOIN = new Set([Code.Unauthenticated, Code.NotFound, Code.PermissionDenied]);

export function createAgent(deps: AgentDeps): Agent {
  const { client, clock, log } = deps;
  const random = deps.random ?? Math.random;
  const jitter = deps.jitter ?? 0.1;
  const state = { connected: false, sessionId: newSessionId(), seq: 0n, intervalMs: deps.intervalMs, acked: 0, rttMs: null as number | null };
  const startedAt = clock.now();
  // Send times of the heartbeats not yet acknowledged, for the round trip a check reports.
  const sentAt = new Map<bigint, number>();
  const checkReports: CheckReport[] = [];
  const stopCtl = new AbortController();
  let token: string | null = null;
  let loop: Promise<void> | null = null;
  let stopping: Promise<void> | null = null;
  let wakeCtl = new AbortController();
  let firstConnect = true;
  const results: CommandResult[] = [];
  const encoder = createHeartbeatEncoder();

  const auth = (t: string) => ({ authorization: `Bearer ${t}` });

  async function obtainToken(): Promise<string> {
    const stored = await readTokenFile(deps.tokenFile);
    if (stored) return stored;
    if (!deps.joinToken) throw new Error(`no worker token in ${deps.tokenFile} and no join token to register with`);
    const res = await client.registerWorker(
      { workerId: deps.workerId, labels: deps.labels, heartbeatInterval: msToDuration(deps.intervalMs), dependsOn: deps.dependsOn ?? [], dependsOnSelector: deps.dependsOnSelector ?? '' },
      { headers: auth(deps.joinToken), timeoutMs: 10_000, signal: stopCtl.signal },
    );
    await writeTokenFile(deps.tokenFile, res.workerToken);
    log.info({ tokenFile: deps.tokenFile }, 'joined the hive; worker token stored');
    return res.workerToken;
  }

  async function sleep(ms: number, signal: AbortSignal): Promise<void> {
    try {
      await clock.sleep(ms, signal);
    } catch {
      /* woken early or stopping */
    }
  }

  function nextDelay(): number {
    return Math.max(1, state.intervalMs * (1 + (random() * 2 - 1) * jitter));
  }

  async function* beats(signal: AbortSignal): AsyncGenerator<HeartbeatStreamRequest> {
    // The first beat of a process starts at a random phase so a fleet
    // started together does not beat in lockstep; after a reconnect the
    // hive should hear from us at once.
    if (firstConnect) {
      firstConnect = false;
      await sleep(random() * state.intervalMs, AbortSignal.any([signal, wakeCtl.signal]));
    }
    while (!signal.aborted) {
      let sample: Sample;
      try {
        sample = await deps.sample();
      } catch (err) {
        // A broken sampler must not stop the heartbeat: report it instead.
        log.warn({ err }, 'sampling failed');
        sample = { status: 3, statusDetail: boundText(`agent sampling failed: ${(err as Error).message}`) };
      }
      if (signal.aborted) return;
      state.seq += 1n;
      const heartbeat = encoder.encode({
        ...sample,
        workerId: deps.workerId,
        sessionId: state.sessionId,
        seq: state.seq,
        commandResults: results.splice(0),
        checkReports: checkReports.splice(0),
      });
      sentAt.set(state.seq, clock.now());
      if (sentAt.size > 16) sentAt.delete(sentAt.keys().next().value!);
      const req: HeartbeatStreamRequest = { $typeName: 'hive.v1.HeartbeatStreamRequest', heartbeat };
      // The same encoder the transport uses, so this is the size on the wire (less gRPC's 5-byte frame header).
      if (deps.events?.encoded) deps.events.encoded(heartbeat.compact ? 'compact' : 'full', toBinary(HeartbeatStreamRequestSchema, req).length);
      yield req;
      deps.events?.sent?.();
      if (wakeCtl.signal.aborted) wakeCtl = new AbortController();
      await sleep(nextDelay(), AbortSignal.any([signal, wakeCtl.signal]));
      if (wakeCtl.signal.aborted) wakeCtl = new AbortController();
    }
  }

  function handle(res: HeartbeatStreamResponse): void {
    const hb = res.heartbeat;
    if (!hb) return;
    if (hb.ackSeq > 0n) {
      state.acked++;
      const at = sentAt.get(hb.ackSeq);
      if (at !== undefined) {
        state.rttMs = clock.now() - at;
        sentAt.delete(hb.ackSeq);
      }
      deps.events?.acked?.();
    }
    if (hb.inventoryRequired) encoder.required(hb.ackSeq);
    const interval = durationToMs(hb.heartbeatInterval);
    if (interval && interval !== state.intervalMs) {
      log.info({ from: state.intervalMs, to: interval }, 'heartbeat interval changed by the hive');
      state.intervalMs = interval;
    }
    for (const cmd of hb.commands) void runCommand(cmd);
  }

  async function runCommand(cmd: Command): Promise<void> {
    log.info({ commandId: cmd.commandId, type: CommandType[cmd.type], reason: cmd.reason }, 'command received');
    let outcome: { success: boolean; message: string };
    if (cmd.type === CommandType.CHECK) {
      outcome = await runCheck(cmd);
    } else if (deps.onCommand) {
      try {
        outcome = await deps.onCommand(cmd);
      } catch (err) {
        outcome = { success: false, message: (err as Error).message };
      }
    } else {
      outcome = { success: false, message: `no handler for ${CommandType[cmd.type]} (agent not supervising a process)` };
    }
    // A check's answer is its report; a command result per check would only fill the event log.
    if (cmd.type !== CommandType.CHECK) results.push(create(CommandResultSchema, { commandId: cmd.commandId, success: outcome.success, message: boundText(outcome.message) }));
    log.info({ commandId: cmd.commandId, ...outcome }, 'command done');
    beatNow();
  }

  async function runCheck(cmd: Command): Promise<{ success: boolean; message: string }> {
    let found: CheckOutcome | undefined;
    let message = 'checked';
    try {
      found = await deps.check?.();
    } catch (err) {
      message = `check failed: ${(err as Error).message}`;
    }
    checkReports.push(
      create(CheckReportSchema, {
        ...found,
        commandId: cmd.commandId,
        probeDetail: (found?.probeDetail ?? message).slice(0, 256),
        hiveRttSeconds: state.rttMs === null ? undefined : state.rttMs / 1000,
        uptimeSeconds: Math.max(0, clock.now() - startedAt) / 1000,
      }),
    );
    if (checkReports.length > 8) checkReports.shift();
    return { success: found !== undefined || !deps.check, message };
  }

  function beatNow(): void {
    wakeCtl.abort();
  }

  async function streamOnce(t: string): Promise<boolean> {
    const ctl = new AbortController();
    const signal = AbortSignal.any([stopCtl.signal, ctl.signal]);
    let acked = false;
    try {
      const responses = client.heartbeatStream(beats(signal), { headers: auth(t), signal });
      for await (const res of responses) {
        if (!state.connected) log.info({ sessionId: state.sessionId }, 'heartbeat stream open');
        state.connected = true;
        acked = true;
        handle(res);
      }
    } finally {
      state.connected = false;
      ctl.abort();
    }
    return acked;
  }

  async function run(): Promise<void> {
    let attempt = 0;
    while (!stopCtl.signal.aborted) {
      try {
        token ??= await obtainToken();
        const acked = await streamOnce(token);
        if (acked) attempt = 0;
        if (stopCtl.signal.aborted) break;
        log.warn('heartbeat stream ended by the hive; reconnecting');
      } catch (err) {
        if (stopCtl.signal.aborted) break;
        const ce = ConnectError.from(err);
        deps.events?.failed?.(Code[ce.code] ?? 'unknown');
        if (ce.code === Code.FailedPrecondition) {
          // The hive saw a newer seq for this session (e.g. our clock of
          // sequence numbers was lost): start a new session.
          state.sessionId = newSessionId();
          state.seq = 0n;
          encoder.reset();
          log.warn({ err: ce.rawMessage }, 'heartbeat rejected; starting a new session');
        } else if (REJOIN.has(ce.code) && deps.joinToken) {
          log.warn({ code: Code[ce.code], err: ce.rawMessage }, 'worker token rejected; joining again');
          token = null;
          await writeTokenFile(deps.tokenFile, '').catch(() => undefined);
        } else if (ce.code === Code.AlreadyExists) {
          log.error({ workerId: deps.workerId, tokenFile: deps.tokenFile }, 'worker id is taken by another token; restore the token file or ask an admin to rotate it');
        } else {
          log.warn({ code: Code[ce.code], err: ce.rawMessage }, 'hive unreachable; retrying');
        }
      }
      deps.events?.reconnect?.();
      const delay = fullJitterBackoffMs(attempt++, deps.backoffBaseMs ?? 500, deps.backoffCapMs ?? 30_000, random);
      await sleep(delay, stopCtl.signal);
    }
  }

  return {
    state,
    beatNow,
    start() {
      loop ??= run();
    },
    stop(opts = {}) {
      stopping ??= (async () => {
        stopCtl.abort();
        await loop;
        if (opts.leave !== false && token) {
          try {
            await client.leave({ workerId: deps.workerId, reason: opts.reason ?? 'agent stopped' }, { headers: auth(token), timeoutMs: 3000 });
            log.info('left the hive');
          } catch (err) {
            log.warn({ err: ConnectError.from(err).message }, 'leave failed');
          }
        }
      })();
      return stopping;
    },
  };
}

function newSessionId(): string {
  return randomBytes(8).toString('hex');
}
