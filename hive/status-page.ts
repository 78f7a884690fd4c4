import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type http from 'node:http';
import { join } from 'node:path';

// The status page: static files from hive/status-page/, read once at start
// and served from memory on the HTTP port. The page holds no secret: the
// browser asks for a read token once and keeps it in sessionStorage, and
// calls the API on the same origin, so a strict Content-Security-Policy
// (our own scripts, styles and API only) costs nothing.

const DIR = join(import.meta.dirname, 'status-page');

const ASSETS: Record<string, { file: string; type: string }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/index.html': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/connect.js': { file: 'connect.js', type: 'text/javascript; charset=utf-8' },
  '/style.css': { file: 'style.css', type: 'text/css; charset=utf-8' },
  '/favicon.svg': { file: 'favicon.svg', type: 'image/svg+xml' },
};

export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

const SECURITY_HEADERS = {
  'content-security-policy': CONTENT_SECURITY_POLICY,
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
  'cross-origin-opener-policy': 'same-origin',
};

interface Loaded {
  body: Buffer;
  type: string;
  etag: string;
}

/** A pages hook for createHttpHandler: true when it answered the request. */
export function createStatusPages(dir = DIR): (req: http.IncomingMessage, res: http.ServerResponse) => boolean {
  const files = new Map<string, Loaded>();
  for (const [path, { file, type }] of Object.entries(ASSETS)) {
    const body = readFileSync(join(dir, file));
    files.set(path, { body, type, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"` });
  }
  return (req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const asset = files.get(url.pathname);
    if (!asset) return false;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' });
      res.end('method not allowed\n');
      return true;
    }
    // Revalidated on every load, so an upgraded hive serves its new page at once.
    const headers = { ...SECURITY_HEADERS, 'content-type': asset.type, 'cache-control': 'no-cache', etag: asset.etag };
    if (req.headers['if-none-match'] === asset.etag) {
      res.writeHead(304, headers);
      res.end();
      return true;
    }
    res.writeHead(200, { ...headers, 'content-length': String(asset.body.length) });
    res.end(req.method === 'HEAD' ? undefined : asset.body);
    return true;
  };
}
