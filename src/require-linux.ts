/**
 * Imported first by the package's entry point: on any platform but Linux, importing netdev throws
 * platformProblem()'s NetdevError before any module loads libc.
 */
import { platformProblem } from './common/platform.js';

const problem = platformProblem();
if (problem) throw problem;
