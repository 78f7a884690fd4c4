import type { Redis } from 'ioredis';
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/logger.js';
import { leaderKeys } from '../lib/redis-keys.js';

// Leader election among monitors: a lease in Redis (SET PX with the
// holder's id) and a fencing token handed out with each new lease. The
// token only grows: it is at least the previous one plus one and at least
// Redis's clock in ms, so a Redis that lost its data (restarted empty)
// still hands out a token newer than any before. The hive refuses control
// calls with a token older than the newest it knows.
//
// Why a lease and not a PostgreSQL advisory lock: a lock held by a
// connection lasts as long as the connection, and a paused (SIGSTOP, GC,
// VM freeze) or partitioned monitor keeps its TCP connection open for as
// long as keepalives allow, so nobody else could lead meanwhile. A lease
// expires on time, and the fencing token keeps the paused one from acting
// when it wakes up.
//
// The holder trusts its lease only until (time it asked) + ttl by its own
// clock, which is never later than Redis's expiry; it renews every ttl/3.

/** KEYS: lease, fence. ARGV: holder, ttl ms. Returns the holder's token, or '0' when another holds the lease. */
const ACQUIRE = `
local cur = redis.call('GET', KEYS[1])
if cur then
  local sep = string.find(cur, '|', 1, true)
  if sep and string.sub(cur, 1, sep - 1) == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return string.sub(cur, sep + 1)
  end
  return '0'
end
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local f = tonumber(redis.call('GET', KEYS[2]) or '0') + 1
if ms > f then f = ms end
local fs = string.format('%d', f)
redis.call('SET', KEYS[2], fs)
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. fs, 'PX', ARGV[2])
return fs
`;

/** KEYS: lease. ARGV: holder. Gives the lease up if held by the holder. */
const RELEASE = `
local cur = redis.call('GET', KEYS[1])
if cur and string.sub(cur, 1, #ARGV[1] + 1) == ARGV[1] .. '|' then return redis.call('DEL', KEYS[1]) end
return 0
`;

export interface Leadership {
  /** True while this monitor holds an unexpired lease (by its own clock). */
  isLeader(): boolean;
  /** The fencing token of the current lease; 0 when none is held. */
  fence(): bigint;
  onChange(fn: (leader: boolean, fence: bigint) => void): void;
  start(): void;
  stop(): Promise<void>;
}

/** A monitor alone: always the leader, with no token (the hive only fences when several run). */
export function soleLeadership(): Leadership {
  return { isLeader: () => true, fence: () => 0n, onChange() {}, start() {}, async stop() {} };
}

/** Whether a lease asked for at askedAt and granted for ttlMs still holds at now. */
export function leaseHolds(now: number, askedAt: number, ttlMs: number): boolean {
  return now < askedAt + ttlMs;
}

export interface LeaderLeaseDeps {
  redis: Redis;
  prefix: string;
  holder: string;
  ttlMs: number;
  clock: Clock;
  log: Logger;
}

export function createLeaderLease(deps: LeaderLeaseDeps): Leadership {
  const { redis, clock, log, ttlMs, holder } = deps;
  const keys = leaderKeys(deps.prefix);
  const stopCtl = new AbortController();
  const listeners: Array<(leader: boolean, fence: bigint) => void> = [];
  let token = 0n;
  let askedAt = -Infinity;
  let reported = false;
  let loop: Promise<void> | null = null;

  const holds = () => token > 0n && leaseHolds(clock.now(), askedAt, ttlMs);

  function report(): void {
    const now = holds();
    if (now === reported) return;
    reported = now;
    if (now) log.info({ fencingToken: String(token), holder, ttlMs }, 'leadership acquired');
    else log.warn({ fencingToken: String(token), holder }, 'leadership lost');
    for (const l of listeners) l(now, now ? token : 0n);
  }

  async function tryOnce(): Promise<void> {
    const asked = clock.now();
    try {
      const res = String(await redis.eval(ACQUIRE, 2, keys.lease, keys.fence, holder, ttlMs));
      if (res === '0') {
        token = 0n;
      } else {
        const t = BigInt(res);
        // A new term when the token changed (our lease lapsed and we won it back).
        if (t !== token && reported) {
          token = 0n;
          report();
        }
        token = t;
        askedAt = asked;
      }
    } catch (err) {
      log.debug({ err: (err as Error).message }, 'lease not renewed');
    }
    report();
  }

  async function run(): Promise<void> {
    while (!stopCtl.signal.aborted) {
      await tryOnce();
      // Renew well before expiry; wake up at expiry to stop acting on time.
      const untilExpiry = holds() ? askedAt + ttlMs - clock.now() : Infinity;
      const wait = Math.max(10, Math.min(ttlMs / 3, untilExpiry));
      try {
        await clock.sleep(wait, stopCtl.signal);
      } catch {
        /* stopping */
      }
      report();
    }
  }

  return {
    isLeader: holds,
    fence: () => (holds() ? token : 0n),
    onChange(fn) {
      listeners.push(fn);
    },
    start() {
      loop ??= run();
    },
    async stop() {
      stopCtl.abort();
      await loop;
      if (token > 0n) {
        // A clean stop hands over at once instead of after the ttl.
        await redis.eval(RELEASE, 1, keys.lease, holder).catch(() => undefined);
        token = 0n;
        report();
      }
    },
  };
}
