import { describe, expect, it } from 'vitest';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import type { Netdev } from '../dist/index.js';
import { eventually, requireTool } from './helpers.js';
import { freshEachTest, privileged, requirePrivilege } from './netns-harness.js';

const TEST_TYPE = 0x88b5;
const CLI = new URL('../dist/cli/index.js', import.meta.url).pathname;
const NETLINK_SEND = new URL('./fixtures/netlink-send.py', import.meta.url).pathname;
const NOTIFIER_CHILD = new URL('./fixtures/notifier-child.mjs', import.meta.url).pathname;
/** `ip -batch` lines that change vb's MTU `count` times: a link message each, to overrun a notifier that does not read. */
const churn = (count: number) => Array.from({ length: count }, (_, i) => `link set vb mtu ${1000 + (i % 500)}`);

requirePrivilege('rtnetlink notifier tests');

describe.skipIf(!privileged)('the rtnetlink notifier, in a network namespace of the test run', () => {
  const bed = freshEachTest();

  const open = (name: string, ethertype: number | 'none' = TEST_TYPE): Promise<Netdev> => bed.mgr.open(name, { netns: bed.ns.name, ethertype });

  /** Messages the kernel dropped on this namespace's sockets joined to the link and address groups (/proc/net/netlink there). */
  function notifierDrops(): number {
    const rows = execFileSync('ip', ['netns', 'exec', bed.ns.name, 'cat', '/proc/net/netlink'], { encoding: 'utf8' }).trim().split('\n').slice(1);
    return rows
      .map((row) => row.trim().split(/\s+/))
      .filter(([, protocol, , groups]) => protocol === '0' && groups === '00000111')
      .reduce((sum, fields) => sum + Number(fields[8]), 0);
  }

  /** The port ids of this namespace's sockets joined to the link and address groups (/proc/net/netlink there). */
  function notifierPorts(): number[] {
    const rows = execFileSync('ip', ['netns', 'exec', bed.ns.name, 'cat', '/proc/net/netlink'], { encoding: 'utf8' }).trim().split('\n').slice(1);
    return rows.map((row) => row.trim().split(/\s+/)).filter(([, protocol, , groups]) => protocol === '0' && groups === '00000111').map((fields) => Number(fields[2]));
  }

  /** Opens `names` (control only) and a monitor watching them, with no notice pending. */
  async function watching(...names: string[]): Promise<{ devs: Netdev[]; monitor: ReturnType<typeof bed.mgr.monitor> }> {
    const devs = await Promise.all(names.map((name) => open(name, 'none')));
    const monitor = bed.mgr.monitor();
    for (const dev of devs) monitor.add(dev);
    while (monitor.poll() !== null);
    return { devs, monitor };
  }

  /** The notices `monitor` has pending, or gets within `ms`, until it has every one of `names` (sorted, each once). */
  async function noticesFor(monitor: ReturnType<typeof bed.mgr.monitor>, names: string[], ms = 5000): Promise<string[]> {
    const seen = new Set<string>();
    await eventually(() => {
      for (let name; (name = monitor.poll()) !== null;) seen.add(name);
      return names.every((name) => seen.has(name));
    }, ms);
    return [...seen].sort();
  }

  it('gives every watched device a notice after a socket overrun, changed meanwhile or not', async () => {
    for (const [a, b] of [['q0', 'q1'], ['r0', 'r1']]) bed.ns.ip('link', 'add', a!, 'type', 'veth', 'peer', 'name', b!);
    const names = ['q0', 'q1', 'r0'];
    const { monitor } = await watching(...names);
    const before = notifierDrops();
    execFileSync('ip', ['-n', bed.ns.name, '-batch', '-'], { input: churn(3000).join('\n') }); // only vb changes
    expect(notifierDrops()).toBeGreaterThan(before);
    const expected = names.map((name) => `${bed.ns.name}/${name}`).sort();
    expect(await noticesFor(monitor, expected)).toEqual(expected); // vb's messages alone would give none of them one
  });

  it('gives every watched device a notice after a message it cannot parse, and keeps listening', async (test) => {
    bed.ns.ip('link', 'add', 'q0', 'type', 'veth', 'peer', 'name', 'q1');
    const names = ['va', 'q0', 'q1'];
    const { devs, monitor } = await watching(...names);
    const ports = notifierPorts();
    expect(ports).toHaveLength(1);
    // A netlink header whose length (100) runs past the 20 bytes of the datagram: sent to the notifier's socket by another process.
    const header = Buffer.alloc(20);
    header.writeUInt32LE(100, 0);
    header.writeUInt16LE(16, 4); // RTM_NEWLINK
    requireTool(test, 'python3', 'python3');
    execFileSync('ip', ['netns', 'exec', bed.ns.name, 'python3', NETLINK_SEND, String(ports[0]), header.toString('hex')]);
    const expected = names.map((name) => `${bed.ns.name}/${name}`).sort();
    expect(await noticesFor(monitor, expected)).toEqual(expected);
    // Still listening: a later change is a message again, for that device only.
    bed.ns.ip('link', 'set', 'q0', 'mtu', '1400');
    expect(await eventually(() => devs[1]!.maxFrame === 1400 + 18)).toBe(true);
    expect(await noticesFor(monitor, [`${bed.ns.name}/q0`])).toEqual([`${bed.ns.name}/q0`]);
  });

  /** Whether `promise` settles within `ms` (for a notice that must come, without hanging the test when it does not). */
  async function settles(promise: Promise<unknown>, ms = 5000): Promise<boolean> {
    let settled = false;
    promise.then(() => (settled = true), () => (settled = true));
    return eventually(() => settled, ms);
  }

  it('resyncs after a socket overrun (changes and deletions made meanwhile are learned) and keeps listening', async () => {
    bed.ns.ip('link', 'add', 'gone0', 'type', 'veth', 'peer', 'name', 'gone1');
    bed.ns.ip('link', 'add', 'late0', 'type', 'veth', 'peer', 'name', 'late1');
    const va = await open('va', 'none');
    const gone = await open('gone0');
    const late = await open('late0');
    expect(va.maxFrame).toBe(1500 + 18);
    const goneEnds = gone.frames().next();
    const lateEnds = late.frames().next();
    for (const ends of [goneEnds, lateEnds]) ends.catch(() => {}); // checked below; may reject before the checks look
    const monitor = bed.mgr.monitor();
    monitor.add(va);

    // While `ip` runs, this thread is blocked and the notifier cannot read: the kernel queues a
    // link message per MTU change until the socket's receive buffer is full, then drops the rest.
    const lost = ['link set va mtu 1400', 'link del gone0'];
    const before = notifierDrops();
    execFileSync('ip', ['-n', bed.ns.name, '-batch', '-'], { input: [...churn(3000), ...lost].join('\n') });
    expect(notifierDrops()).toBeGreaterThan(before); // the overrun happened, and took the last messages with it

    // The resync learns what the lost messages said: va's MTU (without a call that would read it) and gone0's deletion.
    expect(await eventually(() => va.maxFrame === 1400 + 18)).toBe(true);
    expect(await settles(goneEnds)).toBe(true);
    await expect(goneEnds).rejects.toMatchObject({ code: 'ENODEV', device: 'gone0' });

    // And the notifier still listens: later changes and deletions arrive as messages.
    while (monitor.poll() !== null);
    bed.ns.ip('link', 'set', 'va', 'mtu', '1300');
    expect(await eventually(() => va.maxFrame === 1300 + 18)).toBe(true);
    expect(monitor.poll()).toBe(`${bed.ns.name}/va`);
    bed.ns.ip('link', 'del', 'late0');
    expect(await settles(lateEnds)).toBe(true);
    await expect(lateEnds).rejects.toMatchObject({ code: 'ENODEV', device: 'late0' });
  });

  it('keeps a stopped and continued `netdev monitor` reporting changes after its socket overran', async () => {
    const child = spawn(process.execPath, [CLI, 'monitor', 'va', '--netns', bed.ns.name, '--json'], { stdio: ['ignore', 'pipe', 'inherit'] });
    const exited = once(child, 'exit');
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk));
    const mtus = () => output.split('\n').filter((line) => line.includes('"mtu"')).map((line) => (JSON.parse(line) as { mtu: unknown }).mtu);
    expect(await eventually(() => output.includes('watching'))).toBe(true);
    const state = () => readFileSync(`/proc/${child.pid}/stat`, 'utf8').split(') ')[1]![0];

    child.kill('SIGSTOP');
    expect(await eventually(() => state() === 'T')).toBe(true);
    const before = notifierDrops();
    execFileSync('ip', ['-n', bed.ns.name, '-batch', '-'], { input: [...churn(3000), 'link set va mtu 1400'].join('\n') });
    expect(notifierDrops()).toBeGreaterThan(before);
    child.kill('SIGCONT');
    expect(await eventually(() => mtus().includes(1400))).toBe(true); // the resync after the overrun

    bed.ns.ip('link', 'set', 'va', 'mtu', '1300');
    expect(await eventually(() => mtus().includes(1300))).toBe(true); // and the notifier still listens
    child.kill('SIGTERM');
    const [code] = await exited;
    expect(code).toBe(0);
  });
  it('does not keep the process alive: a program whose only open things are a device and a monitor ends by itself once its own timer is cleared', async () => {
    const child = spawn(process.execPath, [NOTIFIER_CHILD, bed.ns.name], { stdio: ['ignore', 'pipe', 'inherit'] });
    const exited = once(child, 'exit');
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk));
    try {
      expect(await eventually(() => output.includes('ready\n'), 10_000)).toBe(true);
      bed.ns.ip('link', 'set', 'va', 'mtu', '1400');
      expect(await eventually(() => output.split('\n').length > 2, 5000)).toBe(true);
      expect(output.split('\n')[1]).toBe(`notice ${bed.ns.name}/va mtu 1400`); // the notifier was listening
      expect(await eventually(() => child.exitCode !== null, 5000)).toBe(true); // and lets the process end once nothing else is left
      expect((await exited)[0]).toBe(0);
    } finally {
      child.kill('SIGKILL');
    }
  });
});
