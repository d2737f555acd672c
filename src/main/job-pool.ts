/**
 * The pool of threads for one-shot blocking control-plane jobs (piscina).  Created on the first
 * job, so a manager that never needs one starts no thread; idle threads end after a second.
 * Device workers are not pool tasks: they are long-lived Workers of their own.
 */
import { Piscina } from 'piscina';
import { NetdevError } from '../common/errors.js';
import type { ProgramOptions, ProgramResult } from '../providers/contract.js';
import type { RunProgramTask, TaskOutcome, VsysTask } from '../workers/pool-tasks.js';
import { workerExecArgv } from './worker-exec-argv.js';

const TASKS_URL = new URL('../workers/pool-tasks.js', import.meta.url).href;
const DEFAULT_TIMEOUT_MS = 10_000;

export class JobPool {
  private pool: Piscina | null = null;

  private get threads(): Piscina {
    this.pool ??= new Piscina({ filename: TASKS_URL, minThreads: 0, maxThreads: 2, idleTimeout: 1000, execArgv: workerExecArgv() });
    return this.pool;
  }

  /** Runs `argv` without a shell in a pool thread; rejects ENOENT/EACCES/ETIMEDOUT/EINVAL as NetdevError. */
  async runProgram(argv: readonly string[], options: ProgramOptions = {}): Promise<ProgramResult> {
    if (argv.length === 0 || !argv.every((arg) => typeof arg === 'string' && !arg.includes('\0'))) {
      throw new NetdevError({ code: 'EINVAL', call: 'runProgram', detail: 'argv must be a non-empty array of strings without NUL bytes' });
    }
    const task: RunProgramTask = { argv: [...argv], timeoutMs: options.timeoutMs ?? DEFAULT_TIMEOUT_MS, input: options.input };
    const outcome = (await this.threads.run(task, { name: 'runProgram' })) as TaskOutcome<ProgramResult>;
    if (!outcome.ok) throw new NetdevError({ code: outcome.code, call: 'runProgram', detail: outcome.detail });
    return outcome.value;
  }

  /**
   * A vsys FIFO transaction in a pool thread: resolves on an empty reply; a non-empty reply is a
   * NetdevError EAGAIN carrying it (as netdev-pltap); ENOENT/ENXIO/ETIMEDOUT as vsysTransaction says.
   */
  async vsys(task: VsysTask): Promise<void> {
    const outcome = (await this.threads.run(task, { name: 'vsysTransaction' })) as TaskOutcome<string>;
    if (!outcome.ok) throw new NetdevError({ code: outcome.code, call: 'vsys', detail: outcome.detail });
    if (outcome.value !== '') {
      throw new NetdevError({ code: 'EAGAIN', call: 'vsys', detail: `${task.script} returned: ${outcome.value.trim()}` });
    }
  }

  /** Ends the pool's threads (waiting for running jobs); a later job starts a new pool. */
  async close(): Promise<void> {
    const pool = this.pool;
    this.pool = null;
    await pool?.close();
  }
}
