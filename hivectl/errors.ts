import { Code, ConnectError } from '@connectrpc/connect';

// Exit codes are part of hivectl's interface: scripts branch on them.
// A hive that cannot be reached, a token it refuses and a worker it does
// not know are told apart, each with one line saying what to do.

export const EXIT = {
  OK: 0,
  /** Anything unexpected (an internal error of the hive, a bug). */
  ERROR: 1,
  /** Bad flags or arguments, or a value the hive rejected as invalid. */
  USAGE: 2,
  /** The hive cannot be reached, did not answer in time, or is not a hive. */
  UNREACHABLE: 3,
  /** No token, an unknown or revoked token, or a token without the needed scope. */
  AUTH: 4,
  /** The worker (token, silence...) does not exist. */
  NOT_FOUND: 5,
  /** It already exists, or the hive's state does not allow it now. */
  CONFLICT: 6,
  /** `check --wait`: the run finished and at least one worker failed it. */
  CHECK_FAILED: 7,
} as const;

/** An error hivectl raises itself, with its exit code. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}

function causeCodes(err: unknown): string[] {
  const codes: string[] = [];
  for (let e = err as { code?: unknown; cause?: unknown } | undefined, i = 0; e && i < 10; e = e.cause as typeof e, i++) {
    if (typeof e.code === 'string') codes.push(e.code);
  }
  return codes;
}

/** The exit code and the one-line message for any error a command threw. */
export function describeError(err: unknown, hiveUrl: string): { exitCode: number; message: string } {
  if (err instanceof CliError) return { exitCode: err.exitCode, message: err.message };
  if (!(err instanceof ConnectError)) return { exitCode: EXIT.ERROR, message: (err as Error)?.message ?? String(err) };
  const raw = err.rawMessage;
  switch (err.code) {
    case Code.Unavailable:
      return { exitCode: EXIT.UNREACHABLE, message: `cannot reach the hive at ${hiveUrl} (${raw}); is it running, and is HIVE_URL its HTTP port?` };
    case Code.DeadlineExceeded:
      return { exitCode: EXIT.UNREACHABLE, message: `the hive at ${hiveUrl} did not answer in time (${raw})` };
    case Code.Unimplemented:
      return { exitCode: EXIT.UNREACHABLE, message: `${hiveUrl} does not serve the hive API (${raw}); is HIVE_URL the hive's HTTP port?` };
    case Code.Aborted:
      if (causeCodes(err).some((c) => c === 'ECONNRESET' || c === 'EPIPE')) {
        return { exitCode: EXIT.UNREACHABLE, message: `the connection to the hive at ${hiveUrl} was lost (${raw})` };
      }
      return { exitCode: EXIT.CONFLICT, message: raw };
    case Code.Unauthenticated:
      return { exitCode: EXIT.AUTH, message: `the hive refused the token: ${raw} (set HIVE_TOKEN, --token or --token-file)` };
    case Code.PermissionDenied:
      return { exitCode: EXIT.AUTH, message: `not allowed: ${raw}` };
    case Code.NotFound:
      return { exitCode: EXIT.NOT_FOUND, message: raw };
    case Code.InvalidArgument:
    case Code.OutOfRange:
      return { exitCode: EXIT.USAGE, message: `the hive rejected the request: ${raw}` };
    case Code.AlreadyExists:
    case Code.FailedPrecondition:
      return { exitCode: EXIT.CONFLICT, message: raw };
    default:
      return { exitCode: EXIT.ERROR, message: `${Code[err.code] ?? err.code}: ${raw}` };
  }
}
