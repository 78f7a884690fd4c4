// Every reason the monitor sends to the hive (stale marks, state changes,
// restart commands, event rows) must be one the hive accepts: at most 256
// UTF-8 bytes and no control characters. Reasons carry text the monitor
// does not shape, such as the last lines an exec action printed, and a
// refused reason is worse than a shortened one: the hive answers
// InvalidArgument and the step it explains does not happen.

export const MAX_REASON_BYTES = 256;

// C0, DEL and C1: the set the hive refuses.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/g;

/** Control characters become spaces; the result fits in max UTF-8 bytes, cut on a character boundary and marked "...". */
export function sanitizeReason(s: string, max = MAX_REASON_BYTES): string {
  const flat = s.replace(CONTROL, ' ');
  if (Buffer.byteLength(flat) <= max) return flat;
  let out = '';
  let bytes = 0;
  for (const ch of flat) {
    const b = Buffer.byteLength(ch);
    if (bytes + b > max - 3) break;
    out += ch;
    bytes += b;
  }
  return out + '...';
}
