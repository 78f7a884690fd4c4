import type { Clock } from '../lib/clock.js';

// Per-token rate limits, so one broken agent (a tight retry loop, a stream
// that floods heartbeats) cannot starve the hive or the other workers.
// A token bucket per caller token: it holds up to `burst` requests and
// refills at `perSecond`; a request that finds it empty is refused with
// ResourceExhausted before it is decoded into any state change.

export const RATE_DEFAULTS = {
  /** An agent heartbeats every few seconds; 20/s is two orders of magnitude of headroom. */
  perSecond: 20,
  burst: 40,
  streamsPerWorker: 4,
} as const;

export class TokenBucket {
  /** Forgotten by the limiter's sweep: a holder must ask the limiter for the key's bucket again. */
  swept = false;
  private tokens: number;
  private at: number;

  constructor(
    private readonly perSecond: number,
    private readonly burst: number,
    now: number,
  ) {
    this.tokens = burst;
    this.at = now;
  }

  /** Takes one request's worth; false when the bucket is empty. */
  take(now: number): boolean {
    this.refill(now);
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  /** Whether the bucket is full again (nothing to remember about this caller). */
  full(now: number): boolean {
    this.refill(now);
    return this.tokens >= this.burst;
  }

  /** Milliseconds until the next request would be admitted. */
  waitMs(now: number): number {
    this.refill(now);
    return this.tokens >= 1 ? 0 : Math.ceil(((1 - this.tokens) / this.perSecond) * 1000);
  }

  private refill(now: number): void {
    // A clock that went backwards refills nothing rather than going negative.
    const elapsed = Math.max(0, now - this.at);
    this.at = Math.max(this.at, now);
    this.tokens = Math.min(this.burst, this.tokens + (elapsed * this.perSecond) / 1000);
  }
}

export interface RateLimiter {
  /** Admits one request of the caller; false: over its limit. */
  take(key: string): boolean;
  /** take() for one key, for a caller that charges it per message (a stream): the bucket is looked up once, not per message. */
  meterFor(key: string): () => boolean;
  /** Milliseconds until the caller may try again (0 when it may now). */
  retryAfterMs(key: string): number;
  /** Callers currently tracked (full buckets are forgotten on sweep). */
  size(): number;
}

export interface RateLimiterOptions {
  clock: Clock;
  /** Average requests per second per key; 0 turns the limiter off. */
  perSecond: number;
  /** Requests a key may make at once; at least 1 when the limiter is on. */
  burst: number;
  /** Buckets kept before full ones are swept (bounds memory under many tokens). */
  sweepAt?: number;
}

export function createRateLimiter(o: RateLimiterOptions): RateLimiter {
  const buckets = new Map<string, TokenBucket>();
  const sweepAt = o.sweepAt ?? 10_000;
  // The next sweep waits for the map to double what the last one left: with
  // more callers than sweepAt whose buckets are not full (a large fleet
  // heartbeating), a sweep at every new bucket would cost a pass over all of
  // them per request.
  let nextSweep = sweepAt;
  const burst = Math.max(1, o.burst);
  if (o.perSecond <= 0) return { take: () => true, meterFor: () => () => true, retryAfterMs: () => 0, size: () => 0 };

  function sweep(now: number): void {
    for (const [k, b] of buckets) {
      if (!b.full(now)) continue;
      b.swept = true;
      buckets.delete(k);
    }
  }

  function bucketOf(key: string, now: number): TokenBucket {
    let b = buckets.get(key);
    if (!b) {
      if (buckets.size >= nextSweep) {
        sweep(now);
        nextSweep = Math.max(sweepAt, 2 * buckets.size);
      }
      b = new TokenBucket(o.perSecond, burst, now);
      buckets.set(key, b);
    }
    return b;
  }

  return {
    take(key) {
      const now = o.clock.now();
      return bucketOf(key, now).take(now);
    },
    meterFor(key) {
      let b: TokenBucket | undefined;
      return () => {
        const now = o.clock.now();
        if (b === undefined || b.swept) b = bucketOf(key, now);
        return b.take(now);
      };
    },
    retryAfterMs(key) {
      return buckets.get(key)?.waitMs(o.clock.now()) ?? 0;
    },
    size: () => buckets.size,
  };
}
