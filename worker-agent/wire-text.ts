import { LIMITS } from '../hive/validate.js';

// Every string the agent puts in a heartbeat must be one the hive accepts:
// at most 256 UTF-8 bytes and no control characters (hive/validate.ts).
// Error text from collectors, probes and the supervised process is not ours
// to shape (a statfs error per failed path, a quoted nvidia-smi line, a
// stderr line with tabs), and one bad string would get the whole heartbeat
// rejected, the stream closed and the same heartbeat retried forever while
// the live worker goes STALE. So such text is bounded on its way out.

export const MAX_TEXT_BYTES: number = LIMITS.maxStringBytes;

// C0, DEL and C1: the set the hive refuses.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/g;

/** Control characters become spaces; the result fits in max UTF-8 bytes. */
export function boundText(s: string, max: number = MAX_TEXT_BYTES): string {
  return truncateUtf8(s.replace(CONTROL, ' '), max);
}

/** Cuts a string to at most max UTF-8 bytes without splitting a character, marking the cut with "...". */
export function truncateUtf8(s: string, max: number): string {
  if (Buffer.byteLength(s) <= max) return s;
  let out = '';
  let bytes = 0;
  for (const ch of s) {
    const b = Buffer.byteLength(ch);
    if (bytes + b > max - 3) break;
    out += ch;
    bytes += b;
  }
  return out + '...';
}
