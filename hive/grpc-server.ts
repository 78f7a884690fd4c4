import * as grpc from '@grpc/grpc-js';
import { keepWireBytes, onlyField1 } from './wire-bytes.js';
import { create, fromBinary, isMessage, toBinary, type DescMessage, type DescService } from '@bufbuild/protobuf';
import { Code, ConnectError, type ServiceImpl } from '@connectrpc/connect';
import type { Logger } from '../lib/logger.js';
import { AsyncQueue } from './async-queue.js';
import { encodeHeartbeatResponse, encodeHeartbeatStreamResponse } from './reply-codec.js';
import { decodeHeartbeatRequest, decodeHeartbeatStreamRequest } from './heartbeat-codec.js';
import { encodeWatchWorkersResponse } from './watch-codec.js';
import type { TlsFiles } from './tls.js';
import { grpcCallContext, type GrpcCallContext } from './grpc-context.js';

// Serves connect-style service implementations (the same objects that
// connect-node serves) on @grpc/grpc-js, whose HTTP/2 server costs a
// fraction of connect-node's CPU per message. Messages are protobuf-es
// types, (de)serialised by custom serializers; errors keep their code.

export interface GrpcAdapterOptions {
  log: Logger;
  /** Larger request messages are rejected with InvalidArgument. */
  maxMessageBytes: number;
  /** Keep the wire bytes of heartbeats (the Redis live state forwards them as they came). */
  keepHeartbeatBytes?: boolean;
}

class Undecodable {
  constructor(readonly reason: string) {}
}

/** Hand-written encoders of what is sent per heartbeat (same bytes as toBinary); null falls back to toBinary. */
const FAST: Record<string, (msg: never) => Buffer | null> = {
  'hive.v1.HeartbeatStreamResponse': encodeHeartbeatStreamResponse,
  'hive.v1.HeartbeatResponse': encodeHeartbeatResponse,
  'hive.v1.WatchWorkersResponse': encodeWatchWorkersResponse,
};

function serializer(schema: DescMessage) {
  const slow = (msg: unknown): Buffer => {
    const m = isMessage(msg, schema) ? msg : create(schema, msg as never);
    const bytes = toBinary(schema, m);
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  };
  const fast = FAST[schema.typeName];
  if (!fast) return slow;
  return (msg: unknown): Buffer => (isMessage(msg, schema) ? fast(msg as never) : null) ?? slow(msg);
}

/** Hand-written decoders of the per-heartbeat requests (same objects as fromBinary); null falls back to fromBinary. */
const FAST_DECODE: Record<string, (buf: Buffer) => object | null> = {
  'hive.v1.HeartbeatStreamRequest': decodeHeartbeatStreamRequest,
  'hive.v1.HeartbeatRequest': decodeHeartbeatRequest,
};

function deserializer(schema: DescMessage, max: number, keepHeartbeatBytes = false) {
  const keep = keepHeartbeatBytes ? heartbeatBytesKeeper(schema.typeName) : null;
  const fast = FAST_DECODE[schema.typeName];
  return (buf: Buffer): unknown => {
    if (buf.length > max) return new Undecodable(`message of ${buf.length} bytes exceeds the ${max}-byte limit`);
    try {
      const msg = fast?.(buf) ?? fromBinary(schema, buf);
      keep?.(msg, buf);
      return msg;
    } catch (err) {
      return new Undecodable(`malformed ${schema.typeName}: ${(err as Error).message}`);
    }
  };
}

/** Keeps the wire bytes of heartbeats for the live state to forward (see wire-bytes.ts). */
function heartbeatBytesKeeper(typeName: string): ((msg: unknown, buf: Buffer) => void) | null {
  if (typeName === 'hive.v1.HeartbeatRequest') return (msg, buf) => keepWireBytes(msg as object, buf);
  if (typeName === 'hive.v1.HeartbeatStreamRequest')
    return (msg, buf) => {
      const hb = (msg as { heartbeat?: object }).heartbeat;
      const inner = hb && onlyField1(buf);
      if (hb && inner) keepWireBytes(hb, inner);
    };
  return null;
}

function checked<T>(msg: unknown): T {
  if (msg instanceof Undecodable) throw new ConnectError(msg.reason, Code.InvalidArgument);
  return msg as T;
}

function statusOf(err: unknown, log: Logger, path: string): Partial<grpc.StatusObject> {
  if (err instanceof ConnectError) return { code: err.code as number as grpc.status, details: err.rawMessage };
  log.error({ err, method: path }, 'unhandled error');
  return { code: grpc.status.INTERNAL, details: 'internal error' };
}

/**
 * The request stream as an async iterable, fed by 'data'/'end' events
 * (grpc-js's own async iterator does not finish on the client's half-close).
 * A message that does not decode ends the stream with InvalidArgument once
 * the messages before it were read.
 */
function decodedStream<T>(call: grpc.ServerReadableStream<unknown, unknown> | grpc.ServerDuplexStream<unknown, unknown>): AsyncIterable<T> {
  const queue = new AsyncQueue<T>((queued) => {
    if (queued < 16 && call.isPaused()) call.resume();
  });
  call.on('data', (msg: unknown) => {
    if (msg instanceof Undecodable) queue.fail(new ConnectError(msg.reason, Code.InvalidArgument));
    else queue.push(msg as T);
    if (queue.size >= 64) call.pause();
  });
  const finish = () => queue.end();
  call.on('end', finish);
  call.on('cancelled', finish);
  call.on('error', (err: unknown) => queue.fail(err));
  return queue;
}

/** Messages of a server stream handed to grpc-js and not yet written to the socket. */
const STREAM_WRITES_IN_FLIGHT = 4;

/**
 * Writes what a handler yields, asking for the next message only while
 * fewer than a few are waiting for the socket: a handler that coalesces
 * (WatchWorkers) then sends what is newest when the connection can take
 * it, instead of a queue of messages that were fresh when they were made,
 * and a burst still goes out as several messages back to back.
 */
async function writeAll(call: grpc.ServerWritableStream<unknown, unknown> | grpc.ServerDuplexStream<unknown, unknown>, out: AsyncIterable<unknown>, signal: AbortSignal) {
  if (out instanceof AsyncQueue) return writeQueue(call, out, signal);
  let inFlight = 0;
  let room: (() => void) | null = null;
  const written = () => {
    inFlight--;
    room?.();
  };
  for await (const msg of out) {
    if (signal.aborted) break;
    inFlight++;
    call.write(msg, written);
    if (inFlight < STREAM_WRITES_IN_FLIGHT) continue;
    await new Promise<void>((resolve) => {
      const done = () => {
        room = null;
        signal.removeEventListener('abort', done);
        resolve();
      };
      room = done;
      signal.addEventListener('abort', done);
    });
  }
}

/** writeAll for a handler that answers with an AsyncQueue: each reply is written as it is pushed, with no promise per message. */
function writeQueue(call: grpc.ServerWritableStream<unknown, unknown> | grpc.ServerDuplexStream<unknown, unknown>, out: AsyncQueue<unknown>, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    let resume: () => void = () => {};
    const stop = () => {
      signal.removeEventListener('abort', onAbort);
      call.off('drain', onDrain);
    };
    const onAbort = () => {
      stop();
      void out.return();
      resolve();
    };
    const onDrain = () => resume();
    signal.addEventListener('abort', onAbort);
    if (signal.aborted) return onAbort();
    resume = out.consume({
      item(msg) {
        if (call.write(msg)) return true;
        call.once('drain', onDrain);
        return false;
      },
      end() {
        stop();
        resolve();
      },
      fail(err) {
        stop();
        reject(err);
      },
    });
  });
}

export function addService<S extends DescService>(server: grpc.Server, service: S, impl: ServiceImpl<S>, opts: GrpcAdapterOptions): void {
  const definition: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  const handlers: grpc.UntypedServiceImplementation = {};
  const methods = impl as unknown as Record<string, (...a: unknown[]) => unknown>;
  for (const method of service.methods) {
    const path = `/${service.typeName}/${method.name}`;
    const fn = methods[method.localName];
    definition[method.localName] = {
      path,
      requestStream: method.methodKind === 'client_streaming' || method.methodKind === 'bidi_streaming',
      responseStream: method.methodKind === 'server_streaming' || method.methodKind === 'bidi_streaming',
      requestSerialize: serializer(method.input),
      requestDeserialize: deserializer(method.input, opts.maxMessageBytes, opts.keepHeartbeatBytes),
      responseSerialize: serializer(method.output),
      responseDeserialize: deserializer(method.output, Number.MAX_SAFE_INTEGER),
    };
    switch (method.methodKind) {
      case 'unary':
        handlers[method.localName] = (call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
          const ctx = grpcCallContext(service, method, call);
          const answer = (err: Partial<grpc.StatusObject> | null, res?: unknown) => {
            ctx.finish();
            callback(err, res);
          };
          try {
            const r = fn(checked(call.request), ctx);
            if (r instanceof Promise) r.then((res) => answer(null, res), (err) => answer(statusOf(err, opts.log, path)));
            else answer(null, r);
          } catch (err) {
            answer(statusOf(err, opts.log, path));
          }
        };
        break;
      case 'server_streaming':
        handlers[method.localName] = async (call: grpc.ServerWritableStream<unknown, unknown>) => {
          const ctx = grpcCallContext(service, method, call);
          try {
            await writeAll(call, fn(checked(call.request), ctx) as AsyncIterable<unknown>, ctx.signal);
            ctx.finish();
            call.end();
          } catch (err) {
            call.emit('error', statusOf(err, opts.log, path));
          }
        };
        break;
      case 'bidi_streaming':
        handlers[method.localName] = async (call: grpc.ServerDuplexStream<unknown, unknown>) => {
          const ctx = grpcCallContext(service, method, call);
          try {
            await writeAll(call, fn(decodedStream(call), ctx) as AsyncIterable<unknown>, ctx.signal);
            ctx.finish();
            call.end();
          } catch (err) {
            call.emit('error', statusOf(err, opts.log, path));
          }
        };
        break;
      case 'client_streaming':
        handlers[method.localName] = (call: grpc.ServerReadableStream<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
          const ctx: GrpcCallContext = grpcCallContext(service, method, call);
          const answer = (err: Partial<grpc.StatusObject> | null, res?: unknown) => {
            ctx.finish();
            callback(err, res);
          };
          Promise.resolve(fn(decodedStream(call), ctx)).then((res) => answer(null, res), (err) => answer(statusOf(err, opts.log, path)));
        };
        break;
    }
  }
  server.addService(definition, handlers);
}

/** TLS credentials for the gRPC port; with a client CA the handshake demands and verifies a client certificate. */
export function grpcServerCredentials(tls: TlsFiles | undefined): grpc.ServerCredentials {
  if (!tls) return grpc.ServerCredentials.createInsecure();
  return grpc.ServerCredentials.createSsl(tls.clientCa ?? null, [{ cert_chain: tls.cert, private_key: tls.key }], tls.clientCa !== undefined);
}

export async function listenGrpc(server: grpc.Server, addr: string, creds = grpc.ServerCredentials.createInsecure()): Promise<number> {
  return new Promise((resolve, reject) => {
    server.bindAsync(addr, creds, (err, port) => (err ? reject(err) : resolve(port)));
  });
}
