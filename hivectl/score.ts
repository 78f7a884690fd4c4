import type { Worker } from '../gen/hive/v1/registry_pb.js';
import { healthBand, healthScore, pressureOf, type HealthBand } from '../hive/health-score.js';
import type { Colour, Paint } from './format.js';
import { stateSeverity } from './format.js';

// The health score shown by hivectl is the hive's own (hive/health-score.ts),
// computed here from what the API returns, so the CLI and /metrics agree.

export function scoreOf(w: Worker): number | undefined {
  return healthScore(w.state, w.stats ? pressureOf(w.stats) : {});
}

const BAND_COLOUR: Record<HealthBand, Colour> = { healthy: 'green', degraded: 'yellow', unhealthy: 'red', critical: 'red' };

export function scoreText(w: Worker, paint: Paint): string {
  const s = scoreOf(w);
  return s === undefined ? '-' : paint(BAND_COLOUR[healthBand(s)], s.toFixed(2));
}

export function bandOf(w: Worker): HealthBand | 'unscored' {
  const s = scoreOf(w);
  return s === undefined ? 'unscored' : healthBand(s);
}

/** Worst first: lowest score, then the more severe state, then by id. Unscored workers (pending, left) last. */
export function worstFirst(a: Worker, b: Worker): number {
  const sa = scoreOf(a) ?? 2;
  const sb = scoreOf(b) ?? 2;
  if (sa !== sb) return sa - sb;
  const d = stateSeverity(b.state) - stateSeverity(a.state);
  return d !== 0 ? d : a.workerId.localeCompare(b.workerId);
}
