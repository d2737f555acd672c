/**
 * The forwarding benchmark of `npm run bench` (root only), on the topology
 *   h1:eth0 <-> fw:p1   fw:p2 <-> h2:eth0   (and h3..h8 on p3..p8 for the port-count rows)
 * namespaces joined by veth pairs, with offloads (TX checksum, TSO, GSO, GRO) off on every veth
 * end, as an AF_PACKET forwarder without vnet headers needs.  In fw runs one forwarder at a time;
 * each is measured the same way, in the same run:
 *   - 64-byte frames/s delivered h1 -> h2 (the C sender at its maximum, unicast to h2's MAC;
 *     the C receiver counts in h2; sender and receiver pinned to CPU 0, the forwarder not pinned),
 *   - TCP throughput h1 -> h2 (iperf3),
 *   - round trips h1 -> h2 (ping -i 0.002 -c 1000: average, p99 and p99.9).
 * The C reference is bench/c/tuned.c (32 MiB buffers, bounded wait then drop-and-count); l2fwd is
 * the untuned C forwarder it replaced (default send buffer, spins on ENOBUFS), kept as a row of its own.
 * Then TCP with offloads on (tcpOffloadBenchmarks): h1 -- fw -- h2 again, the veth offloads left
 * as the kernel set them, iperf3 with 1 and 4 streams through the Switch with its ports opened
 * with offloads, the Linux bridge, and OVS's userspace datapath with userspace-tso-enable; then
 * the veth offloads turned off and the Switch without offloads, as in the rows above.
 */
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { NetdevManager, Switch } from '../dist/index.js';
import { buildPrograms, lastNumber, runIn, runPinnedIn, runQuietIn, senderResult, startIn, waitFor, type Running } from './programs.js';
import { OvsOptionRefused, startOvs, type OvsOptions } from './ovs.js';

const exec = promisify(execFile);
const PREFIX = `ndtopo${process.pid}`;
const FW = `${PREFIX}fw`;
const HOSTS = 8;
const host = (k: number): string => `${PREFIX}h${k}`;
const address = (k: number): string => `10.98.0.${k}`;
const CAP_FORWARDER = fileURLToPath(new URL('./cap-forwarder.js', import.meta.url));

/** 'c' is the tuned C forwarder (the reference), 'l2fwd' the untuned one. */
export type Forwarder = 'switch' | 'bridge' | 'c' | 'l2fwd' | 'cap' | 'ovs';

/** How a forwarder is started: the Switch's ports opened with offloads; OVS with userspace-tso-enable. */
interface ForwarderOptions {
  offloads: boolean;
}

export interface PathFigure {
  framesPerSecond: number;
  dropped: number;
  /** iperf3 TCP h1 -> h2, bit/s; null where iperf3 is not installed. */
  tcpBitsPerSecond: number | null;
  tcpRetransmits: number | null;
  rttAvgMs: number;
  rttP99Ms: number;
  rttP999Ms: number;
}

/** A forwarder running in fw; stop() ends it and removes what it made. */
type Stop = () => Promise<void>;

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

function installed(program: string): boolean {
  try {
    execFileSync('sh', ['-c', 'command -v "$1"', 'sh', program], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** The two veth ends of host k: [namespace, device]. */
const vethEnds = (k: number): (readonly [string, string])[] => [
  [host(k), 'eth0'],
  [FW, `p${k}`],
];

/**
 * Makes the namespaces and veth pairs of h1..h`hosts`, up; offloads off on every end (through the
 * library) unless `offloads` is 'kernel', which leaves them as the kernel set them.
 */
async function setUp(hosts: number, offloads: 'off' | 'kernel'): Promise<void> {
  ip('netns', 'add', FW);
  const mgr = new NetdevManager();
  try {
    for (let k = 1; k <= hosts; k++) {
      ip('netns', 'add', host(k));
      ip('-n', FW, 'link', 'add', `p${k}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', host(k));
      ip('-n', host(k), 'addr', 'add', `${address(k)}/24`, 'dev', 'eth0');
      for (const [ns, dev] of vethEnds(k)) {
        ip('-n', ns, 'link', 'set', dev, 'addrgenmode', 'none');
        const handle = await mgr.open(dev, { netns: ns, ethertype: 'none' });
        if (offloads === 'off') await handle.disableOffloads();
        await handle.turnFlagsOn({ up: true }, { permanent: true });
        await handle.close();
      }
    }
  } finally {
    await mgr.close();
  }
}

/** Turns offloads off on both veth ends of h1..h`hosts` (through the library). */
async function disableOffloads(hosts: number): Promise<void> {
  const mgr = new NetdevManager();
  try {
    for (let k = 1; k <= hosts; k++) {
      for (const [ns, dev] of vethEnds(k)) {
        const handle = await mgr.open(dev, { netns: ns, ethertype: 'none' });
        await handle.disableOffloads();
        await handle.close();
      }
    }
  } finally {
    await mgr.close();
  }
}

function tearDown(): void {
  for (const ns of [FW, ...Array.from({ length: HOSTS }, (_, i) => host(i + 1))]) {
    try {
      ip('netns', 'del', ns);
    } catch {
      // never made, or already gone
    }
  }
}

function macOf(k: number): string {
  const [link] = JSON.parse(execFileSync('ip', ['-j', '-n', host(k), 'link', 'show', 'eth0'], { encoding: 'utf8' })) as [{ address: string }];
  return link.address;
}

/** Stops a C or Node forwarder program with SIGTERM and waits for it to exit. */
function stopProgram(running: Running): Stop {
  return async () => {
    running.child.kill('SIGTERM');
    await running.output;
  };
}

/** Starts `forwarder` in fw over `ports` (offloads off unless `options` says so). */
async function startForwarder(forwarder: Forwarder, ports: string[], capModules: string | null, options: ForwarderOptions = { offloads: false }): Promise<Stop> {
  switch (forwarder) {
    case 'switch': {
      const mgr = new NetdevManager();
      const sw = new Switch();
      for (const port of ports) {
        const dev = await mgr.open(port, { netns: FW, offloads: options.offloads });
        await dev.turnFlagsOn({ promisc: true });
        sw.addPort(dev);
      }
      await sw.ready();
      return async () => {
        await sw.close();
        await mgr.close();
      };
    }
    case 'bridge':
      ip('-n', FW, 'link', 'add', 'br0', 'type', 'bridge');
      for (const port of ports) ip('-n', FW, 'link', 'set', port, 'master', 'br0');
      ip('-n', FW, 'link', 'set', 'br0', 'up');
      return async () => ip('-n', FW, 'link', 'del', 'br0');
    case 'c':
      return stopProgram(await startIn(FW, 'tuned', ...ports));
    case 'l2fwd':
      return stopProgram(await startIn(FW, 'l2fwd', ...ports));
    case 'cap':
      // libpcap warns that the ports have no IPv4 address: true, and of no matter to a forwarder.
      return stopProgram(await waitFor(runQuietIn(FW, process.execPath, CAP_FORWARDER, capModules!, ...ports), 'ready'));
    case 'ovs':
      return startOvs(FW, ports, { userspaceTso: options.offloads } satisfies OvsOptions);
  }
}

/** Pings h`to` from h`from` until one answers (the forwarder is up and has learned both), at most 20 s. */
async function awaitPath(from: number, to: number): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      await exec('ip', ['netns', 'exec', host(from), 'ping', '-c', '1', '-W', '1', address(to)]);
      return;
    } catch (error) {
      if (Date.now() > deadline) throw new Error(`no path h${from} -> h${to}: ${(error as Error).message}`);
    }
  }
}

/** 64-byte frames h`from` -> h`to` (unicast), senders and receivers pinned to CPU 0: delivered frames/s and frames lost, for each pair at once. */
async function frames(pairs: [number, number][], count: number): Promise<{ framesPerSecond: number; dropped: number }> {
  const receivers = await Promise.all(pairs.map(([, to]) => waitFor(runPinnedIn(host(to), 'receiver', 'eth0'), 'ready')));
  const senders = pairs.map(([from, to]) => runPinnedIn(host(from), 'sender', 'eth0', String(count), '64', macOf(to)));
  let sent = 0;
  let seconds = 0;
  for (const sender of senders) {
    const [n, s] = senderResult(await sender.output);
    sent += n;
    seconds = Math.max(seconds, s);
  }
  let delivered = 0;
  for (const receiver of receivers) delivered += lastNumber(await receiver.output);
  return { framesPerSecond: delivered / seconds, dropped: sent - delivered };
}

/** iperf3 TCP h1 -> h2 for 5 s with `streams` parallel streams: received bit/s and retransmits (all streams); nulls if iperf3 is not installed. */
async function tcp(streams = 1): Promise<{ tcpBitsPerSecond: number | null; tcpRetransmits: number | null }> {
  if (!installed('iperf3')) return { tcpBitsPerSecond: null, tcpRetransmits: null };
  const server = runIn(host(2), '/usr/bin/env', 'iperf3', '--server', '--one-off', '--forceflush', '--bind', address(2));
  await waitFor(server, 'listening');
  const { stdout } = await exec('ip', ['netns', 'exec', host(1), 'iperf3', '--client', address(2), '--time', '5', '--parallel', String(streams), '--json'], { timeout: 30_000 });
  await server.output;
  const end = (JSON.parse(stdout) as { end: { sum_received: { bits_per_second: number }; sum_sent: { retransmits: number } } }).end;
  return { tcpBitsPerSecond: end.sum_received.bits_per_second, tcpRetransmits: end.sum_sent.retransmits };
}

export const PINGS = 1000;

/** The `fraction` percentile of ascending `sorted` (nearest rank). */
const percentile = (sorted: number[], fraction: number): number => sorted[Math.ceil(sorted.length * fraction) - 1]!;

/** ping h1 -> h2 (-i 0.002 -c PINGS, root): average, p99 and p99.9 in ms of every reply's time=. */
async function latency(): Promise<{ rttAvgMs: number; rttP99Ms: number; rttP999Ms: number }> {
  const { stdout } = await exec('ip', ['netns', 'exec', host(1), 'ping', '-i', '0.002', '-c', String(PINGS), '-W', '1', address(2)], { timeout: 60_000 });
  const rtts = [...stdout.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1])).sort((a, b) => a - b);
  if (rtts.length < PINGS * 0.99) throw new Error(`ping: only ${rtts.length} of ${PINGS} answered`);
  return { rttAvgMs: rtts.reduce((a, b) => a + b, 0) / rtts.length, rttP99Ms: percentile(rtts, 0.99), rttP999Ms: percentile(rtts, 0.999) };
}

/** The forwarders NETDEV_BENCH_FORWARDERS names (comma-separated), or all if it is not set. */
export function chosenForwarders(): Forwarder[] {
  const all: Forwarder[] = ['switch', 'bridge', 'c', 'l2fwd', 'cap', 'ovs'];
  const asked = process.env.NETDEV_BENCH_FORWARDERS?.split(',').map((name) => name.trim());
  const unknown = asked?.filter((name) => !all.includes(name as Forwarder)) ?? [];
  if (unknown.length > 0) throw new Error(`NETDEV_BENCH_FORWARDERS: no forwarder ${unknown.join(', ')} (there are ${all.join(', ')})`);
  return asked ? all.filter((name) => asked.includes(name)) : all;
}

/** Which of the `chosen` forwarders can run here, saying why any cannot. */
function availableForwarders(chosen: Forwarder[], capModules: string | null): Forwarder[] {
  const list = chosen.filter((forwarder) => forwarder !== 'cap' || capModules);
  if (!list.includes('ovs') || (installed('ovs-vswitchd') && installed('ovsdb-server'))) return list;
  console.log('  (no Open vSwitch column: ovs-vswitchd is not installed; Debian package openvswitch-switch)');
  return list.filter((forwarder) => forwarder !== 'ovs');
}

/** Installs the `cap` npm package into a temporary folder; null (saying why) if it cannot be built. */
async function installCap(): Promise<string | null> {
  const folder = mkdtempSync(join(tmpdir(), 'netdev-bench-cap-'));
  try {
    await exec('npm', ['install', '--no-save', '--no-package-lock', '--prefix', folder, 'cap'], { timeout: 300_000 });
    await exec(process.execPath, ['-e', 'require(process.argv[1])', join(folder, 'node_modules', 'cap')]);
    return folder;
  } catch (error) {
    console.log(`  (no cap column: cannot install the cap package, which needs libpcap-dev and a compiler: ${(error as Error).message.split('\n')[0]})`);
    rmSync(folder, { recursive: true, force: true });
    return null;
  }
}

export interface TopologyResults {
  paths: Partial<Record<Forwarder, PathFigure[]>>;
  /** Frames/s delivered with 1, 2 and 4 simultaneous unicast flows through 2, 4 and 8 ports. */
  ports: Record<'switch' | 'bridge', Record<number, { framesPerSecond: number; dropped: number }[]>>;
}

/** Every forwarder `runs` times on one topology; null (saying why) where it cannot run. */
export async function topologyBenchmarks(count: number, runs: number): Promise<TopologyResults | null> {
  if (process.getuid?.() !== 0) {
    console.log('topology benchmarks skipped: they need root to make network namespaces');
    return null;
  }
  if (!installed('ping')) {
    console.log('topology benchmarks skipped: ping is not installed (Debian package iputils-ping)');
    return null;
  }
  if (!buildPrograms()) return null;
  const chosen = chosenForwarders();
  const capModules = chosen.includes('cap') ? await installCap() : null;
  try {
    await setUp(HOSTS, 'off');
    const results: TopologyResults = { paths: {}, ports: { switch: {}, bridge: {} } };
    for (const forwarder of availableForwarders(chosen, capModules)) {
      const figures: PathFigure[] = (results.paths[forwarder] = []);
      for (let i = 0; i < runs; i++) {
        const stop = await startForwarder(forwarder, ['p1', 'p2'], capModules);
        try {
          await awaitPath(2, 1);
          const rate = await frames([[1, 2]], count);
          figures.push({ ...rate, ...(await tcp()), ...(await latency()) });
        } finally {
          await stop();
        }
      }
    }
    for (const portCount of [2, 4, 8]) {
      const ports = Array.from({ length: portCount }, (_, i) => `p${i + 1}`);
      const pairs = Array.from({ length: portCount / 2 }, (_, i): [number, number] => [2 * i + 1, 2 * i + 2]);
      // The port-count rows compare the Switch with the bridge: both, or neither.
      if (!chosen.includes('switch') || !chosen.includes('bridge')) break;
      for (const forwarder of ['switch', 'bridge'] as const) {
        const figures: { framesPerSecond: number; dropped: number }[] = (results.ports[forwarder][portCount] = []);
        for (let i = 0; i < runs; i++) {
          const stop = await startForwarder(forwarder, ports, null);
          try {
            for (const [from, to] of pairs) await awaitPath(to, from);
            figures.push(await frames(pairs, Math.round(count / pairs.length)));
          } finally {
            await stop();
          }
        }
      }
    }
    return results;
  } finally {
    tearDown();
    if (capModules) rmSync(capModules, { recursive: true, force: true });
  }
}

/** The rows of the TCP-with-offloads table. */
export type TcpRow = 'switch-on' | 'bridge-on' | 'ovs-tso' | 'switch-off';

/** iperf3 streams of each TCP-with-offloads figure. */
export const TCP_STREAMS = [1, 4] as const;

export interface TcpFigure {
  bitsPerSecond: number;
  retransmits: number;
}

/** One row's figures: for each stream count, one per run. */
export type TcpFigures = Record<(typeof TCP_STREAMS)[number], TcpFigure[]>;

/** The forwarder behind each row, and how it is started. */
const TCP_ROW_FORWARDERS: Record<TcpRow, [Forwarder, ForwarderOptions]> = {
  'switch-on': ['switch', { offloads: true }],
  'bridge-on': ['bridge', { offloads: true }],
  'ovs-tso': ['ovs', { offloads: true }],
  'switch-off': ['switch', { offloads: false }],
};

/** Starts `row`'s forwarder over p1 and p2, measures iperf3 with each stream count into `figures`, stops it. */
async function tcpRun(row: TcpRow, figures: TcpFigures): Promise<void> {
  const [forwarder, options] = TCP_ROW_FORWARDERS[row];
  const stop = await startForwarder(forwarder, ['p1', 'p2'], null, options);
  try {
    await awaitPath(2, 1);
    for (const streams of TCP_STREAMS) {
      const { tcpBitsPerSecond, tcpRetransmits } = await tcp(streams);
      figures[streams].push({ bitsPerSecond: tcpBitsPerSecond!, retransmits: tcpRetransmits! });
    }
  } finally {
    await stop();
  }
}

/**
 * TCP h1 -> h2 on h1 -- fw -- h2 with the veth offloads as the kernel set them: the Switch with
 * its ports opened with offloads, the Linux bridge and OVS userspace-tso, each `runs` times (the
 * runs taken in turn, so that the ratios compare runs of the same minutes); then the veth offloads
 * turned off and the Switch without offloads.  Null (saying why) where it cannot run; a row that
 * cannot run here is left out, saying why.
 */
export async function tcpOffloadBenchmarks(runs: number): Promise<Partial<Record<TcpRow, TcpFigures>> | null> {
  if (process.getuid?.() !== 0) {
    console.log('  skipped: it needs root to make network namespaces');
    return null;
  }
  for (const [program, debian] of [['iperf3', 'iperf3'], ['ping', 'iputils-ping']] as const) {
    if (!installed(program)) {
      console.log(`  skipped: ${program} is not installed (Debian package ${debian})`);
      return null;
    }
  }
  const rows: TcpRow[] = ['switch-on', 'bridge-on'];
  if (installed('ovs-vswitchd') && installed('ovsdb-server')) rows.push('ovs-tso');
  else console.log('  (no Open vSwitch row: ovs-vswitchd is not installed; Debian package openvswitch-switch)');
  const results: Partial<Record<TcpRow, TcpFigures>> = {};
  try {
    await setUp(2, 'kernel');
    for (let i = 0; i < runs; i++) {
      for (const row of [...rows]) {
        const figures = (results[row] ??= { 1: [], 4: [] });
        try {
          await tcpRun(row, figures);
        } catch (error) {
          if (!(error instanceof OvsOptionRefused)) throw error;
          console.log(`  (no Open vSwitch row: ${error.message})`);
          rows.splice(rows.indexOf(row), 1);
          delete results[row];
        }
      }
    }
    await disableOffloads(2);
    const figures = (results['switch-off'] = { 1: [], 4: [] });
    for (let i = 0; i < runs; i++) await tcpRun('switch-off', figures);
    return results;
  } finally {
    tearDown();
  }
}
