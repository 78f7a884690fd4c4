import { Code, ConnectError } from '@connectrpc/connect';

// What the hive's refusals mean to the monitor. The hive says why a
// compare-and-set lost in the error message; these are the only places
// that read it.

export type MarkOutcome =
  /** A newer heartbeat won the race: drop the deadline, the watch brings the new one. */
  | { kind: 'heartbeated' }
  /** Not due yet by the hive's clock, or in the hive's post-restart grace: try again then. */
  | { kind: 'later'; afterMs: number }
  /** Not markable (already STALE, RESTARTING, LEFT...) or gone: nothing to do. */
  | { kind: 'moot'; why: string }
  /** Transient (unavailable, timeout, internal): re-queue with backoff, at least once. */
  | { kind: 'retry'; why: string };

export function classifyMarkError(err: unknown): MarkOutcome {
  const ce = ConnectError.from(err);
  const msg = ce.rawMessage;
  switch (ce.code) {
    case Code.FailedPrecondition: {
      if (/heartbeated since/.test(msg)) return { kind: 'heartbeated' };
      const m = /(?:not due to be stale|post-restart grace) for (\d+) ms/.exec(msg);
      if (m) return { kind: 'later', afterMs: Number(m[1]) };
      if (/not markable|left cleanly/.test(msg)) return { kind: 'moot', why: msg };
      return { kind: 'retry', why: msg };
    }
    case Code.NotFound:
      return { kind: 'moot', why: msg };
    default:
      return { kind: 'retry', why: `${Code[ce.code] ?? ce.code}: ${msg}` };
  }
}

export function isHeartbeatedSince(err: unknown): boolean {
  const ce = ConnectError.from(err);
  return ce.code === Code.FailedPrecondition && /heartbeated since/.test(ce.rawMessage);
}

export function errorText(err: unknown): string {
  const ce = ConnectError.from(err);
  return ce.code === Code.Unknown ? ce.rawMessage : `${Code[ce.code]}: ${ce.rawMessage}`;
}
