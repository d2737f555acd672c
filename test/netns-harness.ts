import { execFileSync } from 'node:child_process';
import { afterEach, beforeEach } from 'vitest';
import { NetdevManager } from '../dist/index.js';
import { onPath } from './helpers.js';

/** True when this process may create namespaces and devices (root), with the tools that make them (iproute2). */
export const privileged = process.getuid?.() === 0 && onPath('ip') && onPath('tc');

let serial = 0;

/** Runs `ip` with an argument vector; returns its output. */
export function ip(...args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8' });
}

/**
 * A network namespace of the test run's own, with a veth pair va <-> vb in it.  Nothing outside
 * it is touched, and no frame leaves it.
 */
export class TestNetns {
  readonly name = `ndt${process.pid}x${serial++}`;

  constructor() {
    ip('netns', 'add', this.name);
    this.ip('link', 'add', 'va', 'type', 'veth', 'peer', 'name', 'vb');
    // No IPv6 link-local address: the kernel then sends nothing of its own (ND, MLD) on the pair.
    for (const dev of ['va', 'vb']) this.ip('link', 'set', dev, 'addrgenmode', 'none');
  }

  /** `ip -n NAME ...` */
  ip(...args: string[]): string {
    return ip('-n', this.name, ...args);
  }

  /** `ip -j -n NAME ...`, parsed. */
  json<T = Record<string, unknown>[]>(...args: string[]): T {
    return JSON.parse(ip('-j', '-n', this.name, ...args)) as T;
  }

  /** The `ip -j link show` record of `dev`. */
  link(dev: string): { ifindex: number; address: string; mtu: number; flags: string[]; stats64?: { rx: { packets: number }; tx: { packets: number } } } {
    return this.json('-s', 'link', 'show', dev)[0] as never;
  }

  destroy(): void {
    ip('netns', 'del', this.name);
  }
}

/** Says loudly why kernel tests are skipped; in CI (root) they must run, so skipping fails there. */
export function requirePrivilege(suite: string): void {
  if (privileged) return;
  const message = process.getuid?.() === 0
    ? `SKIPPED ${suite}: needs ip and tc, which are not on PATH (Debian: apt-get install iproute2)`
    : `SKIPPED ${suite}: needs root (CAP_NET_ADMIN, CAP_NET_RAW, CAP_SYS_ADMIN) to create network namespaces and devices`;
  if (process.env.CI === 'true') throw new Error(`${message}, and CI must run it`);
  console.warn(`\n*** ${message} ***\n`);
}

/** A test's own namespace and manager, made afresh for each test of the suite that calls `freshEachTest`. */
export interface TestBed {
  ns: TestNetns;
  mgr: NetdevManager;
}

/** Gives each test of the calling suite a new namespace (va <-> vb) and manager, and closes them after it. */
export function freshEachTest(): TestBed {
  const bed = {} as TestBed;
  beforeEach(() => {
    bed.ns = new TestNetns();
    bed.mgr = new NetdevManager();
  });
  afterEach(async () => {
    await bed.mgr.close();
    bed.ns.destroy();
  });
  return bed;
}
