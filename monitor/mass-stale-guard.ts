// The mass-stale guard (Eureka's self-preservation; the Kubernetes node
// controller's unhealthy-zone threshold and eviction rate limits). When a
// large share of the fleet goes silent at once, the likelier cause is the
// network, the hive or a shared dependency, not that many workers, and
// restarting them all would make it worse. Workers are still marked STALE
// (the registry tells the truth), but restart actions are held, and once
// heartbeats come back the held actions resume at a limited rate.
//
// O(1) amortised per change: marks sit in a time-ordered array with a
// moving head, and the count of recent, still-stale marks is kept as a
// number, so a wave of 100k stale workers costs 100k small steps.

export interface GuardOptions {
  /** The guard engages when more than this share of the fleet (0..1) goes stale within the window, and stays engaged while more than it is stale. */
  threshold: number;
  /** Fewest stale workers that can engage it (a fleet of two losing one is not a mass event). */
  minCount: number;
  /**
   * The window; null: twice the (largest) heartbeat interval of the workers
   * marked. The spec's "within one interval" is about when workers stop
   * (die together, or within one interval of each other); their stale
   * marks come later and further apart, since each is due 2x interval after
   * its own last beat and those last beats are spread over one more
   * interval (random phase, ±10% jitter). Workers killed at the same
   * instant are marked over up to 1.1 interval, so a one-interval window
   * would split such a wave and could miss it; 2x interval holds it.
   */
  windowMs: number | null;
  /** After release, at most one restart action per this many ms until the backlog has drained. */
  resumeIntervalMs: number;
  /** Workers in the fleet (watched, not LEFT). */
  fleetSize: () => number;
  onEngage?: (info: GuardInfo) => void;
  onRelease?: (info: GuardInfo) => void;
}

export interface GuardInfo {
  /** Workers STALE now. */
  stale: number;
  fleet: number;
  /** recent / fleet on engage; stale / fleet on release. */
  share: number;
  /** Workers that went stale within the window and still are. */
  recent: number;
  windowMs: number;
}

interface Mark {
  at: number;
  id: string;
  live: boolean;
}

export class MassStaleGuard {
  private readonly stale = new Set<string>();
  private marks: Mark[] = [];
  private head = 0;
  private readonly live = new Map<string, Mark>();
  private recent = 0;
  private windowMs: number;
  private isEngaged = false;
  private recovering = false;
  private nextSlot = 0;

  constructor(private readonly o: GuardOptions) {
    this.windowMs = o.windowMs ?? 0;
  }

  get engaged(): boolean {
    return this.isEngaged;
  }

  /** Rate limiting after a release is still on. */
  get limiting(): boolean {
    return this.recovering;
  }

  get staleCount(): number {
    return this.stale.size;
  }

  get recentCount(): number {
    return this.recent;
  }

  /**
   * A worker went STALE at `at` (normally now; earlier for workers found
   * STALE in a snapshot, so that old marks do not count as a new wave).
   */
  noteStale(id: string, at: number, now: number, intervalMs: number): void {
    if (this.o.windowMs === null) this.windowMs = Math.max(this.windowMs, 2 * intervalMs);
    this.stale.add(id);
    this.prune(now);
    if (at > now - this.windowMs && !this.live.has(id)) {
      const m: Mark = { at, id, live: true };
      this.insert(m);
      this.live.set(id, m);
      this.recent++;
    }
    if (this.isEngaged) return;
    const fleet = Math.max(1, this.o.fleetSize());
    if (this.recent >= this.o.minCount && this.recent / fleet > this.o.threshold) {
      this.isEngaged = true;
      this.recovering = false;
      this.o.onEngage?.({ stale: this.stale.size, fleet, share: this.recent / fleet, recent: this.recent, windowMs: this.windowMs });
    }
  }

  /** A worker is no longer STALE (recovered, restarting, left, removed). */
  noteNotStale(id: string, now: number): void {
    if (!this.stale.delete(id)) return;
    const m = this.live.get(id);
    if (m) {
      m.live = false;
      this.live.delete(id);
      this.recent--;
    }
    this.maybeRelease(now);
  }

  /** Re-checks the release condition (the fleet may have changed). */
  maybeRelease(now: number): void {
    if (!this.isEngaged) return;
    const fleet = Math.max(1, this.o.fleetSize());
    const share = this.stale.size / fleet;
    if (share > this.o.threshold) return;
    this.isEngaged = false;
    this.recovering = true;
    this.nextSlot = now;
    this.o.onRelease?.({ stale: this.stale.size, fleet, share, recent: this.recent, windowMs: this.windowMs });
  }

  /**
   * Starts limiting restarts from now on as after a release (a new leader
   * inherits a backlog of due restarts and must not fire them in a burst).
   */
  throttleFrom(now: number): void {
    this.recovering = true;
    this.nextSlot = now;
  }

  /**
   * Reserves the time at which one restart action may run: now, unless the
   * guard released recently and earlier reservations fill the slots. Each
   * caller gets its own slot, one resumeInterval apart. Callers check
   * `engaged` first: while engaged nothing may run.
   */
  reserve(now: number): number {
    if (!this.recovering) return now;
    if (now >= this.nextSlot + this.o.resumeIntervalMs) {
      // A whole interval with nobody waiting: the backlog has drained.
      this.recovering = false;
      return now;
    }
    const slot = Math.max(now, this.nextSlot);
    this.nextSlot = slot + this.o.resumeIntervalMs;
    return slot;
  }

  private prune(now: number): void {
    const cut = now - this.windowMs;
    while (this.head < this.marks.length && this.marks[this.head].at <= cut) {
      const m = this.marks[this.head++];
      if (m.live) {
        m.live = false;
        this.live.delete(m.id);
        this.recent--;
      }
    }
    if (this.head > 1024 && this.head * 2 > this.marks.length) {
      this.marks = this.marks.slice(this.head);
      this.head = 0;
    }
  }

  private insert(m: Mark): void {
    const n = this.marks.length;
    if (n === this.head || this.marks[n - 1].at <= m.at) {
      this.marks.push(m);
      return;
    }
    // Out of order (a snapshot's older mark): binary search its place.
    let lo = this.head;
    let hi = n;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.marks[mid].at <= m.at) lo = mid + 1;
      else hi = mid;
    }
    this.marks.splice(lo, 0, m);
  }
}
