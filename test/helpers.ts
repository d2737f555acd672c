import type { ChildProcess } from 'node:child_process';
import { accessSync, constants, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { onTestFinished, type TestContext } from 'vitest';
import type { NetdevError, NetdevManager } from '../dist/index.js';

/** An Ethernet frame of `length` bytes: broadcast destination, ethertype `type`, a 32-bit sequence number at offset 14. */
export function ethFrame(length: number, seq = 0, type = 0x0800): Uint8Array {
  const frame = new Uint8Array(length);
  frame.fill(0xff, 0, 6);
  frame.set([0x02, 0, 0, 0, 0, 1], 6);
  frame[12] = type >> 8;
  frame[13] = type & 255;
  if (length >= 18) new DataView(frame.buffer).setUint32(14, seq);
  for (let i = 18; i < length; i++) frame[i] = (seq + i) & 255;
  return frame;
}

/** The sequence number ethFrame() put in `frame`. */
export function seqOf(frame: Uint8Array): number {
  return new DataView(frame.buffer, frame.byteOffset, frame.byteLength).getUint32(14);
}

/** Awaits `promise` and returns the NetdevError it rejects with (failing if it resolves). */
export async function rejection(promise: Promise<unknown>): Promise<NetdevError> {
  try {
    await promise;
  } catch (error) {
    return error as NetdevError;
  }
  throw new Error('expected a rejection');
}

/** Runs `fn` and returns the NetdevError it throws (failing if it does not). */
export function thrown(fn: () => unknown): NetdevError {
  try {
    fn();
  } catch (error) {
    return error as NetdevError;
  }
  throw new Error('expected a throw');
}

/** Resolves after `ms` milliseconds. */
export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `condition` every few milliseconds until it holds or `ms` pass; returns whether it held. */
export async function eventually(condition: () => boolean | Promise<boolean>, ms = 5000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await condition()) return true;
    await sleep(5);
  }
  return condition();
}

/** The devices `mgr` enumerates that have a prefix (dummy:, ...), leaving out the host's system devices. */
export async function prefixed(mgr: NetdevManager): Promise<string[]> {
  return (await mgr.enumerate()).filter((name) => name.includes(':'));
}

/** A new temporary folder (netdev-PREFIX-...), removed when the current test finishes. */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), `netdev-${prefix}-`));
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Whether an executable `program` is on PATH (as execFile and `ip netns exec` look it up). */
export function onPath(program: string): boolean {
  return (process.env.PATH ?? '').split(delimiter).some((dir) => {
    try {
      const file = join(dir, program);
      accessSync(file, constants.X_OK);
      return statSync(file).isFile();
    } catch {
      return false;
    }
  });
}

/**
 * Skips the calling test from here on, saying loudly which program is missing and which Debian
 * package has it, when `program` is not on PATH; in CI (`CI=true`), where every test must run, it
 * fails the test instead.  Call it just before the test first runs the program; the run's summary
 * line (test/summary-reporter.ts) lists the reason again.
 */
export function requireTool(test: TestContext, program: string, debianPackage: string): void {
  if (onPath(program)) return;
  const reason = `needs ${program}, which is not on PATH (Debian: apt-get install ${debianPackage})`;
  const message = `SKIPPED "${test.task.name}": ${reason}`;
  if (process.env.CI === 'true') throw new Error(`${message}, and CI must run it`);
  console.warn(`\n*** ${message} ***\n`);
  test.skip(reason);
}

/**
 * Process warnings emitted since the last check, and the patterns the current test declared with
 * expectWarning(); test/warning-guard.ts (a vitest setup file) fills and checks it.
 */
export const warningLedger = { emitted: [] as string[], expected: [] as RegExp[] };

/**
 * Declares that the current test makes the process emit a warning matching `pattern` (tested
 * against "NAME: MESSAGE"): the warning guard lets such warnings pass, and fails the test if none
 * came by the end of its hooks.  Any other warning fails the test that emitted it.
 */
export function expectWarning(pattern: RegExp): void {
  warningLedger.expected.push(pattern);
}

/**
 * Resolves once `child` has printed `word` on its standard output; rejects, saying so, if it
 * exits first or `ms` pass (a child that never gets ready fails the test at once, not at its timeout).
 */
export function untilPrinted(child: ChildProcess, word = 'ready', ms = 10_000): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let output = '';
    const done = (error?: Error) => {
      clearTimeout(timer);
      child.stdout!.off('data', onData);
      child.off('exit', onExit);
      if (error) reject(error);
      else resolve();
    };
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes(word)) done();
    };
    const onExit = (code: number | null, signal: string | null) => done(new Error(`the child exited (${code ?? signal}) before it printed '${word}'; it printed: ${output}`));
    const timer = setTimeout(() => done(new Error(`the child did not print '${word}' within ${ms} ms; it printed: ${output}`)), ms);
    child.stdout!.on('data', onData);
    child.on('exit', onExit);
  });
}
