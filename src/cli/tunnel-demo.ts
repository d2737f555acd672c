/**
 * `netdev demo --hosts 2` as root: two "machines" in network namespaces of the demo's own, joined
 * by an underlay (a veth pair, 10.200.0.1 and .2), each with a guest (a namespace on a veth pair to
 * the machine) and a learning Switch run in this process between the guest's port and a vxlan
 * tunnel port the kernel makes:
 *
 *   [g1: eth0 10.99.0.1] == [m1: g0] Switch [m1: vxlan:vx0] == underlay == [m2: vxlan:vx0] Switch [m2: g0] == [g2: eth0 10.99.0.2]
 *
 * It proves guest-to-guest connectivity (ping, or a UDP echo of its own) and a TCP transfer
 * checked with SHA-256, prints both Switches' tables and the tunnels' parameters, and removes
 * everything it made (also on Ctrl-C or failure).  Nothing outside its namespaces is touched.
 */
import { execFileSync } from 'node:child_process';
import { NetdevManager } from '../main/manager.js';
import type { Netdev } from '../main/netdev.js';
import { Switch } from '../switch/switch.js';
import { proveConnectivity, transferTcp } from './demo-processes.js';
import { COUNTER_HEADINGS, counterColumns, DemoSession } from './demo-session.js';

export interface TunnelDemoOptions {
  out: (line: string) => void;
}

/** Bytes the TCP transfer moves. */
const TCP_BYTES = 64 * 1024 * 1024;
/** Rings of the ports opened with offloads (as netdev switch opens them). */
const RING_BYTES = 8 * 1024 * 1024;

/** Runs the demo; resolves with 0 if ping got through and the TCP transfer's SHA-256 matched. */
export async function runTunnelDemo(options: TunnelDemoOptions): Promise<number> {
  const prefix = `nddemo${process.pid}`;
  const machines = [`${prefix}m1`, `${prefix}m2`] as const;
  const guests = [`${prefix}g1`, `${prefix}g2`] as const;
  const session = new DemoSession(options.out);
  const { children, stop, out } = session;
  const ip = (...args: string[]) => execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const mgr = new NetdevManager();
  const switches = [new Switch(), new Switch()];
  /** The veths frames cross (each machine's g0 and u0, each guest's eth0), opened for control only: their carrier is awaited. */
  const veths: Netdev[] = [];
  try {
    out('netdev demo --hosts 2: two machines in network namespaces of its own, a Switch on each, joined by the kernel\'s vxlan tunnels (root)');
    out(`  [${guests[0]}: eth0 10.99.0.1] == [${machines[0]}: g0] Switch [vxlan:vx0 10.200.0.1] == underlay == [vxlan:vx0 10.200.0.2] Switch [g0: ${machines[1]}] == [${guests[1]}: eth0 10.99.0.2]`);
    for (const ns of [...machines, ...guests]) session.addNamespace(ns);
    ip('-n', machines[0], 'link', 'add', 'u0', 'type', 'veth', 'peer', 'name', 'u0', 'netns', machines[1]);
    for (const [i, machine] of machines.entries()) {
      ip('-n', machine, 'addr', 'add', `10.200.0.${i + 1}/24`, 'dev', 'u0');
      ip('-n', machine, 'link', 'set', 'u0', 'up');
      ip('-n', machine, 'link', 'add', 'g0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', guests[i]!);
      ip('-n', machine, 'link', 'set', 'g0', 'addrgenmode', 'none');
      const config = { key: '42', remote_ip: `10.200.0.${2 - i}`, local_ip: `10.200.0.${i + 1}` };
      const guestPort = await mgr.open('g0', { netns: machine, offloads: true, ringSize: RING_BYTES });
      const tunnel = await mgr.open('vxlan:vx0', { netns: machine, offloads: true, ringSize: RING_BYTES, config });
      for (const port of [guestPort, tunnel]) {
        await port.turnFlagsOn({ up: true, promisc: true });
        switches[i]!.addPort(port);
      }
      await switches[i]!.ready();
      // The guest takes the tunnel's MTU: no frame of its fits in the tunnel otherwise, and no ICMP says so.
      const mtu = await tunnel.getMtu();
      ip('-n', guests[i]!, 'link', 'set', 'eth0', 'mtu', String(mtu));
      ip('-n', guests[i]!, 'addr', 'add', `10.99.0.${i + 1}/24`, 'dev', 'eth0');
      ip('-n', guests[i]!, 'link', 'set', 'eth0', 'up');
      veths.push(guestPort, await mgr.open('u0', { netns: machine, ethertype: 'none' }), await mgr.open('eth0', { netns: guests[i]!, ethertype: 'none' }));
      const { key, remote_ip: remote, dst_port: port } = await tunnel.getConfig();
      out(`${machine}: vxlan:vx0 key ${key}, remote ${remote}, UDP port ${port}, MTU ${mtu} (the underlay's less 50); guest MTU ${mtu}`);
    }
    // The kernel drops frames until a veth's carrier is up.
    for (let i = 0; i < 300 && !(await Promise.all(veths.map((veth) => veth.getCarrier()))).every(Boolean); i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    const connected = await proveConnectivity(guests[0], guests[1], children, out);
    const transferred = !stop.signal.aborted && (await transferTcp(guests[0], guests[1], TCP_BYTES, children, out));
    if (stop.signal.aborted) return 130;
    for (const [i, sw] of switches.entries()) {
      out('');
      out(`${machines[i]}: port      ${COUNTER_HEADINGS}`);
      for (const { name, counters } of sw.counters()) out(`${' '.repeat(machines[i]!.length + 2)}${name.padEnd(9)} ${counterColumns(counters)}`);
    }
    return connected && transferred ? 0 : 1;
  } finally {
    // Each step runs even if the one before failed: the namespaces go whatever happens.
    try {
      try {
        for (const sw of switches) await sw.close();
      } finally {
        await mgr.close();
      }
    } finally {
      session.end();
      options.out(`removed ${[...machines, ...guests].join(', ')}`);
    }
  }
}
