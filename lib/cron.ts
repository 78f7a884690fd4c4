import { CronExpressionParser } from 'cron-parser';

// Cron expressions for health-check schedules, always in UTC: five fields
// (minute hour day-of-month month day-of-week) or six with seconds first.
// The hive validates them; the monitor computes when they fire next.

export class CronError extends Error {}

function parse(expr: string, afterMs: number) {
  const fields = expr.trim().split(/\s+/);
  if (fields.length < 5 || fields.length > 6) throw new CronError(`cron "${expr}" needs 5 or 6 fields, has ${fields.length}`);
  try {
    return CronExpressionParser.parse(expr, { currentDate: new Date(afterMs), tz: 'UTC' });
  } catch (err) {
    throw new CronError(`cron "${expr}": ${(err as Error).message}`);
  }
}

/** Throws CronError when the expression is not valid. */
export function checkCron(expr: string): void {
  parse(expr, 0);
}

/** The first firing strictly after afterMs (ms since the epoch). */
export function nextFire(expr: string, afterMs: number): number {
  return parse(expr, afterMs).next().getTime();
}
