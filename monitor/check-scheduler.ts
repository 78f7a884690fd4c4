import type { HealthCheckSchedule } from '../gen/hive/v1/health_check_pb.js';
import type { Clock } from '../lib/clock.js';
import { nextFire } from '../lib/cron.js';
import type { Logger } from '../lib/logger.js';
import { errorText } from './hive-errors.js';
import type { IsLeader } from './leader.js';

// Fires health-check schedules. The schedules are re-read from the hive
// every refresh; each enabled one has its next firing time from its cron
// expression, and the loop sleeps on the injected clock until the earliest
// one (or the next refresh). Only the leader fires; a standby moves its
// times on without firing, so a monitor promoted later does not fire
// everything it slept through. A firing missed by more than one period is
// not made up: the next one is computed from now.

export interface SchedulerHive {
  listHealthCheckSchedules(): Promise<HealthCheckSchedule[]>;
  startScheduledHealthCheck(scheduleId: string): Promise<string>;
}

export interface CheckSchedulerDeps {
  hive: SchedulerHive;
  clock: Clock;
  log: Logger;
  isLeader: IsLeader;
  refreshMs: number;
  onFired?: (scheduleId: string, ok: boolean) => void;
}

interface Entry {
  cron: string;
  at: number;
}

/** Pure: the schedules' next firing times after a refresh, keeping times of unchanged ones. */
export function planSchedules(prev: ReadonlyMap<string, Entry>, schedules: readonly HealthCheckSchedule[], now: number, onBad?: (id: string, err: Error) => void): Map<string, Entry> {
  const next = new Map<string, Entry>();
  for (const s of schedules) {
    if (!s.enabled) continue;
    const old = prev.get(s.scheduleId);
    if (old && old.cron === s.cron) {
      next.set(s.scheduleId, old);
      continue;
    }
    try {
      next.set(s.scheduleId, { cron: s.cron, at: nextFire(s.cron, now) });
    } catch (err) {
      onBad?.(s.scheduleId, err as Error);
    }
  }
  return next;
}

export function createCheckScheduler(deps: CheckSchedulerDeps) {
  const { hive, clock, log } = deps;
  let plan = new Map<string, Entry>();
  let stopCtl: AbortController | null = null;
  let loop: Promise<void> | null = null;

  async function refresh(): Promise<void> {
    try {
      plan = planSchedules(plan, await hive.listHealthCheckSchedules(), clock.now(), (id, err) => log.warn({ scheduleId: id, err: err.message }, 'schedule skipped: bad cron'));
    } catch (err) {
      log.warn({ err: errorText(err) }, 'health-check schedules not refreshed');
    }
  }

  async function fireDue(): Promise<void> {
    const now = clock.now();
    for (const [id, e] of plan) {
      if (e.at > now) continue;
      e.at = nextFire(e.cron, now);
      if (!deps.isLeader()) continue;
      try {
        const checkId = await hive.startScheduledHealthCheck(id);
        log.info({ scheduleId: id, checkId }, 'scheduled health check started');
        deps.onFired?.(id, true);
      } catch (err) {
        log.warn({ scheduleId: id, err: errorText(err) }, 'scheduled health check not started');
        deps.onFired?.(id, false);
      }
    }
  }

  async function run(signal: AbortSignal): Promise<void> {
    let refreshAt = -Infinity;
    while (!signal.aborted) {
      if (clock.now() >= refreshAt) {
        await refresh();
        refreshAt = clock.now() + deps.refreshMs;
      }
      await fireDue();
      let wake = refreshAt;
      for (const e of plan.values()) wake = Math.min(wake, e.at);
      try {
        await clock.sleep(Math.max(0, wake - clock.now()), signal);
      } catch {
        break;
      }
    }
  }

  return {
    start(): void {
      if (loop) return;
      stopCtl = new AbortController();
      loop = run(stopCtl.signal);
    },
    async stop(): Promise<void> {
      stopCtl?.abort();
      await loop;
      loop = null;
    },
    /** Next firing times by schedule id (status and tests). */
    planned(): ReadonlyMap<string, number> {
      return new Map([...plan].map(([id, e]) => [id, e.at]));
    },
  };
}
