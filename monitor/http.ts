import http from 'node:http';
import type { Registry as PromRegistry } from 'prom-client';
import type { Logger } from '../lib/logger.js';

// The monitor's own HTTP port: /metrics for Prometheus, /healthz for the
// orchestrator (200 while the registry is in sight, 503 otherwise, with
// the details as JSON either way).

export interface HealthReport {
  ok: boolean;
  [k: string]: unknown;
}

export interface MonitorHttp {
  port: number;
  close(): Promise<void>;
}

export function serveMonitorHttp(opts: { prom: PromRegistry; host: string; port: number; health: () => HealthReport; log: Logger }): Promise<MonitorHttp> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (path === '/metrics') {
      opts.prom.metrics().then(
        (body) => {
          res.writeHead(200, { 'content-type': opts.prom.contentType });
          res.end(body);
        },
        (err) => {
          opts.log.error({ err }, 'metrics collection failed');
          res.writeHead(500).end();
        },
      );
      return;
    }
    if (path === '/healthz') {
      const report = opts.health();
      res.writeHead(report.ok ? 200 : 503, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ status: report.ok ? 'ok' : 'unavailable', ...report }) + '\n');
      return;
    }
    res.writeHead(404).end();
  });
  server.keepAliveTimeout = 5000;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      const port = (server.address() as { port: number }).port;
      resolve({
        port,
        close: () =>
          new Promise<void>((r) => {
            server.close(() => r());
            server.closeAllConnections();
          }),
      });
    });
  });
}
