/**
 * The tunnel benchmark of `npm run bench -- tunnels` (root only): guest to guest across two
 * machines joined by vxlan,
 *   g1:eth0 <-> m1:g0 [forwarder] m1:vx0 == m1:u0 <-> m2:u0 == m2:vx0 [forwarder] m2:g0 <-> g2:eth0
 * namespaces joined by veth pairs with the kernel's offloads on, the guests at the tunnel's MTU
 * (1450), the forwarder on each machine either the Switch (its ports g0 and vxlan:vx0 opened with
 * offloads, the tunnel made by the vxlan provider) or a Linux bridge with g0 and a vxlan device made
 * with `ip link` (same VNI, port and remote), taken in turn in each run.  Measured: TCP g1 -> g2
 * (iperf3, 5 s, one stream) and 64-byte frames/s delivered g1 -> g2 (the C sender at its maximum,
 * unicast to g2's MAC; the C receiver counts in g2; both pinned to CPU 0).
 */
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { NetdevManager, Switch } from '../dist/index.js';
import { buildPrograms, lastNumber, runIn, runPinnedIn, senderResult, waitFor } from './programs.js';

const exec = promisify(execFile);
const PREFIX = `ndtun${process.pid}`;
const machine = (k: number): string => `${PREFIX}m${k}`;
const guest = (k: number): string => `${PREFIX}g${k}`;
const guestAddress = (k: number): string => `10.97.0.${k}`;
const underlayAddress = (k: number): string => `10.197.0.${k}`;
const RING_BYTES = 8 * 1024 * 1024;

export type TunnelForwarder = 'switch' | 'bridge';

export interface TunnelFigure {
  tcpBitsPerSecond: number;
  framesPerSecond: number;
  dropped: number;
}

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** The two machines, their underlay and their guests (offloads as the kernel sets them). */
function setUp(): void {
  for (const k of [1, 2]) {
    ip('netns', 'add', machine(k));
    ip('netns', 'add', guest(k));
  }
  ip('-n', machine(1), 'link', 'add', 'u0', 'type', 'veth', 'peer', 'name', 'u0', 'netns', machine(2));
  for (const k of [1, 2]) {
    ip('-n', machine(k), 'addr', 'add', `${underlayAddress(k)}/24`, 'dev', 'u0');
    ip('-n', machine(k), 'link', 'set', 'u0', 'up');
    ip('-n', machine(k), 'link', 'add', 'g0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', guest(k));
    ip('-n', machine(k), 'link', 'set', 'g0', 'addrgenmode', 'none');
    ip('-n', machine(k), 'link', 'set', 'g0', 'up');
    ip('-n', guest(k), 'link', 'set', 'eth0', 'addrgenmode', 'none');
    ip('-n', guest(k), 'link', 'set', 'eth0', 'mtu', '1450');
    ip('-n', guest(k), 'addr', 'add', `${guestAddress(k)}/24`, 'dev', 'eth0');
    ip('-n', guest(k), 'link', 'set', 'eth0', 'up');
  }
}

function tearDown(): void {
  for (const k of [1, 2]) {
    for (const ns of [guest(k), machine(k)]) {
      try {
        ip('netns', 'del', ns);
      } catch {
        // never made
      }
    }
  }
}

/** Starts `forwarder` on both machines; resolves with what stops it and removes what it made. */
async function start(forwarder: TunnelForwarder): Promise<() => Promise<void>> {
  if (forwarder === 'bridge') {
    for (const k of [1, 2]) {
      const ns = machine(k);
      ip('-n', ns, 'link', 'add', 'vx0', 'type', 'vxlan', 'id', '42', 'remote', underlayAddress(3 - k), 'local', underlayAddress(k), 'dstport', '4789');
      ip('-n', ns, 'link', 'add', 'br0', 'type', 'bridge');
      for (const port of ['g0', 'vx0']) ip('-n', ns, 'link', 'set', port, 'master', 'br0', 'up');
      ip('-n', ns, 'link', 'set', 'br0', 'up');
    }
    return async () => {
      for (const k of [1, 2]) for (const dev of ['br0', 'vx0']) ip('-n', machine(k), 'link', 'del', dev);
    };
  }
  const mgr = new NetdevManager();
  const switches: Switch[] = [];
  for (const k of [1, 2]) {
    const sw = new Switch();
    switches.push(sw);
    const config = { key: '42', remote_ip: underlayAddress(3 - k), local_ip: underlayAddress(k) };
    for (const [name, options] of [['g0', {}], ['vxlan:vx0', { config }]] as const) {
      const dev = await mgr.open(name, { netns: machine(k), offloads: true, ringSize: RING_BYTES, ...options });
      await dev.turnFlagsOn({ up: true, promisc: true });
      sw.addPort(dev);
    }
    await sw.ready();
  }
  return async () => {
    for (const sw of switches) await sw.close();
    await mgr.close();
  };
}

/** Pings g2 from g1 until it answers (both forwarders up and learned), at most 20 s. */
async function awaitPath(): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      await exec('ip', ['netns', 'exec', guest(1), 'ping', '-c', '1', '-W', '1', guestAddress(2)]);
      return;
    } catch (error) {
      if (Date.now() > deadline) throw new Error(`no path g1 -> g2: ${(error as Error).message}`);
    }
  }
}

/** iperf3 TCP g1 -> g2 for 5 s: received bit/s. */
async function tcp(): Promise<number> {
  const server = runIn(guest(2), '/usr/bin/env', 'iperf3', '--server', '--one-off', '--forceflush', '--bind', guestAddress(2));
  await waitFor(server, 'listening');
  const { stdout } = await exec('ip', ['netns', 'exec', guest(1), 'iperf3', '--client', guestAddress(2), '--time', '5', '--json'], { timeout: 30_000 });
  await server.output;
  return (JSON.parse(stdout) as { end: { sum_received: { bits_per_second: number } } }).end.sum_received.bits_per_second;
}

/** 64-byte frames g1 -> g2, unicast to g2's MAC: delivered frames/s and frames lost. */
async function frames(count: number): Promise<{ framesPerSecond: number; dropped: number }> {
  const [link] = JSON.parse(execFileSync('ip', ['-j', '-n', guest(2), 'link', 'show', 'eth0'], { encoding: 'utf8' })) as [{ address: string }];
  const receiver = await waitFor(runPinnedIn(guest(2), 'receiver', 'eth0'), 'ready');
  const [sent, seconds] = senderResult(await runPinnedIn(guest(1), 'sender', 'eth0', String(count), '64', link.address).output);
  const delivered = lastNumber(await receiver.output);
  return { framesPerSecond: delivered / seconds, dropped: sent - delivered };
}

/**
 * Each forwarder `runs` times, taken in turn: TCP and 64-byte frames/s guest to guest over vxlan.
 * Null (saying why) where it cannot run.
 */
export async function tunnelBenchmarks(count: number, runs: number): Promise<Record<TunnelForwarder, TunnelFigure[]> | null> {
  if (process.getuid?.() !== 0) {
    console.log('  skipped: it needs root to make network namespaces');
    return null;
  }
  if (!buildPrograms()) return null;
  try {
    execFileSync('sh', ['-c', 'command -v iperf3 && command -v ping'], { stdio: 'ignore' });
  } catch {
    console.log('  skipped: iperf3 and ping are needed (Debian packages iperf3, iputils-ping)');
    return null;
  }
  const results: Record<TunnelForwarder, TunnelFigure[]> = { switch: [], bridge: [] };
  try {
    setUp();
    for (let i = 0; i < runs; i++) {
      for (const forwarder of ['switch', 'bridge'] as const) {
        const stop = await start(forwarder);
        try {
          await awaitPath();
          const tcpBitsPerSecond = await tcp();
          results[forwarder].push({ tcpBitsPerSecond, ...(await frames(count)) });
        } finally {
          await stop();
        }
      }
    }
    return results;
  } finally {
    tearDown();
  }
}
