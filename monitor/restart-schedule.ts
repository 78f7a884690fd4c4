// The arithmetic of restarting, pure: how long to wait before an attempt,
// how many attempts a window allows, when a clean run forgets the past.
// Models: Kubernetes CrashLoopBackOff (doubling delay, reset after a clean
// run), Nomad (jittered delay), systemd's start limit (N starts per window).

export interface ScheduleParams {
  restartAfterMs: number;
  backoffInitialMs: number;
  backoffMaxMs: number;
  maxAttempts: number;
  windowMs: number;
}

/** Spread of each backoff delay: ±20%, never above the cap. */
export const BACKOFF_JITTER = 0.2;

/**
 * The backoff before attempt number `attempt` (2 for the second attempt
 * of an episode, and so on): backoffInitial doubled per earlier failure,
 * capped at backoffMax, with ±20% jitter (random() in [0, 1)).
 */
export function backoffMs(attempt: number, p: Pick<ScheduleParams, 'backoffInitialMs' | 'backoffMaxMs'>, random: () => number = Math.random): number {
  const n = Math.max(0, attempt - 2);
  const base = Math.min(p.backoffMaxMs, p.backoffInitialMs * 2 ** Math.min(n, 30));
  const jittered = base * (1 + BACKOFF_JITTER * (2 * random() - 1));
  return Math.round(Math.min(p.backoffMaxMs, Math.max(0, jittered)));
}

/**
 * The wait from a trigger to the next attempt. The first attempt since a
 * reset waits restart_after (a single late beat restarts nothing); later
 * ones wait at least their backoff.
 */
export function delayBeforeAttempt(attempt: number, p: ScheduleParams, random?: () => number): number {
  if (attempt <= 1) return p.restartAfterMs;
  return Math.max(p.restartAfterMs, backoffMs(attempt, p, random));
}

/** Attempt times still inside the window ending now. */
export function attemptsInWindow(attempts: readonly number[], now: number, windowMs: number): number[] {
  return attempts.filter((t) => t > now - windowMs);
}

/** Whether another attempt is allowed now (fewer than maxAttempts within the window). */
export function mayAttempt(attempts: readonly number[], now: number, p: Pick<ScheduleParams, 'maxAttempts' | 'windowMs'>): boolean {
  return attemptsInWindow(attempts, now, p.windowMs).length < p.maxAttempts;
}

/** A clean run of a whole window (healthy since, no trigger) resets the count and the backoff. */
export function cleanRunResets(healthySince: number | null, now: number, windowMs: number): boolean {
  return healthySince !== null && now - healthySince >= windowMs;
}
