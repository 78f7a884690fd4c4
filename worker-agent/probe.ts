// HTTP probe of the worker itself. Health is data, not an exception: every
// outcome, including a refused connection or a timeout, is a ProbeResult.
// The deadline runs on the injected clock, so tests move time instead of waiting.

import { HealthStatus } from '../gen/hive/v1/registry_pb.js';
import type { Clock } from '../lib/clock.js';

export interface ProbeResult {
  status: HealthStatus;
  /** From request start to response headers (or to the failure). */
  latencyMs: number;
  detail: string;
  /** Present when the worker answered at all. */
  httpStatus?: number;
}

export interface HttpProbeOptions {
  url: string;
  clock: Clock;
  /** No answer by then is unhealthy. */
  timeoutMs?: number;
  /** A 200 slower than this is degraded. */
  slowMs?: number;
}

export interface HttpProbe {
  readonly url: string;
  probe(signal?: AbortSignal): Promise<ProbeResult>;
}

export function createHttpProbe(options: HttpProbeOptions): HttpProbe {
  const { url, clock, timeoutMs = 5000, slowMs = 1000 } = options;
  return {
    url,
    async probe(signal) {
      const request = new AbortController();
      const deadline = new AbortController();
      let timedOut = false;
      clock.sleep(timeoutMs, deadline.signal).then(
        () => {
          timedOut = true;
          request.abort(new Error(`timed out after ${timeoutMs} ms`));
        },
        () => {
          // cancelled: the probe finished first
        },
      );
      const onAbort = () => request.abort(signal!.reason);
      if (signal?.aborted) onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });

      const started = clock.now();
      try {
        const response = await fetch(url, {
          method: 'GET',
          signal: request.signal,
          redirect: 'manual',
          headers: { 'user-agent': 'hive-worker-agent' },
        });
        const latencyMs = clock.now() - started;
        // Only the status matters; release the connection.
        await response.body?.cancel().catch(() => {});
        if (response.status !== 200) {
          return { status: HealthStatus.UNHEALTHY, latencyMs, httpStatus: response.status, detail: `GET ${url} returned HTTP ${response.status}` };
        }
        if (latencyMs > slowMs) {
          return { status: HealthStatus.DEGRADED, latencyMs, httpStatus: 200, detail: `GET ${url} took ${latencyMs} ms (slow above ${slowMs} ms)` };
        }
        return { status: HealthStatus.HEALTHY, latencyMs, httpStatus: 200, detail: `GET ${url} returned 200 in ${latencyMs} ms` };
      } catch (err) {
        const latencyMs = clock.now() - started;
        const why = timedOut ? `timed out after ${timeoutMs} ms` : signal?.aborted ? 'aborted' : `failed: ${describeFetchError(err)}`;
        return { status: HealthStatus.UNHEALTHY, latencyMs, detail: `GET ${url} ${why}` };
      } finally {
        deadline.abort();
        signal?.removeEventListener('abort', onAbort);
      }
    },
  };
}

/** fetch hides the socket error in `cause` behind a generic "fetch failed". */
function describeFetchError(err: unknown): string {
  const cause = (err as { cause?: unknown })?.cause as { code?: string; message?: string } | undefined;
  if (cause?.code === 'ECONNREFUSED') return 'connection refused';
  if (cause?.code) return cause.message ? `${cause.code} (${cause.message})` : cause.code;
  if (cause?.message) return cause.message;
  return err instanceof Error ? err.message : String(err);
}
