// One-minute load average. Node reads /proc/loadavg for us (zeros on Windows).

import { loadavg as osLoadavg } from 'node:os';
import type { Collector } from './collector.js';

export function createLoadCollector(options: { loadavg?: () => number[] } = {}): Collector {
  const { loadavg = osLoadavg } = options;
  return {
    name: 'load',
    async collect() {
      const load1 = loadavg()[0];
      if (load1 === undefined || !Number.isFinite(load1)) throw new Error(`load average unavailable (${String(load1)})`);
      return { load1 };
    },
  };
}
