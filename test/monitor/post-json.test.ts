import { create } from '@bufbuild/protobuf';
import http from 'node:http';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { RestartAction, RestartMode, RestartPolicySchema } from '../../gen/hive/v1/policy_pb.js';
import { ManualClock } from '../../lib/clock.js';
import { msToDuration } from '../../lib/duration.js';
import { createWebhookAction } from '../../monitor/actions/webhook.js';
import { effectivePolicy } from '../../monitor/policy.js';
import { postJson } from '../../monitor/post-json.js';
import { worker } from './support.js';

// Webhook delivery against a real local HTTP server: retries on 5xx and
// timeouts, no retry on 4xx, redirects refused, the restart body. Every
// wait (the request timeout, the backoff) is on a manual clock: the socket
// is real, but nothing here sleeps.

const TIMEOUT_MS = 300;
const WEBHOOK_TIMEOUT_MS = 1000;

/**
 * A manual clock that moves itself past each backoff the moment it is
 * asked for; a request timeout (TIMEOUT_MS, or the webhook action's
 * WEBHOOK_TIMEOUT_MS) moves only when the server has the request and decides
 * not to answer.
 */
class SteppingClock extends ManualClock {
  constructor(private readonly timeouts: readonly number[]) {
    super();
  }
  override sleep(ms: number, signal?: AbortSignal): Promise<void> {
    const p = super.sleep(ms, signal);
    if (!this.timeouts.includes(ms)) setImmediate(() => void this.advance(ms));
    return p;
  }
}

interface Hit {
  path: string;
  body: Record<string, unknown>;
}

describe('postJson and the webhook action', () => {
  let server: http.Server;
  let base: string;
  const hits: Hit[] = [];
  // path -> statuses to answer in turn (then 200); 'hang' never answers.
  const script = new Map<string, Array<number | 'hang'>>();
  let clock: SteppingClock;
  beforeEach(() => {
    clock = new SteppingClock([TIMEOUT_MS, WEBHOOK_TIMEOUT_MS]);
  });

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      let data = '';
      req.on('data', (c) => (data += c));
      req.on('end', () => {
        hits.push({ path: req.url!, body: data ? JSON.parse(data) : {} });
        const next = script.get(req.url!)?.shift() ?? 200;
        // The request is in and will not be answered: its timeout is due.
        if (next === 'hang') return void clock.advance(TIMEOUT_MS);
        if (next >= 300 && next < 400) res.writeHead(next, { location: 'http://169.254.169.254/latest/meta-data' }).end();
        else res.writeHead(next, { 'content-type': 'application/json' }).end('{}');
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  });

  const opts = () => ({ clock, timeoutMs: TIMEOUT_MS, retries: 2, backoffBaseMs: 10 });
  const count = (path: string) => hits.filter((h) => h.path === path).length;

  it('delivers JSON and reports the status', async () => {
    const r = await postJson(`${base}/ok`, { hello: 'world' }, opts());
    expect(r).toEqual({ ok: true, status: 200, tries: 1, detail: 'HTTP 200' });
    expect(hits.find((h) => h.path === '/ok')!.body).toEqual({ hello: 'world' });
  });

  it('retries 5xx and 429, then succeeds', async () => {
    script.set('/flaky', [503, 429]);
    const r = await postJson(`${base}/flaky`, {}, opts());
    expect(r).toMatchObject({ ok: true, tries: 3 });
    expect(count('/flaky')).toBe(3);
  });

  it('gives up after its retries', async () => {
    script.set('/down', [500, 500, 500, 500]);
    const t0 = clock.now();
    const r = await postJson(`${base}/down`, {}, opts());
    expect(r).toMatchObject({ ok: false, status: 500, tries: 3, detail: 'HTTP 500 after 3 tries' });
    expect(clock.now() - t0).toBe(10 + 20); // the two backoffs, doubling
  });

  it('does not retry a 4xx', async () => {
    script.set('/bad', [400]);
    expect(await postJson(`${base}/bad`, {}, opts())).toMatchObject({ ok: false, status: 400, tries: 1 });
    expect(count('/bad')).toBe(1);
  });

  it('treats a redirect as a failure and does not follow it', async () => {
    script.set('/moved', [302]);
    expect(await postJson(`${base}/moved`, {}, opts())).toMatchObject({ ok: false, status: 302, tries: 1, detail: expect.stringMatching(/redirects are not followed/) });
  });

  it('times out a receiver that never answers, and retries', async () => {
    script.set('/hang', ['hang', 'hang']);
    const t0 = clock.now();
    const r = await postJson(`${base}/hang`, {}, opts());
    expect(r).toMatchObject({ ok: true, tries: 3 });
    expect(clock.now() - t0).toBe(2 * TIMEOUT_MS + 10 + 20);
    script.set('/hang2', ['hang', 'hang', 'hang']);
    const r2 = await postJson(`${base}/hang2`, {}, opts());
    expect(r2).toMatchObject({ ok: false, detail: expect.stringMatching(/timed out after 300 ms/) });
    expect(count('/hang2')).toBe(3);
  });

  it('a connection refused is a failed delivery, not an exception', async () => {
    const r = await postJson('http://127.0.0.1:1/none', {}, { ...opts(), retries: 0 });
    expect(r.ok).toBe(false);
    expect(r.status).toBeUndefined();
  });

  it('the webhook action posts the restart with an attempt id that is the same on every retry', async () => {
    script.set('/restart', [503]);
    const action = createWebhookAction({ clock, retries: 2 });
    const policy = effectivePolicy(create(RestartPolicySchema, { mode: RestartMode.ON_STALE, action: RestartAction.WEBHOOK, webhookUrl: `${base}/restart`, actionTimeout: msToDuration(WEBHOOK_TIMEOUT_MS) }), 1000, 'worker');
    const res = await action({ worker: worker({ id: 'gpu-3', labels: { zone: 'b' } }), policy, trigger: 'stale', attempt: 2, attemptId: 'rst_abc', reason: 'r' }, new AbortController().signal);
    expect(res.ok).toBe(true);
    const bodies = hits.filter((h) => h.path === '/restart').map((h) => h.body);
    expect(bodies).toHaveLength(2);
    expect(bodies[0]).toEqual(bodies[1]);
    expect(bodies[0]).toMatchObject({ kind: 'hive.restart', attempt_id: 'rst_abc', worker_id: 'gpu-3', labels: { zone: 'b' }, trigger: 'stale', attempt: 2, max_attempts: 5, state: 'healthy' });
  });
});
