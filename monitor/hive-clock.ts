// The hive's clock as seen from the monitor. Deadlines are the hive's
// numbers (last_seen is stamped by the hive), so the monitor sleeps in hive
// time. Each watch message carries hive_time from when it was sent; the
// offset sample hive_time - local_receive_time is the true offset minus the
// transit time, so the largest recent sample is the best estimate, and the
// error it leaves makes the monitor late by the transit time, never early.

const WINDOW = 64;

export class HiveClock {
  private samples: number[] = [];
  private next = 0;
  private best: number | null = null;

  constructor(private readonly localNow: () => number) {}

  /** Records one hive_time observed at local time receivedAt (default now). */
  sample(hiveTime: number, receivedAt = this.localNow()): void {
    const s = hiveTime - receivedAt;
    if (this.samples.length < WINDOW) this.samples.push(s);
    else this.samples[this.next] = s;
    this.next = (this.next + 1) % WINDOW;
    this.best = Math.max(...this.samples);
  }

  /** Forgets every sample (a new stream may be a new hive on another host). */
  reset(): void {
    this.samples = [];
    this.next = 0;
    this.best = null;
  }

  /** Estimated hive minus local, in ms (0 before the first sample). */
  offset(): number {
    return this.best ?? 0;
  }

  now(): number {
    return this.localNow() + this.offset();
  }

  toLocal(hiveMs: number): number {
    return hiveMs - this.offset();
  }
}
