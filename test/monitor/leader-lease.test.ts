import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../lib/clock.js';
import { createLogger } from '../../lib/logger.js';
import { leaderKeys } from '../../lib/redis-keys.js';
import { createLeaderLease, leaseHolds } from '../../monitor/leader-lease.js';
import { eventually } from '../support/procs.js';
import { dropPrefix, REDIS_URL, uniquePrefix } from '../support/redis.js';

// The leader lease on a real Redis, with the monitors' time from a
// ManualClock: one leader at a time, tokens that only grow, a clean hand
// over, and a holder that stops trusting its lease on time when it cannot
// renew it. Redis round trips are real I/O and are polled for.

const log = createLogger('test', 'silent');

describe('leader lease', () => {
  const prefix = uniquePrefix('hive_lease');
  const conns: Redis[] = [];
  const conn = () => {
    const r = new Redis(REDIS_URL, { maxRetriesPerRequest: 1, enableOfflineQueue: false });
    conns.push(r);
    return r;
  };
  afterAll(async () => {
    for (const c of conns) c.disconnect();
    await dropPrefix(prefix);
  });

  it('trusts a lease only until the time it was asked for plus the ttl', () => {
    expect(leaseHolds(1000, 1000, 500)).toBe(true);
    expect(leaseHolds(1499, 1000, 500)).toBe(true);
    expect(leaseHolds(1500, 1000, 500)).toBe(false);
  });

  it('elects one leader, hands over on stop with a newer token, and a holder that cannot renew steps down on time', async () => {
    const clock = new ManualClock();
    const ra = conn();
    const rb = conn();
    await Promise.all([new Promise((r) => ra.once('ready', r)), new Promise((r) => rb.once('ready', r))]);
    const ttlMs = 60_000; // Redis's expiry never interferes; the hand-over is explicit
    const a = createLeaderLease({ redis: ra, prefix, holder: 'a', ttlMs, clock, log });
    const b = createLeaderLease({ redis: rb, prefix, holder: 'b', ttlMs, clock, log });
    const seen: Array<[string, boolean]> = [];
    a.onChange((l) => seen.push(['a', l]));
    b.onChange((l) => seen.push(['b', l]));
    a.start();
    await eventually(() => a.isLeader(), 5000, 'a leads');
    b.start();
    await eventually(() => clock.pending >= 2, 5000, 'both loops parked');
    expect(b.isLeader()).toBe(false);
    expect(b.fence()).toBe(0n);
    const first = a.fence();
    expect(first).toBeGreaterThan(0n);
    expect(await ra.get(leaderKeys(prefix).fence)).toBe(String(first));

    // Renewals keep a's term (same token) as long as it can reach Redis.
    await clock.advance(ttlMs / 3);
    await eventually(() => clock.pending >= 2, 5000, 'loops parked again');
    expect(a.isLeader()).toBe(true);
    expect(a.fence()).toBe(first);

    // A clean stop hands over: b wins at its next try, with a newer token.
    await a.stop();
    expect(a.isLeader()).toBe(false);
    await clock.advance(ttlMs / 3);
    await eventually(() => b.isLeader(), 5000, 'b leads');
    const second = b.fence();
    expect(second).toBeGreaterThan(first);

    // b loses Redis: it keeps trusting its lease only until asked + ttl by its own clock.
    rb.disconnect();
    await clock.advance(ttlMs / 3);
    expect(b.isLeader()).toBe(true);
    await clock.advance(ttlMs);
    await eventually(() => !b.isLeader(), 5000, 'b steps down');
    expect(b.fence()).toBe(0n);
    expect(seen).toEqual([['a', true], ['a', false], ['b', true], ['b', false]]);
    await b.stop();
  });
});
