/**
 * One-shot blocking control-plane jobs, run by the piscina pool (src/main/job-pool.ts) so that the
 * main thread never blocks.  Each export is a task; it may block its pool thread, never longer
 * than the timeout it is given.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, constants as fsConstants, openSync, readSync, writeSync } from 'node:fs';
import { POLLHUP, POLLIN, sys } from '../sys/libc.js';
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

export interface VsysTask {
  /** The vsys directory (/vsys on PlanetLab). */
  dir: string;
  /** The script: vif_up, vif_down, promisc. */
  script: string;
  body: string;
  timeoutMs: number;
}

/**
 * One vsys transaction (sliver-openvswitch's vsys_transaction): open DIR/SCRIPT.out for reading,
 * write `body` to DIR/SCRIPT.in and close it, then read the reply until the backend closes its
 * end.  Resolves with the reply ('' means success).  ENOENT names a missing FIFO; ENXIO means no
 * backend reads DIR/SCRIPT.in; ETIMEDOUT if the backend does not answer in time (the thread is
 * then free again).  Unlike netdev-pltap, an end of file before the backend has opened its end is not
 * taken for an empty reply: poll() reports the hang-up only after a writer has come and gone.
 */
export function vsysTransaction(task: VsysTask): TaskOutcome<string> {
  const outPath = `${task.dir}/${task.script}.out`;
  const inPath = `${task.dir}/${task.script}.in`;
  const deadline = Date.now() + task.timeoutMs;
  const fail = (path: string, error: unknown): TaskOutcome<string> => {
    const code = (error as NodeJS.ErrnoException).code ?? 'EIO';
    const why = code === 'ENXIO' ? 'no vsys backend reads it' : (error as Error).message;
    return { ok: false, code, detail: `${path}: ${why}` };
  };
  let reader: number;
  try {
    reader = openSync(outPath, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
  } catch (error) {
    return fail(outPath, error);
  }
  try {
    try {
      const writer = openSync(inPath, fsConstants.O_WRONLY | fsConstants.O_NONBLOCK);
      try {
        writeSync(writer, task.body);
      } finally {
        closeSync(writer);
      }
    } catch (error) {
      return fail(inPath, error);
    }
    const chunks: Buffer[] = [];
    const buffer = Buffer.alloc(4096);
    for (;;) {
      const left = deadline - Date.now();
      if (left <= 0) return { ok: false, code: 'ETIMEDOUT', detail: `${task.script}: no answer from the vsys backend within ${task.timeoutMs} ms` };
      const events = sys.pollOne(reader, POLLIN, left);
      if (events <= 0) continue;
      let length: number;
      try {
        length = readSync(reader, buffer);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'EAGAIN') continue;
        return fail(outPath, error);
      }
      if (length > 0) chunks.push(Buffer.from(buffer.subarray(0, length)));
      else if (events & POLLHUP) return { ok: true, value: Buffer.concat(chunks).toString('utf8') };
    }
  } finally {
    closeSync(reader);
  }
}
