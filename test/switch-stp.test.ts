/**
 * The Switch's spanning tree over real devices: a loop through the Switch itself (two of its
 * ports joined by a veth pair, or by two taps wired together in the kernel, for the main-thread
 * path), a loop with a Linux bridge running STP (stp_state 1), and the storm a loop makes without
 * a spanning tree.  Short timers (hello 1 s, max age 6 s, forward delay 4 s: 802.1D's minimum)
 * keep each test near 10 s.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { NetdevManager, Switch, type Netdev } from '../dist/index.js';
import { eventually } from './helpers.js';
import { ForwarderTopology, tearDown } from './forwarder-topology.js';
import { privileged, requirePrivilege } from './netns-harness.js';

requirePrivilege('Switch spanning tree');

const TEST_TYPE = 0x88b5;
const TIMES = { helloTime: 1, maxAge: 6, forwardDelay: 4 };
/** Convergence: a port goes forwarding two forward delays after it starts; give it room on a loaded machine. */
const CONVERGED_MS = 20_000;
const BROADCAST = new Uint8Array(6).fill(0xff);
const hostMac = (n: number) => Uint8Array.of(0x02, 0, 0, 0, 0x0a, n);

/** A frame from host `n` carrying `seq`, with a pattern and a sum over it (checked by seqOf): a broadcast, or to host `to`. */
function broadcast(n: number, seq: number, to?: number): Uint8Array {
  const f = new Uint8Array(64);
  f.set(to === undefined ? BROADCAST : hostMac(to), 0);
  f.set(hostMac(n), 6);
  f[12] = TEST_TYPE >> 8;
  f[13] = TEST_TYPE & 0xff;
  new DataView(f.buffer).setUint32(14, seq);
  for (let i = 18; i < 62; i++) f[i] = (seq * 7 + i * 13 + n) & 0xff;
  let sum = 0;
  for (let i = 0; i < 62; i++) sum = (sum + f[i]!) & 0xffff;
  new DataView(f.buffer).setUint16(62, sum);
  return f;
}

/** The sender and seq of a frame broadcast() made, as h1:7 (h1:7>h2 for one to host 2); 'damaged' unless every byte is as it made it. */
function seqOf(f: Uint8Array): string {
  const seq = new DataView(f.buffer, f.byteOffset).getUint32(14);
  const to = f[0] === 0xff ? undefined : f[5]!;
  const made = broadcast(f[11]!, seq, to);
  for (let i = 0; i < made.length; i++) if (f[i] !== made[i]) return 'damaged';
  return `h${f[11]}:${seq}${to === undefined ? '' : `>h${to}`}`;
}

describe.skipIf(!privileged)('Switch spanning tree (802.1D) over veth pairs and taps in namespaces of the test run', () => {
  let topo: ForwarderTopology;
  let mgr: NetdevManager;
  let sw: Switch | undefined;
  beforeEach(() => {
    topo = new ForwarderTopology(3);
    mgr = new NetdevManager();
  });
  afterEach(async () => {
    const closing = sw;
    sw = undefined;
    await tearDown(closing, mgr, topo);
  });

  /** A veth pair `a` <-> `b` in the forwarder, up, each end capped at 10 Mbit/s (a loop cable: see ForwarderTopology.bound). */
  function cable(a: string, b: string): void {
    topo.ip('link', 'add', a, 'type', 'veth', 'peer', 'name', b);
    for (const dev of [a, b]) {
      topo.ip('link', 'set', dev, 'addrgenmode', 'none');
      topo.bound(dev);
      topo.ip('link', 'set', dev, 'up');
    }
  }

  async function port(name: string): Promise<Netdev> {
    const dev = await mgr.open(name, { netns: topo.fw, ethertype: 'any' });
    if (name.startsWith('tap:')) topo.ip('link', 'set', name.slice(4), 'addrgenmode', 'none');
    await dev.turnFlagsOn({ up: true });
    return dev;
  }

  /** Each port's role/state, by name. */
  const stpOf = (s: Switch) => Object.fromEntries(s.counters().map((p) => [p.name, p.stp ? `${p.stp.role}/${p.stp.state}` : 'none']));

  /** The hosts' devices, and what each receives (sender:seq, every byte checked). */
  async function hosts(): Promise<{ h1: Netdev; h2: Netdev; got: Map<Netdev, string[]> }> {
    const open = (n: number) => mgr.open('eth0', { netns: topo.hosts[n - 1]!, ethertype: TEST_TYPE });
    const [h1, h2] = [await open(1), await open(2)];
    const got = new Map<Netdev, string[]>([[h1, []], [h2, []]]);
    for (const [dev, list] of got) {
      void (async () => {
        for await (const batch of dev.batches()) {
          for (const f of batch) list.push(seqOf(f));
          await new Promise((resolve) => setImmediate(resolve)); // a storm must not starve the event loop (timers, the test's own)
        }
      })().catch(() => {});
    }
    return { h1, h2, got };
  }

  /**
   * The opened ports named `hostPorts` to the hosts and `loop` (two ports cabled to each other), in
   * that order; with the spanning tree on, it converges with one loop port blocked, and a broadcast
   * from each host reaches the other once and never comes back.
   */
  async function loopThroughSwitch(hostPorts: string[], loop: [string, string], devices: Netdev[], path: 'worker' | 'main'): Promise<void> {
    sw = new Switch({ stp: { ...TIMES } });
    for (const dev of devices) sw.addPort(dev);
    const { h1, h2, got } = await hosts();
    const converged = () => {
      const s = stpOf(sw!);
      return hostPorts.every((p) => s[p] === 'designated/forwarding') && s[loop[0]] === 'designated/forwarding' && s[loop[1]] === 'alternate/blocking';
    };
    expect(await eventually(converged, CONVERGED_MS), JSON.stringify(stpOf(sw))).toBe(true);
    expect(sw.counters().every((p) => p.path === path)).toBe(true);
    expect(sw.spanningTree()).toMatchObject({ rootPort: null, rootPathCost: 0 }); // alone: the root
    const blockedBefore = sw.counters().find((p) => p.name === loop[1])!.counters.blocked;
    await h1.send(broadcast(1, 1));
    await h2.send(broadcast(2, 2));
    await h1.send(broadcast(1, 3)); // a marker behind them: once it is in, any copy of 1 would be too
    await h2.send(broadcast(2, 4));
    expect(await eventually(() => got.get(h2)!.includes('h1:3') && got.get(h1)!.includes('h2:4'))).toBe(true);
    expect({ h1: got.get(h1), h2: got.get(h2) }).toEqual({ h1: ['h2:2', 'h2:4'], h2: ['h1:1', 'h1:3'] });
    // Each went out of the forwarding loop port and came back in on the blocked one, where it stopped.
    expect(await eventually(() => sw!.counters().find((p) => p.name === loop[1])!.counters.blocked - blockedBefore === 4)).toBe(true);
    // The blocked port learned nothing from them: unicast between the hosts goes straight to each.
    await h2.send(broadcast(2, 5, 1));
    await h1.send(broadcast(1, 6, 2));
    expect(await eventually(() => got.get(h1)!.includes('h2:5>h1') && got.get(h2)!.includes('h1:6>h2'))).toBe(true);
    expect(sw.counters().find((p) => p.name === loop[0])!.counters.txFrames).toBe(sw.counters().find((p) => p.name === loop[1])!.counters.rxFrames);
    // CPU stays bounded: over a second of the converged loop, this process (every thread) is mostly idle.
    const cpu = process.cpuUsage();
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const used = process.cpuUsage(cpu);
    expect((used.user + used.system) / 1e6).toBeLessThan(0.5);
  }

  it('blocks one of two ports of its own cabled together (worker path), and a broadcast reaches each host once', async () => {
    cable('la', 'lb');
    const names = ['s1', 's2', 'la', 'lb'];
    const devices: Netdev[] = [];
    for (const name of names) devices.push(await port(name));
    await loopThroughSwitch(['s1', 's2'], ['la', 'lb'], devices, 'worker');
  });

  it('blocks one of two of its taps wired together in the kernel (main-thread path), and a broadcast reaches each host once', async () => {
    // The taps exist once opened: open them first, then wire them (t1-s1, t2-s2, ta-tb).
    const devices: Netdev[] = [];
    for (const name of ['tap:t1', 'tap:t2', 'tap:ta', 'tap:tb']) devices.push(await port(name));
    topo.wire('s1', 't1');
    topo.wire('s2', 't2');
    topo.wire('ta', 'tb');
    for (const dev of ['ta', 'tb']) topo.bound(dev); // the loop's cable
    await loopThroughSwitch(['tap:t1', 'tap:t2'], ['tap:ta', 'tap:tb'], devices, 'main');
  });

  it('storms without a spanning tree: one broadcast into a loop comes round again and again until a loop port is removed', async () => {
    cable('la', 'lb');
    sw = new Switch();
    const ports = new Map<string, Netdev>();
    for (const name of ['s1', 's2', 'la', 'lb']) {
      const dev = await port(name);
      ports.set(name, dev);
      sw.addPort(dev);
    }
    await sw.ready();
    const { h1, h2, got } = await hosts();
    await h1.send(broadcast(1, 1));
    const copies = () => got.get(h2)!.filter((s) => s === 'h1:1').length;
    expect(await eventually(() => copies() >= 200, 10_000)).toBe(true); // stopped here: bounded
    await sw.removePort(ports.get('lb')!);
    // Stopped: once a marker has crossed after the removal, and another after that, no copy came in between.
    await h1.send(broadcast(1, 2));
    expect(await eventually(() => got.get(h2)!.includes('h1:2'))).toBe(true);
    const settled = copies();
    await h1.send(broadcast(1, 3));
    expect(await eventually(() => got.get(h2)!.includes('h1:3'))).toBe(true);
    expect(copies()).toBe(settled);
  });

  /**
   * The Switch (h1's side) and a Linux bridge br0 with STP (h2's side) cabled twice:
   * Switch c1 == br0 d1, Switch c2 == br0 d2.
   */
  async function loopWithBridge(switchPriority: number, bridgePriority: number) {
    cable('c1', 'd1');
    cable('c2', 'd2');
    topo.addBridge(['s2', 'd1', 'd2'], ['stp_state', '1', 'priority', String(bridgePriority), 'forward_delay', '400', 'hello_time', '100', 'max_age', '600']);
    sw = new Switch({ stp: { ...TIMES, priority: switchPriority } });
    for (const name of ['s1', 'c1', 'c2']) sw.addPort(await port(name));
    const kernelPorts = () => Object.fromEntries(topo.json<{ ifname: string; state: string }[]>(['link', 'show'], 'bridge').map((l) => [l.ifname, l.state]));
    // The root the kernel bridge sees, as its port d1 records it (iproute2 6.1 prints br0's own
    // bridge_id as its root_id; the ports' root_id is right, as /sys/class/net/br0/bridge/root_id).
    const kernelBridge = () => ({
      bridgeId: topo.json<{ linkinfo: { info_data: { bridge_id: string } } }[]>(['-d', 'link', 'show', 'br0'])[0]!.linkinfo.info_data.bridge_id,
      rootId: topo.json<{ linkinfo: { info_slave_data: { root_id: string } } }[]>(['-d', 'link', 'show', 'd1'])[0]!.linkinfo.info_slave_data.root_id,
    });
    return { kernelPorts, kernelBridge };
  }

  it('agrees on one root with a Linux bridge (stp_state 1) when the Switch is the root: the bridge blocks one of its two cables, and traffic flows', async () => {
    const { kernelPorts, kernelBridge } = await loopWithBridge(4096, 32768);
    const converged = () => {
      const k = kernelPorts();
      const s = stpOf(sw!);
      return k.s2 === 'forwarding' && k.d1 === 'forwarding' && k.d2 === 'blocking' && Object.values(s).every((v) => v === 'designated/forwarding');
    };
    expect(await eventually(converged, CONVERGED_MS), JSON.stringify({ kernel: kernelPorts(), switch: stpOf(sw!) })).toBe(true);
    const me = sw!.spanningTree()!;
    expect(me.bridgeId).toMatch(/^1000\./);
    expect(kernelBridge().rootId).toBe(me.bridgeId); // the kernel took the Switch's BPDUs
    expect(me.rootId).toBe(me.bridgeId);
    const { h1, h2, got } = await hosts();
    await h1.send(broadcast(1, 1));
    await h2.send(broadcast(2, 2));
    await h1.send(broadcast(1, 3));
    await h2.send(broadcast(2, 4));
    expect(await eventually(() => got.get(h2)!.includes('h1:3') && got.get(h1)!.includes('h2:4'))).toBe(true);
    expect({ h1: got.get(h1), h2: got.get(h2) }).toEqual({ h1: ['h2:2', 'h2:4'], h2: ['h1:1', 'h1:3'] });
  });

  it('agrees on one root with a Linux bridge (stp_state 1) when the bridge is the root: the Switch blocks one of its two cables, and traffic flows', async () => {
    const { kernelPorts, kernelBridge } = await loopWithBridge(32768, 4096);
    const converged = () => {
      const k = kernelPorts();
      const s = stpOf(sw!);
      return Object.values(k).every((v) => v === 'forwarding') && s.s1 === 'designated/forwarding' && s.c1 === 'root/forwarding' && s.c2 === 'alternate/blocking';
    };
    expect(await eventually(converged, CONVERGED_MS), JSON.stringify({ kernel: kernelPorts(), switch: stpOf(sw!) })).toBe(true);
    const kernel = kernelBridge();
    expect(kernel.rootId).toBe(kernel.bridgeId);
    expect(sw!.spanningTree()).toMatchObject({ rootId: kernel.bridgeId, rootPort: 'c1', rootPathCost: 100 });
    const { h1, h2, got } = await hosts();
    await h1.send(broadcast(1, 1));
    await h2.send(broadcast(2, 2));
    await h1.send(broadcast(1, 3));
    await h2.send(broadcast(2, 4));
    expect(await eventually(() => got.get(h2)!.includes('h1:3') && got.get(h1)!.includes('h2:4'))).toBe(true);
    expect({ h1: got.get(h1), h2: got.get(h2) }).toEqual({ h1: ['h2:2', 'h2:4'], h2: ['h1:1', 'h1:3'] });
  });

  it('ages MACs out after the forward delay while a topology change lasts (worker path)', async () => {
    sw = new Switch({ stp: { ...TIMES }, agingSeconds: 300 });
    for (const name of ['s1', 's2', 's3']) sw.addPort(await port(name));
    const { h1, h2, got } = await hosts();
    const h3 = await mgr.open('eth0', { netns: topo.hosts[2]!, ethertype: TEST_TYPE });
    const atH3: string[] = [];
    void (async () => {
      for await (const f of h3.frames()) atH3.push(seqOf(f));
    })().catch(() => {});
    // Its ports going forwarding is a topology change (802.1D 8.6.5): it lasts max age + forward delay.
    expect(await eventually(() => sw!.counters().every((p) => p.stp!.state === 'forwarding'), CONVERGED_MS)).toBe(true);
    expect(sw.spanningTree()!.topologyChange).toBe(true);
    await h1.send(broadcast(1, 1)); // learned: h1 behind s1
    expect(await eventually(() => got.get(h2)!.includes('h1:1') && atH3.includes('h1:1'))).toBe(true);
    const learned = performance.now();
    // Unicast h2 -> h1 goes to s1 only while h1 is known; once h1's entry ages out, it is flooded to h3 too.
    let seq = 10;
    const flooded = async () => {
      await h2.send(broadcast(2, seq++, 1));
      return atH3.some((s) => s.endsWith('>h1'));
    };
    expect(await eventually(flooded, 10_000)).toBe(true);
    const aged = (performance.now() - learned) / 1000;
    expect(aged).toBeGreaterThanOrEqual(TIMES.forwardDelay - 0.1); // the forward delay (4 s), not 300 s
    expect(aged).toBeLessThan(TIMES.forwardDelay + 1.5);
    expect(atH3.every((s) => s !== 'damaged')).toBe(true);
  });
});
