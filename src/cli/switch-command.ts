/**
 * `netdev switch DEV DEV... [--netns NS] [--vlan DEV=ID] [--config DEV=KEY=VALUE,...] [--group-fwd-mask MASK] [--stp ...]`: runs the
 * learning switch between the devices, brought up and promiscuous (restored when it ends).  Every
 * second it shows each port's frames/s, Mbit/s, drops, floods, the frames it did not forward
 * for a reserved group address or an invalid source, and whether its worker or the main thread
 * forwards: redrawn in place on a terminal, a line per port otherwise (or JSON with --json).  A
 * MAC flapping between ports (the Switch's 'macFlap') is printed as a notice.  With --stp the
 * Switch runs the 802.1D spanning tree, and the table adds the root and each port's role and state.  SIGINT/SIGTERM stop it cleanly: ports removed, flags restored, exit status 0.
 * Ports keep the offloads the kernel gave them (TSO, GSO, checksum offload): each is opened with
 * offloads where its provider has them (system, tap, pltap, vxlan), so TCP super-frames are forwarded whole.
 * A port's --config is the config it is opened with: a tunnel port (vxlan:vx0) is made from it.
 */
import { NetdevError } from '../common/errors.js';
import { NetdevManager } from '../main/manager.js';
import type { Netdev } from '../main/netdev.js';
import { untilStopped } from './output.js';
import { Switch, type MacFlap, type PortCounters, type PortStp } from '../switch/switch.js';

export interface SwitchCommandOptions {
  netns?: string | undefined;
  vlans: Map<string, number>;
  /** The config of a port (a tunnel's parameters), by its name or its name after the prefix. */
  configs: Map<string, Record<string, string>>;
  json: boolean;
  intervalMs: number;
  /** SwitchOptions.groupFwdMask. */
  groupFwdMask: number;
  /** The spanning tree's settings (null: off), with per-port path costs and port priorities by device name. */
  stp: { priority: number; helloTime: number; maxAge: number; forwardDelay: number; costs: Map<string, number>; priorities: Map<string, number> } | null;
  out: (text: string) => void;
  tty: boolean;
}

interface Sample {
  name: string;
  path: 'worker' | 'main';
  stp: PortStp | null;
  counters: PortCounters;
}

/** A 'macFlap' event as a line of text. */
function flapText({ mac, vlan, moves, seconds, ports }: MacFlap): string {
  return `MAC ${mac} (VLAN ${vlan}) is flapping: it moved ${moves} times in ${seconds} s between ports ${ports.join(', ')}`;
}

/** Rows of per-second rates between two samples of the switch's counters. */
function rates(before: Sample[], after: Sample[], seconds: number) {
  return after.map(({ name, path, stp, counters }) => {
    const previous = before.find((s) => s.name === name)?.counters ?? counters;
    const per = (key: keyof PortCounters) => (counters[key] - previous[key]) / seconds;
    return {
      port: name,
      path,
      rxFps: Math.round(per('rxFrames')),
      rxMbps: +((per('rxBytes') * 8) / 1e6).toFixed(2),
      txFps: Math.round(per('txFrames')),
      txMbps: +((per('txBytes') * 8) / 1e6).toFixed(2),
      drops: counters.rxDropped + counters.txDropped,
      floods: counters.floods,
      reserved: counters.reserved,
      invalidSource: counters.invalidSource,
      ...(stp ? { role: stp.role, state: stp.state, blocked: counters.blocked } : {}),
    };
  });
}

/**
 * Rings of a port opened with offloads: frames between a system port and a tap cross the main
 * thread through both ports' rings, and a TCP window of super-frames must fit there (with the
 * default 512 KiB, 7 super-frames, TCP through a tap port lost thousands of segments a second; with
 * 8 MiB, none).  Pages are touched only as frames fill them.
 */
const OFFLOAD_RING_BYTES = 8 * 1024 * 1024;

/** Opens a port with offloads (and rings for super-frames) if its provider has them, else without. */
async function openPort(mgr: NetdevManager, name: string, netns: string | undefined, config: Record<string, string> | undefined): Promise<Netdev> {
  const configured = config ? { config } : {};
  try {
    return await mgr.open(name, { netns, offloads: true, ringSize: OFFLOAD_RING_BYTES, ...configured });
  } catch (error) {
    if (error instanceof NetdevError && error.code === 'EOPNOTSUPP') return mgr.open(name, { netns, ...configured });
    throw error;
  }
}

/** Runs the switch until a signal; resolves with the exit status. */
export async function runSwitchCommand(names: string[], options: SwitchCommandOptions): Promise<number> {
  if (names.length < 2) throw new Error('switch takes at least two devices');
  const twice = names.find((name, i) => names.indexOf(name) !== i);
  if (twice !== undefined) throw new Error(`switch: ${twice} is named twice (a device is one port)`);
  const perPort: [string, Map<string, number>][] = [['vlan', options.vlans], ['stp-cost', options.stp?.costs ?? new Map()], ['stp-port-priority', options.stp?.priorities ?? new Map()]];
  for (const [option, values] of perPort) {
    for (const [name, value] of values) {
      if (!names.includes(name)) throw new Error(`--${option} ${name}=${value}: ${name} is not a port of this switch (ports: ${names.join(', ')})`);
    }
  }
  const configOf = new Map<string, Record<string, string>>();
  for (const [dev, config] of options.configs) {
    const port = names.find((name) => name === dev || name.slice(name.indexOf(':') + 1) === dev);
    if (port === undefined) throw new Error(`--config ${dev}=...: ${dev} is not a port of this switch (ports: ${names.join(', ')})`);
    if (configOf.has(port)) throw new Error(`--config ${dev}=...: ${port} has a config already`);
    configOf.set(port, config);
  }
  const { stp } = options;
  const mgr = new NetdevManager();
  const sw = new Switch({
    groupFwdMask: options.groupFwdMask,
    ...(stp ? { stp: { priority: stp.priority, helloTime: stp.helloTime, maxAge: stp.maxAge, forwardDelay: stp.forwardDelay } } : {}),
    onNotice: (line) => options.out(options.json ? JSON.stringify({ notice: line }) : `notice: ${line}`) });
  sw.on('macFlap', (flap) => options.out(options.json ? JSON.stringify({ macFlap: flap }) : `notice: ${flapText(flap)}`));
  try {
    for (const name of names) {
      const dev = await openPort(mgr, name, options.netns, configOf.get(name));
      await dev.turnFlagsOn({ up: true, promisc: true }); // restored when the switch ends
      const vlan = options.vlans.get(name);
      const [stpPathCost, stpPriority] = [stp?.costs.get(name), stp?.priorities.get(name)];
      sw.addPort(dev, { ...(vlan === undefined ? {} : { vlan }), ...(stpPathCost === undefined ? {} : { stpPathCost }), ...(stpPriority === undefined ? {} : { stpPriority }) });
    }
    await sw.ready(); // every port's worker knows every other port
    const whole = sw.counters().filter((p) => p.offloads).map((p) => p.name);
    options.out(
      options.json
        ? JSON.stringify({ switching: names, offloads: whole })
        : `switching ${names.join(', ')} (Ctrl-C to stop); offloads left as the kernel set them, super-frames forwarded whole ${whole.length > 0 ? `between ${whole.join(', ')}` : '(no port takes them)'}`,
    );
    const tree = sw.spanningTree();
    if (tree) options.out(options.json ? JSON.stringify({ spanningTree: { bridgeId: tree.bridgeId } }) : `spanning tree (802.1D) on: bridge ID ${tree.bridgeId}`);
    let last: Sample[] = sw.counters();
    let lastTime = performance.now();
    let drawn = 0;
    const timer = setInterval(() => {
      const now = performance.now();
      const sample: Sample[] = sw.counters();
      const rows = rates(last, sample, (now - lastTime) / 1000);
      last = sample;
      lastTime = now;
      const tree = sw.spanningTree();
      if (options.json) {
        options.out(JSON.stringify({ time: new Date().toISOString(), ports: rows, ...(tree ? { spanningTree: tree } : {}) }));
        return;
      }
      const lines = [
        ...(tree ? [`root ${tree.rootId}${tree.rootPort === null ? ' (this switch)' : ` via ${tree.rootPort}, cost ${tree.rootPathCost}`}${tree.topologyChange ? ', topology change' : ''}`] : []),
        `PORT           PATH     RX FRAMES/S   RX MBIT/S  TX FRAMES/S   TX MBIT/S      DROPS     FLOODS   RESERVED    BAD SRC${tree ? '  ROLE        STATE' : ''}`,
        ...rows.map((r) => `${r.port.padEnd(14)} ${r.path.padEnd(6)} ${String(r.rxFps).padStart(12)} ${String(r.rxMbps).padStart(11)} ${String(r.txFps).padStart(12)} ${String(r.txMbps).padStart(11)} ${String(r.drops).padStart(10)} ${String(r.floods).padStart(10)} ${String(r.reserved).padStart(10)} ${String(r.invalidSource).padStart(10)}${r.role ? `  ${r.role.padEnd(11)} ${r.state}` : ''}`),
      ];
      // On a terminal, move back up over the last table and draw over it.
      options.out((options.tty && drawn ? `\x1b[${drawn}A\x1b[J` : '') + lines.join('\n'));
      drawn = lines.length;
    }, options.intervalMs);
    await untilStopped();
    clearInterval(timer);
    return 0;
  } finally {
    await sw.close();
    await mgr.close();
  }
}
