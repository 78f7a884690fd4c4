import { Code, ConnectError } from '@connectrpc/connect';
import type { Logger } from 'pino';
import { isConnectionError, isStorageError } from './store/unavailable.js';

// Domain errors: the registry throws these; one function at the RPC
// boundary maps them to ConnectError codes. Anything else is a bug or an
// outage and crosses the wire as Internal/Unavailable with the cause logged.

export class HiveError extends Error {
  constructor(readonly code: Code, message: string) {
    super(message);
  }
}

export const invalidArgument = (msg: string) => new HiveError(Code.InvalidArgument, msg);
export const notFound = (msg: string) => new HiveError(Code.NotFound, msg);
export const alreadyExists = (msg: string) => new HiveError(Code.AlreadyExists, msg);
export const failedPrecondition = (msg: string) => new HiveError(Code.FailedPrecondition, msg);
export const permissionDenied = (msg: string) => new HiveError(Code.PermissionDenied, msg);
export const unauthenticated = (msg: string) => new HiveError(Code.Unauthenticated, msg);
export const resourceExhausted = (msg: string) => new HiveError(Code.ResourceExhausted, msg);
export const unavailable = (msg: string) => new HiveError(Code.Unavailable, msg);
export const aborted = (msg: string) => new HiveError(Code.Aborted, msg);

/** Errors from the durable store: the write did not happen. */
export class StoreUnavailableError extends Error {}

/** Whether an error means the database cannot be reached or cannot write (so the call may succeed later), not a bug in a query. */
export function isStoreUnavailable(err: unknown): boolean {
  if (err instanceof StoreUnavailableError) return true;
  if (err instanceof AggregateError) return err.errors.some(isStoreUnavailable);
  return isConnectionError(err) || isStorageError(err);
}

/** Messages quote what the caller sent; a hostile caller sends 64 KiB ids. Neither the log nor the reply needs more than this. */
const MAX_MESSAGE_CHARS = 300;

function bounded(message: string): string {
  return message.length > MAX_MESSAGE_CHARS ? `${message.slice(0, MAX_MESSAGE_CHARS)}... (${message.length} characters)` : message;
}

export function toConnectError(err: unknown, log?: Logger, method?: string): ConnectError {
  if (err instanceof HiveError) {
    const message = bounded(err.message);
    if (log?.isLevelEnabled('debug')) log.debug({ method, code: Code[err.code] }, message);
    return new ConnectError(message, err.code);
  }
  if (err instanceof ConnectError) return err;
  if (isStoreUnavailable(err)) {
    log?.warn({ method, err }, 'store unavailable');
    return new ConnectError('the registry database is unavailable; nothing was changed, try again', Code.Unavailable);
  }
  log?.error({ method, err }, 'internal error');
  return new ConnectError('internal error', Code.Internal);
}
