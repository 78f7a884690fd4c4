import { setFlagsFromString } from 'node:v8';
import type { Logger } from '../lib/logger.js';

// V8 lets its heap grow to a multiple of what is live before a full
// collection (up to 4x when collections are cheap). For a small registry
// that headroom is a few MB and buys throughput: a 25% margin made each
// streamed heartbeat cost ~30% more CPU at 1,000 workers. For a large one
// the headroom is most of the process: at 100,000 workers ~1.25 KB each
// are live and the RSS grew ~6 KB per worker. So a registry of
// LARGE_FLEET workers or more asks V8 for a 25% margin, and one that
// shrinks below half of that goes back to V8's own policy. The margin is
// set before the registry loads (the load is where the heap grows most;
// pages V8 took are not soon given back) and lifted after it for a small
// fleet. A --heap-growing-percent given to node wins.

export const LARGE_FLEET = 20_000;
export const LARGE_FLEET_HEAP_GROWING_PERCENT = 25;

/**
 * The heap growing percent for a registry of this many workers (0: V8's
 * own policy). Between half of LARGE_FLEET and LARGE_FLEET the `current`
 * one holds, so a fleet near the line does not flap; null (the fleet just
 * loaded) decides by LARGE_FLEET alone.
 */
export function heapGrowingPercent(workers: number, current: number | null): number {
  if (workers >= LARGE_FLEET) return LARGE_FLEET_HEAP_GROWING_PERCENT;
  if (workers < LARGE_FLEET / 2 || current === null) return 0;
  return current;
}

/** V8 takes its flags with - or _ between words. */
const overridden = () => process.execArgv.some((a) => a.replaceAll('_', '-').startsWith('--heap-growing-percent'));

/** Before the registry loads: the margin of a large fleet, until the fleet's size is known. */
export function heapPolicyBeforeLoad(): void {
  if (!overridden()) setFlagsFromString(`--heap-growing-percent=${LARGE_FLEET_HEAP_GROWING_PERCENT}`);
}

/** Applies the policy for the loaded fleet now and every `everyMs`; returns a function that stops it. */
export function startHeapPolicy(fleetSize: () => number, log: Logger, everyMs = 10_000): () => void {
  if (overridden()) return () => {};
  let current = LARGE_FLEET_HEAP_GROWING_PERCENT; // set before the load
  let loaded = false;
  const apply = () => {
    const next = heapGrowingPercent(fleetSize(), loaded ? current : null);
    loaded = true;
    if (next === current) return;
    setFlagsFromString(`--heap-growing-percent=${next}`);
    log.info({ workers: fleetSize(), heapGrowingPercent: next || 'v8 default' }, 'heap growth policy changed');
    current = next;
  };
  apply();
  const timer = setInterval(apply, everyMs);
  timer.unref();
  return () => clearInterval(timer);
}
