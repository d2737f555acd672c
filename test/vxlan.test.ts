/**
 * The vxlan provider against the real kernel: the device it makes (checked with `ip -j -d link`),
 * config refused before anything is made, close and persist, the MTU, and guests on two machines
 * (namespaces joined by an underlay) reaching each other through Switch -> vxlan -> underlay ->
 * vxlan -> Switch: ping and a TCP transfer checked with SHA-256, with TCP super-frames going into
 * the tunnel whole.
 */
import { execFileSync } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import type { Netdev } from '../dist/index.js';
import { VNET_HDR_LEN } from '../dist/common/vnet-header.js';
import { LinkNotifier } from '../dist/providers/linux/link-notifier.js';
import { Netns } from '../dist/sys/netns.js';
import { rejection, requireTool } from './helpers.js';
import { ip, privileged, requirePrivilege } from './netns-harness.js';
import { guestAddress, Machines, ping, transfer, underlayAddress } from './tunnel-rig.js';

requirePrivilege('vxlan');

const MIB = 1 << 20;

interface VxlanLink {
  ifname: string;
  mtu: number;
  flags: string[];
  linkinfo: { info_kind: string; info_data: { id: number; remote?: string; remote6?: string; local6?: string; group?: string; local?: string; port: number; ttl: number; learning: boolean; link?: string } };
}

/** `ip -j -d link show DEV` in `ns`, or null if there is no such device. */
function vxlanLink(ns: string, dev: string): VxlanLink | null {
  const links = JSON.parse(ip('-j', '-d', '-n', ns, 'link', 'show')) as VxlanLink[];
  return links.find((link) => link.ifname === dev) ?? null;
}

describe.skipIf(!privileged)('vxlan provider', () => {
  let machines: Machines | null = null;
  afterEach(async () => {
    await machines?.destroy();
    machines = null;
  });

  it('creates the kernel device as its config says, up, with the MTU the underlay leaves; close deletes it, persist keeps it', async () => {
    machines = new Machines(2);
    const [h1] = machines.hosts as [string];
    const { mgr } = machines;
    const dev = await mgr.open('vxlan:vx0', { netns: h1, config: { key: '4242', remote_ip: underlayAddress(2), local_ip: underlayAddress(1), dst_port: '4790', ttl: '17', learning: 'false' } });
    const link = vxlanLink(h1, 'vx0')!;
    expect(link.linkinfo.info_kind).toBe('vxlan');
    expect(link.linkinfo.info_data).toMatchObject({ id: 4242, remote: underlayAddress(2), local: underlayAddress(1), port: 4790, ttl: 17, learning: false });
    expect(link.flags).toContain('UP');
    expect(link.mtu).toBe(1500 - 50); // u0's MTU less the IPv4 encapsulation
    expect(dev.type).toBe('vxlan');
    expect(await dev.getMtu()).toBe(1450);
    expect(await dev.getConfig()).toMatchObject({ key: '4242', remote_ip: underlayAddress(2), dst_port: '4790', ttl: '17', learning: 'false', persist: 'false', mtu: '1450' });
    await dev.setMtu(1400);
    expect((await dev.getConfig()).mtu).toBe('1400');
    expect(vxlanLink(h1, 'vx0')!.mtu).toBe(1400);
    // The kernel takes one vxlan device per key and port in a namespace (why several remotes share one device).
    expect((await rejection(mgr.open('vxlan:vx9', { netns: h1, config: { key: '4242', remote_ip: underlayAddress(3), dst_port: '4790' } }))).code).toBe('EEXIST');
    await dev.close();
    expect(vxlanLink(h1, 'vx0')).toBeNull();

    // Over IPv6 the encapsulation takes 70 bytes.
    execFileSync('ip', ['netns', 'exec', h1, 'sysctl', '-q', '-w', 'net.ipv6.conf.u0.disable_ipv6=0']);
    ip('-n', h1, 'addr', 'add', 'fd00:200::1/64', 'dev', 'u0', 'nodad');
    const six = await mgr.open('vxlan:vx6', { netns: h1, config: { key: '6', remote_ip: 'fd00:200::2', local_ip: 'fd00:200::1' } });
    expect(vxlanLink(h1, 'vx6')!.mtu).toBe(1500 - 70);
    expect(vxlanLink(h1, 'vx6')!.linkinfo.info_data).toMatchObject({ id: 6, remote6: 'fd00:200::2', local6: 'fd00:200::1' });
    await six.close();

    // A jumbo underlay, and an MTU set by config; persist keeps the device, which is then a system device by its name.
    ip('-n', h1, 'link', 'set', 'u0', 'mtu', '9000');
    const derived = await mgr.open('vxlan:vx1', { netns: h1, config: { key: '7', remote_ip: underlayAddress(2) } });
    expect(vxlanLink(h1, 'vx1')!.mtu).toBe(8950);
    expect(vxlanLink(h1, 'vx1')!.linkinfo.info_data).toMatchObject({ id: 7, port: 4789, ttl: 64, learning: true });
    const kept = await mgr.open('vxlan:vx2', { netns: h1, config: { key: '8', remote_ip: underlayAddress(2), mtu: '1400', persist: 'true' } });
    expect(vxlanLink(h1, 'vx2')!.mtu).toBe(1400);
    await derived.close();
    await kept.close();
    expect(vxlanLink(h1, 'vx1')).toBeNull();
    expect(vxlanLink(h1, 'vx2')!.linkinfo.info_data.id).toBe(8);
    const again = await rejection(mgr.open('vxlan:vx2', { netns: h1, config: { key: '8', remote_ip: underlayAddress(2) } }));
    expect(again.code).toBe('EEXIST');
    expect(again.message).toMatch(/plain name/);
    const plain = await mgr.open('vx2', { netns: h1 });
    expect(plain.type).toBe('system');
    expect(await plain.getMtu()).toBe(1400);
    await plain.close();
    expect(vxlanLink(h1, 'vx2')).not.toBeNull();
  });

  it('deletes the device an open made when the open fails after making it, persist=true or not', async () => {
    machines = new Machines(2);
    const [h1] = machines.hosts as [string];
    // The open is aborted once the kernel says vx0 exists (while its worker starts).
    const netns = Netns.open(h1);
    const notifier = new LinkNotifier(netns);
    const controller = new AbortController();
    const unsubscribe = notifier.subscribe((change) => {
      if (change.kind === 'link' && change.name === 'vx0' && !change.deleted) controller.abort();
    });
    try {
      const error = await rejection(machines.mgr.open('vxlan:vx0', { netns: h1, signal: controller.signal, config: { ...machines.config(0), persist: 'true' } }));
      expect(controller.signal.aborted).toBe(true);
      expect(error.code).toBe('ECANCELED');
    } finally {
      unsubscribe();
      notifier.close();
      netns.close();
    }
    expect(vxlanLink(h1, 'vx0')).toBeNull();
  });

  it('refuses bad config with EINVAL naming the key, before anything is made', async (test) => {
    requireTool(test, 'bridge', 'iproute2');
    machines = new Machines(2);
    const [h1] = machines.hosts as [string];
    const remote = underlayAddress(2);
    const cases: [Record<string, string>, string][] = [
      [{ key: '16777216', remote_ip: remote }, 'key'],
      [{ key: '-1', remote_ip: remote }, 'key'],
      [{ key: '42' }, 'remote_ip'],
      [{ key: '42', remote_ip: '10.200.0.300' }, 'remote_ip'],
      [{ key: '42', remote_ip: `${remote},${remote}` }, 'remote_ip'],
      [{ key: '42', remote_ip: `${remote},fd00::2` }, 'remote_ip'],
      [{ key: '42', remote_ip: '239.1.1.1' }, 'dev'],
      [{ key: '42', remote_ip: remote, dst_port: '0' }, 'dst_port'],
      [{ key: '42', remote_ip: remote, dst_port: '65536' }, 'dst_port'],
      [{ key: '42', remote_ip: remote, ttl: '256' }, 'ttl'],
      [{ key: '42', remote_ip: remote, local_ip: 'fd00::1' }, 'local_ip'],
      [{ key: '42', remote_ip: remote, learning: 'yes' }, 'learning'],
      [{ key: '42', remote_ip: remote, mtu: '20' }, 'mtu'],
      [{ key: '42', remote_ip: remote, dev: 'u0', mtu: '1451' }, 'mtu'], // more than u0 leaves (the kernel would lower it)
      [{ key: '42', remote_ip: remote, vni: '42' }, 'vni'],
      // Remotes that would hand the device's frames back to itself, and a group among unicast remotes.
      [{ key: '42', remote_ip: '0.0.0.0' }, 'remote_ip'],
      [{ key: '42', remote_ip: '::' }, 'remote_ip'],
      [{ key: '42', remote_ip: '127.0.0.1' }, 'remote_ip'],
      [{ key: '42', remote_ip: '::1' }, 'remote_ip'],
      [{ key: '42', remote_ip: '10.200.0.9', local_ip: '10.200.0.9' }, 'remote_ip'],
      [{ key: '42', remote_ip: `${remote},${underlayAddress(1)}` }, 'remote_ip'],
      [{ key: '42', remote_ip: `${remote},127.0.0.2` }, 'remote_ip'],
      [{ key: '42', remote_ip: `${remote},239.1.1.1`, dev: 'u0' }, 'remote_ip'],
      [{ key: '42', remote_ip: 'fe80::2' }, 'remote_ip'],
    ];
    for (const [config, key] of cases) {
      const error = await rejection(machines.mgr.open('vxlan:vx0', { netns: h1, config }));
      expect([error.code, error.message.includes(`'${key}'`)], `${JSON.stringify(config)}: ${error.message}`).toEqual(['EINVAL', true]);
      expect(error.device).toBe('vxlan:vx0');
      expect(vxlanLink(h1, 'vx0')).toBeNull();
    }
    const missing = await rejection(machines.mgr.open('vxlan:vx0', { netns: h1, config: { key: '42', remote_ip: '239.1.1.1', dev: 'nosuch0' } }));
    expect([missing.code, missing.message.includes("'dev'")]).toEqual(['ENODEV', true]);
    expect(vxlanLink(h1, 'vx0')).toBeNull();
    // A combination only the kernel refuses: the error says what the kernel said (its extended ack).
    const scopes = await rejection(machines.mgr.open('vxlan:vx0', { netns: h1, config: { key: '42', remote_ip: 'fd00:200::2', local_ip: 'fe80::1' } }));
    expect(scopes.code).toBe('EINVAL');
    expect(scopes.message).toMatch(/RTM_NEWLINK vxlan vx0: the kernel says: Invalid combination of local and remote address scopes/);
    expect(vxlanLink(h1, 'vx0')).toBeNull();
    // A multicast group on an underlay device is made as asked.
    const group = await machines.mgr.open('vxlan:vx0', { netns: h1, config: { key: '42', remote_ip: '239.1.1.1', dev: 'u0' } });
    const link = vxlanLink(h1, 'vx0')!;
    expect(link.linkinfo.info_data).toMatchObject({ group: '239.1.1.1', link: 'u0' });
    expect([link.mtu, (await group.getConfig()).mtu]).toEqual([1450, '1450']);
    expect([link.linkinfo.info_data.ttl, (await group.getConfig()).ttl]).toEqual([1, '1']); // a group's default TTL, as the kernel's
    // Keys fixed once made are refused on a later open that changes them.
    expect((await rejection(machines.mgr.open('vxlan:vx0', { netns: h1, config: { key: '43' } }))).message).toMatch(/'key' is fixed/);
    await group.close();
    // A local address is refused as a new remote too, and nothing changes.
    const unicast = await machines.mgr.open('vxlan:vx0', { netns: h1, ethertype: 'none', config: { key: '42', remote_ip: remote } });
    const refused = await rejection(unicast.setConfig({ remote_ip: `${remote},${underlayAddress(1)}` }));
    expect([refused.code, refused.message.includes("'remote_ip'")]).toEqual(['EINVAL', true]);
    expect(await unicast.getConfig()).toMatchObject({ remote_ip: remote });
    expect(machines.floodRemotes(0)).toEqual([remote]);
    await unicast.close();
  });

  it('counts a frame too large for the tunnel where it is refused: the Switch port\'s txDropped; send() says EMSGSIZE', async (test) => {
    requireTool(test, 'ping', 'iputils-ping');
    machines = new Machines(2, 1500); // guests keep 1500, over a tunnel of 1450
    await machines.start();
    const [g1] = machines.guests as [string];
    expect(await ping(g1, guestAddress(2), 1)).toBe(1);
    const port = () => machines!.switches[0]!.counters().find((p) => p.name === 'vxlan:vx0')!.counters;
    const before = { ...port(), kernel: machines.tunnels[0]!.getStats() };
    // 1514-byte frames, without GSO (ping): the kernel refuses them on vx0 (EMSGSIZE), and the Switch counts each.
    expect(await ping(g1, guestAddress(2), 3, '0.2', ['-M', 'do', '-s', '1472'])).toBe(0);
    expect(port().txDropped - before.txDropped).toBe(3);
    expect(port().txFrames).toBe(before.txFrames);
    expect((await machines.tunnels[0]!.getStats()).txPackets).toBe((await before.kernel).txPackets);
    // From the API, the device's MTU refuses it before it is queued: a vnet frame (a header of zeros, no GSO) of 1465 bytes.
    const frame = new Uint8Array(VNET_HDR_LEN + 1450 + 14 + 1);
    frame.set([0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x88, 0xb5], VNET_HDR_LEN);
    expect((await rejection(machines.tunnels[0]!.send(frame))).code).toBe('EMSGSIZE');
  });

  it('carries ping and 64 MiB of TCP (SHA-256 checked) guest to guest through Switch, vxlan, underlay, vxlan, Switch', async (test) => {
    requireTool(test, 'ping', 'iputils-ping');
    machines = new Machines(2);
    await machines.start();
    const [g1, g2] = machines.guests as [string, string];
    expect(await ping(g1, guestAddress(2))).toBe(3);
    const [tunnel] = machines.tunnels as [Netdev];
    const before = await tunnel.getStats();
    await transfer(g1, g2, guestAddress(2), 64 * MIB);
    // Through the tunnel (the kernel counts it on vx0), and whole: the Switch sent TCP super-frames
    // into vx0 (fewer frames than there are MSS-sized segments), which the kernel encapsulated.
    const stats = await tunnel.getStats();
    expect(stats.txBytes! - before.txBytes!).toBeGreaterThan(64 * MIB);
    expect(stats.txErrors).toBe(0);
    const segments = (64 * MIB) / 1398;
    const port = machines.switches[0]!.counters().find((p) => p.name === 'vxlan:vx0')!;
    expect(port.counters.txDropped).toBe(0);
    expect(port.counters.txFrames).toBeLessThan(segments / 2);
  });

  it('changes remote_ip while open, its first (the device\'s own remote) included, as ip -d link and bridge fdb say', async (test) => {
    requireTool(test, 'ping', 'iputils-ping');
    requireTool(test, 'bridge', 'iproute2');
    machines = new Machines(3);
    await machines.start();
    const m = machines;
    const [g1] = m.guests as [string];
    const [h1] = m.hosts as [string];
    const tunnel = m.tunnels[0]!;
    const own = () => vxlanLink(h1, 'vx0')!.linkinfo.info_data.remote;
    expect([own(), m.floodRemotes(0)]).toEqual([underlayAddress(2), [underlayAddress(2), underlayAddress(3)]]);
    // The first remote removed: host 3 becomes the device's own remote.
    await tunnel.setConfig({ remote_ip: underlayAddress(3) });
    expect([own(), m.floodRemotes(0), (await tunnel.getConfig()).remote_ip]).toEqual([underlayAddress(3), [underlayAddress(3)], underlayAddress(3)]);
    expect(await ping(g1, guestAddress(3), 2)).toBe(2);
    // Host 2 added back after it, then put first: the old own remote stays a flood entry.
    await tunnel.setConfig({ remote_ip: `${underlayAddress(3)},${underlayAddress(2)}` });
    expect([own(), m.floodRemotes(0)]).toEqual([underlayAddress(3), [underlayAddress(2), underlayAddress(3)]]);
    await tunnel.setConfig({ remote_ip: `${underlayAddress(2)},${underlayAddress(3)}` });
    expect([own(), m.floodRemotes(0), (await tunnel.getConfig()).remote_ip]).toEqual([underlayAddress(2), [underlayAddress(2), underlayAddress(3)], `${underlayAddress(2)},${underlayAddress(3)}`]);
    expect(await ping(g1, guestAddress(2), 2)).toBe(2);
    expect(await ping(g1, guestAddress(3), 2)).toBe(2);
  });

  it('floods to every remote, settles to unicast once learned, and keeps carrying TCP when a remote machine goes away', async (test) => {
    requireTool(test, 'ping', 'iputils-ping');
    requireTool(test, 'bridge', 'iproute2');
    machines = new Machines(3);
    await machines.start();
    const m = machines;
    const [g1, g2] = m.guests as [string, string];
    expect(m.floodRemotes(0)).toEqual([underlayAddress(2), underlayAddress(3)]);
    const counts = () => [0, 1, 2].map((i) => m.underlayPackets(i));
    // The first ping's ARP request is flooded: one copy to each remote, head-end replicated by host 1's vx0.
    const start = counts();
    expect(await ping(g1, guestAddress(2), 1)).toBe(1);
    const flooded = counts();
    expect(flooded[2]!.rx - start[2]!.rx).toBeGreaterThanOrEqual(1);
    expect(flooded[1]!.rx - start[1]!.rx).toBeGreaterThanOrEqual(2); // the ARP request and the echo request
    // Learned by both vx0 devices and both Switches: now host 3 sees nothing of guest 1 and 2's traffic.
    expect(await ping(g1, guestAddress(2), 50, '0.01')).toBe(50);
    const unicast = counts();
    expect(unicast[2]!.rx - flooded[2]!.rx).toBe(0);
    expect(unicast[1]!.rx - flooded[1]!.rx).toBeGreaterThanOrEqual(50);
    expect(unicast[1]!.tx - flooded[1]!.tx).toBeGreaterThanOrEqual(50);
    expect(await ping(g1, guestAddress(3), 3)).toBe(3);

    // Machine 3 goes away while guest 1 sends to guest 2; the others drop it from their remotes.
    const stop = new AbortController();
    const sending = transfer(g1, g2, guestAddress(2), 32 * MIB, stop.signal);
    sending.catch(() => {}); // awaited below, unless a check fails first
    try {
      await m.remove(2);
      for (const i of [0, 1]) await m.tunnels[i]!.setConfig({ remote_ip: underlayAddress(2 - i) });
      expect(m.floodRemotes(0)).toEqual([underlayAddress(2)]);
      expect(m.floodRemotes(1)).toEqual([underlayAddress(1)]);
      await sending;
    } finally {
      stop.abort(); // the transfer's processes are gone if it ended
    }
    expect(await ping(g2, guestAddress(1), 3)).toBe(3);
  });
});
