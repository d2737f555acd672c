/**
 * Imported first by the command: on any platform but Linux, it says why in one line on stderr and
 * exits with status 1 before any module loads libc.
 */
import { platformProblem } from '../common/platform.js';

const problem = platformProblem();
if (problem) {
  process.stderr.write(`netdev: ${problem.message}\n`);
  process.exit(1);
}
