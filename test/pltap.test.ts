import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NetdevError, NetdevManager, readVnetHeader, VNET_F_NEEDS_CSUM, VNET_GSO_TCPV6, VNET_HDR_LEN } from '../dist/index.js';
import { JobPool } from '../dist/main/job-pool.js';
import { ethFrame, eventually, rejection, requireTool, seqOf, tempDir, untilPrinted } from './helpers.js';
import { privileged, requirePrivilege, TestNetns } from './netns-harness.js';

const TEST_TYPE = 0x88b5;
const CLI = new URL('../dist/cli/index.js', import.meta.url).pathname;
const RAW_SOCKET = new URL('./fixtures/raw-socket.py', import.meta.url).pathname;
const TCP_SUPER_FRAME = new URL('./fixtures/tcp-super-frame.py', import.meta.url).pathname;

requirePrivilege('pltap provider tests');

describe.skipIf(!privileged)('pltap devices with the vsysd backend, in a network namespace of the test run', () => {
  let ns: TestNetns;
  let dir: string;
  let vsysd: ChildProcess;
  /** What vsysd logged: one line per request it served, with its reply. */
  let vsysdLog: string;
  let mgr: NetdevManager;

  beforeEach(async () => {
    ns = new TestNetns();
    dir = mkdtempSync(join(tmpdir(), 'netdev-vsys-'));
    vsysd = spawn('ip', ['netns', 'exec', ns.name, process.execPath, CLI, 'vsysd', '--dir', dir], { stdio: ['ignore', 'pipe', 'inherit'] });
    vsysdLog = '';
    vsysd.stdout!.on('data', (chunk: Buffer) => (vsysdLog += chunk));
    await new Promise<void>((resolve) => vsysd.stdout!.on('data', () => vsysdLog.includes('serving') && resolve()));
    mgr = new NetdevManager({ vsysDir: dir, vsysTimeoutMs: 3000 });
  });
  afterEach(async () => {
    await mgr.close();
    vsysd.kill('SIGTERM');
    await new Promise((resolve) => vsysd.on('exit', resolve));
    ns.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  const addresses = (dev: string) =>
    ns.json<{ addr_info: { family: string; local: string; prefixlen: number }[] }[]>('addr', 'show', dev)[0]!.addr_info.filter((a) => a.family === 'inet');

  async function finalizedTap(ethertype: number | 'none' | 'any' = 'none', offloads = false) {
    const dev = await mgr.open('pltap:p0', { netns: ns.name, ethertype, offloads, config: { local_ip: '10.90.0.1', local_netmask: 24 } });
    const tapname = await mgr.command('netdev-pltap/get-tapname', 'pltap:p0');
    expect(await eventually(() => ns.link(tapname).flags.includes('UP'))).toBe(true);
    return { dev, tapname };
  }

  it('brings the tap up with its address through vif_up once local_ip and local_netmask are set', async () => {
    const dev = await mgr.open('pltap:p0', { netns: ns.name, ethertype: 'none' });
    const tapname = await mgr.command('netdev-pltap/get-tapname', 'pltap:p0');
    expect(tapname).toMatch(/^tap\d+$/);
    expect(ns.link(tapname).flags).not.toContain('UP');
    const seq = dev.changeSeq;
    await dev.setConfig({ local_ip: '10.90.0.1' });
    expect(await dev.getConfig()).toEqual({ local_ip: '10.90.0.1' });
    await dev.setConfig({ local_netmask: '24' });
    expect(await eventually(() => ns.link(tapname).flags.includes('UP'))).toBe(true);
    expect(addresses(tapname)).toEqual([expect.objectContaining({ local: '10.90.0.1', prefixlen: 24 })]);
    expect(await dev.getConfig()).toEqual({ local_ip: '10.90.0.1', local_netmask: '24' });
    expect(await eventually(() => dev.changeSeq > seq)).toBe(true); // each sync bumps it
    expect(await dev.getEtheraddr()).toBe(ns.link(tapname).address);
  });

  it('records flag changes and frames before it is finalized, and applies and sends them after', async (test) => {
    const dev = await mgr.open('pltap:p0', { netns: ns.name, ethertype: TEST_TYPE });
    const tapname = await mgr.command('netdev-pltap/get-tapname', 'pltap:p0');
    await dev.turnFlagsOn({ promisc: true });
    await dev.send(ethFrame(80, 7, TEST_TYPE)); // waits in the TX ring: nothing moves before finalization
    await dev.setConfig({ local_ip: 'localhost' });
    expect(await dev.getConfig()).toEqual({ local_ip: '127.0.0.1' }); // a name, resolved
    expect(ns.link(tapname).flags).not.toContain('PROMISC');
    requireTool(test, 'python3', 'python3');
    const reader = spawn('ip', ['netns', 'exec', ns.name, 'python3', RAW_SOCKET, 'recv', tapname, '1']);
    const exited = once(reader, 'exit');
    let errors = '';
    reader.stderr.on('data', (chunk: Buffer) => (errors += chunk));
    let output = '';
    reader.stdout.on('data', (chunk: Buffer) => (output += chunk));
    await untilPrinted(reader);
    await dev.setConfig({ local_ip: '10.91.0.1', local_netmask: 16 });
    expect(await eventually(() => ['UP', 'PROMISC'].every((flag) => ns.link(tapname).flags.includes(flag)))).toBe(true);
    await exited;
    expect(errors).toBe('');
    expect(output.trim().split('\n')[1]).toBe(Buffer.from(ethFrame(80, 7, TEST_TYPE)).toString('hex'));
  });

  it('syncs promisc on and off through the promisc script', async () => {
    const { dev, tapname } = await finalizedTap();
    await dev.turnFlagsOn({ promisc: true });
    expect(await eventually(() => ns.link(tapname).flags.includes('PROMISC'))).toBe(true);
    await dev.turnFlagsOff({ promisc: true });
    expect(await eventually(() => !ns.link(tapname).flags.includes('PROMISC'))).toBe(true);
    await dev.turnFlagsOff({ up: true });
    expect(await eventually(() => !ns.link(tapname).flags.includes('UP'))).toBe(true);
  });

  it('moves frames both ways, adding and stripping the packet-info header', async (test) => {
    const { dev, tapname } = await finalizedTap(TEST_TYPE);
    const sent = [ethFrame(100, 1, TEST_TYPE), ethFrame(1514, 2, TEST_TYPE)];
    requireTool(test, 'python3', 'python3');
    const reader = spawn('ip', ['netns', 'exec', ns.name, 'python3', RAW_SOCKET, 'recv', tapname, String(sent.length)]);
    const exited = once(reader, 'exit');
    let output = '';
    reader.stdout.on('data', (chunk: Buffer) => (output += chunk));
    await untilPrinted(reader);
    for (const frame of sent) await dev.send(frame);
    await exited;
    expect(output.trim().split('\n').slice(1)).toEqual(sent.map((f) => Buffer.from(f).toString('hex')));

    const frames = dev.frames({ copy: true });
    const incoming = ethFrame(300, 3, TEST_TYPE);
    execFileSync('ip', ['netns', 'exec', ns.name, 'python3', RAW_SOCKET, 'send', tapname, Buffer.from(incoming).toString('hex')]);
    const received = (await frames.next()).value as Uint8Array;
    expect(seqOf(received)).toBe(3);
    expect(received).toEqual(incoming);
  });

  it('with offloads, moves vnet frames both ways after the packet-info header, super-frames too', async (test) => {
    const { dev, tapname } = await finalizedTap('any', true);
    expect(dev.offloads).toBe(true);
    ns.ip('link', 'set', tapname, 'addrgenmode', 'none');
    const sent = ethFrame(300, 1, TEST_TYPE);
    const vnet = new Uint8Array(VNET_HDR_LEN + sent.length);
    vnet.set(sent, VNET_HDR_LEN);
    requireTool(test, 'python3', 'python3');
    const reader = spawn('ip', ['netns', 'exec', ns.name, 'python3', RAW_SOCKET, 'recv', tapname, '1']);
    const exited = once(reader, 'exit');
    let output = '';
    reader.stdout.on('data', (chunk: Buffer) => (output += chunk));
    await untilPrinted(reader);
    await dev.send(vnet);
    await exited;
    expect(output.trim().split('\n').slice(1)).toEqual([Buffer.from(sent).toString('hex')]);

    // An IPv6/TCP super-frame the kernel sends through the tap (which takes TSO) arrives whole, its header first.
    const frames = dev.frames({ copy: true });
    execFileSync('ip', ['netns', 'exec', ns.name, 'python3', TCP_SUPER_FRAME, tapname, '20000']);
    let received = (await frames.next()).value as Uint8Array;
    const isTcp6 = (frame: Uint8Array) => frame[VNET_HDR_LEN + 12] === 0x86 && frame[VNET_HDR_LEN + 13] === 0xdd && frame[VNET_HDR_LEN + 20] === 6;
    while (!isTcp6(received)) received = (await frames.next()).value as Uint8Array; // past the kernel's own IPv6 (router solicitations, MLD) from before addrgenmode none
    expect(readVnetHeader(received, 0)).toMatchObject({ flags: VNET_F_NEEDS_CSUM, gsoType: VNET_GSO_TCPV6, gsoSize: 1428, csumStart: 54, csumOffset: 16 });
    expect(received.length).toBe(VNET_HDR_LEN + 20000);
    const payload = received.subarray(VNET_HDR_LEN + 74);
    expect(payload.every((byte, i) => byte === (i & 255))).toBe(true);
  });

  it('refuses bad config with a clear error naming the key, and unsupported calls with EOPNOTSUPP', async () => {
    const dev = await mgr.open('pltap:p0', { netns: ns.name, ethertype: 'none' });
    for (const [config, key] of [
      [{ local_netmask: '33' }, 'local_netmask'],
      [{ local_netmask: 'x' }, 'local_netmask'],
      [{ local_ip: '300.1.2.3' }, 'local_ip'],
      [{ local_ip: 'no such host.invalid' }, 'local_ip'],
      [{ colour: 'red' }, 'colour'],
    ] as const) {
      const error = await rejection(dev.setConfig(config));
      expect(error.code).toBe('EINVAL');
      expect(error.message).toContain(`'${key}'`);
    }
    expect(await dev.getConfig()).toEqual({});
    expect((await rejection(dev.setEtheraddr('02:00:00:00:00:01'))).code).toBe('EOPNOTSUPP');
    expect((await rejection(dev.getStats())).code).toBe('EOPNOTSUPP');
  });

  it("answers get-tapname with netdev-pltap's errors for unknown devices", async () => {
    const error = await rejection(mgr.command('netdev-pltap/get-tapname', 'pltap:nope'));
    expect(error).toBeInstanceOf(NetdevError);
    expect(error.message).toContain('no such pltap netdev');
    expect((await rejection(mgr.command('no/such-command'))).code).toBe('ENOENT');
  });

  it('closes only after the flag sync in flight has ended, which reaches the tap before it goes away', async () => {
    const { dev, tapname } = await finalizedTap();
    const seq = dev.changeSeq;
    await dev.turnFlagsOn({ promisc: true });
    expect(await eventually(() => ns.link(tapname).flags.includes('PROMISC'))).toBe(true);
    // That sync has ended (it bumps the change sequence last): the next one starts on the next turn.
    expect(await eventually(() => dev.changeSeq !== seq)).toBe(true);
    await new Promise((resolve) => setImmediate(resolve));
    await dev.turnFlagsOff({ promisc: true });
    await new Promise((resolve) => setImmediate(resolve)); // the sync list runs: its promisc request is in flight
    await dev.close();
    expect(ns.json<{ ifname: string }[]>('link', 'show').map((l) => l.ifname)).not.toContain(tapname);
    // vsysd served the request on the live tap (the warning guard fails this test if the sync failed).
    expect(await eventually(() => vsysdLog.includes(`promisc ${JSON.stringify(`${tapname}\n-\n`)} -> ok`))).toBe(true);
  });

  it('takes the tap away when the device closes', async () => {
    const { dev, tapname } = await finalizedTap();
    await dev.close();
    expect(ns.json<{ ifname: string }[]>('link', 'show').map((l) => l.ifname)).not.toContain(tapname);
  });
});

describe.skipIf(!privileged)('vsys transactions', () => {
  const pool = new JobPool();
  afterEach(async () => {
    await pool.close();
  });

  it('report a missing FIFO (ENOENT), an error reply (EAGAIN with the reply), refused injections, and a silent backend (ETIMEDOUT)', async () => {
    const missing = await rejection(pool.vsys({ dir: '/nonexistent/vsys', script: 'vif_up', body: 'x\n', timeoutMs: 500 }));
    expect([missing.code, missing.message.includes('/nonexistent/vsys/vif_up.out')]).toEqual(['ENOENT', true]);

    // The backend runs inside a namespace of the test's own: even a refused request never reaches the host.
    const ns = new TestNetns();
    const dir = tempDir('vsys');
    const vsysd = spawn('ip', ['netns', 'exec', ns.name, process.execPath, CLI, 'vsysd', '--dir', dir], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve) => vsysd.stdout!.on('data', (chunk: Buffer) => chunk.toString().includes('serving') && resolve()));
    try {
      for (const [script, body, why] of [
        ['vif_up', 'tap0; reboot\n10.0.0.1\n24\n', 'invalid interface name'],
        ['vif_down', 'tap0\nextra\n', 'vif_down takes NAME alone'],
        ['vif_up', 'tap0\n10.0.0.1\n33\n', 'invalid prefix length'],
        ['vif_down', 'nosuchdev0\n', 'ip link set dev nosuchdev0 down'],
      ] as const) {
        const error = await rejection(pool.vsys({ dir, script, body, timeoutMs: 3000 }));
        expect(error.code).toBe('EAGAIN');
        expect(error.message).toContain(why);
      }
    } finally {
      vsysd.kill('SIGTERM');
      await new Promise((resolve) => vsysd.on('exit', resolve));
      ns.destroy();
    }

    // A backend that reads requests and never answers.
    const silent = tempDir('vsys');
    execFileSync('mkfifo', [`${silent}/vif_down.in`, `${silent}/vif_down.out`]);
    const hung = spawn('sh', ['-c', 'exec 3<"$0"; sleep 30', `${silent}/vif_down.in`]);
    try {
      await new Promise((resolve) => setTimeout(resolve, 100));
      const started = Date.now();
      const timeout = await rejection(pool.vsys({ dir: silent, script: 'vif_down', body: 'tap0\n', timeoutMs: 300 }));
      expect(timeout.code).toBe('ETIMEDOUT');
      expect(Date.now() - started).toBeLessThan(3000);
      // The pool thread is free again.
      expect((await pool.runProgram(['/bin/echo', 'free'])).stdout).toBe('free\n');
    } finally {
      hung.kill();
    }
  });
});
