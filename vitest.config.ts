import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    reporters: ['default', './test/support/figures-reporter.ts', './test/support/summary-reporter.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // End-to-end suites start real processes and bind real ports; two cores.
    maxWorkers: 2,
    fileParallelism: true,
  },
});
