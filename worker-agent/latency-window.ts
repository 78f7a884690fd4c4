// The last N probe latencies and their percentiles. Nearest-rank: the p-th
// percentile is the smallest sample with at least p% of samples at or below it,
// so every reported value is one that was actually observed.

export interface LatencyPercentiles {
  p50: number;
  p95: number;
  p99: number;
}

export class LatencyWindow {
  private readonly samples: number[] = [];
  private next = 0;

  constructor(readonly capacity = 100) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`capacity must be a positive integer, got ${capacity}`);
  }

  get size(): number {
    return this.samples.length;
  }

  add(latencyMs: number): void {
    if (!Number.isFinite(latencyMs) || latencyMs < 0) throw new RangeError(`latency must be a finite, non-negative number, got ${latencyMs}`);
    // Ring buffer: once full, the oldest sample is overwritten.
    if (this.samples.length < this.capacity) this.samples.push(latencyMs);
    else this.samples[this.next] = latencyMs;
    this.next = (this.next + 1) % this.capacity;
  }

  /** p in (0, 100]; undefined while the window is empty. */
  percentile(p: number): number | undefined {
    if (!(p > 0 && p <= 100)) throw new RangeError(`percentile must be in (0, 100], got ${p}`);
    if (this.samples.length === 0) return undefined;
    const sorted = [...this.samples].sort((a, b) => a - b);
    return nearestRank(sorted, p);
  }

  percentiles(): LatencyPercentiles | undefined {
    if (this.samples.length === 0) return undefined;
    const sorted = [...this.samples].sort((a, b) => a - b);
    return { p50: nearestRank(sorted, 50), p95: nearestRank(sorted, 95), p99: nearestRank(sorted, 99) };
  }

  clear(): void {
    this.samples.length = 0;
    this.next = 0;
  }
}

function nearestRank(sorted: readonly number[], p: number): number {
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.max(1, rank) - 1]!;
}
