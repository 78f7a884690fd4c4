import { defineConfig } from 'vitest/config';

// The replicas end-to-end suite runs a dozen processes; it runs after the
// others (a group of its own), so the timing targets of the single-hive
// suites are measured on a machine it does not load.
const HEAVY = ['test/e2e/replicas.test.ts'];

export default defineConfig({
  test: {
    reporters: ['default', './test/support/summary-reporter.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // End-to-end suites start real processes and bind real ports; two cores.
    maxWorkers: 2,
    fileParallelism: true,
    projects: [
      { extends: true, test: { name: 'suites', include: ['test/**/*.test.ts'], exclude: HEAVY, sequence: { groupOrder: 0 } } },
      { extends: true, test: { name: 'replicas', include: HEAVY, sequence: { groupOrder: 1 } } },
    ],
  },
});
