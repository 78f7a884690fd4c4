import { describe, expect, it } from 'vitest';
import { checkString } from '../../hive/validate.js';
import { sanitizeReason } from '../../monitor/reason.js';

// Reasons sent to the hive: one line, at most 256 UTF-8 bytes, as the
// hive's own check (hive/validate.ts) requires.

describe('sanitizeReason', () => {
  it('turns control characters into spaces', () => {
    expect(sanitizeReason('exited with 1: line one\nline two\r\n\tend\u0000\u007f\u009b')).toBe('exited with 1: line one line two   end   ');
  });

  it('cuts by UTF-8 bytes on a character boundary, and the hive accepts the result', () => {
    for (const s of ['x'.repeat(300), 'é'.repeat(200), '✓'.repeat(100), '🙂'.repeat(70), `a\n${'ß'.repeat(255)}`]) {
      const r = sanitizeReason(s);
      expect(Buffer.byteLength(r)).toBeLessThanOrEqual(256);
      expect(r.endsWith('...')).toBe(true);
      expect(r).not.toContain('\uFFFD');
      expect(() => checkString('reason', r)).not.toThrow();
    }
    expect(sanitizeReason('é'.repeat(128))).toBe('é'.repeat(128)); // exactly 256 bytes: kept whole
    expect(sanitizeReason('é'.repeat(129))).toBe(`${'é'.repeat(126)}...`);
  });
});
