import { describe, expect, it } from 'vitest';
import { DeadlineQueue } from '../../monitor/deadline-queue.js';

// The deadline queue: a min-heap plus a map from key to slot.

/** A small deterministic generator (tests must not depend on Math.random). */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

describe('DeadlineQueue', () => {
  it('pops due entries earliest first, and only those due', () => {
    const q = new DeadlineQueue();
    q.update('c', 30);
    q.update('a', 10);
    q.update('b', 20);
    q.update('d', 40);
    expect(q.peek()).toEqual({ key: 'a', at: 10 });
    expect(q.popDue(25)).toEqual([
      { key: 'a', at: 10 },
      { key: 'b', at: 20 },
    ]);
    expect(q.size).toBe(2);
    expect(q.popDue(25)).toEqual([]);
    expect(q.popDue(100)).toEqual([
      { key: 'c', at: 30 },
      { key: 'd', at: 40 },
    ]);
    expect(q.size).toBe(0);
    expect(q.peek()).toBeUndefined();
  });

  it('update moves a key in either direction; a key has one deadline', () => {
    const q = new DeadlineQueue();
    q.update('a', 10);
    q.update('b', 20);
    q.update('a', 30); // renewed (a heartbeat)
    expect(q.size).toBe(2);
    expect(q.get('a')).toBe(30);
    expect(q.peek()).toEqual({ key: 'b', at: 20 });
    q.update('a', 5); // moved earlier
    expect(q.peek()).toEqual({ key: 'a', at: 5 });
    expect(q.popDue(100).map((d) => d.key)).toEqual(['a', 'b']);
  });

  it('remove takes a key out from anywhere in the heap', () => {
    const q = new DeadlineQueue();
    for (let i = 0; i < 10; i++) q.update(`k${i}`, i * 10);
    expect(q.remove('k0')).toBe(true);
    expect(q.remove('k5')).toBe(true);
    expect(q.remove('k9')).toBe(true);
    expect(q.remove('k5')).toBe(false);
    expect(q.has('k5')).toBe(false);
    expect(q.popDue(1000).map((d) => d.key)).toEqual(['k1', 'k2', 'k3', 'k4', 'k6', 'k7', 'k8']);
  });

  it('popDue honours its limit and leaves the rest queued', () => {
    const q = new DeadlineQueue();
    for (let i = 0; i < 5; i++) q.update(`k${i}`, i);
    expect(q.popDue(10, 2).map((d) => d.key)).toEqual(['k0', 'k1']);
    expect(q.popDue(10, 2).map((d) => d.key)).toEqual(['k2', 'k3']);
    expect(q.popDue(10).map((d) => d.key)).toEqual(['k4']);
  });

  it('equal deadlines pop in the order they were set', () => {
    const q = new DeadlineQueue();
    for (const k of ['x', 'y', 'z', 'w']) q.update(k, 7);
    q.update('x', 7); // set again: now the latest
    expect(q.popDue(7).map((d) => d.key)).toEqual(['y', 'z', 'w', 'x']);
  });

  it('rejects a deadline that is not a finite number', () => {
    const q = new DeadlineQueue();
    expect(() => q.update('a', NaN)).toThrow(RangeError);
    expect(() => q.update('a', Infinity)).toThrow(RangeError);
    expect(q.size).toBe(0);
  });

  it('keeps order and membership through 100k entries with updates and removals', () => {
    const rnd = lcg(42);
    const q = new DeadlineQueue();
    const model = new Map<string, number>();
    const n = 100_000;
    const t0 = performance.now();
    for (let i = 0; i < n; i++) {
      const at = Math.floor(rnd() * 1_000_000);
      q.update(`w${i}`, at);
      model.set(`w${i}`, at);
    }
    // Half renew (heartbeats), a tenth leave.
    for (let i = 0; i < n / 2; i++) {
      const k = `w${Math.floor(rnd() * n)}`;
      const at = Math.floor(rnd() * 1_000_000);
      q.update(k, at);
      model.set(k, at);
    }
    let removeMismatch = 0;
    for (let i = 0; i < n / 10; i++) {
      const k = `w${Math.floor(rnd() * n)}`;
      if (q.remove(k) !== model.delete(k)) removeMismatch++;
    }
    expect(removeMismatch).toBe(0);
    expect(q.size).toBe(model.size);
    // Drain in slices as the detector would, checking order across slices.
    let last = -Infinity;
    let seen = 0;
    const problems: string[] = [];
    for (let now = 0; now <= 1_000_000; now += 50_000) {
      for (const d of q.popDue(now)) {
        if (d.at > now || d.at < last || model.get(d.key) !== d.at) problems.push(`${d.key}@${d.at} (now ${now}, last ${last})`);
        last = d.at;
        seen++;
      }
    }
    const ms = performance.now() - t0;
    expect(problems.slice(0, 5)).toEqual([]);
    expect(seen).toBe(model.size);
    expect(q.size).toBe(0);
    // O(log n) per operation: 250k operations take well under a second on a slow machine.
    expect(ms).toBeLessThan(3000);
  });
});
