import type { Clock } from '../lib/clock.js';
import { exponentialMs } from '../lib/backoff.js';

// One JSON POST with a timeout and retries, shared by the webhook restart
// action and alert delivery. Redirects are not followed: a receiver that
// answers 3xx has not taken the message (and following it would let a
// webhook URL bounce the monitor somewhere it was not configured to go).

export interface PostResult {
  ok: boolean;
  /** HTTP status of the last try, if any answer came. */
  status?: number;
  tries: number;
  detail: string;
}

export interface PostOptions {
  clock: Clock;
  timeoutMs: number;
  /** Extra tries after the first, for timeouts, network errors, 408, 429 and 5xx. */
  retries: number;
  backoffBaseMs?: number;
  backoffCapMs?: number;
  headers?: Record<string, string>;
  signal?: AbortSignal;
  fetchImpl?: typeof fetch;
}

function retryable(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}

async function once(url: string, body: string, o: PostOptions): Promise<{ status?: number; error?: string }> {
  const ctl = new AbortController();
  const timer = new AbortController();
  const signals = o.signal ? AbortSignal.any([ctl.signal, o.signal]) : ctl.signal;
  // The timeout runs on the injected clock like every other wait.
  void o.clock.sleep(o.timeoutMs, timer.signal).then(
    () => ctl.abort(new Error(`timed out after ${o.timeoutMs} ms`)),
    () => undefined,
  );
  try {
    const res = await (o.fetchImpl ?? fetch)(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'user-agent': 'hive-monitor', ...o.headers },
      body,
      redirect: 'manual',
      signal: signals,
    });
    // Drain the body so the connection can be reused; its content is not needed.
    await res.arrayBuffer().catch(() => undefined);
    return { status: res.status };
  } catch (err) {
    const reason = ctl.signal.aborted ? (ctl.signal.reason as Error).message : (err as Error).message;
    return { error: reason };
  } finally {
    timer.abort();
  }
}

export async function postJson(url: string, payload: unknown, o: PostOptions): Promise<PostResult> {
  const body = JSON.stringify(payload);
  let last: { status?: number; error?: string } = {};
  for (let tryNo = 1; tryNo <= o.retries + 1; tryNo++) {
    if (o.signal?.aborted) break;
    last = await once(url, body, o);
    const s = last.status;
    if (s !== undefined && s >= 200 && s < 300) return { ok: true, status: s, tries: tryNo, detail: `HTTP ${s}` };
    if (s !== undefined && s >= 300 && s < 400) return { ok: false, status: s, tries: tryNo, detail: `HTTP ${s}: redirects are not followed` };
    if (s !== undefined && !retryable(s)) return { ok: false, status: s, tries: tryNo, detail: `HTTP ${s}` };
    if (tryNo <= o.retries) {
      try {
        await o.clock.sleep(exponentialMs(tryNo - 1, o.backoffBaseMs ?? 500, o.backoffCapMs ?? 10_000), o.signal);
      } catch {
        break;
      }
    }
  }
  const tries = o.retries + 1;
  return { ok: false, status: last.status, tries, detail: last.status !== undefined ? `HTTP ${last.status} after ${tries} tries` : `${last.error ?? 'aborted'} (after ${tries} tries)` };
}
