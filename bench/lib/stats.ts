// Small statistics for the benchmark: a latency reservoir, percentiles, and
// the median with its spread over repeated measurements.

/** Uniform sample of at most `size` values (Vitter's algorithm R). */
export class Reservoir {
  private readonly values: number[] = [];
  private seen = 0;

  constructor(private readonly size = 20_000) {}

  add(v: number): void {
    this.seen++;
    if (this.values.length < this.size) {
      this.values.push(v);
      return;
    }
    const j = Math.floor(Math.random() * this.seen);
    if (j < this.size) this.values[j] = v;
  }

  reset(): void {
    this.values.length = 0;
    this.seen = 0;
  }

  get count(): number {
    return this.values.length;
  }

  sorted(): number[] {
    return [...this.values].sort((a, b) => a - b);
  }
}

/** Nearest-rank percentile of an ascending array (q in 0..1). */
export function percentile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank];
}

export function mean(values: readonly number[]): number {
  return values.length ? values.reduce((a, b) => a + b, 0) / values.length : NaN;
}

export function median(values: readonly number[]): number {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const mid = v.length >> 1;
  return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

export interface Spread {
  median: number;
  min: number;
  max: number;
  values: number[];
}

export function spread(values: readonly number[]): Spread {
  const finite = values.filter((x) => Number.isFinite(x));
  return {
    median: median(finite),
    min: finite.length ? Math.min(...finite) : NaN,
    max: finite.length ? Math.max(...finite) : NaN,
    values: [...values],
  };
}
