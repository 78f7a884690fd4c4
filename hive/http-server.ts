import { connectNodeAdapter } from '@connectrpc/connect-node';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import type { Registry as PromRegistry } from 'prom-client';
import type { Logger } from '../lib/logger.js';
import { connectRoutes, type Mounted } from './routes.js';

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
  degradations?: () => string[];
  /** Extra pages (the status page and its assets), by path. */
  pages?: (req: http.IncomingMessage, res: http.ServerResponse) => boolean;
  maxMessageBytes: number;
  shutdownSignal?: AbortSignal;
}

export function createHttpHandler(deps: HttpDeps) {
  return connectNodeAdapter({
    routes: connectRoutes(deps.mounted),
    readMaxBytes: deps.maxMessageBytes,
    shutdownSignal: deps.shutdownSignal,
    grpc: true,
    grpcWeb: true,
    connect: true,
    fallback(req, res) {
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
        deps.healthProblems().then((problems) => {
          const degraded = deps.degradations?.() ?? [];
          const status = problems.length ? 'unhealthy' : degraded.length ? 'degraded' : 'ok';
          res.writeHead(problems.length ? 503 : 200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ status, problems, ...(degraded.length ? { degraded } : {}) }) + '\n');
        });
        return;
      }
      if (deps.pages?.(req as http.IncomingMessage, res as http.ServerResponse)) return;
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found\n');
    },
  });
}

export interface DualServer {
  port: number;
  close(): Promise<void>;
}

export async function listenHttp(handler: ReturnType<typeof createHttpHandler>, host: string, port: number): Promise<DualServer> {
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
