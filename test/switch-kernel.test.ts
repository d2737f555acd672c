import { readdirSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { Switch, type Netdev } from '../dist/index.js';
import { eventually } from './helpers.js';
import { freshEachTest, privileged, requirePrivilege } from './netns-harness.js';

const TEST_TYPE = 0x88b5;

requirePrivilege('Switch over system devices');

/** A frame from MAC `src` to MAC `dst` (6 bytes each) of the test ethertype, carrying `seq`. */
function frame(dst: Uint8Array, src: Uint8Array, seq: number): Uint8Array {
  const f = new Uint8Array(64);
  f.set(dst, 0);
  f.set(src, 6);
  f[12] = TEST_TYPE >> 8;
  f[13] = TEST_TYPE & 0xff;
  new DataView(f.buffer).setUint32(14, seq);
  return f;
}

const BROADCAST = new Uint8Array(6).fill(0xff);
const macOf = (n: number) => Uint8Array.of(2, 0, 0, 0, 0, n);
const seqOf = (f: Uint8Array) => new DataView(f.buffer, f.byteOffset).getUint32(14);

/** Collects every frame `dev` receives (copies). */
function collect(dev: Netdev): Uint8Array[] {
  const got: Uint8Array[] = [];
  void (async () => {
    for await (const f of dev.frames({ copy: true })) got.push(f);
  })();
  return got;
}

describe.skipIf(!privileged)('Switch over system devices (veth pairs in a namespace of the test run)', () => {
  const bed = freshEachTest();
  let sw: Switch | undefined;
  // Runs before freshEachTest's (after-hooks run in reverse): the Switch closes before its devices.
  afterEach(async () => {
    await sw?.close();
    sw = undefined;
  });

  /** Hosts va and vd, switch ports vb and vc: va <-> vb [Switch] vc <-> vd, all up. */
  async function wire(): Promise<{ va: Netdev; vd: Netdev; vb: Netdev; vc: Netdev }> {
    bed.ns.ip('link', 'add', 'vc', 'type', 'veth', 'peer', 'name', 'vd');
    for (const dev of ['vc', 'vd']) bed.ns.ip('link', 'set', dev, 'addrgenmode', 'none');
    const open = (name: string, ethertype: number | 'any') => bed.mgr.open(name, { netns: bed.ns.name, ethertype });
    const [va, vb, vc, vd] = [await open('va', TEST_TYPE), await open('vb', 'any'), await open('vc', 'any'), await open('vd', TEST_TYPE)];
    for (const dev of [va, vb, vc, vd]) await dev.turnFlagsOn({ up: true });
    expect(await eventually(async () => (await va.getCarrier()) && (await vd.getCarrier()))).toBe(true);
    return { va, vb, vc, vd };
  }

  it('forwards in the port workers: floods, learns, then sends unicast to one port only, in order, as ip -s counts', async () => {
    const { va, vb, vc, vd } = await wire();
    const fdsBefore = readdirSync('/proc/self/fd').length;
    sw = new Switch();
    sw.addPort(vb);
    sw.addPort(vc);
    expect(await eventually(() => sw!.counters().every((p) => p.path === 'worker'))).toBe(true);
    const atA = collect(va);
    const atD = collect(vd);
    await va.send(frame(BROADCAST, macOf(1), 0)); // flooded; the switch learns 02:..:01 behind vb
    expect(await eventually(() => atD.length === 1)).toBe(true);
    await vd.send(frame(macOf(1), macOf(4), 1)); // known: to vb only; learns 02:..:04 behind vc
    expect(await eventually(() => atA.length === 1)).toBe(true);
    const txBefore = bed.ns.link('vc').stats64!.tx.packets;
    const frames = Array.from({ length: 2000 }, (_, i) => frame(macOf(4), macOf(1), 100 + i));
    await va.sendBatch(frames);
    expect(await eventually(() => atD.length >= 2001, 5000)).toBe(true);
    expect(atD.slice(1).map(seqOf)).toEqual(frames.map(seqOf)); // in order, none lost on this light load
    expect(bed.ns.link('vc').stats64!.tx.packets - txBefore).toBe(2000);
    const [pb, pc] = sw.counters();
    expect(pb!.counters).toMatchObject({ rxFrames: 2001, floods: 1, txFrames: 1 });
    expect(pc!.counters).toMatchObject({ rxFrames: 1, floods: 0, txFrames: 2001, txDropped: 0, rxDropped: 0 });
    expect(sw.learned).toBe(2);
    await sw.close();
    sw = undefined;
    expect(readdirSync('/proc/self/fd').length).toBe(fdsBefore); // the sockets it shared between workers are closed
  });

  it('hands frames for ports without a shared socket to the main thread, and stops sending to a removed port', async () => {
    const { va, vb, vc, vd } = await wire();
    const host = await bed.mgr.open('dummy:h', { config: { peer: 'dummy:s' } });
    const port = await bed.mgr.open('dummy:s');
    await host.turnFlagsOn({ up: true });
    await port.turnFlagsOn({ up: true });
    sw = new Switch();
    sw.addPort(vb);
    sw.addPort(vc);
    sw.addPort(port);
    expect(await eventually(() => sw!.counters().filter((p) => p.path === 'worker').length === 2)).toBe(true);
    expect(sw.counters().find((p) => p.name === 'dummy:s')!.path).toBe('main');
    const atA = collect(va);
    const atD = collect(vd);
    const atHost = collect(host);
    await va.send(frame(BROADCAST, macOf(1), 7)); // worker -> vc itself, -> dummy:s through the main thread
    expect(await eventually(() => atD.length === 1 && atHost.length === 1)).toBe(true);
    expect(seqOf(atHost[0]!)).toBe(7);
    await host.send(frame(macOf(1), macOf(9), 8)); // main thread -> vb
    expect(await eventually(() => atA.length === 1)).toBe(true);
    await sw.removePort(vc);
    await va.send(frame(BROADCAST, macOf(1), 9));
    expect(await eventually(() => atHost.length === 2)).toBe(true);
    // A marker sent on vc itself, after 9 reached the host: had vb's worker sent 9 to vc too, it
    // would have done so before handing 9 up, so 9 would arrive at vd before the marker.
    await vc.send(frame(BROADCAST, macOf(3), 10));
    expect(await eventually(() => atD.length === 2)).toBe(true);
    expect(atD.map(seqOf)).toEqual([7, 10]);
    expect(sw.counters().map((p) => p.name)).toEqual([vb.name, 'dummy:s']);
  });

  it('tags and untags between a trunk and an access port of system devices, and keeps VLANs apart', async () => {
    const { va, vb, vc, vd } = await wire();
    await va.close();
    const trunkHost = await bed.mgr.open('va', { netns: bed.ns.name, ethertype: 'any' }); // sees tagged frames too
    await trunkHost.turnFlagsOn({ up: true });
    expect(await eventually(() => trunkHost.getCarrier())).toBe(true);
    sw = new Switch();
    sw.addPort(vb); // trunk
    sw.addPort(vc, { vlan: 10 });
    expect(await eventually(() => sw!.counters().every((p) => p.path === 'worker'))).toBe(true);
    const atTrunk = collect(trunkHost);
    const atD = collect(vd);
    const tag = (f: Uint8Array, vid: number) => Uint8Array.from([...f.subarray(0, 12), 0x81, 0x00, vid >> 8, vid & 255, ...f.subarray(12)]);
    await trunkHost.send(tag(frame(BROADCAST, macOf(1), 1), 20)); // VLAN 20: no access port of it
    await trunkHost.send(tag(frame(BROADCAST, macOf(1), 2), 10)); // VLAN 10: to vc, untagged
    expect(await eventually(() => atD.length === 1)).toBe(true);
    expect(atD[0]).toEqual(frame(BROADCAST, macOf(1), 2));
    await vd.send(frame(macOf(1), macOf(4), 3)); // from the access port: to the trunk, tagged 10
    expect(await eventually(() => atTrunk.some((f) => f[6] === 2 && f[11] === 4))).toBe(true);
    expect(atTrunk.find((f) => f[11] === 4)).toEqual(tag(frame(macOf(1), macOf(4), 3), 10));
    await trunkHost.send(tag(frame(BROADCAST, macOf(1), 4), 10)); // a marker behind 1 (VLAN 20), had it leaked to vc
    expect(await eventually(() => atD.length === 2)).toBe(true);
    expect(atD.map(seqOf)).toEqual([2, 4]);
  });

  it('stops forwarding in a worker whose port handle closes while the device stays open', async () => {
    const { va, vb, vc, vd } = await wire();
    const other = await bed.mgr.open('vb', { netns: bed.ns.name, ethertype: 'any' }); // keeps the device open
    sw = new Switch();
    sw.addPort(vb);
    sw.addPort(vc);
    expect(await eventually(() => sw!.counters().every((p) => p.path === 'worker'))).toBe(true);
    const atD = collect(vd);
    await va.send(frame(BROADCAST, macOf(1), 1));
    expect(await eventually(() => atD.length === 1)).toBe(true);
    await vb.close();
    expect(await eventually(() => sw!.counters().length === 1)).toBe(true);
    await sw.ready(); // the port's removal has reached its worker
    bed.ns.ip('link', 'set', 'vb', 'up'); // the closed handle took vb down with it; the device itself stays open
    expect(await eventually(() => other.getCarrier())).toBe(true);
    const atOther = collect(other);
    await va.send(frame(BROADCAST, macOf(1), 2));
    // vb's worker hands 2 to its reader, as a device that is no port does; it forwards nothing.
    expect(await eventually(() => atOther.some((f) => seqOf(f) === 2))).toBe(true);
    await vc.send(frame(BROADCAST, macOf(3), 3)); // a marker on vc: behind 2, had vb's worker sent it there
    expect(await eventually(() => atD.length === 2)).toBe(true);
    expect(atD.map(seqOf)).toEqual([1, 3]);
    expect(other.isOpen).toBe(true);
  });

  it('removes a port whose device is deleted, with a notice, and keeps forwarding between the others', async () => {
    const { va, vb, vc, vd } = await wire();
    bed.ns.ip('link', 'add', 've', 'type', 'veth', 'peer', 'name', 'vf');
    const ve = await bed.mgr.open('ve', { netns: bed.ns.name });
    await ve.turnFlagsOn({ up: true });
    const notices: string[] = [];
    sw = new Switch({ onNotice: (line) => notices.push(line) });
    for (const dev of [vb, vc, ve]) sw.addPort(dev);
    expect(await eventually(() => sw!.counters().every((p) => p.path === 'worker'))).toBe(true);
    bed.ns.ip('link', 'del', 've');
    expect(await eventually(() => notices.some((n) => n.includes('ve')))).toBe(true);
    const atD = collect(vd);
    await va.send(frame(BROADCAST, macOf(1), 1));
    expect(await eventually(() => atD.length === 1)).toBe(true);
    expect(sw.counters().map((p) => p.name)).toEqual([vb.name, vc.name]);
  });

});
