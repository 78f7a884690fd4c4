import type * as grpc from '@grpc/grpc-js';
import type { DescMethod, DescService } from '@bufbuild/protobuf';
import { Code, ConnectError, createContextValues, type ContextValues, type HandlerContext } from '@connectrpc/connect';
import { authorizationKey } from './auth.js';
import { identityOf, peerKey } from './tls.js';

// The HandlerContext of a call on the grpc-js port, built for a call per
// heartbeat: connect's createHandlerContext makes two AbortControllers, a
// deadline timer and four Headers per call, and grpc-js reports most
// finished unary calls as cancelled (the stream closes after the status),
// which aborted them with a ConnectError and its stack. Here each part is
// made when first read: the signal (grpc-js enforces the deadline itself
// and reports it as a cancel), the headers, the values; and a call that has
// answered is not aborted.

type AnyCall = grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerReadableStream<unknown, unknown> | grpc.ServerWritableStream<unknown, unknown>;

function headersOf(md: grpc.Metadata): Headers {
  const h = new Headers();
  for (const [k, v] of Object.entries(md.getMap())) if (typeof v === 'string') h.set(k, v);
  return h;
}

function timeoutOf(call: AnyCall): number | undefined {
  const deadline = call.getDeadline();
  const at = deadline instanceof Date ? deadline.getTime() : Number.isFinite(deadline) ? Number(deadline) : undefined;
  return at === undefined ? undefined : at - Date.now();
}

export interface GrpcCallContext extends HandlerContext {
  /** The call has answered: a cancel reported after this is not an abort. */
  finish(): void;
}

export function grpcCallContext(service: DescService, method: DescMethod, call: AnyCall): GrpcCallContext {
  let controller: AbortController | null = null;
  let cancelled = false;
  let finished = false;
  let requestHeader: Headers | null = null;
  let responseHeader: Headers | null = null;
  let responseTrailer: Headers | null = null;
  let values: ContextValues | null = null;
  const reason = () => new ConnectError('cancelled by the client', Code.Canceled);
  (call as unknown as import('node:events').EventEmitter).once('cancelled', () => {
    if (finished) return;
    cancelled = true;
    controller?.abort(reason());
  });
  return {
    service,
    method,
    protocolName: 'grpc',
    requestMethod: 'POST',
    url: `/${service.typeName}/${method.name}`,
    get signal(): AbortSignal {
      if (!controller) {
        controller = new AbortController();
        if (cancelled) controller.abort(reason());
      }
      return controller.signal;
    },
    timeoutMs: () => timeoutOf(call),
    get requestHeader(): Headers {
      return (requestHeader ??= headersOf(call.metadata));
    },
    get responseHeader(): Headers {
      return (responseHeader ??= new Headers());
    },
    get responseTrailer(): Headers {
      return (responseTrailer ??= new Headers());
    },
    get values(): ContextValues {
      if (!values) {
        values = createContextValues();
        // Under mutual TLS the handshake verified the client's certificate;
        // the names it carries travel to the auth guard.
        const peer = identityOf(call.getAuthContext?.()?.sslPeerCertificate);
        if (peer) values.set(peerKey, peer);
        // What the auth guard reads of every call, without Headers' validation per entry.
        const auth = call.metadata.get('authorization');
        // Several values read as Headers reads them, joined (and then refused as malformed).
        values.set(authorizationKey, auth.length === 0 ? null : auth.map(String).join(', '));
      }
      return values;
    },
    finish(): void {
      finished = true;
    },
  };
}
