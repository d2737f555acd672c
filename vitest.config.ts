import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Fails a test that emits a process warning it did not declare with expectWarning().
    setupFiles: ['./test/warning-guard.ts'],
    testTimeout: 60_000,
    hookTimeout: 30_000,
    // The suites start worker threads and child processes of their own; two files at a time fit 2 cores.
    maxWorkers: 2,
    reporters: ['default', './test/summary-reporter.ts'],
  },
});
