import { describe, expect, it } from 'vitest';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { NetdevError, NetdevManager, readPcap, type Netdev } from '../dist/index.js';
import { ethFrame, eventually, rejection, requireTool, seqOf, tempDir, untilPrinted } from './helpers.js';
import { freshEachTest, privileged, requirePrivilege } from './netns-harness.js';
import { requireKernelFeature } from './kernel-features.js';

const TEST_TYPE = 0x88b5; // IEEE local experimental: nothing else in the namespace sends it
const RAW_SOCKET = new URL('./fixtures/raw-socket.py', import.meta.url).pathname;

requirePrivilege('system provider tests');

describe.skipIf(!privileged)('system devices in a network namespace of the test run', () => {
  const bed = freshEachTest();

  const open = (name: string, ethertype: number | 'none' = TEST_TYPE): Promise<Netdev> => bed.mgr.open(name, { netns: bed.ns.name, ethertype });

  /** Opens both veth ends and brings them up; returns once carrier is on (the kernel drops frames until then). */
  async function bothUp(): Promise<[Netdev, Netdev]> {
    const a = await open('va');
    const b = await open('vb');
    await a.turnFlagsOn({ up: true });
    await b.turnFlagsOn({ up: true });
    expect(await eventually(async () => (await a.getCarrier()) && (await b.getCarrier()))).toBe(true);
    return [a, b];
  }

  it('reads the attributes ip reports', async () => {
    const dev = await open('va', 'none');
    const link = bed.ns.link('va');
    expect(dev.type).toBe('system');
    expect(dev.netns).toBe(bed.ns.name);
    expect(await dev.getIfindex()).toBe(link.ifindex);
    expect(await dev.getEtheraddr()).toBe(link.address);
    expect(await dev.getMtu()).toBe(link.mtu);
  });

  it('sets MAC, MTU and flags that ip then sees, and sees what ip sets', async () => {
    const dev = await open('va', 'none');
    await dev.setEtheraddr('02:11:22:33:44:55');
    await dev.setMtu(1400);
    await dev.turnFlagsOn({ up: true, promisc: true }, { permanent: true });
    let link = bed.ns.link('va');
    expect(link.address).toBe('02:11:22:33:44:55');
    expect(link.mtu).toBe(1400);
    expect(link.flags).toEqual(expect.arrayContaining(['UP', 'PROMISC']));
    bed.ns.ip('link', 'set', 'va', 'mtu', '1300', 'promisc', 'off', 'address', '02:00:00:00:00:77');
    expect(await dev.getMtu()).toBe(1300);
    expect(await dev.getFlags()).toEqual({ up: true, promisc: false });
    expect(await dev.getEtheraddr()).toBe('02:00:00:00:00:77');
    await dev.setFlags({}, { permanent: true });
    link = bed.ns.link('va');
    expect(link.flags).not.toContain('UP');
  });

  it('refuses what the kernel refuses, with the errno', async () => {
    const dev = await open('va', 'none');
    const mtu = await rejection(dev.setMtu(100_000));
    expect(mtu).toBeInstanceOf(NetdevError);
    expect(mtu.code).toBe('EINVAL');
    expect(mtu.device).toBe('va');
    expect(mtu.call).toBe('setMtu');
  });

  it('refuses an MTU the ioctl cannot carry with EINVAL naming the range, leaving the MTU as it was', async () => {
    const dev = await open('va', 'none');
    for (const mtu of [2 ** 31, -1, 2 ** 53]) {
      const error = await rejection(dev.setMtu(mtu));
      expect(error).toBeInstanceOf(NetdevError);
      expect([error.code, error.device, error.call]).toEqual(['EINVAL', 'va', 'setMtu']);
      expect(error.message).toContain('0 to 2147483647');
    }
    expect(bed.ns.link('va').mtu).toBe(1500);
    expect(await dev.getMtu()).toBe(1500);
  });

  it('restores flags a handle changed when it closes', async () => {
    const keeper = await open('va', 'none');
    const changer = await open('va', 'none');
    await changer.turnFlagsOn({ promisc: true });
    expect(bed.ns.link('va').flags).toContain('PROMISC');
    await changer.close();
    expect(bed.ns.link('va').flags).not.toContain('PROMISC');
    expect(await keeper.getFlags()).toEqual({ up: false, promisc: false });
  });

  it('restores flags when the process dies of SIGTERM', async () => {
    const child = spawn(process.execPath, [new URL('./fixtures/system-flag-child.mjs', import.meta.url).pathname, bed.ns.name, 'va'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    await untilPrinted(child);
    expect(bed.ns.link('va').flags).toContain('PROMISC');
    child.kill('SIGTERM');
    const signal = await new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, sig) => resolve(sig)));
    expect(signal).toBe('SIGTERM');
    expect(bed.ns.link('va').flags).not.toContain('PROMISC');
  });

  it('gets and sets IPv4 addresses as ip sees them, with EADDRNOTAVAIL when there is none', async () => {
    const dev = await open('va', 'none');
    expect((await rejection(dev.getIn4())).code).toBe('EADDRNOTAVAIL');
    await dev.setIn4('10.77.0.1', '255.255.255.0');
    const addresses = bed.ns.json<{ addr_info: { family: string; local: string; prefixlen: number }[] }[]>('addr', 'show', 'va')[0]!.addr_info;
    expect(addresses).toEqual(expect.arrayContaining([expect.objectContaining({ family: 'inet', local: '10.77.0.1', prefixlen: 24 })]));
    bed.ns.ip('addr', 'add', '10.78.0.5/16', 'dev', 'vb');
    const other = await open('vb', 'none');
    expect(await other.getIn4()).toEqual({ address: '10.78.0.5', netmask: '255.255.0.0', prefixLength: 16 });
    bed.ns.ip('-6', 'addr', 'add', 'fd00::5/64', 'dev', 'vb', 'nodad');
    expect(await other.getIn6()).toBe('fd00::5');
  });

  it('looks up ARP entries, ENXIO when there is none', async () => {
    const dev = await open('va', 'none');
    await dev.turnFlagsOn({ up: true });
    await dev.setIn4('10.79.0.1', 24);
    bed.ns.ip('neigh', 'add', '10.79.0.2', 'lladdr', '02:aa:bb:cc:dd:ee', 'dev', 'va');
    expect(await dev.arpLookup('10.79.0.2')).toBe('02:aa:bb:cc:dd:ee');
    const missing = await rejection(dev.arpLookup('10.79.0.3'));
    expect(missing.code).toBe('ENXIO');
    expect(missing.fallback).toBe('00:00:00:00:00:00');
  });

  it('has carrier while both veth ends are up', async () => {
    const [a, b] = await bothUp();
    await b.turnFlagsOff({ up: true });
    expect(await eventually(async () => !(await a.getCarrier()))).toBe(true);
  });

  it('sends and receives after its device went down and up, opened while down or idle meanwhile (the kernel\'s pending ENETDOWN is no error)', async () => {
    // Opened while down: the kernel marks the socket ENETDOWN at bind, which would fail the first send.
    const a = await open('va');
    const b = await open('vb');
    await a.turnFlagsOn({ up: true });
    await b.turnFlagsOn({ up: true });
    expect(await eventually(async () => (await a.getCarrier()) && (await b.getCarrier()))).toBe(true);
    const frames = b.frames({ copy: true })[Symbol.asyncIterator]();
    await a.send(ethFrame(100, 1, TEST_TYPE));
    expect(seqOf((await frames.next()).value as Uint8Array)).toBe(1);
    // Down and up while b's worker waits for frames: ENETDOWN is pending again, and its wait must survive it.
    for (const dev of [b, a]) await dev.turnFlagsOff({ up: true });
    for (const dev of [a, b]) await dev.turnFlagsOn({ up: true });
    expect(await eventually(async () => (await a.getCarrier()) && (await b.getCarrier()))).toBe(true);
    await a.send(ethFrame(100, 2, TEST_TYPE));
    expect(seqOf((await frames.next()).value as Uint8Array)).toBe(2);
    await b.send(ethFrame(100, 3, TEST_TYPE)); // b's first send since the device came back
    expect(seqOf((await a.frames().next()).value as Uint8Array)).toBe(3);
    expect((await a.getStats()).txErrors).toBe(0);
    expect((await b.getStats()).txErrors).toBe(0);
  });

  it('moves frames byte for byte, in order, both ways across the veth pair', async () => {
    const [a, b] = await bothUp();
    for (const [from, to] of [[a, b], [b, a]] as const) {
      const sizes = [14, 59, 60, 61, 64, 100, 1000, 1514];
      const total = 400;
      const received = (async () => {
        const frames: Uint8Array[] = [];
        for await (const frame of to.frames({ copy: true })) {
          frames.push(frame);
          if (frames.length === total) break;
        }
        return frames;
      })();
      // A frame under 18 bytes has no room for its number: it is known by its place in the order.
      for (let seq = 0; seq < total; seq++) await from.send(ethFrame(sizes[seq % sizes.length]!, seq, TEST_TYPE));
      const frames = await received;
      frames.forEach((frame, seq) => {
        const sent = ethFrame(sizes[seq % sizes.length]!, seq, TEST_TYPE);
        if (sent.length >= 18) expect(seqOf(frame)).toBe(seq);
        expect(frame.length).toBe(Math.max(60, sent.length));
        expect(frame.subarray(0, sent.length)).toEqual(sent);
        expect(frame.subarray(sent.length).every((byte) => byte === 0)).toBe(true);
      });
    }
  });

  it('never receives a frame of another interface, even when opened while other interfaces carry traffic', async () => {
    bed.ns.ip('link', 'add', 'vc', 'type', 'veth', 'peer', 'name', 'vd');
    for (const dev of ['vc', 'vd']) bed.ns.ip('link', 'set', dev, 'addrgenmode', 'none');
    const [vc, vd] = await Promise.all(['vc', 'vd'].map((name) => bed.mgr.open(name, { netns: bed.ns.name, ethertype: 'any' })));
    for (const dev of [vc, vd]) await dev.turnFlagsOn({ up: true });
    const va = await open('va');
    await va.turnFlagsOn({ up: true });
    bed.ns.ip('link', 'set', 'vb', 'up');
    expect(await eventually(async () => (await va.getCarrier()) && (await vd.getCarrier()))).toBe(true);
    let flooding = true;
    const flood = (async () => {
      const burst = Array.from({ length: 64 }, (_, i) => ethFrame(60, i, 0x88b6));
      while (flooding) await vc.sendBatch(burst);
    })();
    const foreign: number[] = [];
    for (let round = 0; round < 10; round++) {
      const vb = await bed.mgr.open('vb', { netns: bed.ns.name, ethertype: 'any' }); // every protocol: a frame of vc's would show
      const got: Uint8Array[] = [];
      const reading = (async () => {
        for await (const frame of vb.frames({ copy: true })) {
          got.push(frame);
          if (frame[12] === 0x88 && frame[13] === 0xb5 && seqOf(frame) === round) break;
        }
      })();
      await va.send(ethFrame(60, round, TEST_TYPE)); // the marker: once it is in, so is anything that came before
      await reading;
      foreign.push(got.filter((f) => f[12] !== 0x88 || f[13] !== 0xb5).length);
      await vb.close();
    }
    flooding = false;
    await flood;
    expect((await vd.getStats()).rxPackets).toBeGreaterThan(1000); // the other pair did carry traffic meanwhile
    expect(foreign).toEqual(new Array(10).fill(0));
  });

  it('receives 802.1Q-tagged frames with their tag, as they were sent (the kernel moves it to the ring frame header)', async () => {
    const sender = await bed.mgr.open('va', { netns: bed.ns.name, ethertype: 'any' });
    const any = await bed.mgr.open('vb', { netns: bed.ns.name, ethertype: 'any' });
    await sender.turnFlagsOn({ up: true });
    await any.turnFlagsOn({ up: true });
    expect(await eventually(() => sender.getCarrier())).toBe(true);
    const tagged = (vid: number, tpid = 0x8100): Uint8Array => {
      const frame = ethFrame(100, vid, TEST_TYPE);
      const out = new Uint8Array(104);
      out.set(frame.subarray(0, 12));
      out.set([tpid >> 8, tpid & 255, 0x20 | (vid >> 8), vid & 255], 12); // priority 1
      out.set(frame.subarray(12), 16);
      return out;
    };
    const sent = [tagged(10), tagged(4094), tagged(7, 0x88a8), ethFrame(100, 5, TEST_TYPE)];
    const received = (async () => {
      const frames: Uint8Array[] = [];
      for await (const frame of any.frames({ copy: true })) {
        if (frame[6] !== 0x02) continue; // not ours
        frames.push(frame);
        if (frames.length === sent.length) break;
      }
      return frames;
    })();
    for (const frame of sent) await sender.send(frame);
    expect(await received).toEqual(sent);
  });

  it('captures a veth end\'s frames both ways into a pcap file that tcpdump reads', async (test) => {
    const [a, b] = await bothUp();
    const path = join(tempDir('pcap'), 'va.pcap');
    const capture = await a.capture(path);
    await a.send(ethFrame(200, 1, TEST_TYPE));
    await b.send(ethFrame(100, 2, TEST_TYPE));
    expect(seqOf((await a.frames().next()).value as Uint8Array)).toBe(2);
    await capture.close();
    const frames = [...readPcap(readFileSync(path), path)];
    expect(frames.map((r) => [seqOf(r.frame), r.frame.length])).toEqual([[1, 200], [2, 100]]);
    requireTool(test, 'tcpdump', 'tcpdump');
    const tcpdump = execFileSync('tcpdump', ['-e', '-nn', '-r', path], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    expect(tcpdump).toContain('ethertype Unknown (0x88b5), length 200');
    expect(tcpdump).toContain('ethertype Unknown (0x88b5), length 100');
  });

  it('takes ENOBUFS from a full device queue as backpressure: every frame leaves once, in order, none lost', async () => {
    const [a, b] = await bothUp();
    // A token bucket that lets 1 MB/s out of va and queues at most 3000 bytes: past that, the
    // kernel refuses each frame (sendmmsg: ENOBUFS) and the tbf counts it as a drop.
    execFileSync('tc', ['-n', bed.ns.name, 'qdisc', 'add', 'dev', 'va', 'root', 'tbf', 'rate', '8mbit', 'burst', '4kb', 'limit', '3000']);
    const total = 1500;
    const length = 200;
    let received = 0;
    let bad = '';
    const receiving = (async () => {
      for await (const frame of b.frames()) {
        const sent = ethFrame(length, received, TEST_TYPE);
        if (frame.length !== length || !Buffer.from(frame).equals(Buffer.from(sent))) bad ||= `frame ${received}: seq ${seqOf(frame)}, ${frame.length} bytes`;
        if (++received === total) break;
      }
    })();
    const before = await a.getStats();
    for (let seq = 0; seq < total; seq++) await a.send(ethFrame(length, seq, TEST_TYPE));
    await eventually(() => received === total, 10_000); // 0.3 s at the tbf's rate
    expect([received, bad]).toEqual([total, '']);
    await receiving;
    const [tbf] = JSON.parse(execFileSync('tc', ['-n', bed.ns.name, '-s', '-j', 'qdisc', 'show', 'dev', 'va', 'root'], { encoding: 'utf8' })) as { kind: string; packets: number; drops: number }[];
    expect(tbf!.kind).toBe('tbf');
    expect(tbf!.packets).toBe(total); // each frame went into the queue once: what the tbf refused was sent again
    expect(tbf!.drops).toBeGreaterThan(0); // and the queue was full: sendmmsg said ENOBUFS
    const after = await a.getStats();
    expect([after.txPackets! - before.txPackets!, after.txErrors! - before.txErrors!]).toEqual([total, 0]); // the kernel's count of va, and the worker's errors
    expect(b.tryRecv()).toBeNull(); // no frame twice
  });

  it('counts in txErrors each frame of a batch the kernel refuses (ENETDOWN), and goes on with the next', async () => {
    const [a, b] = await bothUp();
    await a.turnFlagsOff({ up: true });
    const errorsBefore = (await a.getStats()).txErrors!;
    const refused = Array.from({ length: 10 }, (_, seq) => ethFrame(100, seq, TEST_TYPE));
    expect(a.trySendBatch(refused)).toBe(refused.length); // one batch, one sendmmsg: the kernel refuses its first frame each time
    expect(await eventually(async () => (await a.getStats()).txErrors! - errorsBefore >= refused.length)).toBe(true);
    await a.turnFlagsOn({ up: true });
    expect(await eventually(async () => (await a.getCarrier()) && (await b.getCarrier()))).toBe(true);
    await a.send(ethFrame(100, 99, TEST_TYPE)); // a marker: once it arrives, the worker is past the refused ones
    expect(seqOf((await b.frames().next()).value as Uint8Array)).toBe(99);
    expect((await a.getStats()).txErrors! - errorsBefore).toBe(refused.length);
  });

  it('counts what it sends in the kernel statistics that ip reports', async () => {
    const [a] = await bothUp();
    const before = (await a.getStats()).txPackets!;
    for (let seq = 0; seq < 50; seq++) await a.send(ethFrame(64, seq, TEST_TYPE));
    expect(await eventually(async () => (await a.getStats()).txPackets! >= before + 50)).toBe(true);
    const stats = await a.getStats();
    const kernel = bed.ns.link('va').stats64!;
    expect([stats.txPackets, stats.rxPackets]).toEqual([kernel.tx.packets, kernel.rx.packets]);
    // rtnetlink's IFLA_STATS64 carries every counter.
    expect(Object.values(stats).every((value) => typeof value === 'number')).toBe(true);
  });

  it('maps ethtool link settings to OpenFlow features as OVS does, and reports what the kernel refuses', async () => {
    const [a] = await bothUp();
    const features = await a.getFeatures();
    const sysfs = (file: string) => execFileSync('ip', ['netns', 'exec', bed.ns.name, 'cat', `/sys/class/net/va/${file}`], { encoding: 'utf8' }).trim();
    const tenGigFull = sysfs('speed') === '10000' && sysfs('duplex') === 'full';
    expect((features.current & (1 << 6)) !== 0).toBe(tenGigFull); // OFPPF_10GB_FD
    expect(features.peer).toBe(0);
    // veth has no ethtool set operation: the kernel's EOPNOTSUPP comes through.
    expect((await rejection(a.setAdvertisements(1 << 6))).code).toBe('EOPNOTSUPP');
  });

  it('adds a default route that ip route shows', async () => {
    const dev = await open('va', 'none');
    await dev.turnFlagsOn({ up: true });
    await dev.setIn4('10.80.0.1', 24);
    await dev.addRouter('10.80.0.254');
    const routes = bed.ns.json<{ dst: string; gateway?: string; dev: string }[]>('route', 'show', 'default');
    expect(routes).toEqual([expect.objectContaining({ dst: 'default', gateway: '10.80.0.254', dev: 'va' })]);
  });

  /** `tc -n NS ARGS...` (`json`: with -j, parsed). */
  const tc = (...args: string[]): string => execFileSync('tc', ['-n', bed.ns.name, ...args], { encoding: 'utf8' });
  const tcJson = <T = Record<string, unknown>[]>(...args: string[]): T => JSON.parse(tc('-j', ...args)) as T;
  /** The kinds of va's qdiscs, as tc reports them. */
  const qdiscKinds = (): string[] => tcJson<{ kind: string }[]>('qdisc', 'show', 'dev', 'va').map((q) => q.kind);
  /** An independent probe of the kernel's police action (act_police): a standalone police action in the test namespace. */
  const policeProbe = (): string[] => ['tc', '-n', bed.ns.name, 'actions', 'add', 'action', 'police', 'rate', '1mbit', 'burst', '10k', 'drop'];
  /** What the kernel answers for an action it does not have (no act_police built in or loadable). */
  const NO_POLICE_ACTION = /Failed to load TC action module/;

  /** Every object with `kind: 'police'` anywhere in tc's JSON. */
  function policeActions(value: unknown): unknown[] {
    if (Array.isArray(value)) return value.flatMap(policeActions);
    if (value === null || typeof value !== 'object') return [];
    const own = (value as { kind?: unknown }).kind === 'police' ? [value] : [];
    return [...own, ...Object.values(value).flatMap(policeActions)];
  }

  /**
   * The police action of va's ingress filters as tc shows it: its rate in bit/s and burst in bytes.
   * tc's JSON names the action but leaves rate and burst out (iproute2 prints them to text only),
   * so they are read from the text form: "police 0x1 rate 1Mbit burst 12800b mtu 64Kb action drop".
   */
  function policer(): { rate: number; burst: number; action: string } {
    expect(policeActions(tcJson('filter', 'show', 'dev', 'va', 'ingress'))).toHaveLength(1);
    const text = tc('filter', 'show', 'dev', 'va', 'ingress');
    const match = /\brate (\d+(?:\.\d+)?)([KMGT]?)(i?)bit burst (\d+(?:\.\d+)?)([KM]?)b mtu \S+ action (\w+)/.exec(text);
    if (!match) throw new Error(`no police action in tc's output:\n${text}`);
    const [, rate, rateUnit, iec, burst, burstUnit, action] = match;
    const rateScale = (iec ? 1024 : 1000) ** ' KMGT'.indexOf(rateUnit || ' ');
    const burstScale = 1024 ** ' KM'.indexOf(burstUnit || ' ');
    return { rate: Number(rate) * rateScale, burst: Number(burst) * burstScale, action: action! };
  }

  it('polices with tc as OVS: the rate and burst tc shows (10 kbit of burst by default); rate 0 removes it', async (test) => {
    const dev = await open('va', 'none');
    requireTool(test, 'tc', 'iproute2');
    requireKernelFeature(test, 'the tc police action (act_police)', policeProbe(), NO_POLICE_ACTION);
    // tc reads "kbit" of burst as 1024 bits (128 bytes), as OVS computes the burst; its rate's kbit is 1000 bits/s.
    for (const [kbitsRate, kbitsBurst, burstBytes] of [[1000, 100, 12_800], [2000, 0, 1280], [300, 64, 8192]] as const) {
      await dev.setPolicing(kbitsRate, kbitsBurst);
      expect(qdiscKinds()).toContain('ingress');
      const police = policer();
      expect(police.rate).toBe(kbitsRate * 1000);
      expect(Math.abs(police.burst - burstBytes)).toBeLessThanOrEqual(burstBytes * 0.01); // tc stores the burst as time: it comes back rounded
      expect(police.action).toBe('drop');
    }
    await dev.setPolicing(0);
    expect(qdiscKinds()).not.toContain('ingress');
  });

  it('removes an ingress qdisc with rate 0, and reports tc refusing the police action as EINVAL carrying its words', async () => {
    const dev = await open('va', 'none');
    tc('qdisc', 'add', 'dev', 'va', 'handle', 'ffff:', 'ingress');
    tc('filter', 'add', 'dev', 'va', 'parent', 'ffff:', 'protocol', 'ip', 'prio', '50', 'u32', 'match', 'ip', 'src', '0.0.0.0/0', 'flowid', ':1');
    expect(qdiscKinds()).toContain('ingress');
    await dev.setPolicing(0);
    expect(qdiscKinds()).not.toContain('ingress');
    expect(tcJson('filter', 'show', 'dev', 'va', 'ingress')).toEqual([]);
    // Whether tc can police here is the independent probe's answer, not the library's.
    const probe = spawnSync(policeProbe()[0]!, policeProbe().slice(1), { encoding: 'utf8' });
    const outcome = await dev.setPolicing(1000, 100).then(() => null, (error: NetdevError) => error);
    if (probe.status === 0) {
      expect(outcome).toBeNull();
    } else {
      expect(probe.stderr).toMatch(NO_POLICE_ACTION); // the probe failed for want of the action, not otherwise
      expect(outcome).toBeInstanceOf(NetdevError);
      expect([outcome!.code, outcome!.device, outcome!.call]).toEqual(['EINVAL', 'va', 'setPolicing']);
      expect(outcome!.message).toContain('tc filter add failed');
      expect(outcome!.message).toContain(probe.stderr.trim().split('\n')[0]); // tc's own complaint, e.g. "Failed to load TC action module"
    }
    await dev.setPolicing(0);
    expect(qdiscKinds()).not.toContain('ingress');
  });

  it('answers getVlanVid with ENOENT for a device that is not a VLAN', async () => {
    const dev = await open('va', 'none');
    const error = await rejection(dev.getVlanVid());
    expect([error.code, error.fallback]).toEqual(['ENOENT', 0]);
  });

  it('sees changes made with ip once the notifier reports them, through a monitor', async () => {
    const dev = await open('va', 'none');
    expect(await dev.getMtu()).toBe(1500); // now cached
    const monitor = bed.mgr.monitor();
    monitor.add(dev);
    const notices = monitor[Symbol.asyncIterator]();
    bed.ns.ip('link', 'set', 'va', 'mtu', '1280');
    expect(await notices.next()).toEqual({ value: `${bed.ns.name}/va`, done: false });
    expect(await dev.getMtu()).toBe(1280);
    bed.ns.ip('link', 'set', 'va', 'up');
    expect((await notices.next()).value).toBe(`${bed.ns.name}/va`);
    expect(await dev.getFlags()).toEqual({ up: true, promisc: false });
    bed.ns.ip('link', 'set', 'va', 'down');
    expect((await notices.next()).value).toBe(`${bed.ns.name}/va`);
    expect(await dev.getFlags()).toEqual({ up: false, promisc: false });
    bed.ns.ip('addr', 'add', '10.81.0.1/24', 'dev', 'va');
    expect((await notices.next()).value).toBe(`${bed.ns.name}/va`);
    expect((await dev.getIn4()).address).toBe('10.81.0.1');
  });

  it('ends the frame iterators of a device deleted under I/O with ENODEV, and keeps the others working', async () => {
    const [a, b] = await bothUp();
    const monitor = bed.mgr.monitor();
    monitor.add(a);
    const other = await bed.mgr.open('dummy:still-here');
    const reading = a.frames().next();
    bed.ns.ip('link', 'del', 'va'); // takes vb with it
    const error = await rejection(reading);
    expect(error).toBeInstanceOf(NetdevError);
    expect([error.code, error.device]).toEqual(['ENODEV', 'va']);
    expect(error.message).toContain('deleted');
    expect(monitor.poll()).toBe(`${bed.ns.name}/va`);
    expect((await rejection(a.send(ethFrame(60)))).code).toBe('ENODEV');
    await other.inject(ethFrame(60, 5));
    expect(seqOf((await other.frames().next()).value as Uint8Array)).toBe(5);
    await a.close();
    await b.close();
  });

  /** What ss says of the packet sockets of process `pid`: skmem's fields (r, rb, d ...), and ring_rx's (frm_size, frm_nr ...) with ver and the flags. */
  function packetSockets(pid: number): { skmem: Record<string, number>; ring: Record<string, number>; version: number; flags: string }[] {
    const ss = execFileSync('ip', ['netns', 'exec', bed.ns.name, 'ss', '-0', '-m', '-p', '-n', '-e'], { encoding: 'utf8' });
    // Each socket is a line with its process, then lines of detail starting with a tab.
    const sockets = ss.split(/\n(?!\t)/).filter((text) => text.includes(`pid=${pid},`));
    const fields = (text: string, name: string): Record<string, number> => {
      const list = new RegExp(`${name}:?\\(([^)]*)\\)`).exec(text)?.[1] ?? '';
      return Object.fromEntries(list.split(',').filter(Boolean).map((field) => [/^[a-z_]+/.exec(field)![0], Number(/\d+$/.exec(field)?.[0] ?? NaN)]));
    };
    return sockets.map((text) => ({
      skmem: fields(text, 'skmem'),
      ring: fields(text, 'ring_rx'),
      version: Number(/\bver:(\d+)/.exec(text)?.[1] ?? -1),
      flags: /flags\(([^)]*)\)/.exec(text)?.[1]?.trim() ?? '',
    }));
  }

  /**
   * A child process reading `device` (fixtures/queue-drop-child.mjs: frames of `length` bytes, each
   * checked), and line `n` (from 1) of what it printed, once printed.
   */
  function readerChild(device: string, length: number) {
    const child = spawn(process.execPath, [new URL('./fixtures/queue-drop-child.mjs', import.meta.url).pathname, bed.ns.name, device, String(length)], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const line = async (n: number): Promise<string> => {
      await eventually(() => output.split('\n').length > n, 10_000);
      return output.split('\n')[n - 1]!;
    };
    return { child, line };
  }

  it('counts the frames the kernel drops from a full receive ring in rxQueueDropped, exactly: what reached the device = received + dropped', async (test) => {
    requireTool(test, 'python3', 'python3'); // the flooding peer
    // The reader is a child process, stopped while the peer floods: its receive ring fills and the kernel drops the rest.
    const { child, line } = readerChild('vb', 1500);
    try {
      expect(await line(1)).toBe('ready');
      bed.ns.ip('link', 'set', 'va', 'up');
      expect(await eventually(() => bed.ns.link('vb').flags.includes('LOWER_UP'))).toBe(true);
      const [socket] = packetSockets(child.pid!);
      // ss sees a TPACKET_V2 ring (ver 1) on a socket with vnet headers, of frames a 1500-byte frame fits in.
      expect(socket!.version).toBe(1);
      expect(socket!.flags.split(/\s+/)).toContain('vnethdr');
      expect(socket!.ring.frm_size).toBeGreaterThanOrEqual(1600);
      const frames = 2 * socket!.ring.frm_nr! + 100; // twice what the ring holds
      child.kill('SIGSTOP');
      expect(await eventually(() => /^State:\s+T/m.test(readFileSync(`/proc/${child.pid}/status`, 'utf8')))).toBe(true);
      const rxBefore = bed.ns.link('vb').stats64!.rx.packets;
      const sent = Number(execFileSync('ip', ['netns', 'exec', bed.ns.name, 'python3', RAW_SOCKET, 'flood', 'va', String(frames), '1500'], { encoding: 'utf8' }));
      expect(sent).toBe(frames);
      expect(bed.ns.link('vb').stats64!.rx.packets - rxBefore).toBe(frames); // every frame reached vb
      child.kill('SIGCONT');
      child.stdin.write(`${frames}\n`);
      const result = JSON.parse(await line(2)) as { received: number; corrupted: number; outOfOrder: number; stats: Record<string, number> };
      expect([result.corrupted, result.outOfOrder]).toEqual([0, 0]);
      const { rxRingDropped, rxQueueDropped } = result.stats;
      expect(rxQueueDropped).toBeGreaterThanOrEqual(frames - socket!.ring.frm_nr!);
      expect(result.received + rxRingDropped! + rxQueueDropped!).toBe(frames);
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('receives frames too large for a receive ring frame whole, in order, through the socket\'s queue, also when the device went down and up while they waited', async (test) => {
    requireTool(test, 'python3', 'python3'); // the flooding peer
    for (const dev of ['va', 'vb']) bed.ns.ip('link', 'set', dev, 'mtu', '9000');
    // The reader is a child process, stopped while 4000-byte frames (each a ring entry marked TP_STATUS_COPY, and a whole
    // frame on the socket's queue) pile up; then vb goes down and up, which leaves ENETDOWN pending on its socket.
    const { child, line } = readerChild('vb', 4000);
    try {
      expect(await line(1)).toBe('ready');
      bed.ns.ip('link', 'set', 'va', 'up');
      expect(await eventually(() => bed.ns.link('vb').flags.includes('LOWER_UP'))).toBe(true);
      const frames = 100; // 400 kB: what the reader's RX ring holds
      child.kill('SIGSTOP');
      expect(await eventually(() => /^State:\s+T/m.test(readFileSync(`/proc/${child.pid}/status`, 'utf8')))).toBe(true);
      const sent = Number(execFileSync('ip', ['netns', 'exec', bed.ns.name, 'python3', RAW_SOCKET, 'flood', 'va', String(frames), '4000'], { encoding: 'utf8' }));
      expect(sent).toBe(frames);
      bed.ns.ip('link', 'set', 'vb', 'down');
      bed.ns.ip('link', 'set', 'vb', 'up');
      child.kill('SIGCONT');
      child.stdin.write(`${frames}\n`);
      const result = JSON.parse(await line(2)) as { received: number; corrupted: number; outOfOrder: number; stats: Record<string, number> };
      expect([result.corrupted, result.outOfOrder]).toEqual([0, 0]);
      expect([result.received, result.stats.rxErrors, result.stats.rxRingDropped, result.stats.rxQueueDropped]).toEqual([frames, 0, 0, 0]);
      // Idle now: a queue left unread would keep its socket readable and its worker spinning.
      const cpu = (): number => readFileSync(`/proc/${child.pid}/stat`, 'utf8').split(') ')[1]!.split(' ').slice(11, 13).reduce((sum, ticks) => sum + Number(ticks), 0);
      const before = cpu();
      await new Promise((resolve) => setTimeout(resolve, 1000));
      expect(cpu() - before).toBeLessThan(20); // clock ticks (10 ms each) over one second
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('receives frames of MTU 65535, tagged or not, whole; one too large for a receive slot or the RX ring is counted in rxErrors', async (test) => {
    requireTool(test, 'python3', 'python3'); // the sending peer
    for (const dev of ['va', 'vb']) bed.ns.ip('link', 'set', dev, 'mtu', '65535');
    // A GSO frame larger than any receive slot, which va passes on whole if its driver may (BIG TCP: tso_max_size).
    const bigGso = (bed.ns.json<{ tso_max_size?: number }[]>('-d', 'link', 'show', 'va')[0]!.tso_max_size ?? 0) >= 100_000;
    if (bigGso) bed.ns.ip('link', 'set', 'va', 'gso_max_size', '200000');
    else console.warn('*** this kernel\'s veth takes no GSO frame above 64 KiB: the frame too large for a receive slot is not tried ***');
    const whole = await bed.mgr.open('vb', { netns: bed.ns.name, ethertype: 'any' });
    const smallRing = new NetdevManager();
    try {
      const small = await smallRing.open('vb', { netns: bed.ns.name, ethertype: 'any', ringSize: 65536 }); // records up to 32764 bytes
      await whole.turnFlagsOn({ up: true });
      bed.ns.ip('link', 'set', 'va', 'up');
      expect(await eventually(() => whole.getCarrier())).toBe(true);
      const tagged = (length: number, seq: number): Uint8Array => {
        const frame = ethFrame(length - 4, seq, TEST_TYPE);
        const out = new Uint8Array(length);
        out.set(frame.subarray(0, 12));
        out.set([0x81, 0x00, 0x00, 5], 12);
        out.set(frame.subarray(12), 16);
        return out;
      };
      // The largest frames at MTU 65535: 65549 bytes, 65553 with a tag; a tagged one whose untagged form (65534) just fits 64 KiB.
      const sent = [ethFrame(100, 1, TEST_TYPE), ethFrame(65549, 2, TEST_TYPE), tagged(65553, 3), tagged(65538, 4), ethFrame(100, 6, TEST_TYPE)];
      const lines = sent.map((frame) => Buffer.from(frame).toString('hex'));
      if (bigGso) lines.splice(4, 0, 'gso 100000'); // never delivered, counted
      const receive = async (dev: Netdev): Promise<Uint8Array[]> => {
        const frames: Uint8Array[] = [];
        for await (const frame of dev.frames({ copy: true })) {
          if (frame[6] !== 0x02) continue; // not ours
          frames.push(frame);
          if (frame.length === 100 && seqOf(frame) === 6) return frames;
        }
        return frames;
      };
      const [errorsBefore, smallErrorsBefore] = [(await whole.getStats()).rxErrors!, (await small.getStats()).rxErrors!];
      const received = [receive(whole), receive(small)];
      execFileSync('ip', ['netns', 'exec', bed.ns.name, 'python3', RAW_SOCKET, 'send-lines', 'va'], { input: `${lines.join('\n')}\n` });
      const [frames, smallFrames] = await Promise.all(received);
      expect(frames!.map((frame) => frame.length)).toEqual(sent.map((frame) => frame.length));
      frames!.forEach((frame, i) => expect(Buffer.from(frame).equals(Buffer.from(sent[i]!))).toBe(true));
      expect((await whole.getStats()).rxErrors! - errorsBefore).toBe(bigGso ? 1 : 0);
      expect(smallFrames!.map((frame) => Buffer.from(frame).toString('hex'))).toEqual([lines[0], lines.at(-1)]);
      expect((await small.getStats()).rxErrors! - smallErrorsBefore).toBe(bigGso ? 4 : 3);
    } finally {
      await smallRing.close();
    }
  });

  it('counts in rxRingDropped every frame that finds a reader\'s RX ring full: what the kernel delivered = received + dropped, exactly', async (test) => {
    const reader = await bed.mgr.open('vb', { netns: bed.ns.name, ethertype: TEST_TYPE, ringSize: 65536 }); // room for a few dozen frames of 1000 bytes
    await reader.turnFlagsOn({ up: true });
    bed.ns.ip('link', 'set', 'va', 'up');
    expect(await eventually(() => reader.getCarrier())).toBe(true);
    const [total, length] = [400, 1000];
    const kernelBefore = bed.ns.link('vb').stats64!.rx.packets;
    requireTool(test, 'python3', 'python3');
    // A burst the reader does not read while it comes.
    const sent = Number(execFileSync('ip', ['netns', 'exec', bed.ns.name, 'python3', RAW_SOCKET, 'flood', 'va', String(total), String(length)], { encoding: 'utf8' }));
    expect(sent).toBe(total);
    expect(bed.ns.link('vb').stats64!.rx.packets - kernelBefore).toBe(total); // what the kernel delivered to vb
    const received: number[] = [];
    let bad = '';
    const drops = async () => {
      const stats = await reader.getStats();
      return stats.rxRingDropped! + stats.rxQueueDropped!;
    };
    // Reads what the ring holds (and what the worker still brings) until every frame is accounted for.
    const accounted = await eventually(async () => {
      for (let frame; (frame = reader.tryRecv()) !== null;) {
        const seq = seqOf(frame);
        if (!Buffer.from(frame).equals(Buffer.from(ethFrame(length, seq, TEST_TYPE))) || seq <= (received.at(-1) ?? -1)) bad ||= `frame ${received.length}: seq ${seq}`;
        received.push(seq);
      }
      return received.length + (await drops()) === total;
    });
    const stats = await reader.getStats();
    expect([accounted, bad, received.length + stats.rxRingDropped! + stats.rxQueueDropped!]).toEqual([true, '', total]);
    expect(stats.rxRingDropped).toBeGreaterThan(0);
    expect(received.slice(0, 20)).toEqual(Array.from({ length: 20 }, (_, seq) => seq)); // the ring filled first, then dropped
    // Nothing else is on its way: a marker sent now is the next frame, and the account stays as it is.
    execFileSync('ip', ['netns', 'exec', bed.ns.name, 'python3', RAW_SOCKET, 'send', 'va', Buffer.from(ethFrame(100, 9999, TEST_TYPE)).toString('hex')]);
    expect(seqOf((await reader.frames().next()).value as Uint8Array)).toBe(9999);
    expect(received.length + (await drops())).toBe(total);
  });

  it('enumerates the devices of a namespace', async () => {
    expect((await bed.mgr.enumerate({ netns: bed.ns.name })).sort()).toEqual(['lo', 'va', 'vb']);
  });

  it('drains frames waiting to be received, those too large for a receive ring frame too', async () => {
    for (const dev of ['va', 'vb']) bed.ns.ip('link', 'set', dev, 'mtu', '9000');
    const [a, b] = await bothUp();
    for (let seq = 0; seq < 20; seq++) await a.send(ethFrame(seq % 2 === 0 ? 64 : 4000, seq, TEST_TYPE));
    expect(await eventually(async () => (await b.getStats()).rxPackets! >= 20)).toBe(true);
    await b.drain();
    expect(b.tryRecv()).toBeNull();
    const marker = ethFrame(4000, 99, TEST_TYPE);
    await a.send(marker);
    expect((await b.frames().next()).value as Uint8Array).toEqual(marker);
  });

  it('says EPERM, naming device and call, to a process without the capabilities', () => {
    const child = spawnSync('ip', ['netns', 'exec', bed.ns.name, 'setpriv', '--reuid=65534', '--regid=65534', '--clear-groups',
      '--inh-caps=-all', '--bounding-set=-all', process.execPath, new URL('./fixtures/unprivileged-child.mjs', import.meta.url).pathname, bed.ns.name], { encoding: 'utf8' });
    expect(child.stderr).toBe('');
    const result = JSON.parse(child.stdout) as Record<string, { code: string; device: string; call: string; message: string } | number>;
    expect(result.mtu).toBe(1500);
    expect(result.setMtu).toMatchObject({ code: 'EPERM', device: 'va', call: 'setMtu' });
    expect((result.setMtu as { message: string }).message).toContain('CAP_NET_ADMIN');
    expect(result.openForIo).toMatchObject({ code: 'EPERM', device: 'va' });
    // Entering a namespace (setns) needs CAP_SYS_ADMIN, and the message says so, not the others.
    const inNetns = result.openInNetns as { code: string; message: string };
    expect(inNetns.code).toBe('EPERM');
    expect(inNetns.message).toContain('CAP_SYS_ADMIN');
    expect(inNetns.message).not.toMatch(/CAP_NET_(ADMIN|RAW)/);
    expect(bed.ns.link('va').mtu).toBe(1500);
  });

  it('closes every socket and descriptor it opened when the manager closes', async () => {
    const descriptors = () => readdirSync('/proc/self/fd').length;
    const cycle = async () => {
      const other = new NetdevManager();
      const [a] = [await other.open('va', { netns: bed.ns.name })];
      await a.getStats();
      await other.open('tap:t9', { netns: bed.ns.name, ethertype: 'none' });
      await other.close();
    };
    await cycle(); // the first cycle opens what stays for good (this thread's own namespace)
    const before = descriptors();
    for (let i = 0; i < 5; i++) await cycle();
    expect(descriptors()).toBe(before);
  });

  it('refuses bad names before any syscall, and reports missing devices and namespaces', async () => {
    for (const name of ['sixteen-bytes-xx', 'a/b', 'a b', '.', '..']) {
      expect((await rejection(bed.mgr.open(name, { netns: bed.ns.name }))).code).toBe('EINVAL');
    }
    const missing = await rejection(open('nosuch0', 'none'));
    expect([missing.code, missing.device]).toEqual(['ENODEV', 'nosuch0']);
    expect((await rejection(bed.mgr.open('va', { netns: 'ndt-no-such-namespace' }))).code).toBe('ENOENT');
    expect((await rejection(bed.mgr.open('dummy:a', { netns: bed.ns.name }))).code).toBe('EINVAL');
  });
});
