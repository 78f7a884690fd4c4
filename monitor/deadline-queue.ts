// One deadline per key in a binary min-heap paired with a map from key to
// heap slot (etcd's lease queue is the model): renewing a deadline is
// O(log n), finding the next one O(1), and nothing ever scans every key.
// Equal deadlines pop in the order they were set.

export interface Due {
  key: string;
  at: number;
}

export class DeadlineQueue {
  private keys: string[] = [];
  private ats: number[] = [];
  private seqs: number[] = [];
  private slot = new Map<string, number>();
  private seq = 0;

  get size(): number {
    return this.keys.length;
  }

  has(key: string): boolean {
    return this.slot.has(key);
  }

  /** The key's deadline, or undefined when it has none. */
  get(key: string): number | undefined {
    const i = this.slot.get(key);
    return i === undefined ? undefined : this.ats[i];
  }

  /** Sets (inserts or moves) the key's deadline. */
  update(key: string, at: number): void {
    if (!Number.isFinite(at)) throw new RangeError(`deadline for "${key}" is not a finite number: ${at}`);
    const i = this.slot.get(key);
    const seq = this.seq++;
    if (i === undefined) {
      const n = this.keys.length;
      this.keys.push(key);
      this.ats.push(at);
      this.seqs.push(seq);
      this.slot.set(key, n);
      this.up(n);
      return;
    }
    const before = this.ats[i];
    this.ats[i] = at;
    this.seqs[i] = seq;
    if (at < before) this.up(i);
    else this.down(i);
  }

  /** Removes the key's deadline; false when it had none. */
  remove(key: string): boolean {
    const i = this.slot.get(key);
    if (i === undefined) return false;
    this.slot.delete(key);
    const last = this.keys.length - 1;
    if (i !== last) {
      this.move(last, i);
      this.keys.pop();
      this.ats.pop();
      this.seqs.pop();
      // The moved entry may belong above or below its new slot.
      this.up(i);
      this.down(i);
    } else {
      this.keys.pop();
      this.ats.pop();
      this.seqs.pop();
    }
    return true;
  }

  /** The earliest deadline without removing it. */
  peek(): Due | undefined {
    return this.keys.length === 0 ? undefined : { key: this.keys[0], at: this.ats[0] };
  }

  /** Removes and returns, earliest first, up to limit entries whose deadline is at or before now. */
  popDue(now: number, limit = Infinity): Due[] {
    const out: Due[] = [];
    while (out.length < limit && this.keys.length > 0 && this.ats[0] <= now) {
      const key = this.keys[0];
      out.push({ key, at: this.ats[0] });
      this.remove(key);
    }
    return out;
  }

  clear(): void {
    this.keys = [];
    this.ats = [];
    this.seqs = [];
    this.slot.clear();
  }

  private less(a: number, b: number): boolean {
    return this.ats[a] < this.ats[b] || (this.ats[a] === this.ats[b] && this.seqs[a] < this.seqs[b]);
  }

  private move(from: number, to: number): void {
    this.keys[to] = this.keys[from];
    this.ats[to] = this.ats[from];
    this.seqs[to] = this.seqs[from];
    this.slot.set(this.keys[to], to);
  }

  private swap(a: number, b: number): void {
    const k = this.keys[a];
    const t = this.ats[a];
    const s = this.seqs[a];
    this.keys[a] = this.keys[b];
    this.ats[a] = this.ats[b];
    this.seqs[a] = this.seqs[b];
    this.keys[b] = k;
    this.ats[b] = t;
    this.seqs[b] = s;
    this.slot.set(this.keys[a], a);
    this.slot.set(this.keys[b], b);
  }

  private up(i: number): void {
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.less(i, parent)) return;
      this.swap(i, parent);
      i = parent;
    }
  }

  private down(i: number): void {
    const n = this.keys.length;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < n && this.less(l, m)) m = l;
      if (r < n && this.less(r, m)) m = r;
      if (m === i) return;
      this.swap(i, m);
      i = m;
    }
  }
}
