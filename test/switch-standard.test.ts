/**
 * The Switch as a standard bridge, with the Linux bridge as the oracle: the same frames sent
 * from one host through a kernel bridge and then through the Switch (each of its forwarding
 * paths) must reach the same hosts.
 */
import { spawnSync } from 'node:child_process';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { NetdevManager, Switch, type MacFlap, type Netdev, type NetdevError, type PortCounters } from '../dist/index.js';
import { eventually } from './helpers.js';
import { ForwarderTopology, tearDown } from './forwarder-topology.js';
import { privileged, requirePrivilege } from './netns-harness.js';

requirePrivilege('Switch against the Linux bridge');

const TEST_TYPE = 0x88b5;
const H1 = Uint8Array.of(0x02, 0, 0, 0, 0, 0x01);
const BROADCAST = new Uint8Array(6).fill(0xff);
const reserved = (last: number) => Uint8Array.of(0x01, 0x80, 0xc2, 0, 0, last);

/** The frames of issue 16's table, by id: destination and source. */
const PROBES: { what: string; dst: Uint8Array; src: Uint8Array }[] = [
  { what: 'broadcast', dst: BROADCAST, src: H1 },
  { what: 'unknown unicast', dst: Uint8Array.of(0x02, 0, 0, 0xee, 0xee, 0xee), src: H1 },
  { what: 'IPv4 multicast', dst: Uint8Array.of(0x01, 0x00, 0x5e, 0, 0, 0xfb), src: H1 },
  { what: 'STP BPDU address', dst: reserved(0x00), src: H1 },
  { what: 'MAC control (pause)', dst: reserved(0x01), src: H1 },
  { what: 'LACP', dst: reserved(0x02), src: H1 },
  { what: '802.1X EAPOL', dst: reserved(0x03), src: H1 },
  { what: 'LLDP', dst: reserved(0x0e), src: H1 },
  { what: 'multicast source', dst: BROADCAST, src: Uint8Array.of(0x03, 0, 0, 0, 0, 0x01) },
  { what: 'all-zero source', dst: BROADCAST, src: new Uint8Array(6) },
];
/** Sent after the probes: once it has reached a host, every probe that would has (one path, in order). */
const MARKER = PROBES.length;

function fnv1a(bytes: Uint8Array, to: number): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < to; i++) hash = Math.imul(hash ^ bytes[i]!, 0x01000193);
  return hash >>> 0;
}

/** A frame from `src` to `dst` carrying `id`: the test ethertype, id, a pattern derived from id, FNV-1a of all before it. */
function selfChecking(dst: Uint8Array, src: Uint8Array, id: number): Uint8Array {
  const f = new Uint8Array(64);
  f.set(dst, 0);
  f.set(src, 6);
  f[12] = TEST_TYPE >> 8;
  f[13] = TEST_TYPE & 0xff;
  f[14] = id;
  for (let i = 15; i < 60; i++) f[i] = (id * 7 + i * 13) & 0xff;
  new DataView(f.buffer).setUint32(60, fnv1a(f, 60));
  return f;
}

/** Probe `id` of PROBES, or the MARKER. */
function probe(id: number): Uint8Array {
  const { dst, src } = id === MARKER ? { dst: BROADCAST, src: H1 } : PROBES[id]!;
  return selfChecking(dst, src, id);
}

/** The id of a received frame, after checking every byte of it (its addresses, the pattern, the checksum). */
function idOf(frame: Uint8Array): number {
  const id = frame[14]!;
  expect(frame.subarray(0, 64), `frame ${id} intact`).toEqual(selfChecking(frame.subarray(0, 6), frame.subarray(6, 12), id));
  return id;
}

type Reached = { h2: number[]; h3: number[] };

describe.skipIf(!privileged)('Switch as a standard bridge, against the Linux bridge (h1, h2, h3 on veth pairs to a forwarder namespace)', () => {
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

  /** Sends every probe and the marker from h1; returns the ids that reached h2 and h3 (once the marker has). */
  async function sendProbes(): Promise<Reached> {
    const open = (host: number) => mgr.open('eth0', { netns: topo.hosts[host - 1]!, ethertype: TEST_TYPE });
    const [h1, h2, h3] = [await open(1), await open(2), await open(3)];
    const reached: Reached = { h2: [], h3: [] };
    const read = async (dev: Netdev, into: number[]) => {
      for await (const f of dev.frames()) {
        into.push(idOf(f));
        if (f[14] === MARKER) return;
      }
    };
    const reading = [read(h2, reached.h2), read(h3, reached.h3)];
    for (let id = 0; id < PROBES.length; id++) await h1.send(probe(id));
    await h1.send(probe(MARKER));
    await Promise.all(reading);
    for (const dev of [h1, h2, h3]) await dev.close();
    for (const list of [reached.h2, reached.h3]) expect(list.pop()).toBe(MARKER);
    return reached;
  }

  /** The probes through br0 (stp_state 0), once its ports forward. */
  async function throughBridge(options: string[] = []): Promise<Reached> {
    topo.addBridge(['s1', 's2', 's3'], ['stp_state', '0', ...options]);
    const forwarding = () => topo.json<{ ifname: string; state: string }[]>(['link', 'show'], 'bridge').filter((l) => l.state === 'forwarding').length === 3;
    expect(await eventually(forwarding)).toBe(true);
    const reached = await sendProbes();
    topo.deleteBridge();
    return reached;
  }

  /**
   * The probes through a Switch of s1, s2, s3: their system devices (forwarding in their workers),
   * or taps t1-t3 wired to them in the kernel (tc mirred), which the main thread forwards for.
   */
  async function throughSwitch(path: 'worker' | 'main', groupFwdMask?: number): Promise<Reached & { counters: PortCounters[] }> {
    sw = new Switch(groupFwdMask === undefined ? {} : { groupFwdMask });
    const ports: Netdev[] = [];
    for (const n of [1, 2, 3]) {
      const port = await mgr.open(path === 'worker' ? `s${n}` : `tap:t${n}`, { netns: topo.fw, ethertype: 'any' });
      if (path === 'main') {
        topo.ip('link', 'set', `t${n}`, 'addrgenmode', 'none');
        topo.wire(`s${n}`, `t${n}`);
      }
      await port.turnFlagsOn({ up: true });
      sw.addPort(port);
      ports.push(port);
    }
    await sw.ready();
    expect(await eventually(() => sw!.counters().every((p) => p.path === path))).toBe(true);
    const reached = await sendProbes();
    const counters = sw.counters().map((p) => p.counters);
    await sw.close();
    sw = undefined;
    for (const port of ports) await port.close();
    return { ...reached, counters };
  }

  /** The Switch reached the hosts the bridge did, and counted every probe it did not forward where it dropped it. */
  function expectSame(path: string, oracle: Reached, got: Reached & { counters: PortCounters[] }): void {
    expect({ path, h2: names(got.h2), h3: names(got.h3) }).toEqual({ path, h2: names(oracle.h2), h3: names(oracle.h3) });
    const [s1, s2, s3] = got.counters;
    const invalidSources = PROBES.filter((p) => p.src !== H1).length;
    expect(s1).toMatchObject({ rxFrames: PROBES.length + 1, floods: got.h2.length + 1, invalidSource: invalidSources, reserved: PROBES.length - got.h2.length - invalidSources });
    for (const other of [s2!, s3!]) expect(other).toMatchObject({ rxFrames: 0, txFrames: got.h2.length + 1 });
  }

  const names = (ids: number[]) => ids.map((id) => PROBES[id]!.what);

  it('forwards the same frames as the bridge with STP off, on both paths: floods, BPDUs flooded, other reserved addresses and invalid sources dropped', async () => {
    const oracle = await throughBridge();
    // The oracle drops some and floods some (else this test would prove nothing), the same to both hosts.
    expect(oracle.h2).toEqual(oracle.h3);
    expect(oracle.h2.length).toBeGreaterThan(0);
    expect(oracle.h2.length).toBeLessThan(PROBES.length);
    for (const path of ['worker', 'main'] as const) expectSame(path, oracle, await throughSwitch(path));
  });

  it('forwards reserved addresses its groupFwdMask lets through, as the bridge does with group_fwd_mask, and refuses the bits Linux refuses', async () => {
    const mask = (1 << 0x03) | (1 << 0x0e); // 802.1X and LLDP
    const without = await throughBridge();
    const oracle = await throughBridge(['group_fwd_mask', `0x${mask.toString(16)}`]);
    expect(oracle.h2.length).toBeGreaterThan(without.h2.length); // the mask makes a difference
    for (const path of ['worker', 'main'] as const) expectSame(path, oracle, await throughSwitch(path, mask));
    // Which masks the kernel refuses, the Switch refuses, with EINVAL naming the option.
    topo.addBridge([], ['stp_state', '0']);
    for (const value of [...Array.from({ length: 16 }, (_, bit) => 1 << bit), 0x10000]) {
      const kernel = spawnSync('ip', ['-n', topo.fw, 'link', 'set', 'br0', 'type', 'bridge', 'group_fwd_mask', String(value)], { encoding: 'utf8' }).status === 0;
      let refused: NetdevError | null = null;
      try {
        await new Switch({ groupFwdMask: value }).close();
      } catch (error) {
        refused = error as NetdevError;
      }
      expect({ value, accepted: refused === null }).toEqual({ value, accepted: kernel });
      if (refused) expect(refused).toMatchObject({ name: 'NetdevError', code: 'EINVAL', call: 'Switch', message: expect.stringContaining('groupFwdMask') });
    }
  });

  it('says when a MAC flaps between ports (a macFlap event), once per window, and not for a MAC that moves a few times', async () => {
    sw = new Switch({ macFlap: { moves: 3, seconds: 30 } });
    const flaps: MacFlap[] = [];
    sw.on('macFlap', (flap) => flaps.push(flap));
    for (const n of [1, 2, 3]) {
      const port = await mgr.open(`s${n}`, { netns: topo.fw, ethertype: 'any' });
      await port.turnFlagsOn({ up: true });
      sw.addPort(port);
    }
    await sw.ready();
    expect(await eventually(() => sw!.counters().every((p) => p.path === 'worker'))).toBe(true);
    const open = (host: number) => mgr.open('eth0', { netns: topo.hosts[host - 1]!, ethertype: TEST_TYPE });
    const [h1, h2, h3] = [await open(1), await open(2), await open(3)];
    const atH3 = h3.frames();
    let id = 0;
    /** Sends a broadcast from MAC `src` on `host`, and waits for it at h3: the Switch has learned `src` behind that host's port. */
    const from = async (host: Netdev, src: Uint8Array) => {
      await host.send(selfChecking(BROADCAST, src, ++id & 0xff));
      expect(idOf((await atH3.next()).value as Uint8Array)).toBe(id & 0xff);
    };
    const alternate = async (src: Uint8Array, times: number) => {
      for (let i = 0; i < times; i++) await from(i % 2 === 0 ? h1 : h2, src);
    };
    const [x, y, z] = [1, 2, 3].map((n) => Uint8Array.of(0x02, 0, 0, 0, 0x0f, n));
    await alternate(x!, 6); // 5 moves between s1 and s2
    await alternate(x!, 6); // 6 more within the window: no second notice
    await alternate(y!, 3); // 2 moves: no notice
    await alternate(z!, 6); // flaps: its notice comes after every move above was read
    expect(await eventually(() => flaps.some((f) => f.mac === '02:00:00:00:0f:03'))).toBe(true);
    const flap = (mac: string) => ({ mac, vlan: 0, ports: ['s1', 's2'], moves: 4, seconds: 30 });
    expect(flaps).toEqual([flap('02:00:00:00:0f:01'), flap('02:00:00:00:0f:03')]);
  });
});
