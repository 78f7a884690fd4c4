import { Code, ConnectError, createConnectRouter, type ConnectRouterOptions } from '@connectrpc/connect';
import type { UniversalServerResponse } from '@connectrpc/connect/protocol';
import { compressionBrotli, compressionGzip, universalRequestFromNodeRequest, universalResponseToNodeResponse } from '@connectrpc/connect-node';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import type tls from 'node:tls';
import { createContextValues } from '@connectrpc/connect';
import type { Registry as PromRegistry } from 'prom-client';
import type { Logger } from '../lib/logger.js';
import { connectRoutes, type Mounted } from './routes.js';
import { identityOf, peerKey, type TlsFiles } from './tls.js';

// The HTTP port: Connect (JSON and binary), gRPC-Web and gRPC over
// HTTP/1.1 and cleartext HTTP/2 on one socket, plus /metrics, /healthz and
// the status page. A connection is handed to the HTTP/2 server when it
// opens with the HTTP/2 client preface, to the HTTP/1 server otherwise.

const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

export interface HttpDeps {
  mounted: Mounted[];
  log: Logger;
  prom: PromRegistry;
  /** null when healthy, else what is wrong (served as 503). */
  healthProblems: () => Promise<string[]>;
  /** What runs degraded but still serves (200 with status "degraded": a load balancer keeps sending heartbeats). */
  /** What does not stop the hive serving but is wrong (a 200 with status "degraded"). */
  degradations?: () => Promise<string[]>;
  /** Extra pages (the status page and its assets), by path. */
  pages?: (req: http.IncomingMessage, res: http.ServerResponse) => boolean;
  maxMessageBytes: number;
  shutdownSignal?: AbortSignal;
}

function peerOf(req: http.IncomingMessage | http2.Http2ServerRequest) {
  const socket = req.socket as tls.TLSSocket;
  if (typeof socket?.getPeerCertificate !== 'function' || !socket.authorized) return undefined;
  return identityOf(socket.getPeerCertificate());
}

/**
 * connect-node reports a request body that is not valid protobuf as
 * Internal (its parser is shared with responses); it is the caller's
 * mistake, InvalidArgument, as on the grpc-js port. Connect unary answers
 * and gRPC trailers are rewritten; everything else passes through.
 */
async function fixParseErrors(res: UniversalServerResponse): Promise<UniversalServerResponse> {
  const isParse = (m: string | null) => m !== null && /^parse(%20| )binary/.test(m);
  for (const h of [res.header, res.trailer]) {
    if (h?.get('grpc-status') === String(Code.Internal) && isParse(h.get('grpc-message'))) h.set('grpc-status', String(Code.InvalidArgument));
  }
  if (res.status !== 500 || !res.header?.get('content-type')?.startsWith('application/json') || !res.body) return res;
  const chunks: Uint8Array[] = [];
  for await (const c of res.body as AsyncIterable<Uint8Array>) chunks.push(c);
  const text = Buffer.concat(chunks).toString('utf8');
  let body: Uint8Array = Buffer.from(text);
  let status = res.status;
  try {
    const err = JSON.parse(text) as { code?: string; message?: string };
    if (err.code === 'internal' && isParse(err.message ?? null)) {
      status = 400;
      body = Buffer.from(JSON.stringify({ code: 'invalid_argument', message: `malformed request: ${err.message}` }));
    }
  } catch {
    /* not an error body we know; pass it on */
  }
  const header = new Headers(res.header);
  header.set('content-length', String(body.byteLength));
  return { ...res, status, header, body: (async function* () { yield body; })() };
}

export function createHttpHandler(deps: HttpDeps) {
  const options: ConnectRouterOptions = {
    readMaxBytes: deps.maxMessageBytes,
    shutdownSignal: deps.shutdownSignal,
    grpc: true,
    grpcWeb: true,
    connect: true,
    acceptCompression: [compressionGzip, compressionBrotli],
  };
  const router = createConnectRouter(options);
  connectRoutes(deps.mounted)(router);
  const paths = new Map(router.handlers.map((h) => [h.requestPath, h]));
  const contextValues = (req: http.IncomingMessage | http2.Http2ServerRequest) => {
    const values = createContextValues();
    const peer = peerOf(req);
    return peer ? values.set(peerKey, peer) : values;
  };
  const fallback = (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname === '/metrics') {
      deps.prom.metrics().then(
        (text) => {
          res.writeHead(200, { 'content-type': deps.prom.contentType });
          res.end(text);
        },
        (err) => {
          deps.log.error({ err }, 'metrics collection failed');
          res.writeHead(500, { 'content-type': 'text/plain' });
          res.end('metrics collection failed\n');
        },
      );
      return;
    }
    if (url.pathname === '/healthz') {
      Promise.all([deps.healthProblems(), deps.degradations?.() ?? []]).then(([problems, degraded]) => {
        const status = problems.length ? 'unhealthy' : degraded.length ? 'degraded' : 'ok';
        res.writeHead(problems.length ? 503 : 200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ status, problems, ...(degraded.length ? { degraded } : {}) }) + '\n');
      });
      return;
    }
    if (deps.pages?.(req as http.IncomingMessage, res as http.ServerResponse)) return;
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found\n');
  };
  // connect-node's adapter, with the parse-error fix between handler and response.
  return (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse) => {
    const handler = paths.get(req.url?.split('?', 2)[0] ?? '');
    if (!handler) return fallback(req, res);
    const ureq = universalRequestFromNodeRequest(req as http.IncomingMessage, res as http.ServerResponse, undefined, contextValues(req));
    handler(ureq)
      .then(fixParseErrors)
      .then((ures) => universalResponseToNodeResponse(ures, res))
      .catch((reason) => {
        if (ConnectError.from(reason).code === Code.Aborted) return;
        deps.log.warn({ err: reason, method: `${handler.service.typeName}/${handler.method.name}` }, 'writing the response failed');
      });
  };
}

export interface DualServer {
  port: number;
  close(): Promise<void>;
}

export async function listenHttp(handler: ReturnType<typeof createHttpHandler>, host: string, port: number, tlsFiles?: TlsFiles): Promise<DualServer> {
  if (tlsFiles) return listenHttps(handler, host, port, tlsFiles);
  const h1 = http.createServer(handler);
  const h2 = http2.createServer({}, handler);
  h1.keepAliveTimeout = 65_000;
  const sockets = new Set<net.Socket>();
  const front = net.createServer((socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.once('readable', () => {
      const head: Buffer | null = socket.read(Math.min(H2_PREFACE.length, socket.readableLength));
      if (head === null) {
        socket.once('readable', () => front.emit('connection', socket));
        return;
      }
      socket.unshift(head);
      const isH2 = head.length > 0 && H2_PREFACE.subarray(0, head.length).equals(head);
      (isH2 ? h2 : h1).emit('connection', socket);
    });
  });
  await new Promise<void>((resolve, reject) => {
    front.once('error', reject);
    front.listen(port, host, () => resolve());
  });
  const addr = front.address() as net.AddressInfo;
  return {
    port: addr.port,
    close: () =>
      new Promise<void>((resolve) => {
        front.close(() => resolve());
        h1.closeAllConnections();
        for (const s of sockets) s.destroy();
      }),
  };
}

/**
 * The HTTP port over TLS: HTTP/2 and HTTP/1.1 (ALPN) from one server. With
 * a client CA, a connection without a certificate it signed is refused in
 * the handshake, /metrics and /healthz included (scrapers and probes then
 * present a certificate too).
 */
async function listenHttps(handler: ReturnType<typeof createHttpHandler>, host: string, port: number, t: TlsFiles): Promise<DualServer> {
  const mutual = t.clientCa !== undefined;
  const server = http2.createSecureServer(
    { cert: t.cert, key: t.key, ca: t.clientCa, requestCert: mutual, rejectUnauthorized: mutual, allowHTTP1: true, minVersion: 'TLSv1.2' },
    handler,
  );
  const sockets = new Set<net.Socket>();
  server.on('secureConnection', (socket: tls.TLSSocket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  // A plaintext client or a failed handshake is that client's problem, not the server's.
  server.on('tlsClientError', () => undefined);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const addr = server.address() as net.AddressInfo;
  return {
    port: addr.port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      }),
  };
}
