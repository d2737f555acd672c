/**
 * `netdev demo` as root: two hosts in network namespaces of the demo's own, each on a veth pair
 * to a port of the learning switch, which runs in this process with its ports in a third namespace:
 *
 *   [h1: eth0 10.99.0.1] ==veth== [sw: p1] Switch [sw: p2] ==veth== [h2: eth0 10.99.0.2]
 *
 * The veth ends keep the offloads the kernel gave them (TSO, GSO, checksum offload) and the
 * Switch's ports are opened with offloads, so TCP super-frames are forwarded whole.  It proves
 * connectivity with ping (h1 -> h2, through the switch; a UDP echo of its own where ping is not
 * installed), moves a TCP transfer h1 -> h2 and checks it end to end with SHA-256 (Node on both
 * ends, in child processes in the hosts' namespaces), sends a burst of frames from h1 through the
 * library at full rate and one paced, says where each lost frame was counted, prints the switch's
 * table, and removes everything it made (also on Ctrl-C or failure).  Nothing outside its
 * namespaces is touched.
 */
import { execFileSync } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { NetdevManager } from '../main/manager.js';
import { Switch } from '../switch/switch.js';
import type { Netdev } from '../main/netdev.js';
import { BURST_ETHERTYPE, BurstReceiver, explainLoss, reportBurst, sendBurst, type BurstPath } from './demo-burst.js';
import { proveConnectivity, transferTcp } from './demo-processes.js';
import { COUNTER_HEADINGS, counterColumns, DemoSession } from './demo-session.js';

export interface KernelDemoOptions {
  /** Frames in each burst, and their size. */
  frames: number;
  size: number;
  out: (line: string) => void;
}

/** The paced burst lasts at most this many seconds. */
const PACED_SECONDS = 5;
/** Bytes the TCP transfer moves. */
const TCP_BYTES = 256 * 1024 * 1024;

/**
 * Runs the demo; resolves with the exit status: 0 if ping got through, the TCP transfer's SHA-256
 * matched, frames of both bursts arrived intact and in order, and every lost frame was counted.
 */
export async function runKernelDemo(options: KernelDemoOptions): Promise<number> {
  const prefix = `nddemo${process.pid}`;
  const [h1, h2, fw] = [`${prefix}h1`, `${prefix}h2`, `${prefix}sw`];
  const session = new DemoSession(options.out);
  const { children, stop, out } = session;
  const ip = (...args: string[]) => execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const mgr = new NetdevManager();
  const sw = new Switch({ onNotice: (line) => out(`notice: ${line}`) });
  const ports: Netdev[] = [];
  try {
    out('netdev demo: kernel devices in network namespaces of its own (root)');
    out(`  [${h1}: eth0 10.99.0.1] ==veth== [${fw}: p1] Switch [${fw}: p2] ==veth== [${h2}: eth0 10.99.0.2]`);
    for (const ns of [h1, h2, fw]) session.addNamespace(ns);
    for (const [host, port, address] of [[h1, 'p1', '10.99.0.1/24'], [h2, 'p2', '10.99.0.2/24']] as const) {
      ip('-n', fw, 'link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', host);
      // No IPv6 link-local addresses: no neighbour or router discovery of their own mixes into the
      // frames the bursts' counters count.
      ip('-n', fw, 'link', 'set', port, 'addrgenmode', 'none');
      ip('-n', host, 'link', 'set', 'eth0', 'addrgenmode', 'none');
      ip('-n', host, 'addr', 'add', address, 'dev', 'eth0');
      ip('-n', host, 'link', 'set', 'eth0', 'up');
      const dev = await mgr.open(port, { netns: fw, offloads: true });
      await dev.turnFlagsOn({ up: true, promisc: true });
      sw.addPort(dev);
      ports.push(dev);
    }
    await sw.ready();
    out('offloads left as the kernel set them on all four veth ends; the Switch\'s ports take them, so TCP super-frames (up to 64 KiB) are forwarded whole');
    // The kernel drops frames until a veth's carrier is up.
    for (let i = 0; i < 300 && !(await Promise.all(ports.map((p) => p.getCarrier()))).every(Boolean); i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    const connected = await proveConnectivity(h1, h2, children, out);
    const transferred = !stop.signal.aborted && (await transferTcp(h1, h2, TCP_BYTES, children, out));
    if (stop.signal.aborted) return 130;

    // Bursts from h1's eth0 through the library; h2's eth0 checks what arrives.
    const sender = await mgr.open('eth0', { netns: h1, ethertype: BURST_ETHERTYPE });
    const receiverDev = await mgr.open('eth0', { netns: h2, ethertype: BURST_ETHERTYPE });
    const path: BurstPath = { sender, receiver: new BurstReceiver(receiverDev, options.size), receiverDev, sw, ports };
    out('');
    const full = await sendBurst(path, options.frames, options.size, 0, null, stop.signal);
    let accounted = reportBurst('at full rate', full, out);
    // A pace the path carries: half the rate at which the saturated path delivered (or, should that
    // be so low that the burst would last over PACED_SECONDS, what fills PACED_SECONDS).
    const half = Math.floor(full.rate / 2 / 1000) * 1000;
    const pace = Math.max(half, Math.ceil(options.frames / PACED_SECONDS));
    const paced = await sendBurst(path, options.frames, options.size, options.frames, pace, stop.signal);
    const why = pace === half ? "half the full-rate burst's arrival rate" : `over ${PACED_SECONDS} s, faster than half the full-rate burst's arrival rate`;
    accounted = reportBurst(`paced at ${pace} frames/s (${why})`, paced, out) && accounted;
    explainLoss(full, paced, ports.map((p) => p.name), availableParallelism(), out);
    await receiverDev.close();
    await path.receiver.done;
    if (stop.signal.aborted) return 130;
    out('');
    out(`port   ${COUNTER_HEADINGS}`);
    for (const { name, counters } of sw.counters()) out(`${name.padEnd(6)} ${counterColumns(counters)}`);
    return connected && transferred && full.arrived > 0 && paced.arrived > 0 && accounted ? 0 : 1;
  } finally {
    await sw.close();
    await mgr.close();
    session.end();
    options.out(`removed ${[h1, h2, fw].join(', ')}`);
  }
}
