import { afterEach, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { JobPool } from '../dist/main/job-pool.js';
import { rejection, tempDir } from './helpers.js';
import { privileged, requirePrivilege, TestNetns } from './netns-harness.js';

const CLI = new URL('../dist/cli/index.js', import.meta.url).pathname;
const FIFOS = ['promisc.in', 'promisc.out', 'vif_down.in', 'vif_down.out', 'vif_up.in', 'vif_up.out'];

requirePrivilege('vsysd tests');

/**
 * A folder holding a stub `ip` that appends its arguments, each in brackets and one invocation
 * a line, to `calls`, and succeeds: vsysd finds it first on its PATH, so the test sees every program vsysd runs.
 */
function ipStub(): { bin: string; calls: string } {
  const bin = tempDir('ip-stub');
  const calls = join(bin, 'calls');
  writeFileSync(join(bin, 'ip'), `#!/bin/sh\n{ printf '[%s]' "$@"; echo; } >> '${calls}'\n`);
  chmodSync(join(bin, 'ip'), 0o755);
  return { bin, calls };
}

/** Starts `argv` and resolves once it printed vsysd's 'serving' line. */
async function startVsysd(argv: string[]): Promise<ChildProcess> {
  const vsysd = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  let errors = '';
  vsysd.stderr!.on('data', (chunk: Buffer) => (errors += chunk));
  await new Promise<void>((resolve, reject) => {
    vsysd.stdout!.on('data', (chunk: Buffer) => (output += chunk).includes('serving') && resolve());
    vsysd.on('exit', (code, signal) => reject(new Error(`vsysd exited (${code ?? signal}) before serving: ${errors}`)));
  });
  return vsysd;
}

const exited = (child: ChildProcess) =>
  child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise<void>((resolve) => child.on('exit', () => resolve()));

describe.skipIf(!privileged)('netdev vsysd', () => {
  const cleanups: (() => void | Promise<void>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  it('refuses a bad request with an error reply before any program runs, and runs ip with the argument vector of a good one', async () => {
    const { bin, calls } = ipStub();
    const dir = tempDir('vsys');
    const pool = new JobPool();
    cleanups.push(() => pool.close());
    // In a namespace of the test's own, so that even a stub not taken could touch nothing else.
    const ns = new TestNetns();
    cleanups.push(() => ns.destroy());
    const vsysd = await startVsysd(['ip', 'netns', 'exec', ns.name, 'env', `PATH=${bin}:${process.env.PATH}`, process.execPath, CLI, 'vsysd', '--dir', dir]);
    cleanups.push(() => {
      vsysd.kill('SIGTERM');
      return exited(vsysd);
    });
    for (const [script, body, why] of [
      ['vif_up', 'tap0; reboot\n10.0.0.1\n24\n', 'invalid interface name'],
      ['vif_down', '$(reboot)\n', 'invalid interface name'],
      ['vif_down', 'tap0 up\n', 'invalid interface name'],
      ['vif_down', 'tap0\nextra\n', 'vif_down takes NAME alone'],
      ['vif_down', 'tap0', 'request must end with a newline'],
      ['vif_up', 'tap0\n10.0.0.1\n33\n', 'invalid prefix length'],
      ['vif_up', 'tap0\n10.0.0.256\n24\n', 'invalid IPv4 address'],
      ['vif_up', 'tap0\n10.0.0.1\n24\nextra\n', 'vif_up takes NAME, IP and PREFIX'],
      ['promisc', 'tap0\n+\n', 'promisc takes NAME'],
    ] as const) {
      const error = await rejection(pool.vsys({ dir, script, body, timeoutMs: 3000 }));
      expect([script, body, error.code, error.message]).toEqual([script, body, 'EAGAIN', expect.stringContaining(why)]);
    }
    expect(existsSync(calls)).toBe(false); // no program ran
    await pool.vsys({ dir, script: 'vif_up', body: 'nosuch0\n10.0.0.1\n24\n', timeoutMs: 3000 });
    await pool.vsys({ dir, script: 'promisc', body: 'nosuch0\n-\n', timeoutMs: 3000 });
    expect(readFileSync(calls, 'utf8')).toBe('[addr][replace][10.0.0.1/24][dev][nosuch0]\n[link][set][dev][nosuch0][up]\n[link][set][dev][nosuch0][promisc][off]\n');
  });

  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    it(`removes its FIFOs on ${signal}`, async () => {
      const { bin, calls } = ipStub();
      const dir = tempDir('vsys');
      const vsysd = await startVsysd(['env', `PATH=${bin}:${process.env.PATH}`, process.execPath, CLI, 'vsysd', '--dir', dir]);
      cleanups.push(() => {
        vsysd.kill('SIGKILL');
        return exited(vsysd);
      });
      expect(readdirSync(dir).sort()).toEqual(FIFOS);
      expect(FIFOS.every((fifo) => statSync(join(dir, fifo)).isFIFO())).toBe(true);
      vsysd.kill(signal);
      await exited(vsysd);
      expect(readdirSync(dir)).toEqual([]);
      expect(existsSync(calls)).toBe(false);
    });
  }
});
