import type { TestContext } from 'vitest';

// Reliability figures: tests put counts on their task's meta; the figures
// reporter sums them over the run and prints one line per figure.

export const FIGURES = [
  'faults survived',
  'requests fuzzed',
  'crashes',
  'lost records',
  'false stale marks',
  'duplicate restarts',
  'leaked secrets',
] as const;

export type Figure = (typeof FIGURES)[number] | `${string} (${string})`;

export type Figures = Partial<Record<Figure, number>>;

declare module 'vitest' {
  interface TaskMeta {
    figures?: Figures;
  }
}

/** Adds to this test's figures (read by the reporter). */
export function report(ctx: TestContext, figures: Figures): void {
  const meta = (ctx.task.meta.figures ??= {});
  for (const [k, v] of Object.entries(figures)) meta[k as Figure] = (meta[k as Figure] ?? 0) + (v ?? 0);
}
