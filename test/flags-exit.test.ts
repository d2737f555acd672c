import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { privileged, requirePrivilege, TestNetns } from './netns-harness.js';

const CHILD = new URL('./fixtures/flags-exit-child.mjs', import.meta.url).pathname;

requirePrivilege('flags restored at exit on kernel devices');

// README "Flags": a handle's flag changes are put back when the process exits, also by
// process.exit(), and on SIGHUP; a program listening to a signal itself decides.  A child process
// turns promisc on on a veth of the test's namespace; `ip -j link show` says what the kernel has.
describe.skipIf(!privileged)('flags restored when the process ends (a veth in a namespace of the test)', () => {
  let ns: TestNetns;
  beforeEach(() => {
    ns = new TestNetns();
  });
  afterEach(() => {
    ns.destroy();
  });

  const promisc = () => ns.link('va').flags.includes('PROMISC');

  /** Starts the child in `mode`; `said(word)` resolves once it printed that line (rejects if it exits first). */
  function start(mode: 'return' | 'exit' | 'wait' | 'own-sigint') {
    const child = spawn(process.execPath, [CHILD, ns.name, 'va', mode], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((resolve) =>
      child.on('exit', (code, signal) => resolve({ code, signal, stderr })),
    );
    const said = (word: string) =>
      new Promise<void>((resolve, reject) => {
        const check = () => stdout.split('\n').includes(word) && resolve();
        child.stdout.on('data', check);
        check();
        void exited.then(({ code, signal }) => reject(new Error(`child exited (${code ?? signal}) before saying ${word}: ${stderr}`)));
      });
    return { child, said, exited };
  }

  it('on a normal exit: nothing is left to run', async () => {
    const { child, said, exited } = start('return');
    await said('ready');
    expect(promisc()).toBe(true);
    child.stdin.end();
    expect(await exited).toEqual({ code: 0, signal: null, stderr: '' });
    expect(promisc()).toBe(false);
  });

  it('on process.exit() while the program still has work scheduled', async () => {
    const { child, said, exited } = start('exit');
    await said('ready');
    expect(promisc()).toBe(true);
    child.stdin.end();
    expect(await exited).toEqual({ code: 7, signal: null, stderr: '' });
    expect(promisc()).toBe(false);
  });

  it('on SIGHUP, and the process still dies of it', async () => {
    const { child, said, exited } = start('wait');
    await said('ready');
    expect(promisc()).toBe(true);
    child.kill('SIGHUP');
    expect(await exited).toEqual({ code: null, signal: 'SIGHUP', stderr: '' });
    expect(promisc()).toBe(false);
  });

  it('not on a SIGINT the program handles itself, which lives on; then on its process.exit()', async () => {
    const { child, said, exited } = start('own-sigint');
    await said('ready');
    child.kill('SIGINT');
    await said('sigint'); // the library's listener (installed first, at open) has run by now too
    expect(promisc()).toBe(true);
    expect([child.exitCode, child.signalCode]).toEqual([null, null]);
    child.stdin.end(); // the program decides: process.exit(0)
    expect(await exited).toEqual({ code: 0, signal: null, stderr: '' });
    expect(promisc()).toBe(false);
  });
});
