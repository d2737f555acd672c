/**
 * One-shot blocking control-plane jobs, run by the piscina pool (src/main/job-pool.ts) so that the
 * main thread never blocks.  Each export is a task; it may block its pool thread, never longer
 * than the timeout it is given.
 */
import { spawnSync } from 'node:child_process';
import type { ProgramResult } from '../providers/contract.js';

export interface RunProgramTask {
  argv: string[];
  timeoutMs: number;
  input?: string | undefined;
}

/** A task's answer: its result, or the errno name and message of why it could not run. */
export type TaskOutcome<T> = { ok: true; value: T } | { ok: false; code: string; detail: string };

/**
 * Runs argv[0] with the arguments argv[1..] (no shell) and waits for it; kills it after
 * `timeoutMs`.  A program that cannot start (ENOENT, EACCES) or times out (ETIMEDOUT) is an
 * error outcome; any exit status is a result.
 */
export function runProgram(task: RunProgramTask): TaskOutcome<ProgramResult> {
  const [file, ...args] = task.argv;
  const child = spawnSync(file!, args, {
    input: task.input,
    timeout: task.timeoutMs,
    encoding: 'utf8',
    maxBuffer: 16 * 1024 * 1024,
  });
  if (child.error) {
    const code = (child.error as NodeJS.ErrnoException).code ?? 'EIO';
    return { ok: false, code, detail: `${task.argv[0]}: ${child.error.message}` };
  }
  return { ok: true, value: { status: child.status, signal: child.signal, stdout: child.stdout, stderr: child.stderr } };
}
