/**
 * Hosts in network namespaces of the test run's own, each on a veth pair to a forwarder
 * namespace:
 *
 *   [hN: eth0] ==veth== [fw: sN]      N = 1 .. hosts
 *
 * and, in the forwarder, either a Linux bridge of the sN (the oracle) or nothing (the Switch
 * opens them).  Nothing outside these namespaces is touched, and no frame leaves them.
 */
import { execFileSync } from 'node:child_process';
import { ip } from './netns-harness.js';

let serial = 0;

export class ForwarderTopology {
  readonly prefix = `ndf${process.pid}x${serial++}`;
  readonly fw = `${this.prefix}fw`;
  readonly hosts: string[];

  constructor(hostCount: number) {
    this.hosts = Array.from({ length: hostCount }, (_, i) => `${this.prefix}h${i + 1}`);
    ip('netns', 'add', this.fw);
    for (const [i, host] of this.hosts.entries()) {
      ip('netns', 'add', host);
      this.ip('link', 'add', `s${i + 1}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', host);
      // No IPv6 link-local address: the kernel then sends nothing of its own (ND, MLD).
      this.ip('link', 'set', `s${i + 1}`, 'addrgenmode', 'none');
      ip('-n', host, 'link', 'set', 'eth0', 'addrgenmode', 'none');
      ip('-n', host, 'link', 'set', 'eth0', 'up');
      this.ip('link', 'set', `s${i + 1}`, 'up');
    }
  }

  /** `ip -n FW ...` */
  ip(...args: string[]): string {
    return ip('-n', this.fw, ...args);
  }

  /** `ip -j -n FW ...` (or `bridge -j -n FW ...` with tool 'bridge'), parsed. */
  json<T = Record<string, unknown>[]>(args: string[], tool: 'ip' | 'bridge' = 'ip'): T {
    return JSON.parse(execFileSync(tool, ['-j', '-n', this.fw, ...args], { encoding: 'utf8' })) as T;
  }

  /** A Linux bridge br0 in the forwarder with the given ports, `ip link add br0 type bridge OPTIONS...`. */
  addBridge(ports: string[], options: string[] = []): void {
    this.ip('link', 'add', 'br0', 'type', 'bridge', ...options);
    this.ip('link', 'set', 'br0', 'addrgenmode', 'none');
    for (const port of ports) this.ip('link', 'set', port, 'master', 'br0');
    this.ip('link', 'set', 'br0', 'up');
  }

  deleteBridge(): void {
    this.ip('link', 'del', 'br0');
  }

  /**
   * Joins forwarder devices `a` and `b` as a wire, in the kernel: every frame either receives
   * is sent out of the other (tc mirred redirects at their ingress).
   */
  wire(a: string, b: string): void {
    for (const [from, to] of [[a, b], [b, a]] as const) {
      execFileSync('tc', ['-n', this.fw, 'qdisc', 'add', 'dev', from, 'clsact']);
      execFileSync('tc', ['-n', this.fw, 'filter', 'add', 'dev', from, 'ingress', 'u32', 'match', 'u32', '0', '0', 'action', 'mirred', 'egress', 'redirect', 'dev', to]);
    }
  }

  /**
   * Caps what forwarder device `dev` sends at 10 Mbit/s (a tbf qdisc): on the cables of a loop,
   * a storm a failed test leaves running (or a test process left orphaned) stays cheap.
   */
  bound(dev: string): void {
    execFileSync('tc', ['-n', this.fw, 'qdisc', 'add', 'dev', dev, 'root', 'tbf', 'rate', '10mbit', 'burst', '32k', 'latency', '50ms']);
  }

  /** Deletes every namespace (all of them, even if deleting one fails; the first failure is thrown after). */
  destroy(): void {
    let failure: unknown;
    for (const ns of [this.fw, ...this.hosts]) {
      try {
        ip('netns', 'del', ns);
      } catch (error) {
        failure ??= error;
      }
    }
    if (failure) throw failure;
  }
}

/** Closes `sw` (if any), then `mgr`, then deletes `topo`'s namespaces: each step even if one before it failed. */
export async function tearDown(sw: { close(): Promise<void> } | undefined, mgr: { close(): Promise<void> }, topo: ForwarderTopology): Promise<void> {
  try {
    await sw?.close();
  } finally {
    try {
      await mgr.close();
    } finally {
      topo.destroy();
    }
  }
}
