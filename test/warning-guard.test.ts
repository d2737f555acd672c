import { describe, it } from 'vitest';
import { expectWarning } from './helpers.js';

describe('the warning guard (test/warning-guard.ts)', () => {
  it('lets a warning the test declared pass', () => {
    expectWarning(/netdev-test: declared/);
    process.emitWarning('netdev-test: declared');
  });

  it.fails('fails a test that emits a warning it did not declare', () => {
    process.emitWarning('netdev-test: a deliberate warning the guard must refuse');
  });

  it.fails('fails a test whose declared warning never came', () => {
    expectWarning(/netdev-test: never emitted/);
  });
});
