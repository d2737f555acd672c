import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { NetdevManager, Switch, type IoControl, type Netdev, type NetdevError } from '../dist/index.js';
import { eventually, sleep, thrown } from './helpers.js';

let mgr: NetdevManager;
let sw: Switch;
const notices: string[] = [];

beforeEach(() => {
  mgr = new NetdevManager();
  notices.length = 0;
});
afterEach(async () => {
  await sw?.close();
  await mgr.close();
});

/** A frame from host `src` to `dst` (1-based host numbers; dst 0 = broadcast), with `seq` and an optional 802.1Q tag. */
function frame(src: number, dst: number, seq: number, vid?: number): Uint8Array {
  const body = new Uint8Array(64);
  if (dst === 0) body.fill(0xff, 0, 6);
  else body.set([2, 0, 0, 0, 0, dst], 0);
  body.set([2, 0, 0, 0, 0, src], 6);
  body[12] = 0x88;
  body[13] = 0xb5;
  new DataView(body.buffer).setUint32(14, seq);
  if (vid === undefined) return body;
  const out = new Uint8Array(68);
  out.set(body.subarray(0, 12));
  out.set([0x81, 0x00, vid >> 8, vid & 255], 12);
  out.set(body.subarray(12), 16);
  return out;
}

const seqIn = (f: Uint8Array) => new DataView(f.buffer, f.byteOffset).getUint32(((f[12]! << 8) | f[13]!) === 0x8100 ? 18 : 14);

interface Host {
  dev: Netdev;
  got: Uint8Array[];
}

/** Hosts h1..hN wired to switch ports s1..sN (dummy pairs, all up); each host collects what it receives. */
async function topology(vlans: (number | undefined)[], options: { agingSeconds?: number } = {}): Promise<{ hosts: Host[]; ports: Netdev[] }> {
  sw = new Switch({ ...options, onNotice: (line) => notices.push(line) });
  const hosts: Host[] = [];
  const ports: Netdev[] = [];
  for (let i = 1; i <= vlans.length; i++) {
    const host = await mgr.open(`dummy:h${i}`, { config: { peer: `dummy:s${i}` } });
    const port = await mgr.open(`dummy:s${i}`);
    await host.turnFlagsOn({ up: true });
    await port.turnFlagsOn({ up: true });
    sw.addPort(port, vlans[i - 1] === undefined ? {} : { vlan: vlans[i - 1]! });
    ports.push(port);
    const got: Uint8Array[] = [];
    void (async () => {
      for await (const f of host.frames({ copy: true })) got.push(f);
    })();
    hosts.push({ dev: host, got });
  }
  return { hosts, ports };
}

describe('Switch', () => {
  it('floods unknown and broadcast frames, then forwards learned unicast to one port only, never back', async () => {
    const { hosts: [h1, h2, h3] } = await topology([undefined, undefined, undefined]);
    await h1!.dev.send(frame(1, 2, 1)); // h2 unknown: flooded to h2 and h3
    expect(await eventually(() => h2!.got.length === 1 && h3!.got.length === 1)).toBe(true);
    await h2!.dev.send(frame(2, 1, 2)); // h1 learned: only h1
    expect(await eventually(() => h1!.got.length === 1)).toBe(true); // and the switch has learned h2
    await h1!.dev.send(frame(1, 2, 3)); // only h2
    expect(await eventually(() => h2!.got.length === 2)).toBe(true);
    // Markers: broadcasts sent after, which reach h3 (and h1) behind anything sent to them before.
    await h1!.dev.send(frame(1, 0, 10));
    await h2!.dev.send(frame(2, 0, 11));
    expect(await eventually(() => h3!.got.length >= 3 && h1!.got.length >= 2)).toBe(true);
    expect(h3!.got.map(seqIn).sort((a, b) => a - b)).toEqual([1, 10, 11]);
    expect(h1!.got.map(seqIn)).toEqual([2, 11]);
    await h1!.dev.send(frame(1, 0, 4)); // broadcast: everyone but h1
    expect(await eventually(() => h2!.got.length === 4 && h3!.got.length === 4)).toBe(true);
    // Had 4 come back to h1, it would be queued there before h2 got it, so before this marker.
    await h2!.dev.send(frame(2, 0, 12));
    expect(await eventually(() => h1!.got.length >= 3)).toBe(true);
    expect(h1!.got.map(seqIn)).toEqual([2, 11, 12]);
    expect(sw.learned).toBe(2);
    const [s1] = sw.counters();
    expect(s1!.counters).toMatchObject({ rxFrames: 4, floods: 3, txFrames: 3, filtered: 0, rxDropped: 0, txDropped: 0 });
  });

  it('keeps frames in order from one port to another', async () => {
    const { hosts: [h1, h2] } = await topology([undefined, undefined]);
    await h2!.dev.send(frame(2, 1, 0)); // learn h2
    const total = 5000;
    for (let seq = 1; seq <= total; seq++) await h1!.dev.send(frame(1, 2, seq));
    expect(await eventually(() => h2!.got.length === total, 10_000)).toBe(true);
    expect(h2!.got.map(seqIn)).toEqual(Array.from({ length: total }, (_, i) => i + 1));
  });

  it('forgets MACs after the aging time, and floods again', async () => {
    const { hosts: [h1, h2, h3] } = await topology([undefined, undefined, undefined], { agingSeconds: 0.3 });
    await h2!.dev.send(frame(2, 1, 1)); // flooded; the switch learns h2
    const learned = performance.now();
    expect(await eventually(() => h1!.got.length === 1 && h3!.got.length === 1)).toBe(true);
    await h1!.dev.send(frame(1, 2, 2)); // h2 known: only h2
    expect(await eventually(() => h2!.got.length === 1)).toBe(true);
    await h1!.dev.send(frame(1, 0, 3)); // a marker behind it: h3 gets it, and not 2
    expect(await eventually(() => h3!.got.length === 2)).toBe(true);
    expect(h3!.got.map(seqIn)).toEqual([1, 3]);
    // Frames to h2, one at a time, until one is flooded to h3 again: h2 has aged out, and not
    // before its time.
    const sentAt = new Map<number, number>();
    for (let seq = 100; h3!.got.length === 2 && performance.now() - learned < 5000; seq++) {
      sentAt.set(seq, performance.now());
      await h1!.dev.send(frame(1, 2, seq));
      expect(await eventually(() => h2!.got.some((f) => seqIn(f) === seq))).toBe(true);
      await sleep(5); // the pace of the probes only; the result is decided by what arrives
    }
    expect(await eventually(() => h3!.got.length > 2)).toBe(true);
    const aged = sentAt.get(seqIn(h3!.got[2]!))! - learned;
    expect(aged).toBeGreaterThanOrEqual(300 - 16); // one MAC-table tick of rounding
    expect(aged).toBeLessThan(300 + 1000);
  });

  it('keeps access VLANs apart, and tags and untags toward a trunk', async () => {
    const { hosts: [h1, h2, h3, trunk] } = await topology([10, 10, 20, undefined]);
    await h1!.dev.send(frame(1, 0, 1)); // VLAN 10 broadcast
    expect(await eventually(() => h2!.got.length === 1 && trunk!.got.length === 1)).toBe(true);
    expect(trunk!.got[0]!.length).toBe(68);
    expect(Array.from(trunk!.got[0]!.subarray(12, 16))).toEqual([0x81, 0x00, 0, 10]);
    expect(h2!.got[0]!.length).toBe(64);
    await trunk!.dev.send(frame(4, 0, 2, 20)); // VLAN 20 from the trunk: to h3, untagged
    expect(await eventually(() => h3!.got.length === 1)).toBe(true);
    expect(h3!.got[0]!.length).toBe(64);
    expect(seqIn(h3!.got[0]!)).toBe(2);
    await trunk!.dev.send(frame(4, 0, 3, 10)); // a marker in VLAN 10: behind 2, had 2 leaked there
    expect(await eventually(() => h1!.got.length === 1 && h2!.got.length === 2)).toBe(true);
    expect([h1!.got.map(seqIn), h2!.got.map(seqIn), h3!.got.map(seqIn)]).toEqual([[3], [1, 3], [2]]);
  });

  it('refuses bad input with a NetdevError naming the device and the call, and keeps forwarding', async () => {
    const { hosts: [h1, h2], ports: [s1] } = await topology([undefined, undefined]);
    const refused = (fn: () => unknown) => thrown(fn) as NetdevError;
    expect(refused(() => sw.addPort(h1!.dev, { vlan: 5000 }))).toMatchObject({ name: 'NetdevError', code: 'EINVAL', device: 'dummy:h1', call: 'addPort' });
    expect(refused(() => sw.addPort(s1!))).toMatchObject({ name: 'NetdevError', code: 'EEXIST', device: 'dummy:s1', call: 'addPort' });
    expect(refused(() => new Switch({ agingSeconds: -1 }))).toMatchObject({ name: 'NetdevError', code: 'EINVAL', call: 'Switch' });
    await h1!.dev.send(frame(1, 0, 1));
    expect(await eventually(() => h2!.got.length === 1)).toBe(true);
  });

  it('says so when a port whose device shares a packet socket cannot forward in its worker, and forwards to it on the main thread', async () => {
    let io: IoControl | null = null; // the I/O half of share:x, to ask it what it sent
    mgr.register({
      type: 'share',
      prefix: 'share:',
      ioModule: new URL('./fixtures/share-only-io.mjs', import.meta.url),
      validateName() {},
      create: () => ({ getConfig: () => ({}), setConfig() {}, updateFlags: () => 0, ioStarted: (control: IoControl) => void (io = control), destroy() {} }),
    });
    const { hosts: [h1] } = await topology([undefined]);
    const shared = await mgr.open('share:x');
    sw.addPort(shared);
    expect(await eventually(() => notices.some((n) => n.startsWith('port share:x forwards on the main thread') && n.includes('EOPNOTSUPP')))).toBe(true);
    expect(sw.counters().find((p) => p.name === 'share:x')!.path).toBe('main');
    await h1!.dev.send(frame(1, 0, 1));
    expect(await eventually(async () => (await io!.call('sent')) === 1)).toBe(true);
  });

  it('removes a port while running, and one whose device goes away, with a notice; the rest keep forwarding', async () => {
    const { hosts: [h1, h2, h3], ports: [, s2, s3] } = await topology([undefined, undefined, undefined]);
    await sw.removePort(s3!);
    await h1!.dev.send(frame(1, 0, 1));
    expect(await eventually(() => h2!.got.length === 1)).toBe(true);
    await s3!.send(frame(9, 0, 2)); // a marker on s3's own wire: behind 1, had 1 been sent to s3
    expect(await eventually(() => h3!.got.length === 1)).toBe(true);
    expect(h3!.got.map(seqIn)).toEqual([2]);
    await s2!.close(); // the device goes away under the switch
    expect(await eventually(() => notices.some((n) => n.includes('dummy:s2')))).toBe(true);
    expect(sw.counters().map((c) => c.name)).toEqual(['dummy:s1']);
    expect(notices).toHaveLength(1);
  });
});
