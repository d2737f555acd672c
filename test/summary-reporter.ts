import type { Reporter, TestModule } from 'vitest/node';

/**
 * Ends the run with one plain line that any CI can read: "vitest: N passed, N failed, N skipped",
 * and, when there are any, how many tests never ran (their file crashed) and how many errors
 * happened outside tests; then one line per test that skipped itself with a reason (a missing
 * program, and the Debian package that has it).
 */
export default class SummaryReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>, unhandledErrors: ReadonlyArray<unknown>): void {
    const count = { passed: 0, failed: 0, skipped: 0, pending: 0 };
    const reasons: string[] = [];
    for (const module of testModules) {
      for (const test of module.children.allTests()) {
        const result = test.result();
        count[result.state]++;
        if (result.state === 'skipped' && result.note) reasons.push(`  skipped "${test.name}" (${module.moduleId.split('/').pop()}): ${result.note}\n`);
      }
    }
    const extra = [count.pending ? `, ${count.pending} never ran` : '', unhandledErrors.length ? `, ${unhandledErrors.length} errors outside tests` : ''].join('');
    process.stdout.write(`\nvitest: ${count.passed} passed, ${count.failed} failed, ${count.skipped} skipped${extra}\n${reasons.join('')}`);
  }
}
