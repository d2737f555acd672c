import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { NetdevError, type Netdev } from '../dist/index.js';
import { ethFrame, eventually, rejection, seqOf } from './helpers.js';
import { freshEachTest, privileged, requirePrivilege, TestNetns } from './netns-harness.js';

const TEST_TYPE = 0x88b5; // IEEE local experimental: nothing else in the namespace sends it

requirePrivilege('device identity tests');

/**
 * A handle is bound to the kernel device it opened (its ifindex in its namespace), not to the
 * name: a device deleted and re-created under the same name is another device, and a renamed
 * device is still the same one.
 */
describe.skipIf(!privileged)('devices are the kernel device they opened, by ifindex', () => {
  const bed = freshEachTest();

  const open = (name: string, ethertype: number | 'none' = TEST_TYPE): Promise<Netdev> => bed.mgr.open(name, { netns: bed.ns.name, ethertype });
  const addVeth = (name: string, peer: string) => bed.ns.ip('link', 'add', name, 'type', 'veth', 'peer', 'name', peer);
  const in4Of = (dev: string) => bed.ns.json<{ addr_info: { family: string }[] }[]>('addr', 'show', dev)[0]!.addr_info.filter((a) => a.family === 'inet');
  /** The AF_PACKET sockets of the namespace (/proc/net/packet there, one line per socket after the header). */
  const packetSockets = () => execFileSync('ip', ['netns', 'exec', bed.ns.name, 'cat', '/proc/net/packet'], { encoding: 'utf8' }).trim().split('\n').length - 1;

  it('refuses with ENODEV every control call of a deleted device, and leaves the new device of its name untouched', async () => {
    addVeth('rc0', 'rc1');
    const old = await open('rc0');
    await old.turnFlagsOn({ up: true }); // recorded: to be restored (turned off) when the handle closes
    const oldIfindex = await old.getIfindex();
    bed.ns.ip('link', 'del', 'rc0');
    addVeth('rc0', 'rc1');
    bed.ns.ip('link', 'set', 'rc0', 'up');
    const before = bed.ns.link('rc0');
    expect(before.ifindex).not.toBe(oldIfindex);

    // At once, whether or not the notifier has reported the deletion yet.
    const calls: [string, () => Promise<unknown>][] = [
      ['setMtu', () => old.setMtu(1400)],
      ['setFlags', () => old.setFlags({ up: false, promisc: true }, { permanent: true })],
      ['turnFlagsOff', () => old.turnFlagsOff({ up: true })],
      ['setIn4', () => old.setIn4('10.91.0.1', 24)],
      ['setEtheraddr', () => old.setEtheraddr('02:00:00:00:91:01')],
      ['getMtu', () => old.getMtu()],
      ['getFlags', () => old.getFlags()],
      ['getEtheraddr', () => old.getEtheraddr()],
      ['getIfindex', () => old.getIfindex()],
      ['getStats', () => old.getStats()],
      ['disableOffloads', () => old.disableOffloads()],
    ];
    for (const [call, invoke] of calls) {
      const error = await rejection(invoke());
      expect(error).toBeInstanceOf(NetdevError);
      expect([call, error.code, error.device, error.call]).toEqual([call, 'ENODEV', 'rc0', call]);
    }
    // The I/O half learns it from the notifier.
    expect(await eventually(async () => (await rejection(old.send(ethFrame(60)))).code === 'ENODEV')).toBe(true);
    for (const [call, invoke] of calls) expect([call, (await rejection(invoke())).code]).toEqual([call, 'ENODEV']);

    await old.close(); // restoring its flags must not turn the new rc0 down
    const after = bed.ns.link('rc0');
    expect([after.ifindex, after.mtu, after.address, after.flags]).toEqual([before.ifindex, before.mtu, before.address, before.flags]);
    expect(after.flags).toContain('UP');
    expect(after.flags).not.toContain('PROMISC');
    expect(in4Of('rc0')).toEqual([]);
  });

  it('opens the new device of a re-created name while a handle of the deleted one is still open, for I/O', async () => {
    addVeth('rc0', 'rc1');
    const old = await open('rc0');
    const deleted = old.frames().next();
    bed.ns.ip('link', 'del', 'rc0');
    expect((await rejection(deleted)).code).toBe('ENODEV');
    addVeth('rc0', 'rc1');

    const fresh = await open('rc0');
    expect(await fresh.getIfindex()).toBe(bed.ns.link('rc0').ifindex);
    const peer = await open('rc1');
    await fresh.turnFlagsOn({ up: true });
    await peer.turnFlagsOn({ up: true });
    expect(await eventually(async () => (await fresh.getCarrier()) && (await peer.getCarrier()))).toBe(true);
    const sent = Array.from({ length: 50 }, (_, seq) => ethFrame(60 + seq * 20, seq, TEST_TYPE));
    for (const frame of sent) await fresh.send(frame);
    let seq = 0;
    for await (const frame of peer.frames()) {
      expect(seqOf(frame)).toBe(seq);
      expect(frame.subarray(0, sent[seq]!.length)).toEqual(sent[seq]);
      if (++seq === sent.length) break;
    }
    expect((await rejection(old.send(ethFrame(60)))).code).toBe('ENODEV');

    // Closing the dead handle stops its device (its packet socket goes) and leaves the new one working.
    const sockets = packetSockets();
    await old.close();
    expect(packetSockets()).toBe(sockets - 1);
    const arriving = peer.frames().next();
    await fresh.send(ethFrame(100, 77, TEST_TYPE));
    expect(seqOf((await arriving).value as Uint8Array)).toBe(77);
  });

  it('follows a rename: calls act on the renamed device, and its flags are restored on close', async () => {
    addVeth('p2', 'p3');
    const port = await open('p2');
    await port.turnFlagsOn({ up: true, promisc: true });
    expect(bed.ns.link('p2').flags).toEqual(expect.arrayContaining(['UP', 'PROMISC']));
    bed.ns.ip('link', 'set', 'p2', 'name', 'q2');
    expect(port.name).toBe('p2');
    expect(await port.getIfindex()).toBe(bed.ns.link('q2').ifindex);
    await port.setMtu(1400);
    expect(bed.ns.link('q2').mtu).toBe(1400);
    expect((await rejection(open('p2', 'none'))).code).toBe('ENODEV'); // the name leads nowhere now
    await port.close();
    const flags = bed.ns.link('q2').flags;
    expect(flags).not.toContain('UP');
    expect(flags).not.toContain('PROMISC');
  });

  it('restores the flags of a renamed device when the manager closes (as at exit)', async () => {
    addVeth('p2', 'p3');
    const port = await open('p2');
    await port.turnFlagsOn({ up: true, promisc: true });
    bed.ns.ip('link', 'set', 'p2', 'name', 'q2');
    addVeth('p2', 'p4'); // a new device takes the old name: it must not be touched
    bed.ns.ip('link', 'set', 'p2', 'up', 'promisc', 'on');
    await bed.mgr.close();
    expect(bed.ns.link('q2').flags).not.toContain('UP');
    expect(bed.ns.link('q2').flags).not.toContain('PROMISC');
    expect(bed.ns.link('p2').flags).toEqual(expect.arrayContaining(['UP', 'PROMISC']));
  });

  it('binds a tap device the same way: a re-created tap of its name is not changed by the old handle', async () => {
    const old = await bed.mgr.open('tap:rt0', { netns: bed.ns.name, ethertype: 'none' });
    bed.ns.ip('link', 'del', 'rt0');
    bed.ns.ip('tuntap', 'add', 'rt0', 'mode', 'tap');
    const before = bed.ns.link('rt0');
    expect((await rejection(old.setMtu(1400))).code).toBe('ENODEV');
    expect((await rejection(old.turnFlagsOn({ up: true }, { permanent: true }))).code).toBe('ENODEV');
    const after = bed.ns.link('rt0');
    expect([after.mtu, after.flags]).toEqual([before.mtu, before.flags]);
    const fresh = await bed.mgr.open('tap:rt0', { netns: bed.ns.name, ethertype: 'none' });
    expect(await fresh.getIfindex()).toBe(after.ifindex);
  });
  it('is two devices for the same name in two namespaces: each its own ifindex, MAC, MTU, notices and frames', async () => {
    const other = new TestNetns();
    const opened: Netdev[] = [];
    try {
      const inBoth = async (name: string): Promise<[Netdev, Netdev]> => {
        const pair: [Netdev, Netdev] = [await open(name), await bed.mgr.open(name, { netns: other.name, ethertype: TEST_TYPE })];
        opened.push(...pair);
        return pair;
      };
      const [here, there] = await inBoth('va');
      expect([here.netns, there.netns]).toEqual([bed.ns.name, other.name]);
      const [linkHere, linkThere] = [bed.ns.link('va'), other.link('va')];
      expect([await here.getIfindex(), await there.getIfindex()]).toEqual([linkHere.ifindex, linkThere.ifindex]);
      expect([await here.getEtheraddr(), await there.getEtheraddr()]).toEqual([linkHere.address, linkThere.address]);
      expect(linkHere.address).not.toBe(linkThere.address);

      // A change made with ip in one namespace reaches the device of that namespace only (the two may
      // have the same ifindex): when its notice is read, none for the other is pending.
      const monitor = bed.mgr.monitor();
      monitor.add(here);
      monitor.add(there);
      expect(monitor.poll()).toBeNull();
      other.ip('link', 'set', 'va', 'mtu', '1300');
      expect(await eventually(() => there.maxFrame === 1318)).toBe(true);
      expect([monitor.poll(), monitor.poll()]).toEqual([`${other.name}/va`, null]);
      expect(here.maxFrame).toBe(1518);

      await there.setMtu(1400);
      await here.setEtheraddr('02:00:00:00:92:01');
      expect([bed.ns.link('va').mtu, other.link('va').mtu]).toEqual([1500, 1400]);
      expect([bed.ns.link('va').address, other.link('va').address]).toEqual(['02:00:00:00:92:01', linkThere.address]);
      expect([await here.getMtu(), await there.getMtu()]).toEqual([1500, 1400]);
      expect([await here.getEtheraddr(), await there.getEtheraddr()]).toEqual(['02:00:00:00:92:01', linkThere.address]);

      // Frames sent on one va reach the vb of its own namespace only: each vb's first frame is its own namespace's.
      const [peerHere, peerThere] = await inBoth('vb');
      for (const dev of opened) await dev.turnFlagsOn({ up: true });
      expect(await eventually(async () => (await here.getCarrier()) && (await there.getCarrier()))).toBe(true);
      const firstHere = peerHere.frames().next();
      const firstThere = peerThere.frames().next();
      await here.send(ethFrame(100, 1, TEST_TYPE));
      await there.send(ethFrame(100, 2, TEST_TYPE));
      expect([seqOf((await firstHere).value as Uint8Array), seqOf((await firstThere).value as Uint8Array)]).toEqual([1, 2]);
    } finally {
      for (const dev of opened) await dev.close();
      other.destroy();
    }
  });
});
