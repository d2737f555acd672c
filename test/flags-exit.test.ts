import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { privileged, requirePrivilege, TestNetns } from './netns-harness.js';

const CHILD = new URL('./fixtures/flags-exit-child.mjs', import.meta.url).pathname;
const TUNNEL_CHILD = new URL('./fixtures/tunnel-exit-child.mjs', import.meta.url).pathname;

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

// A tunnel device the library made (not persist=true) is deleted when the process ends without
// mgr.close(): on a fatal signal and after an uncaught exception.  `ip -j link show` says what is left.
describe.skipIf(!privileged)('tunnels deleted when the process ends without closing them', () => {
  let ns: TestNetns;
  beforeEach(() => {
    ns = new TestNetns();
  });
  afterEach(() => {
    ns.destroy();
  });

  const vxlanLeft = () => (JSON.parse(ns.ip('-j', 'link', 'show')) as { ifname: string }[]).some((link) => link.ifname === 'vx0');

  async function run(mode: 'wait' | 'throw', persist: boolean, end: (child: ReturnType<typeof spawn>) => void) {
    const child = spawn(process.execPath, [TUNNEL_CHILD, ns.name, mode, String(persist)], { stdio: ['pipe', 'pipe', 'pipe'] });
    try {
      let stdout = '';
      let stderr = '';
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk));
      const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
      await new Promise<void>((resolve, reject) => {
        child.stdout.on('data', (chunk: Buffer) => (stdout += chunk) && stdout.includes('ready\n') && resolve());
        void exited.then(({ code, signal }) => reject(new Error(`child exited (${code ?? signal}) before it was ready: ${stderr}`)));
      });
      expect(vxlanLeft()).toBe(true);
      end(child);
      return { ...(await exited), stderr };
    } finally {
      child.kill('SIGKILL');
    }
  }

  it('on SIGTERM, and the process still dies of it; a persist=true one stays', async () => {
    expect(await run('wait', false, (child) => child.kill('SIGTERM'))).toMatchObject({ code: null, signal: 'SIGTERM' });
    expect(vxlanLeft()).toBe(false);
    expect(await run('wait', true, (child) => child.kill('SIGTERM'))).toMatchObject({ code: null, signal: 'SIGTERM' });
    expect(vxlanLeft()).toBe(true);
  });

  it('after an uncaught exception', async () => {
    const result = await run('throw', false, (child) => child.stdin!.end());
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/uncaught on purpose/);
    expect(vxlanLeft()).toBe(false);
  });
});
