/**
 * Machines joined by an underlay, for the tunnel tests: host namespaces H1..Hn, each with an
 * underlay device u0 (10.200.0.N/24; two hosts share one veth pair, more hang off a Linux bridge in
 * a namespace of its own), a guest namespace G1..Gn on a veth pair (guest eth0 10.77.0.N/24 <->
 * host g0), and a Switch per host between g0 and a vxlan port, run in this process.  Underlay
 * neighbours are permanent and IPv6 is off in the hosts, so the underlay carries nothing but the
 * tunnels' packets (its counters count them exactly); the guests have no IPv6 link-local address.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { expect } from 'vitest';
import { NetdevManager, Switch, type Netdev } from '../dist/index.js';
import { untilPrinted } from './helpers.js';
import { ip } from './netns-harness.js';

const TRANSFER = new URL('./fixtures/tcp_transfer.py', import.meta.url).pathname;
/** Rings for ports opened with offloads (as netdev switch opens them). */
const RING_BYTES = 8 * 1024 * 1024;

let serial = 0;

export const underlayAddress = (n: number): string => `10.200.0.${n}`;
export const guestAddress = (n: number): string => `10.77.0.${n}`;

export class Machines {
  readonly id = `ndx${process.pid}x${serial++}`;
  readonly hosts: string[];
  readonly guests: string[];
  readonly bridge: string | null;
  readonly mgr = new NetdevManager();
  readonly switches: Switch[] = [];
  /** Each host's vxlan port, once started. */
  readonly tunnels: Netdev[] = [];
  /** Each host's guest port (g0), once started. */
  readonly guestPorts: Netdev[] = [];
  /** Namespaces made and not yet deleted. */
  private readonly made: string[] = [];

  /** `count` machines; the guests' MTU is `guestMtu` (the tunnel's, by default). */
  constructor(count: number, guestMtu = 1450) {
    this.hosts = Array.from({ length: count }, (_, i) => `${this.id}h${i + 1}`);
    this.guests = Array.from({ length: count }, (_, i) => `${this.id}g${i + 1}`);
    this.bridge = count > 2 ? `${this.id}n` : null;
    try {
      for (const ns of this.namespaces()) {
        ip('netns', 'add', ns);
        this.made.push(ns);
      }
      this.build(guestMtu);
    } catch (error) {
      this.deleteNamespaces();
      throw error;
    }
  }

  private namespaces(): string[] {
    return [...this.hosts, ...this.guests, ...(this.bridge ? [this.bridge] : [])];
  }

  /** Deletes every namespace made and not removed yet. */
  private deleteNamespaces(): void {
    for (const ns of this.made.splice(0)) {
      try {
        ip('netns', 'del', ns);
      } catch {
        // gone already
      }
    }
  }

  /** The links, addresses and neighbours of the namespaces. */
  private build(guestMtu: number): void {
    if (this.bridge) {
      ip('-n', this.bridge, 'link', 'add', 'br0', 'type', 'bridge');
      ip('-n', this.bridge, 'link', 'set', 'br0', 'addrgenmode', 'none');
      ip('-n', this.bridge, 'link', 'set', 'br0', 'up');
    }
    this.hosts.forEach((host, i) => {
      execFileSync('ip', ['netns', 'exec', host, 'sysctl', '-q', '-w', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
      if (this.bridge) {
        ip('-n', this.bridge, 'link', 'add', `u${i + 1}`, 'type', 'veth', 'peer', 'name', 'u0', 'netns', host);
        ip('-n', this.bridge, 'link', 'set', `u${i + 1}`, 'addrgenmode', 'none');
        ip('-n', this.bridge, 'link', 'set', `u${i + 1}`, 'master', 'br0', 'up');
      } else if (i === 0) {
        ip('-n', host, 'link', 'add', 'u0', 'type', 'veth', 'peer', 'name', 'u0', 'netns', this.hosts[1]!);
      }
      ip('-n', host, 'addr', 'add', `${underlayAddress(i + 1)}/24`, 'dev', 'u0');
      ip('-n', host, 'link', 'set', 'u0', 'up');
      ip('-n', host, 'link', 'set', 'lo', 'up');
      ip('-n', host, 'link', 'add', 'g0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', this.guests[i]!);
      const guest = this.guests[i]!;
      ip('-n', guest, 'link', 'set', 'eth0', 'addrgenmode', 'none');
      ip('-n', guest, 'link', 'set', 'eth0', 'mtu', String(guestMtu));
      ip('-n', guest, 'addr', 'add', `${guestAddress(i + 1)}/24`, 'dev', 'eth0');
      ip('-n', guest, 'link', 'set', 'eth0', 'up');
      ip('-n', guest, 'link', 'set', 'lo', 'up');
    });
    const macs = this.hosts.map((host) => (JSON.parse(ip('-j', '-n', host, 'link', 'show', 'u0')) as { address: string }[])[0]!.address);
    this.hosts.forEach((host, i) => {
      macs.forEach((mac, j) => {
        if (j !== i) ip('-n', host, 'neigh', 'add', underlayAddress(j + 1), 'lladdr', mac, 'dev', 'u0', 'nud', 'permanent');
      });
    });
  }

  /** Host i's (0-based) vxlan config: key 42, its remotes the other hosts (or `remotes`). */
  config(i: number, remotes?: number[]): Record<string, string> {
    const others = remotes ?? this.hosts.map((_, j) => j).filter((j) => j !== i);
    return { key: '42', remote_ip: others.map((j) => underlayAddress(j + 1)).join(','), local_ip: underlayAddress(i + 1) };
  }

  /** A Switch on each host between g0 and vxlan:vx0, every port opened with offloads. */
  async start(): Promise<void> {
    for (const i of this.hosts.keys()) await this.startHost(i);
  }

  /** A Switch on host i (0-based) between g0 and vxlan:vx0 (its config: config(i)), both opened with offloads. */
  async startHost(i: number): Promise<void> {
    const host = this.hosts[i]!;
    const sw = new Switch();
    this.switches[i] = sw;
    const guestPort = await this.mgr.open('g0', { netns: host, offloads: true, ringSize: RING_BYTES });
    const tunnel = await this.mgr.open('vxlan:vx0', { netns: host, offloads: true, ringSize: RING_BYTES, config: this.config(i) });
    this.tunnels[i] = tunnel;
    this.guestPorts[i] = guestPort;
    for (const port of [guestPort, tunnel]) {
      await port.turnFlagsOn({ up: true, promisc: true });
      sw.addPort(port);
    }
    await sw.ready();
  }

  /** The `ip -s -j link` packet counts of host i's (0-based) u0. */
  underlayPackets(i: number): { rx: number; tx: number } {
    const [link] = JSON.parse(ip('-s', '-j', '-n', this.hosts[i]!, 'link', 'show', 'u0')) as { stats64: { rx: { packets: number }; tx: { packets: number } } }[];
    return { rx: link!.stats64.rx.packets, tx: link!.stats64.tx.packets };
  }

  /** Takes machine i (0-based) away: its Switch and ports closed (the tunnel deleted), its namespaces removed. */
  async remove(i: number): Promise<void> {
    await this.switches[i]!.close();
    await this.tunnels[i]!.close();
    await this.guestPorts[i]!.close();
    for (const ns of [this.guests[i]!, this.hosts[i]!]) {
      ip('netns', 'del', ns);
      this.made.splice(this.made.indexOf(ns), 1);
    }
  }

  /** The remotes (NDA_DST) of the entries of all zeros in host i's vx0 forwarding table (`bridge -j fdb`). */
  floodRemotes(i: number): string[] {
    const entries = JSON.parse(execFileSync('bridge', ['-j', '-n', this.hosts[i]!, 'fdb', 'show', 'dev', 'vx0'], { encoding: 'utf8' })) as { mac: string; dst?: string }[];
    return entries.filter((e) => e.mac === '00:00:00:00:00:00' && e.dst).map((e) => e.dst!).sort();
  }

  /** Closes the Switches and devices, then removes every namespace. */
  async destroy(): Promise<void> {
    try {
      try {
        for (const sw of this.switches) await sw?.close(); // a host not started has none; a removed one's second close does nothing
      } finally {
        await this.mgr.close();
      }
    } finally {
      this.deleteNamespaces();
    }
  }
}

/** Runs `argv` in namespace `ns`, its output piped. */
export function inNetns(ns: string, argv: string[]): ChildProcess {
  return spawn('ip', ['netns', 'exec', ns, ...argv], { stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Everything `child` prints until it exits; rejects on a non-zero status, with its stderr. */
export async function outputOf(child: ChildProcess): Promise<string> {
  let out = '';
  let err = '';
  child.stdout!.on('data', (chunk: Buffer) => (out += chunk));
  child.stderr!.on('data', (chunk: Buffer) => (err += chunk));
  const [code] = (await once(child, 'exit')) as [number | null];
  if (code !== 0) throw new Error(`${String(child.spawnargs.join(' '))} exited with ${code}: ${err}${out}`);
  return out;
}

/**
 * Sends `bytes` over TCP from guest namespace `from` to `to` at `address` and checks byte count and
 * SHA-256 at the receiver.  An abort of `signal` kills both ends (a test that fails midway).
 */
export async function transfer(from: string, to: string, address: string, bytes: number, signal?: AbortSignal): Promise<void> {
  const server = inNetns(to, ['python3', TRANSFER, 'serve', address, '5001']);
  const children = [server];
  const stop = () => children.forEach((child) => child.kill());
  signal?.addEventListener('abort', stop, { once: true });
  const served = outputOf(server);
  served.catch(() => {});
  let sent: string[];
  try {
    await untilPrinted(server);
    const sender = inNetns(from, ['python3', TRANSFER, 'send', address, '5001', String(bytes)]);
    children.push(sender);
    if (signal?.aborted) stop();
    sent = (await outputOf(sender)).trim().split(' ');
  } catch (error) {
    server.kill();
    throw error;
  } finally {
    signal?.removeEventListener('abort', stop);
  }
  const received = (await served).trim().split('\n').pop()!.split(' ');
  expect(received).toEqual(sent.slice(0, 2));
  expect(Number(received[0])).toBe(bytes);
}

/** Pings `address` from namespace `ns` `count` times (with ping's `options`); resolves with how many replies came. */
export async function ping(ns: string, address: string, count = 3, interval = '0.2', options: string[] = []): Promise<number> {
  const child = inNetns(ns, ['ping', '-c', String(count), '-i', interval, '-W', '2', ...options, address]);
  let out = '';
  child.stdout!.on('data', (chunk: Buffer) => (out += chunk));
  await once(child, 'exit');
  return Number(/(\d+) received/.exec(out)?.[1] ?? 0);
}
