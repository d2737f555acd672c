import { spawnSync } from 'node:child_process';
import type { TestContext } from 'vitest';

/**
 * Skips the calling test from here on, saying loudly which kernel feature this machine's kernel
 * lacks and what `probe` (an argument vector, run independently of the library) answered, when
 * the probe fails with an answer matching `missing` (the kernel's words for the missing feature).
 * A probe failing any other way fails the test: only the missing feature may skip it.  Unlike a
 * missing program, a missing kernel feature cannot be installed by the run, so the skip stands in
 * CI too; the run's summary line (test/summary-reporter.ts) lists the reason again.
 */
export function requireKernelFeature(test: TestContext, feature: string, probe: string[], missing: RegExp): void {
  const result = spawnSync(probe[0]!, probe.slice(1), { encoding: 'utf8' });
  if (result.status === 0) return;
  const answer = (result.error?.message ?? (result.stderr || result.stdout || `exit status ${result.status}`)).trim().split('\n').join(' / ');
  if (!missing.test(answer)) throw new Error(`the probe for ${feature}, \`${probe.join(' ')}\`, failed unexpectedly: ${answer}`);
  const reason = `this kernel lacks ${feature} (\`${probe.join(' ')}\` says: ${answer})`;
  console.warn(`\n*** SKIPPED "${test.task.name}": ${reason} ***\n`);
  test.skip(reason);
}
