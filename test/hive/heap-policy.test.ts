import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { heapGrowingPercent, LARGE_FLEET, LARGE_FLEET_HEAP_GROWING_PERCENT } from '../../hive/heap-policy.js';
import { startHiveProc, tempDir } from '../support/procs.js';

// The heap growth policy: a large fleet's heap keeps a small margin over
// what is live; a small one keeps V8's own policy; in between, whichever
// was in force holds, so a fleet near the line does not flap.

describe('heap growth policy', () => {
  it('tightens at a large fleet, lets go below half of it, and holds in between once running', () => {
    const tight = LARGE_FLEET_HEAP_GROWING_PERCENT;
    expect(heapGrowingPercent(LARGE_FLEET, 0)).toBe(tight);
    expect(heapGrowingPercent(100_000, 0)).toBe(tight);
    expect(heapGrowingPercent(LARGE_FLEET - 1, tight)).toBe(tight);
    expect(heapGrowingPercent(LARGE_FLEET / 2, tight)).toBe(tight);
    expect(heapGrowingPercent(LARGE_FLEET / 2 - 1, tight)).toBe(0);
    expect(heapGrowingPercent(LARGE_FLEET - 1, 0)).toBe(0);
    expect(heapGrowingPercent(0, tight)).toBe(0);
    // Just loaded: the line alone decides (the margin set before the load does not hold).
    expect(heapGrowingPercent(LARGE_FLEET - 1, null)).toBe(0);
    expect(heapGrowingPercent(LARGE_FLEET, null)).toBe(tight);
  });

  it('a hive process starts with the margin and, its fleet small, hands the heap back to V8 once loaded', async () => {
    const dir = await tempDir();
    const hive = await startHiveProc(['--data-dir', join(dir.path, 'data'), '--admin-token', 'hive_adm_heap_policy_test_token_0123456789'], { LOG_LEVEL: 'info' });
    try {
      const line = await hive.waitForLog((e) => e.msg === 'heap growth policy changed');
      expect(line).toMatchObject({ workers: 0, heapGrowingPercent: 'v8 default' });
    } finally {
      await hive.kill();
      await dir.remove();
    }
  });
});
