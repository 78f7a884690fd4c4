// The hive's clock as seen from the monitor. Deadlines are the hive's
// numbers (last_seen is stamped by the hive), so the monitor sleeps in hive
// time. Two kinds of evidence bound the offset (hive minus local):
// - a watch message stamped hive_time and received at local r says
//   offset >= hive_time - r (it spent some time in transit);
// - an answer stamped hive_time to a request sent at local s (an applied
//   stale mark's state_since, the watch's first message) says
//   offset <= hive_time - s (the hive stamped it after the request left).
// Hosts keep their clocks within milliseconds of each other (NTP), so the
// estimate is 0 (the local clock) as long as the evidence allows it, and
// otherwise the bound nearest 0. Taking the lower bound alone would make
// every deadline late by the smallest transit, which on a busy hive is a
// turn of its event loop (hundreds of ms). An estimate that turns out
// early costs no false mark: the hive checks every deadline on its own
// clock and answers a mark it finds early with when to send it again.

const WINDOW = 64;

/** The most recent samples (WINDOW of them) and the best among them. */
class Window {
  private samples: number[] = [];
  private next = 0;
  best: number | null = null;

  constructor(private readonly pick: (a: number, b: number) => number) {}

  add(s: number): void {
    if (this.samples.length < WINDOW) this.samples.push(s);
    else this.samples[this.next] = s;
    this.next = (this.next + 1) % WINDOW;
    this.best = this.samples.reduce((a, b) => this.pick(a, b));
  }

  clear(): void {
    this.samples = [];
    this.next = 0;
    this.best = null;
  }
}

export class HiveClock {
  private readonly lower = new Window(Math.max);
  private readonly upper = new Window(Math.min);

  constructor(private readonly localNow: () => number) {}

  /** A hive_time received at local time receivedAt (default now): a lower bound. */
  sample(hiveTime: number, receivedAt = this.localNow()): void {
    this.lower.add(hiveTime - receivedAt);
  }

  /** A hive_time stamped in answer to a request sent at local time sentAt: an upper bound. */
  answered(hiveTime: number, sentAt: number): void {
    this.upper.add(hiveTime - sentAt);
  }

  /** Forgets every sample (a new stream may be a new hive on another host). */
  reset(): void {
    this.lower.clear();
    this.upper.clear();
  }

  /** Estimated hive minus local, in ms: 0 where the bounds allow it, else the nearest bound. */
  offset(): number {
    const lo = this.lower.best ?? -Infinity;
    const hi = this.upper.best ?? Infinity;
    // Bounds that cross (a clock stepped between samples): the lower one never makes a mark early.
    if (lo > hi) return lo;
    return Math.min(Math.max(0, lo), hi);
  }

  now(): number {
    return this.localNow() + this.offset();
  }

  toLocal(hiveMs: number): number {
    return hiveMs - this.offset();
  }
}
