import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CONTENT_SECURITY_POLICY, createStatusPages } from '../../hive/status-page.js';

// The status page's files as the hive serves them: content types, the
// Content-Security-Policy, caching, and nothing outside the known paths.

describe('createStatusPages', () => {
  let server: http.Server;
  let base: string;

  beforeAll(async () => {
    const pages = createStatusPages();
    server = http.createServer((req, res) => {
      if (!pages(req, res)) {
        res.writeHead(404);
        res.end('fallthrough');
      }
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it.each([
    ['/', 'text/html; charset=utf-8'],
    ['/index.html', 'text/html; charset=utf-8'],
    ['/app.js', 'text/javascript; charset=utf-8'],
    ['/connect.js', 'text/javascript; charset=utf-8'],
    ['/style.css', 'text/css; charset=utf-8'],
    ['/favicon.svg', 'image/svg+xml'],
  ])('serves %s as %s with a strict CSP', async (path, type) => {
    const res = await fetch(base + path);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe(type);
    expect(res.headers.get('content-security-policy')).toBe(CONTENT_SECURITY_POLICY);
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    expect((await res.arrayBuffer()).byteLength).toBeGreaterThan(0);
  });

  it('allows only its own scripts, styles and API: no inline code, no other origin', () => {
    expect(CONTENT_SECURITY_POLICY).toContain("default-src 'none'");
    expect(CONTENT_SECURITY_POLICY).toContain("script-src 'self'");
    expect(CONTENT_SECURITY_POLICY).toContain("connect-src 'self'");
    expect(CONTENT_SECURITY_POLICY).not.toContain('unsafe');
  });

  it('the page carries no token and no inline script or style', async () => {
    const html = await (await fetch(base + '/')).text();
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/);
    expect(html).not.toMatch(/\sstyle=/);
    expect(html).not.toMatch(/Bearer|hive_(read|wkr|join)_/);
    expect(html).toContain('<script type="module" src="/app.js"></script>');
  });

  it('answers 304 to a matching ETag, HEAD without a body, 405 to other methods', async () => {
    const first = await fetch(base + '/app.js');
    const etag = first.headers.get('etag')!;
    expect(first.headers.get('cache-control')).toBe('no-cache');
    expect((await fetch(base + '/app.js', { headers: { 'if-none-match': etag } })).status).toBe(304);
    const head = await fetch(base + '/', { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(await head.text()).toBe('');
    const post = await fetch(base + '/', { method: 'POST', body: 'x' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
  });

  it('leaves every other path to the next handler', async () => {
    for (const path of ['/nope', '/status-page/app.js', '/../package.json', '/app.js/x']) {
      const res = await fetch(base + path);
      expect(res.status, path).toBe(404);
      expect(await res.text()).toBe('fallthrough');
    }
  });
});
