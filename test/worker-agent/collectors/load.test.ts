import { describe, expect, it } from 'vitest';
import { createLoadCollector } from '../../../worker-agent/collectors/load.js';

describe('createLoadCollector', () => {
  it('reads the one-minute load average of this machine', async () => {
    const { load1 } = await createLoadCollector().collect();
    expect(load1).toBeGreaterThanOrEqual(0);
  });

  it('takes the first of the three averages', async () => {
    await expect(createLoadCollector({ loadavg: () => [1.5, 0.7, 0.2] }).collect()).resolves.toEqual({ load1: 1.5 });
  });

  it('a missing value is a failure, not a zero', async () => {
    await expect(createLoadCollector({ loadavg: () => [] }).collect()).rejects.toThrow(/unavailable/);
  });
});
