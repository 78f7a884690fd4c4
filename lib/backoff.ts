/**
 * Exponential backoff with full jitter (AWS architecture blog's "full
 * jitter"): the delay for attempt n is uniform in [0, min(cap, base * 2^n)].
 * Spreads reconnects so a restarted server sees no thundering herd.
 */
export function fullJitterBackoffMs(attempt: number, baseMs: number, capMs: number, random: () => number = Math.random): number {
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * ceiling);
}

/** Deterministic exponential schedule (no jitter), capped. */
export function exponentialMs(attempt: number, baseMs: number, capMs: number): number {
  return Math.min(capMs, baseMs * 2 ** Math.min(attempt, 30));
}
