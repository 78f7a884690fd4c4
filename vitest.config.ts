import { defineConfig } from 'vitest/config';

// The replicas end-to-end suite runs a dozen processes; it runs after the
// others (a group of its own). The monitor end-to-end suite measures stale
// detection against a 100 ms target, so it runs last, alone, on a machine
// nothing else loads.
const HEAVY = ['test/e2e/replicas.test.ts'];
const TIMED = ['test/e2e/monitor.test.ts'];

export default defineConfig({
  test: {
    reporters: ['default', './test/support/figures-reporter.ts', './test/support/summary-reporter.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // End-to-end suites start real processes and bind real ports; two cores.
    maxWorkers: 2,
    fileParallelism: true,
    projects: [
      { extends: true, test: { name: 'suites', include: ['test/**/*.test.ts'], exclude: [...HEAVY, ...TIMED], sequence: { groupOrder: 0 } } },
      { extends: true, test: { name: 'replicas', include: HEAVY, sequence: { groupOrder: 1 } } },
      { extends: true, test: { name: 'timed', include: TIMED, sequence: { groupOrder: 2 } } },
    ],
  },
});
