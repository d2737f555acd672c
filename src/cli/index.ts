#!/usr/bin/env node
/**
 * The `netdev` command line: list, show, monitor and capture (inspect.ts), switch
 * (switch-command.ts), demo (kernel-demo.ts as root, demo.ts otherwise; tunnel-demo.ts with --hosts 2)
 * and vsysd (vsysd.ts).
 * Arguments are checked, and a --netns must exist, before any device is opened; a failure is one
 * line on stderr and status 1.  `netdev --help` lists the commands and their options.
 */
import './require-linux.js'; // first: it must run before any module below loads libc
import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { netnsPath } from '../sys/netns.js';
import { runDemo } from './demo.js';
import { runKernelDemo } from './kernel-demo.js';
import { runTunnelDemo } from './tunnel-demo.js';
import { runVsysd } from './vsysd.js';
import { captureDevice, listDevices, monitorDevices, showDevice } from './inspect.js';
import { printLine } from './output.js';
import { runSwitchCommand } from './switch-command.js';

const USAGE = `usage: netdev <command> [options]

commands:
  list                 the devices, with type, MAC, MTU, flags and carrier
  show DEV             every attribute of DEV (those it has none of, or does not support, said so)
  monitor [DEV...]     a line per change of the devices (all if none named), until Ctrl-C
  capture DEV -w FILE  DEV's frames to a pcap file, until Ctrl-C, -c N frames, or DEV fails
                       (deleted: says why, status 1); the file is complete either way
           -c N           stop after N frames
           --direction D  rx, tx or both (default)
  switch DEV DEV...    a learning switch between the devices (each named once; brought up and
                       promiscuous, restored when it stops) with a live per-port table, until
                       Ctrl-C or until the reader of its output goes away (| head)
           --vlan DEV=ID  access VLAN 1-4094 of port DEV, once per port (the others are trunks)
           --config DEV=KEY=VALUE[,KEY=VALUE...]  the config port DEV is opened with, once per
                          port (DEV: its name, or its name after the prefix); a tunnel port is
                          made from it, e.g. vxlan:vx0 --config vx0=key=42,remote_ip=10.200.0.2
                          (several remotes: remote_ip=10.200.0.2,10.200.0.3)
           --interval MS  how often the table is redrawn, 50 to 3600000 (default 1000)
           --group-fwd-mask MASK  reserved group addresses 01:80:c2:00:00:0N to forward, bit N
                          (as Linux's group_fwd_mask; bits 0-2 refused); default 0
           --stp          run the 802.1D spanning tree (the table shows each port's role and
                          state); with it: --stp-priority N (bridge, 0-65535, default 32768),
                          --hello-time S, --max-age S, --forward-delay S (defaults 2, 20, 15),
                          --stp-cost DEV=N and --stp-port-priority DEV=N (0-240) per port
  list, show, monitor, capture and switch also take:
           --netns NS     the network namespace (an ip netns name or a path); it must exist
           --json         JSON output (monitor and switch: one object per line)

  demo     as root: two hosts in network namespaces of its own, on veth pairs to the learning
           switch with the kernel's offloads on: ping (a UDP echo of its own where ping is not
           installed), a 256 MiB TCP transfer checked with SHA-256, a burst at full rate and
           one paced, the switch's table, then everything removed.  Otherwise two hosts and a
           forwarding loop over in-process dummy devices: a burst, each device's counters and
           the rate
           --dummy        use in-process devices even as root
           --frames N     frames per burst (default 100000 as root, 200000 in-process)
           --size B       frame size in bytes, 60-1514 (default 64)
           --hosts 2      as root: two machines instead, each a namespace with a guest and a
                          Switch, joined by vxlan tunnels over an underlay: ping and a 64 MiB
                          TCP transfer guest to guest, both Switches' tables, all removed after

  vsysd    as root: serve vsys requests (vif_up, vif_down, promisc) for pltap devices off
           PlanetLab, until SIGINT or SIGTERM
           --dir DIR      where to create the FIFOs (default /vsys)

--help (or -h) on any command prints this text.`;

function positiveInt(text: string | undefined, fallback: number, name: string, min: number, max: number): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value < min || value > max) throw new Error(`--${name} must be an integer from ${min} to ${max}`);
  return value;
}

/** The DEV=N values of a per-port option `--name` (each port at most once). */
function perPort(specs: string[] | undefined, name: string, what: string, has: string, min: number, max: number): Map<string, number> {
  const values = new Map<string, number>();
  for (const spec of specs ?? []) {
    const match = /^(.+)=(\d{1,9})$/.exec(spec);
    if (!match) throw new Error(`--${name} takes DEV=${what}, not ${spec}`);
    if (values.has(match[1]!)) throw new Error(`--${name} ${spec}: ${match[1]} has ${has} already`);
    values.set(match[1]!, positiveInt(match[2], 0, name, min, max));
  }
  return values;
}

/**
 * The --config DEV=KEY=VALUE,KEY=VALUE... values (each port at most once), by DEV.  A piece
 * without '=' continues the value before it, so a list keeps its commas: remote_ip=A,B.
 */
function perPortConfig(specs: string[] | undefined): Map<string, Record<string, string>> {
  const configs = new Map<string, Record<string, string>>();
  for (const spec of specs ?? []) {
    const match = /^([^=]+)=(.+)$/.exec(spec);
    if (!match) throw new Error(`--config takes DEV=KEY=VALUE[,KEY=VALUE...], not ${spec}`);
    const [, dev, pairs] = match as unknown as [string, string, string];
    if (configs.has(dev)) throw new Error(`--config ${spec}: ${dev} has a config already (give all its keys in one --config)`);
    const config: Record<string, string> = {};
    let last: string | undefined;
    for (const piece of pairs.split(',')) {
      const equals = piece.indexOf('=');
      if (equals > 0) {
        last = piece.slice(0, equals);
        if (Object.hasOwn(config, last)) throw new Error(`--config ${spec}: ${last} is given twice`);
        config[last] = piece.slice(equals + 1);
      } else if (last !== undefined && equals < 0) {
        config[last] += `,${piece}`;
      } else {
        throw new Error(`--config ${spec}: ${JSON.stringify(piece)} is not KEY=VALUE`);
      }
    }
    configs.set(dev, config);
  }
  return configs;
}

/** Refuses a --netns naming a namespace that does not exist (the library would just find no devices in it). */
function requireNetns(spec: string | undefined): void {
  if (spec === undefined) return;
  const path = netnsPath(spec);
  if (!existsSync(path)) throw new Error(`network namespace ${spec} does not exist (no ${path})`);
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (!command || command === '--help' || command === '-h' || command === 'help') {
    printLine(USAGE);
    return command ? 0 : 2;
  }
  if (command === 'demo') {
    const { values } = parseArgs({
      args: rest,
      options: { frames: { type: 'string' }, size: { type: 'string' }, dummy: { type: 'boolean' }, hosts: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    });
    if (values.help) {
      printLine(USAGE);
      return 0;
    }
    if (positiveInt(values.hosts, 1, 'hosts', 1, 2) === 2) {
      if (process.getuid?.() !== 0) throw new Error('demo --hosts 2 needs root (it makes network namespaces and tunnels)');
      if (values.dummy || values.frames !== undefined || values.size !== undefined) throw new Error('demo --hosts 2 takes no --dummy, --frames or --size');
      return runTunnelDemo({ out: printLine });
    }
    if (process.getuid?.() === 0 && !values.dummy) {
      return runKernelDemo({
        frames: positiveInt(values.frames, 100_000, 'frames', 1, 100_000_000),
        size: positiveInt(values.size, 64, 'size', 60, 1514),
        out: printLine,
      });
    }
    if (!values.dummy) printLine('(not root: in-process devices instead of namespaces)');
    return runDemo({
      frames: positiveInt(values.frames, 200_000, 'frames', 1, 100_000_000),
      size: positiveInt(values.size, 64, 'size', 60, 1514),
      out: printLine,
    });
  }
  if (command === 'list' || command === 'show' || command === 'monitor' || command === 'capture') {
    const { values, positionals } = parseArgs({
      args: rest,
      allowPositionals: true,
      options: {
        netns: { type: 'string' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
        write: { type: 'string', short: 'w' },
        count: { type: 'string', short: 'c' },
        direction: { type: 'string' },
      },
    });
    if (values.help) {
      printLine(USAGE);
      return 0;
    }
    requireNetns(values.netns);
    const options = { netns: values.netns, json: values.json === true, out: printLine };
    if (command === 'list') return listDevices(options);
    if (command === 'show') {
      if (positionals.length !== 1) throw new Error('show takes one device name');
      return showDevice(positionals[0]!, options);
    }
    if (command === 'capture') {
      if (positionals.length !== 1 || !values.write) throw new Error('capture takes one device name and -w FILE');
      const direction = values.direction ?? 'both';
      if (direction !== 'rx' && direction !== 'tx' && direction !== 'both') throw new Error('--direction must be rx, tx or both');
      const limit = values.count === undefined ? undefined : positiveInt(values.count, 0, 'count', 1, Number.MAX_SAFE_INTEGER);
      return captureDevice(positionals[0]!, values.write, limit, direction, options);
    }
    await monitorDevices(positionals, options);
    return 0;
  }
  if (command === 'switch') {
    const { values, positionals } = parseArgs({
      args: rest,
      allowPositionals: true,
      options: {
        netns: { type: 'string' },
        vlan: { type: 'string', multiple: true },
        json: { type: 'boolean' },
        interval: { type: 'string' },
        'group-fwd-mask': { type: 'string' },
        stp: { type: 'boolean' },
        'stp-priority': { type: 'string' },
        'hello-time': { type: 'string' },
        'max-age': { type: 'string' },
        'forward-delay': { type: 'string' },
        'stp-cost': { type: 'string', multiple: true },
        'stp-port-priority': { type: 'string', multiple: true },
        config: { type: 'string', multiple: true },
        help: { type: 'boolean', short: 'h' },
      },
    });
    if (values.help) {
      printLine(USAGE);
      return 0;
    }
    requireNetns(values.netns);
    const maskText = values['group-fwd-mask'];
    const groupFwdMask = maskText === undefined ? 0 : Number(maskText);
    if (!(maskText === undefined || (/^(0x[0-9a-f]+|\d+)$/i.test(maskText) && groupFwdMask <= 0xffff))) throw new Error(`--group-fwd-mask takes a 16-bit mask (0x4008, 16392), not ${maskText}`);
    const vlans = perPort(values.vlan, 'vlan', 'ID', 'a VLAN', 1, 4094);
    const stpSetting = ['stp-priority', 'hello-time', 'max-age', 'forward-delay', 'stp-cost', 'stp-port-priority'].find((name) => values[name as keyof typeof values] !== undefined);
    if (stpSetting && !values.stp) throw new Error(`--${stpSetting} needs --stp`);
    const stp = values.stp
      ? {
          priority: positiveInt(values['stp-priority'], 32768, 'stp-priority', 0, 65535),
          helloTime: positiveInt(values['hello-time'], 2, 'hello-time', 1, 10),
          maxAge: positiveInt(values['max-age'], 20, 'max-age', 6, 40),
          forwardDelay: positiveInt(values['forward-delay'], 15, 'forward-delay', 4, 30),
          costs: perPort(values['stp-cost'], 'stp-cost', 'COST', 'a cost', 1, 200_000_000),
          priorities: perPort(values['stp-port-priority'], 'stp-port-priority', 'PRIORITY', 'a priority', 0, 240),
        }
      : null;
    return runSwitchCommand(positionals, {
      netns: values.netns,
      vlans,
      configs: perPortConfig(values.config),
      json: values.json === true,
      intervalMs: positiveInt(values.interval, 1000, 'interval', 50, 3_600_000),
      groupFwdMask,
      stp,
      tty: process.stdout.isTTY === true,
      out: printLine,
    });
  }
  if (command === 'vsysd') {
    const { values } = parseArgs({ args: rest, options: { dir: { type: 'string' }, help: { type: 'boolean', short: 'h' } } });
    if (values.help) {
      printLine(USAGE);
      return 0;
    }
    await runVsysd(values.dir ?? '/vsys', printLine);
    return 0; // its poll handles keep the process serving until a signal ends it

  }
  process.stderr.write(`netdev: unknown command '${command}'\n${USAGE}\n`);
  return 2;
}

main(process.argv.slice(2)).then(
  (status) => {
    process.exitCode = status;
  },
  (error: unknown) => {
    process.stderr.write(`netdev: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
  },
);
