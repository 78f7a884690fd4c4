import { create, fromBinary, fromJsonString, toBinary, toJsonString, type DescMessage, type DescMethod, type MessageInitShape } from '@bufbuild/protobuf';
import { DurationSchema } from '@bufbuild/protobuf/wkt';
import { createClient } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import fc from 'fast-check';
import type * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ControlService,
  ListDefaultPoliciesResponseSchema,
  ListSilencesResponseSchema,
} from '../../gen/hive/v1/control_pb.js';
import { RestartAction, RestartMode } from '../../gen/hive/v1/policy_pb.js';
import {
  CommandType,
  HeartbeatRequestSchema,
  ListEventsResponseSchema,
  ListTokensResponseSchema,
  ListWorkersResponseSchema,
  RegistryService,
  TokenScope,
  WorkerState,
} from '../../gen/hive/v1/registry_pb.js';
import { msToDuration } from '../../lib/duration.js';
import { report } from '../support/figures.js';
import { dropSchema, PG_URL, uniqueSchema } from '../support/pg.js';
import { startHiveProc, tempDir, type HiveProc } from '../support/procs.js';
import { bidiCode, pool, rawClient, serverStreamCode, unaryCode } from './support/raw-grpc.js';

// Hostile input against a real hive process over real sockets: for every
// RPC of RegistryService and ControlService, HIVE_FUZZ_RUNS requests
// (300 in the default `npm test`, 1,000 in `npm run test:faults`, 10,000 in
// test:faults:long) that must
// all be refused: random and mutated protobuf
// bytes, oversized messages, huge strings, NaN/Infinity/negative numbers,
// too many GPUs/disks/labels, unicode and control characters in ids and
// labels, seq replays, stolen, revoked, unknown and missing tokens; and on
// the Connect port wrong content types and broken bodies. Each request has
// one expected code, derived from the documented rules (not from the
// hive's code); the registry snapshot must be identical afterwards, the
// process must still be there, and no secret may appear in its logs.

const RUNS = Number(process.env.HIVE_FUZZ_RUNS || 300);
const SEED = Number(process.env.HIVE_FUZZ_SEED || Math.floor(Math.random() * 2 ** 31));
const WIDTH = 64;

const S = {
  OK: 0,
  INVALID_ARGUMENT: 3,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  UNAUTHENTICATED: 16,
} as const;
const CODE_NAME = Object.fromEntries(Object.entries(S).map(([k, v]) => [v, k]));

// The documented rules, restated here so the oracle does not borrow the hive's code.
const WORKER_ID_RULE = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;
const LABEL_KEY_RULE = /^[A-Za-z0-9]([A-Za-z0-9._/-]{0,126})?$/;
const MAX_MESSAGE = 64 * 1024;
const GRPC_RECEIVE_MAX = 4 * MAX_MESSAGE;

const ADMIN = 'hive_adm_fuzz-admin-secret-0123456789abcdefghij';
const JOIN = 'hive_join_fuzz-join-secret-0123456789abcdefghij';
const SEQ_A = 1000n;

interface Case {
  kind: string;
  token?: string;
  /** Unary and server-streaming: the request; bidi: the stream's messages. */
  bytes: Uint8Array[];
  expect: number;
}

type Tokens = { admin: string; join: string; read: string; monitor: string; a: string; b: string; revoked: string };

// --- arbitraries --------------------------------------------------------

const CONTROL_CHARS = ['\u0000', '\u0001', '\u0007', '\b', '\t', '\n', '\r', '\u001b', '\u007f', '\u0085', '\u009f'];
const controlText = fc.tuple(fc.string({ maxLength: 20 }), fc.constantFrom(...CONTROL_CHARS), fc.string({ maxLength: 20 })).map(([a, c, b]) => a + c + b);
const longText = fc.tuple(fc.constantFrom('x', 'é', '汉', '🐝', '\u202e'), fc.integer({ min: 257, max: 4000 })).map(([c, n]) => c.repeat(n));
/** Text that breaks the 256-byte / no-control-character rule. */
const badText = fc.oneof(controlText, longText);
const anyText = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 80 }),
  fc.string({ unit: 'grapheme', maxLength: 80 }),
  fc.constantFrom('', '../../etc/passwd', '$(reboot)', '; rm -rf / #', '%s%n%x', '\ud800', '\u202egpu', 'fz-a\u0000', ' fz-a', 'fz-a '),
  longText,
);
const badWorkerId = anyText.filter((s) => !WORKER_ID_RULE.test(s));
const ghostId = fc.integer({ min: 0, max: 1e9 }).map((n) => `fz-ghost-${n}`);
const badNumber = fc.constantFrom(NaN, Infinity, -Infinity, -1, -1e-9, -1e300, 1e300);
// Random secrets: each one is unique, so finding it in a log line means it leaked.
const fakeToken = fc.tuple(fc.constantFrom('hive_wkr_', 'hive_adm_', 'hive_join_', ''), fc.uint8Array({ minLength: 24, maxLength: 48 }), fc.boolean()).map(
  ([prefix, b, hex]) => `${prefix}${Buffer.from(b).toString(hex ? 'hex' : 'base64url')}`,
);
const bin = <D extends DescMessage>(schema: D, init: MessageInitShape<D>) => toBinary(schema, create(schema, init));
const decodes = (schema: DescMessage, bytes: Uint8Array) => {
  try {
    fromBinary(schema, bytes);
    return true;
  } catch {
    return false;
  }
};
const badPageToken = fc.string({ minLength: 1, maxLength: 60 }).filter((t) => !/^[we]:/.test(Buffer.from(t, 'base64url').toString()));
const badSelector = fc.oneof(
  fc.string({ maxLength: 20 }).map((s) => `@${s.replace(/[,=!\s]/g, '')}`),
  fc.constantFrom('=x', '!=', 'a b', 'a,,=b', '@', '!!x', 'k=v,@'),
);
const policyBad = fc.oneof(
  fc.record({ mode: fc.integer({ min: 5, max: 1000 }) }),
  fc.record({ mode: fc.constant(RestartMode.ON_STALE), action: fc.constant(RestartAction.EXEC), execArgv: fc.constant<string[]>([]) }),
  fc.record({ mode: fc.constant(RestartMode.ON_STALE), action: fc.constant(RestartAction.WEBHOOK), webhookUrl: fc.constantFrom('ftp://x', 'not a url', 'file:///etc/passwd', 'javascript:alert(1)') }),
  fc.record({ mode: fc.constant(RestartMode.ON_STALE), action: fc.constant(RestartAction.EXEC), execArgv: fc.constantFrom(['{worker_id}'], ['echo', '{hostname}'], ['echo', 'a\u0000b'], ['sh', '-c', '{nope}']) }),
  fc.record({ maxAttempts: fc.integer({ min: 1001, max: 2 ** 31 - 1 }) }),
);
const interval = (ms: number) => msToDuration(ms);

// --- requests that must be refused, per RPC --------------------------------

/** What every RPC gets: random and mutated bytes, oversized messages and bad credentials. */
function genericCases(method: DescMethod, valid: () => Uint8Array, t: Tokens, wrongScope: string): fc.Arbitrary<Case> {
  const bidi = method.methodKind === 'bidi_streaming';
  // Unary and server streaming decode the request before the guard runs;
  // a stream is authenticated when it opens, before any message is read.
  const noToken = (bytes: Uint8Array, kind: string): Case => ({
    kind,
    bytes: [bytes],
    expect: bidi ? S.UNAUTHENTICATED : decodes(method.input, bytes) ? S.UNAUTHENTICATED : S.INVALID_ARGUMENT,
  });
  return fc.oneof(
    { weight: 3, arbitrary: fc.uint8Array({ maxLength: 512 }).map((b) => noToken(b, 'random bytes')) },
    {
      weight: 3,
      arbitrary: fc.tuple(fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }), fc.nat({ max: 16 })).map(([edits, cut]) => {
        const b = Uint8Array.from(valid());
        for (const [at, v] of edits) if (b.length) b[at % b.length] = v;
        return noToken(cut && b.length > cut ? b.subarray(0, b.length - cut) : b, 'mutated bytes');
      }),
    },
    {
      weight: 1,
      arbitrary: fc.integer({ min: MAX_MESSAGE + 1, max: GRPC_RECEIVE_MAX + 4096 }).map((n) => {
        // A length-delimited field 15 holding n bytes: well-formed but too big.
        const header = [0x7a, ...varint(n)];
        const bytes = new Uint8Array(header.length + n);
        bytes.set(header);
        bytes.fill(0x61, header.length);
        const tooBig = bytes.length > GRPC_RECEIVE_MAX ? S.RESOURCE_EXHAUSTED : S.INVALID_ARGUMENT;
        // A stream is authenticated before its first message arrives: send this one with the stream's own token.
        return (bidi ? { kind: 'oversized', token: t.a, bytes: [bytes], expect: tooBig } : { kind: 'oversized', bytes: [bytes], expect: tooBig }) as Case;
      }),
    },
    { weight: 2, arbitrary: fc.constant(null).map(() => ({ kind: 'missing auth', bytes: [valid()], expect: S.UNAUTHENTICATED })) },
    { weight: 2, arbitrary: fakeToken.map((tok) => ({ kind: 'unknown token', token: tok, bytes: [valid()], expect: S.UNAUTHENTICATED })) },
    { weight: 2, arbitrary: fc.constant(null).map(() => ({ kind: 'revoked token', token: t.revoked, bytes: [valid()], expect: S.UNAUTHENTICATED })) },
    { weight: 2, arbitrary: fc.constant(null).map(() => ({ kind: 'wrong scope', token: wrongScope, bytes: [valid()], expect: S.PERMISSION_DENIED })) },
  );
}

function varint(n: number): number[] {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  out.push(n);
  return out;
}

const hbInit = (workerId: string, extra: MessageInitShape<typeof HeartbeatRequestSchema> = {}): MessageInitShape<typeof HeartbeatRequestSchema> => ({
  workerId,
  sessionId: 's-fuzz',
  seq: 1_000_000n,
  status: 1,
  memoryTotalBytes: 1000n,
  memoryUsedBytes: 10n,
  ...extra,
});

/** Heartbeats from worker A's own token that break one rule each: InvalidArgument, FailedPrecondition or PermissionDenied. */
function heartbeatDefects(): fc.Arbitrary<{ kind: string; hb: MessageInitShape<typeof HeartbeatRequestSchema>; expect: number }> {
  const inv = (kind: string, arb: fc.Arbitrary<MessageInitShape<typeof HeartbeatRequestSchema>>) => arb.map((hb) => ({ kind, hb, expect: S.INVALID_ARGUMENT }));
  const gpu = { index: 0, uuid: 'GPU-1', name: 'H200', memoryTotalBytes: 100n, memoryUsedBytes: 1n, utilization: 0.5, temperatureCelsius: 40 };
  return fc.oneof(
    inv('worker id', badWorkerId.map((id) => hbInit(id))),
    inv('load1', badNumber.filter((n) => !(n >= 0 && n <= 1e6)).map((n) => hbInit('fz-a', { load1: n }))),
    inv('probe latency', fc.tuple(badNumber, fc.constantFrom('probeLatencyP50Seconds', 'probeLatencyP95Seconds', 'probeLatencyP99Seconds')).map(([n, f]) => hbInit('fz-a', { [f]: n }))),
    inv('too many gpus', fc.integer({ min: 65, max: 200 }).map((n) => hbInit('fz-a', { gpus: Array.from({ length: n }, (_, i) => ({ ...gpu, index: i })) }))),
    inv('too many disks', fc.integer({ min: 33, max: 100 }).map((n) => hbInit('fz-a', { disks: Array.from({ length: n }, () => ({ path: '/', totalBytes: 10n, freeBytes: 1n })) }))),
    inv('too many collectors', fc.integer({ min: 33, max: 60 }).map((n) => hbInit('fz-a', { collectors: Array.from({ length: n }, () => ({ name: 'gpu', success: true })) }))),
    inv('too many command results', fc.integer({ min: 33, max: 60 }).map((n) => hbInit('fz-a', { commandResults: Array.from({ length: n }, () => ({ commandId: 'c', success: true })) }))),
    inv('gpu utilization', badNumber.map((u) => hbInit('fz-a', { gpus: [{ ...gpu, utilization: u }] }))),
    inv('gpu temperature', fc.constantFrom(NaN, Infinity, -274, -1e9, 1e9).map((c) => hbInit('fz-a', { gpus: [{ ...gpu, temperatureCelsius: c }] }))),
    inv('gpu strings', fc.tuple(badText, fc.boolean()).map(([s, u]) => hbInit('fz-a', { gpus: [{ ...gpu, ...(u ? { uuid: s } : { name: s }) }] }))),
    inv('gpu memory', fc.bigInt({ min: 101n, max: 2n ** 64n - 1n }).map((used) => hbInit('fz-a', { gpus: [{ ...gpu, memoryUsedBytes: used }] }))),
    inv('memory', fc.bigInt({ min: 1001n, max: 2n ** 64n - 1n }).map((used) => hbInit('fz-a', { memoryUsedBytes: used }))),
    inv('disk', fc.bigInt({ min: 11n, max: 2n ** 64n - 1n }).map((free) => hbInit('fz-a', { disks: [{ path: '/', totalBytes: 10n, freeBytes: free }] }))),
    inv('disk path', badText.map((p) => hbInit('fz-a', { disks: [{ path: p, totalBytes: 10n, freeBytes: 1n }] }))),
    inv('session id', badText.map((s) => hbInit('fz-a', { sessionId: s }))),
    inv('status detail', badText.map((s) => hbInit('fz-a', { statusDetail: s }))),
    inv('status enum', fc.integer({ min: 4, max: 2 ** 31 - 1 }).map((n) => hbInit('fz-a', { status: n }))),
    inv('collector error', badText.map((s) => hbInit('fz-a', { collectors: [{ name: 'gpu', success: false, error: s }] }))),
    inv('command result message', badText.map((s) => hbInit('fz-a', { commandResults: [{ commandId: 'c', success: true, message: s }] }))),
    fc.bigInt({ min: 0n, max: SEQ_A }).map((seq) => ({ kind: 'seq replay', hb: hbInit('fz-a', { sessionId: 's-a', seq, status: 3 }), expect: S.FAILED_PRECONDITION })),
    fc.constant(null).map(() => ({ kind: 'stolen token', hb: hbInit('fz-b', { status: 3 }), expect: S.PERMISSION_DENIED })),
    ghostId.map((id) => ({ kind: 'another worker', hb: hbInit(id), expect: S.PERMISSION_DENIED })),
  );
}

function rpcCases(t: Tokens): Record<string, { method: DescMethod; cases: fc.Arbitrary<Case> }> {
  const out: Record<string, { method: DescMethod; cases: fc.Arbitrary<Case> }> = {};
  const R = RegistryService.method;
  const C = ControlService.method;
  const add = <D extends DescMessage>(
    method: DescMethod & { input: D },
    valid: MessageInitShape<D>,
    wrongScope: string,
    specific: Array<fc.Arbitrary<Omit<Case, 'bytes'> & { msg: MessageInitShape<D> }>>,
  ) => {
    const validBytes = () => bin(method.input, valid);
    const spec = specific.map((a) => a.map(({ msg, ...c }) => ({ ...c, bytes: [bin(method.input, msg)] })));
    out[method.name] = {
      method,
      cases: spec.length ? fc.oneof({ weight: 1, arbitrary: genericCases(method, validBytes, t, wrongScope) }, { weight: 2, arbitrary: fc.oneof(...spec) }) : genericCases(method, validBytes, t, wrongScope),
    };
  };
  const c = <M>(kind: string, token: string, expectCode: number, msg: fc.Arbitrary<M>) => msg.map((m) => ({ kind, token, expect: expectCode, msg: m }));
  const reason = badText;

  add(R.registerWorker, { workerId: 'fz-new', heartbeatInterval: interval(1000) }, t.a, [
    c('worker id', t.join, S.INVALID_ARGUMENT, badWorkerId.map((workerId) => ({ workerId, heartbeatInterval: interval(1000) }))),
    c('too many labels', t.join, S.INVALID_ARGUMENT, fc.integer({ min: 65, max: 150 }).map((n) => ({ workerId: 'fz-new', heartbeatInterval: interval(1000), labels: Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, 'v'])) }))),
    c('label key', t.join, S.INVALID_ARGUMENT, anyText.filter((k) => !LABEL_KEY_RULE.test(k)).map((k) => ({ workerId: 'fz-new', heartbeatInterval: interval(1000), labels: { [k]: 'v' } }))),
    c('label value', t.join, S.INVALID_ARGUMENT, badText.map((v) => ({ workerId: 'fz-new', heartbeatInterval: interval(1000), labels: { pool: v } }))),
    c('interval', t.join, S.INVALID_ARGUMENT, fc.oneof(
      fc.constant(undefined),
      fc.integer({ min: 0, max: 99 }).map((ms) => interval(ms)),
      fc.bigInt({ min: 86_401n, max: 2n ** 62n }).map((s) => create(DurationSchema, { seconds: s })),
      fc.bigInt({ min: -(2n ** 62n), max: -1n }).map((s) => create(DurationSchema, { seconds: s })),
      fc.integer({ min: -999_999_999, max: -1 }).map((n) => create(DurationSchema, { nanos: n })),
    ).map((heartbeatInterval) => ({ workerId: 'fz-new', heartbeatInterval }))),
    c('depends on', t.join, S.INVALID_ARGUMENT, fc.oneof(
      badWorkerId.map((d) => [d]),
      fc.constant(['fz-new']),
      fc.integer({ min: 65, max: 100 }).map((n) => Array.from({ length: n }, (_, i) => `d${i}`)),
    ).map((dependsOn) => ({ workerId: 'fz-new', heartbeatInterval: interval(1000), dependsOn }))),
    c('restart policy', t.join, S.INVALID_ARGUMENT, policyBad.map((p) => ({ workerId: 'fz-new', heartbeatInterval: interval(1000), restartPolicy: p }))),
    c('take over', t.join, S.ALREADY_EXISTS, fc.constantFrom('fz-a', 'fz-b').map((workerId) => ({ workerId, heartbeatInterval: interval(1000) }))),
  ]);

  const defects = heartbeatDefects();
  add(R.heartbeat, hbInit('fz-a'), t.read, [defects.map((d) => ({ kind: d.kind, token: t.a, expect: d.expect, msg: d.hb }))]);
  // Streams: defects ride as the stream's message; a message without a heartbeat is malformed too.
  out.HeartbeatStream = {
    method: R.heartbeatStream,
    cases: fc.oneof(
      genericCases(R.heartbeatStream, () => bin(R.heartbeatStream.input, { heartbeat: hbInit('fz-a') }), t, t.monitor),
      fc.oneof(
        defects.map((d) => ({ kind: d.kind, token: t.a, expect: d.expect, bytes: [bin(R.heartbeatStream.input, { heartbeat: d.hb })] })),
        fc.constant(null).map(() => ({ kind: 'no heartbeat', token: t.a, expect: S.INVALID_ARGUMENT, bytes: [new Uint8Array()] })),
        fc.uint8Array({ minLength: 1, maxLength: 256 })
          .filter((b) => !decodes(R.heartbeatStream.input, b))
          .map((b) => ({ kind: 'random bytes in stream', token: t.a, expect: S.INVALID_ARGUMENT, bytes: [b] })),
      ),
    ),
  };
  add(R.leave, { workerId: 'fz-a' }, t.read, [
    c('stolen token', t.a, S.PERMISSION_DENIED, fc.constant({ workerId: 'fz-b' })),
    c('another worker', t.a, S.PERMISSION_DENIED, fc.oneof(badWorkerId, ghostId).map((workerId) => ({ workerId }))),
    c('reason', t.a, S.INVALID_ARGUMENT, reason.map((r) => ({ workerId: 'fz-a', reason: r }))),
  ]);
  add(R.getWorker, { workerId: 'fz-a' }, t.a, [c('unknown worker', t.read, S.NOT_FOUND, fc.oneof(anyText, ghostId).map((workerId) => ({ workerId })))]);
  add(R.listWorkers, {}, t.a, [
    c('page size', t.read, S.INVALID_ARGUMENT, fc.integer({ min: -(2 ** 31), max: -1 }).map((pageSize) => ({ pageSize }))),
    c('page token', t.read, S.INVALID_ARGUMENT, badPageToken.map((pageToken) => ({ pageToken }))),
    c('selector', t.read, S.INVALID_ARGUMENT, badSelector.map((labelSelector) => ({ labelSelector }))),
  ]);
  add(R.watchWorkers, {}, t.a, [c('selector', t.read, S.INVALID_ARGUMENT, badSelector.map((labelSelector) => ({ labelSelector })))]);
  add(R.deregisterWorker, { workerId: 'fz-a' }, t.read, [c('unknown worker', t.admin, S.NOT_FOUND, ghostId.map((workerId) => ({ workerId })))]);
  add(R.listEvents, {}, t.a, [
    c('worker id', t.read, S.INVALID_ARGUMENT, badWorkerId.filter((id) => id !== '').map((workerId) => ({ workerId }))),
    c('page size', t.read, S.INVALID_ARGUMENT, fc.integer({ min: -(2 ** 31), max: -1 }).map((pageSize) => ({ pageSize }))),
    c('page token', t.read, S.INVALID_ARGUMENT, badPageToken.map((pageToken) => ({ pageToken }))),
  ]);
  add(R.createToken, { scope: TokenScope.READ }, t.monitor, [
    c('description', t.admin, S.INVALID_ARGUMENT, badText.map((description) => ({ scope: TokenScope.READ, description }))),
    c('scope', t.admin, S.INVALID_ARGUMENT, fc.oneof(fc.constantFrom(TokenScope.UNSPECIFIED, TokenScope.ADMIN, TokenScope.WORKER), fc.integer({ min: 6, max: 2 ** 31 - 1 })).map((scope) => ({ scope }))),
  ]);
  add(R.revokeToken, { tokenId: 'tok_0' }, t.read, [c('unknown token id', t.admin, S.NOT_FOUND, anyText.map((tokenId) => ({ tokenId })))]);
  add(R.listTokens, {}, t.monitor, []);

  add(C.markStale, { workerId: 'fz-a', observedSeq: SEQ_A }, t.read, [
    c('unknown worker', t.monitor, S.NOT_FOUND, ghostId.map((workerId) => ({ workerId, observedSeq: 1n }))),
    // A heartbeated recently on a 1 h interval: never due, whatever seq the caller claims.
    c('not due', t.monitor, S.FAILED_PRECONDITION, fc.tuple(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), fc.constantFrom('', 's-a', 'other')).map(([observedSeq, observedSessionId]) => ({ workerId: 'fz-a', observedSeq, observedSessionId }))),
    c('reason', t.monitor, S.INVALID_ARGUMENT, reason.map((r) => ({ workerId: 'fz-a', observedSeq: SEQ_A, reason: r }))),
  ]);
  add(C.setWorkerState, { workerId: 'fz-a', state: WorkerState.RESTARTING }, t.read, [
    c('state', t.monitor, S.INVALID_ARGUMENT, fc.oneof(fc.constantFrom(0, WorkerState.HEALTHY, WorkerState.STALE, WorkerState.LEFT, WorkerState.PENDING), fc.integer({ min: 9, max: 2 ** 31 - 1 })).map((state) => ({ workerId: 'fz-a', state, observedSeq: SEQ_A, observedSessionId: 's-a' }))),
    c('seq', t.monitor, S.FAILED_PRECONDITION, fc.tuple(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).filter((s) => s !== SEQ_A), fc.constantFrom(WorkerState.RESTARTING, WorkerState.FAILED)).map(([observedSeq, state]) => ({ workerId: 'fz-a', state, observedSeq, observedSessionId: 's-a' }))),
    c('unknown worker', t.monitor, S.NOT_FOUND, ghostId.map((workerId) => ({ workerId, state: WorkerState.FAILED }))),
    c('reason', t.monitor, S.INVALID_ARGUMENT, reason.map((r) => ({ workerId: 'fz-a', state: WorkerState.RESTARTING, reason: r }))),
  ]);
  add(C.sendCommand, { workerId: 'fz-a', type: CommandType.RESTART }, t.read, [
    c('unknown worker', t.monitor, S.NOT_FOUND, ghostId.map((workerId) => ({ workerId, type: CommandType.RESTART }))),
    c('command type', t.monitor, S.INVALID_ARGUMENT, fc.oneof(fc.constant(CommandType.UNSPECIFIED), fc.integer({ min: 4, max: 2 ** 31 - 1 })).map((type) => ({ workerId: 'fz-a', type }))),
    c('reason', t.monitor, S.INVALID_ARGUMENT, reason.map((r) => ({ workerId: 'fz-a', type: CommandType.RESTART, reason: r }))),
  ]);
  add(C.recordEvent, { workerId: 'fz-a', kind: 'note' }, t.read, [
    c('kind', t.monitor, S.INVALID_ARGUMENT, anyText.filter((k) => !/^[a-z][a-z0-9_]{0,63}$/.test(k)).map((kind) => ({ workerId: 'fz-a', kind }))),
    c('worker id', t.monitor, S.INVALID_ARGUMENT, badWorkerId.map((workerId) => ({ workerId, kind: 'note' }))),
    c('reason', t.monitor, S.INVALID_ARGUMENT, reason.map((r) => ({ workerId: 'fz-a', kind: 'note', reason: r }))),
  ]);
  add(C.setRestartPolicy, { workerId: 'fz-a' }, t.monitor, [
    c('policy', t.admin, S.INVALID_ARGUMENT, policyBad.map((policy) => ({ workerId: 'fz-a', policy }))),
    c('unknown worker', t.admin, S.NOT_FOUND, ghostId.map((workerId) => ({ workerId }))),
  ]);
  add(C.setDefaultPolicy, { defaultPolicy: { name: 'gpu', policy: {} } }, t.monitor, [
    c('missing', t.admin, S.INVALID_ARGUMENT, fc.constantFrom({}, { defaultPolicy: { name: '' } }, { defaultPolicy: { name: 'x' } })),
    c('name', t.admin, S.INVALID_ARGUMENT, badText.map((name) => ({ defaultPolicy: { name, policy: {} } }))),
    c('selector', t.admin, S.INVALID_ARGUMENT, badSelector.map((labelSelector) => ({ defaultPolicy: { name: 'x', labelSelector, policy: {} } }))),
    c('policy', t.admin, S.INVALID_ARGUMENT, policyBad.map((policy) => ({ defaultPolicy: { name: 'x', policy } }))),
    c('delete unknown', t.admin, S.NOT_FOUND, fc.integer({ min: 0 }).map((n) => ({ defaultPolicy: { name: `none-${n}` }, delete: true }))),
  ]);
  add(C.listDefaultPolicies, {}, t.a, []);
  add(C.addSilence, { workerId: 'fz-a', duration: interval(60_000) }, t.monitor, [
    c('target', t.admin, S.INVALID_ARGUMENT, fc.constant({ duration: interval(60_000) })),
    c('worker id', t.admin, S.INVALID_ARGUMENT, badWorkerId.filter((id) => id !== '').map((workerId) => ({ workerId, duration: interval(60_000) }))),
    c('duration', t.admin, S.INVALID_ARGUMENT, fc.oneof(fc.constant(undefined), fc.integer({ min: -1e9, max: 0 }).map((ms) => interval(ms)), fc.bigInt({ min: 90n * 86_400n + 1n, max: 2n ** 62n }).map((s) => create(DurationSchema, { seconds: s }))).map((duration) => ({ workerId: 'fz-a', duration }))),
    c('comment', t.admin, S.INVALID_ARGUMENT, badText.map((comment) => ({ workerId: 'fz-a', duration: interval(60_000), comment }))),
    c('selector', t.admin, S.INVALID_ARGUMENT, badSelector.map((labelSelector) => ({ labelSelector, duration: interval(60_000) }))),
  ]);
  add(C.listSilences, {}, t.a, []);
  add(C.removeSilence, { silenceId: 'sil_0' }, t.read, [c('unknown silence', t.admin, S.NOT_FOUND, anyText.map((silenceId) => ({ silenceId })))]);
  return out;
}

// --- the run ------------------------------------------------------------------

describe('hostile input against a real hive', () => {
  const schema = uniqueSchema('hive_fuzz');
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let hive: HiveProc;
  let raw: grpc.Client;
  let tokens: Tokens;
  const secrets = new Set<string>([ADMIN, JOIN]);
  const registry = () => createClient(RegistryService, createGrpcTransport({ baseUrl: `http://${hive.grpcAddr}` }));
  const control = () => createClient(ControlService, createGrpcTransport({ baseUrl: `http://${hive.grpcAddr}` }));
  const admin = { headers: { authorization: `Bearer ${ADMIN}` }, timeoutMs: 30_000 };
  let fuzzed = 0;
  let crashes = 0;
  const mismatches: string[] = [];

  async function snapshot(): Promise<string> {
    const r = registry();
    const c = control();
    return JSON.stringify([
      toJsonString(ListWorkersResponseSchema, await r.listWorkers({ pageSize: 1000 }, admin)),
      toJsonString(ListTokensResponseSchema, await r.listTokens({ includeRevoked: true }, admin)),
      toJsonString(ListEventsResponseSchema, await r.listEvents({ pageSize: 1000 }, admin)),
      toJsonString(ListDefaultPoliciesResponseSchema, await c.listDefaultPolicies({}, admin)),
      toJsonString(ListSilencesResponseSchema, await c.listSilences({}, admin)),
    ]);
  }

  beforeAll(async () => {
    dir = await tempDir('hive-fuzz-');
    hive = await startHiveProc(
      ['--data-dir', dir.path, '--database-url', PG_URL, '--database-schema', schema, '--admin-token', ADMIN, '--join-token', JOIN, '--rate-limit', '0', '--max-streams-per-worker', '0'],
      { LOG_LEVEL: 'debug' },
    );
    raw = rawClient(hive.grpcAddr);
    const r = registry();
    const a = (await r.registerWorker({ workerId: 'fz-a', heartbeatInterval: interval(3_600_000), labels: { pool: 'fuzz' } }, admin)).workerToken;
    const b = (await r.registerWorker({ workerId: 'fz-b', heartbeatInterval: interval(3_600_000) }, admin)).workerToken;
    const revoked = (await r.registerWorker({ workerId: 'fz-c', heartbeatInterval: interval(3_600_000) }, admin)).workerToken;
    const cInfo = (await r.listTokens({}, admin)).tokens.find((x) => x.workerId === 'fz-c')!;
    await r.revokeToken({ tokenId: cInfo.tokenId }, admin);
    const read = (await r.createToken({ scope: TokenScope.READ, description: 'fuzz' }, admin)).token;
    const monitor = (await r.createToken({ scope: TokenScope.MONITOR, description: 'fuzz' }, admin)).token;
    tokens = { admin: ADMIN, join: JOIN, read, monitor, a, b, revoked };
    for (const s of Object.values(tokens)) secrets.add(s);
    const auth = (tok: string) => ({ headers: { authorization: `Bearer ${tok}` }, timeoutMs: 10_000 });
    await r.heartbeat(create(HeartbeatRequestSchema, { workerId: 'fz-a', sessionId: 's-a', seq: SEQ_A, status: 1 }), auth(a));
    await r.heartbeat(create(HeartbeatRequestSchema, { workerId: 'fz-b', sessionId: 's-b', seq: 5n, status: 1 }), auth(b));
    await control().addSilence({ workerId: 'fz-b', duration: interval(3_600_000), comment: 'fuzz' }, admin);
  }, 90_000);

  afterAll(async () => {
    raw?.close();
    await hive?.kill('SIGKILL');
    await dropSchema(schema);
    await dir?.remove();
  });

  const rpcs = ['RegisterWorker', 'Heartbeat', 'HeartbeatStream', 'Leave', 'GetWorker', 'ListWorkers', 'WatchWorkers', 'DeregisterWorker', 'ListEvents', 'CreateToken', 'RevokeToken', 'ListTokens',
    'MarkStale', 'SetWorkerState', 'SendCommand', 'RecordEvent', 'SetRestartPolicy', 'SetDefaultPolicy', 'ListDefaultPolicies', 'AddSilence', 'ListSilences', 'RemoveSilence'];

  it(`refuses ${RUNS} hostile requests per RPC with the right code and changes nothing (seed ${SEED})`, async (ctx) => {
    const all = rpcCases(tokens);
    expect(Object.keys(all).sort()).toEqual([...rpcs].sort());
    const byKind = new Map<string, number>();
    for (const [i, name] of rpcs.entries()) {
      const { method, cases } = all[name];
      const path = `/${method.parent.typeName}/${method.name}`;
      const sample = fc.sample(cases, { numRuns: RUNS, seed: SEED + i });
      const before = await snapshot();
      const codes = await pool(sample, WIDTH, (k) =>
        method.methodKind === 'bidi_streaming' ? bidiCode(raw, path, k.bytes, k.token)
        : method.methodKind === 'server_streaming' ? serverStreamCode(raw, path, k.bytes[0], k.token)
        : unaryCode(raw, path, k.bytes[0], k.token),
      );
      for (const [j, k] of sample.entries()) {
        // Made-up tokens count as secrets too: the hive must not echo whatever it was sent.
        if (k.token && !Object.values(tokens).includes(k.token)) secrets.add(k.token);
        byKind.set(`${name} ${k.kind}`, (byKind.get(`${name} ${k.kind}`) ?? 0) + 1);
        if (codes[j] === 2 || codes[j] === 13) crashes++;
        if (codes[j] !== k.expect && mismatches.length < 20) mismatches.push(`${name} ${k.kind}: expected ${CODE_NAME[k.expect]}, got ${CODE_NAME[codes[j]] ?? codes[j]}`);
      }
      fuzzed += sample.length;
      const after = await snapshot();
      expect(after, `${name}: a refused request changed the registry`).toBe(before);
      expect(hive.child.exitCode, 'the hive exited').toBeNull();
    }
    report(ctx, { 'requests fuzzed': fuzzed, crashes });
    expect(mismatches).toEqual([]);
    expect(crashes).toBe(0);
    // Every kind of hostile request was tried for every RPC that has it.
    expect(byKind.size).toBeGreaterThan(150);
  }, 600_000);

  it('refuses broken requests on the Connect port: wrong content types, broken JSON and protobuf, oversized bodies', async (ctx) => {
    const base = hive.httpUrl;
    // Connect streams over HTTP/1.1 need their own content types; the unary RPCs are what curl calls.
    const unary = rpcs.filter((n) => methodOf(`/${(RegistryService.method as Record<string, DescMethod>)[lower(n)] ? 'hive.v1.RegistryService' : 'hive.v1.ControlService'}/${n}`).methodKind === 'unary');
    const paths = unary.map((n) => `/${(RegistryService.method as Record<string, DescMethod>)[lower(n)] ? 'hive.v1.RegistryService' : 'hive.v1.ControlService'}/${n}`);
    type HttpCase = { kind: string; path: string; contentType?: string; body: Uint8Array | string; token?: string; expect: number };
    const httpCase: fc.Arbitrary<HttpCase> = fc.oneof(
      fc.tuple(fc.constantFrom(...paths), fc.constantFrom('text/plain', 'application/xml', 'application/x-www-form-urlencoded', 'image/png', 'multipart/form-data; boundary=x', 'application/jsonx', 'application/grpc-webx'), fc.string())
        .map(([path, contentType, body]) => ({ kind: 'content type', path, contentType, body, token: ADMIN, expect: 415 })),
      fc.tuple(fc.constantFrom(...paths), fc.string({ maxLength: 200 }).filter((s) => !isJson(s)))
        .map(([path, body]) => ({ kind: 'broken json', path, contentType: 'application/json', body, token: ADMIN, expect: 400 })),
      fc.tuple(fc.constantFrom(...paths), fc.oneof(fc.json(), fc.constant('{}'))).map(([path, body]) => ({ kind: 'json without auth', path, contentType: 'application/json', body, expect: jsonDecodes(methodOf(path).input, body) ? 401 : 400 })),
      fc.tuple(fc.constantFrom(...paths), fc.uint8Array({ maxLength: 300 })).map(([path, body]) => ({ kind: 'protobuf without auth', path, contentType: 'application/proto', body, expect: decodes(methodOf(path).input, body) ? 401 : 400 })),
      fc.tuple(fc.constantFrom(...paths), fc.integer({ min: MAX_MESSAGE + 1, max: 3 * MAX_MESSAGE })).map(([path, n]) => ({ kind: 'oversized', path, contentType: 'application/json', body: `{"workerId":"${'x'.repeat(n)}"}`, token: ADMIN, expect: 429 })),
      fc.tuple(fc.constantFrom(...paths), fakeToken).map(([path, token]) => ({ kind: 'unknown token', path, contentType: 'application/json', body: '{}', token, expect: 401 })),
    );
    const sample = fc.sample(httpCase, { numRuns: RUNS, seed: SEED + 100 });
    const before = await snapshot();
    const got = await pool(sample, 32, async (k) => {
      const headers: Record<string, string> = { 'connect-protocol-version': '1' };
      if (k.contentType) headers['content-type'] = k.contentType;
      if (k.token) headers.authorization = `Bearer ${k.token}`;
      const res = await fetch(`${base}${k.path}`, { method: 'POST', headers, body: typeof k.body === 'string' ? k.body : Buffer.from(k.body) });
      await res.arrayBuffer();
      return res.status;
    });
    const wrong: string[] = [];
    let crashed = 0;
    for (const [i, k] of sample.entries()) {
      if (k.token && k.token !== ADMIN) secrets.add(k.token);
      if (got[i] >= 500) crashed++;
      if (got[i] !== k.expect && wrong.length < 20) wrong.push(`${k.kind} ${k.path}: expected HTTP ${k.expect}, got ${got[i]}`);
    }
    fuzzed += sample.length;
    crashes += crashed;
    report(ctx, { 'requests fuzzed': sample.length, crashes: crashed });
    expect(wrong).toEqual([]);
    expect(crashed).toBe(0);
    expect(await snapshot()).toBe(before);
  }, 300_000);

  it('the snapshot sees an accepted change (so "unchanged" above means something)', async () => {
    const before = await snapshot();
    await registry().heartbeat(create(HeartbeatRequestSchema, { workerId: 'fz-a', sessionId: 's-a', seq: SEQ_A + 1n, status: 2 }), { headers: { authorization: `Bearer ${tokens.a}` } });
    expect(await snapshot()).not.toBe(before);
  });

  it('no token or secret reached a log line, and the hive logged no internal error', async (ctx) => {
    // Give the last lines time to arrive through the pipe.
    await new Promise((r) => setTimeout(r, 200));
    expect(hive.lines.length).toBeGreaterThan(100);
    const real = [ADMIN, JOIN, ...Object.values(tokens)];
    // The scanner finds a planted secret, made-up or real (so a clean result means something).
    const planted = [...secrets].find((x) => !real.includes(x))!;
    expect(scanForSecrets([`{"level":20,"msg":"token \\"${planted}\\""}`, `x${tokens.a}y`], secrets, real).found.size).toBe(2);
    const { found, examples } = scanForSecrets(hive.lines, secrets, real);
    const leaked = found.size;
    const internal = hive.lines.filter((l) => /"level":(50|60)/.test(l));
    // Rejections quote what was sent, bounded: 64 KiB ids do not become 64 KiB log lines.
    let longest = 0;
    for (const l of hive.lines) if (l.startsWith('{"level":20') && l.length > longest) longest = l.length;
    report(ctx, { 'leaked secrets': leaked, crashes: internal.length });
    expect(examples).toEqual([]);
    expect(leaked).toBe(0);
    expect(longest).toBeLessThan(2048);
    expect(internal).toEqual([]);
  });
});

/** Secrets in log lines: every secret is one run of [A-Za-z0-9_-], so an exact match finds a made-up token as a log would carry it; the hive's own tokens are also searched for inside longer text. */
function scanForSecrets(lines: readonly string[], secrets: ReadonlySet<string>, real: readonly string[]): { found: Set<string>; examples: string[] } {
  const found = new Set<string>();
  const examples: string[] = [];
  const candidates = /[A-Za-z0-9_-]{20,}/g;
  for (const line of lines) {
    const here = new Set<string>();
    for (const m of line.match(candidates) ?? []) if (secrets.has(m)) here.add(m);
    for (const s of real) if (line.includes(s)) here.add(s);
    for (const s of here) found.add(s);
    // The report shows where it leaked, with the secret itself masked.
    if (here.size && examples.length < 5) examples.push([...here].reduce((l, s) => l.split(s).join('[SECRET]'), line).slice(0, 400));
  }
  return { found, examples };
}

function lower(name: string): string {
  return name[0].toLowerCase() + name.slice(1);
}

function methodOf(path: string): DescMethod {
  const [svc, name] = path.slice(1).split('/');
  const s = svc === 'hive.v1.RegistryService' ? RegistryService : ControlService;
  return (s.method as Record<string, DescMethod>)[lower(name)];
}

function isJson(s: string): boolean {
  try {
    JSON.parse(s);
    return true;
  } catch {
    return false;
  }
}

function jsonDecodes(schema: DescMessage, s: string): boolean {
  try {
    fromJsonString(schema, s, { ignoreUnknownFields: true });
    return true;
  } catch {
    return false;
  }
}
