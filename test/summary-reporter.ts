import type { Reporter, TestModule } from 'vitest/node';

/**
 * Ends the run with one plain line that any CI can read: "vitest: N passed, N failed, N skipped",
 * and, when there are any, how many tests never ran (their file crashed) and how many errors
 * happened outside tests.
 */
export default class SummaryReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>, unhandledErrors: ReadonlyArray<unknown>): void {
    const count = { passed: 0, failed: 0, skipped: 0, pending: 0 };
    for (const module of testModules) {
      for (const test of module.children.allTests()) count[test.result().state]++;
    }
    const extra = [count.pending ? `, ${count.pending} never ran` : '', unhandledErrors.length ? `, ${unhandledErrors.length} errors outside tests` : ''].join('');
    process.stdout.write(`\nvitest: ${count.passed} passed, ${count.failed} failed, ${count.skipped} skipped${extra}\n`);
  }
}
