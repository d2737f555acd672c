/**
 * The Switch under load, with every byte of every frame checked at its receiver and every frame
 * that does not arrive counted somewhere (see switch-rig.ts for the account): dummy ports (the
 * main thread's path), veth ports (the workers' path) and both at once; VLAN tagging under load;
 * congested outputs; ports added, removed and deleted while frames flow.
 */
import { execFileSync } from 'node:child_process';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { NetdevManager } from '../dist/index.js';
import { tempDir } from './helpers.js';
import { privileged, requirePrivilege, TestNetns } from './netns-harness.js';
import { SwitchRig, type HostSpec } from './switch-rig.js';

requirePrivilege('Switch under load over veth pairs');

let mgr: NetdevManager;
let rig: SwitchRig | null = null;
let ns: TestNetns | null = null;
beforeEach(() => {
  mgr = new NetdevManager();
});
afterEach(async () => {
  await rig?.close();
  rig = null;
  await mgr.close();
  ns?.destroy();
  ns = null;
});

/** Frames checked, and frames dropped and counted, over the whole file (printed at its end). */
const totals = { checked: 0, dropped: 0, corrupted: 0 };
function tally(account: { received: number; dropped: number }[]): void {
  for (const row of account) {
    totals.checked += row.received;
    totals.dropped += row.dropped;
  }
}
afterAll(() => {
  console.log(`switch stress: ${totals.checked} frames checked byte for byte, ${totals.corrupted} corrupted or reordered, ${totals.dropped} dropped and counted`);
});

/** Settles the phase, checks every host's frames, and adds them to the totals. */
async function finish(r: SwitchRig): Promise<Awaited<ReturnType<SwitchRig['settle']>>> {
  const account = await r.settle();
  totals.corrupted += r.damaged();
  r.expectIntact();
  tally(account);
  return account;
}

/** A rig with hosts 1..specs.length (veth hosts in a namespace of the test run's own). */
async function rigOf(specs: HostSpec[]): Promise<SwitchRig> {
  if (specs.some((s) => s.kind === 'veth')) ns = new TestNetns();
  rig = new SwitchRig(mgr, ns, specs.some((s) => s.kind === 'unix') ? tempDir('stress') : null);
  for (let i = 0; i < specs.length; i++) await rig.add(i + 1, specs[i]!);
  await rig.ready();
  return rig;
}

const row = (account: Awaited<ReturnType<SwitchRig['settle']>>, n: number) => account.find((r) => r.output === n)!;

/** The Switch's counters of the port whose name starts with `name`. */
const portOf = (r: SwitchRig, name: string) => r.sw.counters().find((p) => p.name.startsWith(name))!.counters;

describe('Switch under load, dummy ports (main thread path)', () => {
  it('4 ports, small rings, two floods, a slow receiver', async () => {
    const r = await rigOf([1, 2, 3, 4].map((n) => ({ kind: 'dummy', ringSize: 16384, ...(n === 4 ? { slowMs: 2 } : {}) })));
    await r.phase([1, 2], 'flood');
    await Promise.all([r.send(1, 20_000, 64, 463), r.send(2, 20_000, 64, 463)]);
    const account = await finish(r);
    expect(row(account, 4).dropped).toBeGreaterThan(0); // the slow receiver lost frames, and they were counted
  });

  it('8 ports, four unicast flows at once, 60-1514 bytes', async () => {
    const r = await rigOf(Array.from({ length: 8 }, () => ({ kind: 'dummy' as const })));
    await r.phase([1, 2, 3, 4, 5, 6, 7, 8], 'flood'); // every host makes itself known
    await Promise.all([1, 2, 3, 4, 5, 6, 7, 8].map((n) => r.send(n, 1)));
    await finish(r);
    expect(r.sw.learned).toBe(8);
    await r.phase([1, 3, 5, 7], (n) => n + 1);
    await Promise.all([1, 3, 5, 7].map((n) => r.send(n, 4000)));
    const account = await finish(r);
    for (const n of [1, 3, 5, 7]) expect(row(account, n).received).toBe(0); // unicast reached only its host
  });

  it('access and trunk ports: tagged and untagged under load, VLANs kept apart', async () => {
    // 1, 2: access VLAN 10; 3: access VLAN 20; 4: trunk whose host is in VLAN 10; 5: trunk whose host is in VLAN 20
    const r = await rigOf([{ kind: 'dummy', vlan: 10 }, { kind: 'dummy', vlan: 10 }, { kind: 'dummy', vlan: 20 }, { kind: 'dummy', hostVid: 10 }, { kind: 'dummy', hostVid: 20 }]);
    await r.phase([1, 3, 4, 5], 'flood');
    await Promise.all([r.send(1, 5000, 60, 1514), r.send(3, 5000, 60, 1514), r.send(4, 5000, 60, 1514), r.send(5, 5000, 60, 1514)]);
    const account = await finish(r);
    const from = (to: number, sender: number) => r.hosts.get(to)!.checker.from(sender);
    expect([from(1, 3), from(1, 5), from(3, 1), from(3, 4), from(2, 3)]).toEqual([0, 0, 0, 0, 0]); // never across VLANs
    expect(from(2, 1) + from(2, 4)).toBeGreaterThan(0);
    expect(row(account, 5).received).toBeGreaterThan(0);
  });

  it('a stopped receiver costs only its own frames: the two other ports keep every frame', async () => {
    // Host 3 is a process-like peer on a unix socket that stops reading: its port's queue fills up.
    const r = await rigOf([{ kind: 'dummy' }, { kind: 'dummy' }, { kind: 'unix', ringSize: 16384 }]);
    r.pause(3);
    await r.phase([1], 'flood');
    await r.send(1, 5000, 60, 600, 10);
    expect(portOf(r, 'unix:').txDropped).toBeGreaterThan(0);
    r.resume(3);
    await finish(r);
    // Every frame the Switch took in from host 1 (with the one settle() sent last) went on to
    // host 2, or was counted (on a starved machine s2's own queue may overflow).  Had host 3
    // blocked the input, the Switch would have stopped taking frames from host 1 once the
    // stopped port's queues were full: about 500 frames of this size.
    const [s1, s2] = [portOf(r, 'dummy:s1'), portOf(r, 'dummy:s2')];
    expect(s1.rxFrames).toBeGreaterThan(1200);
    expect(s2.txFrames + s2.txDropped).toBe(s1.rxFrames);
  });

  it('ports added and removed while frames flow', async () => {
    const r = await rigOf([1, 2, 3, 4].map(() => ({ kind: 'dummy' as const })));
    await r.phase([1], 'flood');
    const sending = r.send(1, 20_000, 60, 1514);
    await r.add(5, { kind: 'dummy' });
    await r.sw.ready();
    await r.retire(3, 'remove');
    await sending;
    await r.send(1, 1000, 60, 1514); // sent after host 5 was in place: it gets them
    await finish(r);
    expect(r.hosts.get(5)!.checker.from(1)).toBeGreaterThan(0);
  });
});

describe.skipIf(!privileged)('Switch under load, veth ports (worker path) in a namespace of the test run', () => {
  it('2 ports, both ways at once, 60-1514 bytes', async () => {
    const r = await rigOf([{ kind: 'veth' }, { kind: 'veth' }]);
    await r.phase([1, 2], 'flood');
    await Promise.all([r.send(1, 20_000, 60, 1514), r.send(2, 20_000, 60, 1514)]);
    await finish(r);
  });

  it('2 ports, small frames as fast as a host sends: what the kernel drops in front of a worker is counted too', async () => {
    const r = await rigOf([{ kind: 'veth' }, { kind: 'veth' }]);
    await r.phase([1], 'flood');
    // On this kind of machine a host sends faster than one worker forwards, and s1's socket
    // overflows (its drops are in the account as s1's rxDropped).
    await r.send(1, 200_000, 60, 60);
    await finish(r);
  });

  it('4 ports, jumbo frames (MTU 9000), floods from two hosts', async () => {
    const r = await rigOf([1, 2, 3, 4].map(() => ({ kind: 'veth' as const, mtu: 9000 })));
    await r.phase([1, 2], 'flood');
    await Promise.all([r.send(1, 4000, 60, 9014), r.send(2, 4000, 60, 9014)]);
    const account = await finish(r);
    expect(r.hosts.get(3)!.checker.from(1)).toBeGreaterThan(0);
    void account;
  });

  it('veth and dummy ports at once, with tags added and removed between them', async () => {
    // 1: veth trunk (host in VLAN 10); 2: veth access 10; 3: dummy access 10; 4: dummy trunk (host in VLAN 10)
    const r = await rigOf([{ kind: 'veth', hostVid: 10 }, { kind: 'veth', vlan: 10 }, { kind: 'dummy', vlan: 10 }, { kind: 'dummy', hostVid: 10 }]);
    await r.phase([1, 2, 3, 4], 'flood');
    await Promise.all([1, 2, 3, 4].map((n) => r.send(n, 5000, 60, 1514)));
    await finish(r);
  });

  it('two stopped outputs cost only their own frames: the two other ports keep every frame', async () => {
    const r = await rigOf([1, 2, 3, 4].map(() => ({ kind: 'veth' as const })));
    // s3 and s4 send through 1 Mbit/s queues of 8 KB: the Switch's frames to h3 and h4 overflow them
    for (const dev of ['s3', 's4']) execFileSync('ip', ['netns', 'exec', ns!.name, 'tc', 'qdisc', 'add', 'dev', dev, 'root', 'tbf', 'rate', '1mbit', 'burst', '4k', 'limit', '8k']);
    await r.phase([1], 'flood');
    await r.send(1, 20_000, 60, 600, 40);
    await finish(r);
    // Every frame the Switch took in from host 1 went on to host 2 (on a starved machine the
    // kernel may drop some in front of s1's worker: counted in rxDropped).
    const [s1, s2] = [portOf(r, 's1'), portOf(r, 's2')];
    expect(s1.rxFrames + s1.rxDropped).toBe(20_001);
    expect(s2).toMatchObject({ txFrames: s1.rxFrames, txDropped: 0 });
    // What tc counted on each stopped port's queue: what it sent is what the Switch sent there;
    // what it dropped the Switch counted too (with the frames the socket refused before the queue).
    for (const dev of ['s3', 's4']) {
      const qdisc = JSON.parse(execFileSync('ip', ['netns', 'exec', ns!.name, 'tc', '-s', '-j', 'qdisc', 'show', 'dev', dev], { encoding: 'utf8' })) as { kind: string; packets: number; drops: number }[];
      const tbf = qdisc.find((q) => q.kind === 'tbf')!;
      const port = portOf(r, dev);
      expect(tbf.drops).toBeGreaterThan(0);
      expect(port.txFrames).toBe(tbf.packets);
      expect(port.txDropped).toBeGreaterThanOrEqual(tbf.drops);
    }
  });

  it('8 ports, four unicast flows at once', async () => {
    const r = await rigOf(Array.from({ length: 8 }, () => ({ kind: 'veth' as const })));
    await r.phase([1, 2, 3, 4, 5, 6, 7, 8], 'flood'); // every host makes itself known
    await Promise.all([1, 2, 3, 4, 5, 6, 7, 8].map((n) => r.send(n, 1)));
    await finish(r);
    await r.phase([1, 3, 5, 7], (n) => n + 1);
    await Promise.all([1, 3, 5, 7].map((n) => r.send(n, 4000, 60, 1514)));
    const account = await finish(r);
    for (const n of [1, 3, 5, 7]) expect(row(account, n).received).toBe(0);
  });

  it('ports added and removed while frames flow', async () => {
    const r = await rigOf([1, 2, 3].map(() => ({ kind: 'veth' as const })));
    await r.phase([1], 'flood');
    const sending = r.send(1, 20_000, 60, 1514, 40);
    await r.add(4, { kind: 'veth' });
    await r.sw.ready();
    await r.retire(3, 'remove');
    await sending;
    await r.send(1, 1000, 60, 1514, 40); // sent after host 4 was in place: it gets them
    await finish(r);
    expect(r.hosts.get(4)!.checker.from(1)).toBeGreaterThan(0);
  });

  it('a port whose device is deleted mid-traffic is removed; the others lose nothing uncounted', async () => {
    const r = await rigOf([{ kind: 'veth' }, { kind: 'veth' }, { kind: 'veth' }]);
    await r.phase([1], 'flood');
    const sending = r.send(1, 20_000, 60, 1514, 40);
    await new Promise((resolve) => setTimeout(resolve, 100));
    ns!.ip('link', 'del', 's3');
    await r.retire(3, 'deleted');
    await sending;
    await finish(r);
    expect(r.notices.some((n) => n.includes('s3'))).toBe(true);
    expect(r.sw.counters().map((p) => p.name)).toEqual(['s1', 's2']);
  });
});
