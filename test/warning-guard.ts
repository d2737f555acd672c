/**
 * Vitest setup file: a test fails when the process emits a warning it did not declare with
 * expectWarning() (test/helpers.ts), or declared one that never came; a warning emitted outside
 * any test (a file's afterAll) fails the file.  Only this process's 'warning' events are seen:
 * a warning emitted inside a worker thread goes to that thread's own process object.
 */
import { afterAll, afterEach } from 'vitest';
import { warningLedger } from './helpers.js';

process.on('warning', (warning) => warningLedger.emitted.push(`${warning.name}: ${warning.message}`));

/** Throws naming every unexpected warning and every expected one that did not come, then forgets them. */
async function checkWarnings(scope: string): Promise<void> {
  await new Promise((resolve) => setImmediate(resolve)); // emitWarning delivers on a later tick
  const { emitted, expected } = warningLedger;
  warningLedger.emitted = [];
  warningLedger.expected = [];
  const problems = [
    ...emitted.filter((text) => !expected.some((pattern) => pattern.test(text))).map((text) => `unexpected process warning in ${scope}: ${text}`),
    ...expected.filter((pattern) => !emitted.some((text) => pattern.test(text))).map((pattern) => `expected a process warning matching ${pattern} in ${scope}, none came`),
  ];
  if (problems.length > 0) throw new Error(problems.join('\n'));
}

// Registered before the test file's own hooks, so (hooks run as a stack) these run after them.
afterEach(() => checkWarnings('this test or its hooks'));
afterAll(() => checkWarnings('this file, outside its tests'));
