// Which database errors mean "unavailable" (nothing was done; try again
// later) rather than a statement the database refused. Pure: the store
// wraps such errors as StoreUnavailableError, and the RPC boundary answers
// them with Unavailable.

const CONNECTION_ERRNO = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN']);
// SQLSTATE: 08xxx connection exception, 57P01-57P03 shutdown / cannot connect now, 53300 too many connections.
const UNAVAILABLE_SQLSTATE = /^(08...|57P0[123]|53300)$/;

// The database is there but cannot write: disk full (53100), out of memory
// (53200), I/O error (58030), a read-only file system or transaction.
const CANNOT_WRITE_SQLSTATE = /^(53100|53200|58030|25006)$/;
const CANNOT_WRITE_ERRNO = new Set(['ENOSPC', 'EROFS', 'EDQUOT', 'EIO', 'EACCES', 'EPERM']);

/** Whether a driver error means the database could not be reached (nothing was done), not that the statement failed. */
export function isConnectionError(err: unknown): boolean {
  const e = err as { code?: string; message?: string } | undefined;
  if (!e) return false;
  if (e.code && (CONNECTION_ERRNO.has(e.code) || UNAVAILABLE_SQLSTATE.test(e.code))) return true;
  return /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|Connection refused|Cannot use a pool after calling end/i.test(e.message ?? '');
}

/** Whether a driver error means the database's storage refused the write (disk full, read-only, I/O error). */
export function isStorageError(err: unknown): boolean {
  const e = err as { code?: string; message?: string } | undefined;
  if (!e) return false;
  if (e.code && (CANNOT_WRITE_SQLSTATE.test(e.code) || CANNOT_WRITE_ERRNO.has(e.code))) return true;
  return /No space left on device|Read-only file system|could not (extend|write|fsync) file|disk quota exceeded/i.test(e.message ?? '');
}
