import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { NetdevError, NetdevManager, type Netdev } from '../dist/index.js';
import { ethFrame, eventually, prefixed, rejection, seqOf, sleep, thrown } from './helpers.js';

let mgr: NetdevManager;

beforeEach(() => {
  mgr = new NetdevManager();
});
afterEach(async () => {
  await mgr.close();
});

/** Opens dummy:a and dummy:b linked as a wire, both up. */
async function wire(options: { ringSize?: number } = {}): Promise<[Netdev, Netdev]> {
  const a = await mgr.open('dummy:a', { config: { peer: 'dummy:b' }, ...options });
  const b = await mgr.open('dummy:b', options);
  await a.turnFlagsOn({ up: true });
  await b.turnFlagsOn({ up: true });
  return [a, b];
}

describe('opening and closing', () => {
  it('shares one device between handles of the same name and closes it with the last handle', async () => {
    const first = await mgr.open('dummy:x');
    const second = await mgr.open('dummy:x', { ethertype: 'none' });
    expect(first).not.toBe(second);
    expect(first.name).toBe('dummy:x');
    expect(first.type).toBe('dummy');
    await first.setMtu(1400);
    expect(await second.getMtu()).toBe(1400);
    expect(await prefixed(mgr)).toContain('dummy:x');
    await first.close();
    expect(await second.getMtu()).toBe(1400);
    expect(await prefixed(mgr)).toContain('dummy:x');
    await second.close();
    expect(await prefixed(mgr)).not.toContain('dummy:x');
    // A new open is a new device, with default attributes again.
    const third = await mgr.open('dummy:x');
    expect(await third.getMtu()).toBe(1500);
  });

  it('rejects every call on a closed handle with EBADF, and close is idempotent', async () => {
    const dev = await mgr.open('dummy:x');
    await dev.close();
    await dev.close();
    expect(dev.isOpen).toBe(false);
    expect((await rejection(dev.getMtu())).code).toBe('EBADF');
    expect(thrown(() => dev.trySend(ethFrame(60))).code).toBe('EBADF');
    expect(thrown(() => dev.frames()).code).toBe('EBADF');
  });

  it('refuses bad names, prefixes, ethertypes and ring sizes with clear errors', async () => {
    for (const name of ['', 'dummy:', 'dummy:a b', 'dummy:' + 'x'.repeat(65), 'dummy:a/b']) {
      const error = await rejection(mgr.open(name));
      expect(error).toBeInstanceOf(NetdevError);
      expect(error.code).toBe('EINVAL');
    }
    expect((await rejection(mgr.open(42 as unknown as string))).code).toBe('EINVAL');
    const unknown = await rejection(mgr.open('nope:x'));
    expect(unknown.code).toBe('EAFNOSUPPORT');
    expect(unknown.message).toContain("no provider for prefix 'nope:'");
    for (const ethertype of [-1, 0x10000, 1.5, 'ip', {}]) {
      expect((await rejection(mgr.open('dummy:x', { ethertype: ethertype as never }))).code).toBe('EINVAL');
    }
    for (const ringSize of [0, -5, 2 ** 31, 3.5]) {
      expect((await rejection(mgr.open('dummy:x', { ringSize }))).code).toBe('EINVAL');
    }
    // Nothing half-opened was left behind.
    expect(await prefixed(mgr)).toEqual([]);
  });

  it('says whether a device exists, as OVS: dummies exist, unknown prefixes do not', async () => {
    expect(await mgr.exists('dummy:anything')).toBe(true);
    expect(await mgr.exists('nope:x')).toBe(false);
    expect(await mgr.exists('dummy:bad name')).toBe(false);
    expect(await prefixed(mgr)).toEqual([]);
  });

  it('refuses a second I/O open with another ethertype (EBUSY), but not a control-only one', async () => {
    await mgr.open('dummy:x', { ethertype: 'any' });
    expect((await rejection(mgr.open('dummy:x', { ethertype: 0x0806 }))).code).toBe('EBUSY');
    await expect(mgr.open('dummy:x', { ethertype: 'none' })).resolves.toBeTruthy();
  });

  it('gives control-only handles no I/O: EPIPE as OVS', async () => {
    const dev = await mgr.open('dummy:x', { ethertype: 'none' });
    expect(thrown(() => dev.trySend(ethFrame(60))).code).toBe('EPIPE');
    expect(thrown(() => dev.frames()).code).toBe('EPIPE');
    expect((await rejection(dev.inject(ethFrame(60)))).code).toBe('EPIPE');
  });

  it('closes everything on mgr.close(): handles closed, iterators ended, manager unusable', async () => {
    const [, b] = await wire();
    const reading = b.frames().next();
    await mgr.close();
    expect(await reading).toEqual({ value: undefined, done: true });
    expect(b.isOpen).toBe(false);
    expect((await rejection(mgr.open('dummy:y'))).code).toBe('EBADF');
  });
});

describe('attributes', () => {
  it('gets and sets the MAC address, refusing bad and multicast ones', async () => {
    const dev = await mgr.open('dummy:x');
    expect(await dev.getEtheraddr()).toMatch(/^02:00(:[0-9a-f]{2}){4}$/);
    await dev.setEtheraddr('02:00:00:00:00:01');
    expect(await dev.getEtheraddr()).toBe('02:00:00:00:00:01');
    await dev.setEtheraddr('0A-0B-0C-0D-0E-0F');
    expect(await dev.getEtheraddr()).toBe('0a:0b:0c:0d:0e:0f');
    for (const bad of ['zz:00:00:00:00:01', '02:00:00:00:01', '02:00:00:00:00:01:02', '', '0200.0000.0001']) {
      const error = await rejection(dev.setEtheraddr(bad));
      expect(error.code).toBe('EINVAL');
      expect(error.device).toBe('dummy:x');
      expect(error.call).toBe('setEtheraddr');
      expect(error.errno).toBe(22);
    }
    expect((await rejection(dev.setEtheraddr('01:00:5e:00:00:01'))).message).toContain('multicast');
    expect(await dev.getEtheraddr()).toBe('0a:0b:0c:0d:0e:0f');
  });

  it('gets and sets the MTU within 68-65535', async () => {
    const dev = await mgr.open('dummy:x');
    expect(await dev.getMtu()).toBe(1500);
    await dev.setMtu(9000);
    expect(await dev.getMtu()).toBe(9000);
    for (const bad of [67, 65536, 1500.5]) expect((await rejection(dev.setMtu(bad))).code).toBe('EINVAL');
    expect(await dev.getMtu()).toBe(9000);
  });

  it('keeps IPv4 and IPv6 addresses, with EADDRNOTAVAIL and the OVS fallback when there is none', async () => {
    const dev = await mgr.open('dummy:x');
    const none = await rejection(dev.getIn4());
    expect(none.code).toBe('EADDRNOTAVAIL');
    expect(none.fallback).toEqual({ address: '0.0.0.0', netmask: '0.0.0.0', prefixLength: 0 });
    await dev.setIn4('10.1.2.3', '255.255.255.0');
    expect(await dev.getIn4()).toEqual({ address: '10.1.2.3', netmask: '255.255.255.0', prefixLength: 24 });
    await dev.setIn4('10.1.2.4', 20);
    expect(await dev.getIn4()).toEqual({ address: '10.1.2.4', netmask: '255.255.240.0', prefixLength: 20 });
    for (const [address, mask] of [['10.1.2', 24], ['300.1.1.1', 24], ['10.0.0.1', '255.0.255.0'], ['10.0.0.1', 33], ['10.0.0.1', 'x']] as const) {
      expect((await rejection(dev.setIn4(address, mask))).code).toBe('EINVAL');
    }
    expect(await mgr.findByIn4('10.1.2.4')).toBe('dummy:x');
    expect(await mgr.findByIn4('10.9.9.9')).toBeNull();
    await dev.setIn4('0.0.0.0', 0);
    expect((await rejection(dev.getIn4())).code).toBe('EADDRNOTAVAIL');

    expect((await rejection(dev.getIn6())).code).toBe('EADDRNOTAVAIL');
    await dev.setIn6('FD00:0:0:0::1', 64);
    expect(await dev.getIn6()).toBe('fd00::1');
    expect((await rejection(dev.setIn6('fd00::g'))).code).toBe('EINVAL');
    expect((await rejection(dev.setIn6('fd00::1', 129))).code).toBe('EINVAL');
  });

  it('answers unsupported calls with EOPNOTSUPP and getVlanVid with ENOENT, as OVS', async () => {
    const dev = await mgr.open('dummy:x');
    const unsupported: [string, Promise<unknown>][] = [
      ['getIfindex', dev.getIfindex()],
      ['getFeatures', dev.getFeatures()],
      ['setAdvertisements', dev.setAdvertisements(1)],
      ['setPolicing', dev.setPolicing(1000, 100)],
      ['addRouter', dev.addRouter('10.0.0.1')],
      ['arpLookup', dev.arpLookup('10.0.0.1')],
    ];
    for (const [call, promise] of unsupported) {
      const error = await rejection(promise);
      expect(error.code).toBe('EOPNOTSUPP');
      expect(error.call).toBe(call);
      expect(error.errno).toBe(95);
    }
    expect((await rejection(dev.arpLookup('10.0.0.1'))).fallback).toBe('00:00:00:00:00:00');
    const vlan = await rejection(dev.getVlanVid());
    expect(vlan.code).toBe('ENOENT');
    expect(vlan.fallback).toBe(0);
    // Bad arguments are refused before the provider is asked.
    expect((await rejection(dev.arpLookup('nope'))).code).toBe('EINVAL');
    expect((await rejection(dev.setPolicing(-1))).code).toBe('EINVAL');
  });

  it('validates config: unknown keys and bad peers are EINVAL naming the key, and nothing changes', async () => {
    const dev = await mgr.open('dummy:x');
    expect(await dev.getConfig()).toEqual({});
    const unknown = await rejection(dev.setConfig({ colour: 'blue' }));
    expect(unknown.code).toBe('EINVAL');
    expect(unknown.message).toContain("'colour'");
    for (const peer of ['dummy:x', 'x', 'bad name', 'tap:y']) {
      const error = await rejection(dev.setConfig({ peer }));
      expect(error.code).toBe('EINVAL');
      expect(error.message).toContain("'peer'");
    }
    expect((await rejection(dev.setConfig({ peer: {} as never }))).code).toBe('EINVAL');
    expect(await dev.getConfig()).toEqual({});
    const open = await rejection(mgr.open('dummy:y', { config: { nope: 1 } }));
    expect(open.code).toBe('EINVAL');
    expect(await prefixed(mgr)).toEqual(['dummy:x']);
  });

  it('links both ends from either end, relinks, and unlinks', async () => {
    const a = await mgr.open('dummy:a', { config: { peer: 'b' } });
    const b = await mgr.open('dummy:b');
    expect(await a.getConfig()).toEqual({ peer: 'dummy:b' });
    expect(await b.getConfig()).toEqual({ peer: 'dummy:a' });
    const c = await mgr.open('dummy:c', { config: { peer: 'dummy:b' } });
    expect(await a.getConfig()).toEqual({});
    expect(await b.getConfig()).toEqual({ peer: 'dummy:c' });
    await c.setConfig({ peer: '' });
    expect(await b.getConfig()).toEqual({});
    expect(await c.getConfig()).toEqual({});
  });

  it('has carrier while both ends are open and up', async () => {
    const [a, b] = await wire();
    expect(await a.getCarrier()).toBe(true);
    await b.turnFlagsOff({ up: true });
    expect(await a.getCarrier()).toBe(false);
    await b.turnFlagsOn({ up: true });
    expect(await a.getCarrier()).toBe(true);
    await b.close();
    expect(await a.getCarrier()).toBe(false);
    // The link is remembered while one end is open: reopening the peer restores carrier once up.
    const again = await mgr.open('dummy:b');
    expect(await again.getConfig()).toEqual({ peer: 'dummy:a' });
    await again.turnFlagsOn({ up: true });
    expect(await a.getCarrier()).toBe(true);
  });

  it('bumps changeSeq on each change, not on reads or no-op sets', async () => {
    const dev = await mgr.open('dummy:x');
    const start = dev.changeSeq;
    await dev.getMtu();
    await dev.setMtu(1500);
    expect(dev.changeSeq).toBe(start);
    await dev.setMtu(1400);
    await dev.setEtheraddr('02:00:00:00:00:09');
    await dev.turnFlagsOn({ promisc: true });
    await dev.setIn4('10.0.0.1', 8);
    expect(dev.changeSeq).toBe(start + 4);
  });
});

describe('flags', () => {
  it('sets, turns on and off, and refuses unknown flags', async () => {
    const dev = await mgr.open('dummy:x');
    expect(await dev.getFlags()).toEqual({ up: false, promisc: false });
    await dev.turnFlagsOn({ up: true, promisc: true });
    expect(await dev.getFlags()).toEqual({ up: true, promisc: true });
    await dev.turnFlagsOff({ promisc: true });
    expect(await dev.getFlags()).toEqual({ up: true, promisc: false });
    await dev.setFlags({ promisc: true });
    expect(await dev.getFlags()).toEqual({ up: false, promisc: true });
    expect((await rejection(dev.turnFlagsOn({ loud: true } as never))).code).toBe('EINVAL');
    expect((await rejection(dev.turnFlagsOn({ up: 1 } as never))).code).toBe('EINVAL');
  });

  it("restores a handle's non-permanent changes when it closes, while another handle keeps the device open", async () => {
    const keeper = await mgr.open('dummy:x');
    await keeper.turnFlagsOn({ up: true }, { permanent: true });
    const changer = await mgr.open('dummy:x');
    await changer.turnFlagsOn({ promisc: true });
    await changer.turnFlagsOff({ up: true });
    expect(await keeper.getFlags()).toEqual({ up: false, promisc: true });
    await changer.close();
    expect(await keeper.getFlags()).toEqual({ up: true, promisc: false });
  });

  it('keeps permanent changes on close', async () => {
    const keeper = await mgr.open('dummy:x');
    const changer = await mgr.open('dummy:x');
    await changer.turnFlagsOn({ promisc: true }, { permanent: true });
    await changer.close();
    expect(await keeper.getFlags()).toEqual({ up: false, promisc: true });
  });
});

describe('frames over a dummy wire', () => {
  it('delivers what one end sends to the other, padded to 60 bytes, and counts it', async () => {
    const [a, b] = await wire();
    await a.send(ethFrame(20, 7));
    await a.send(ethFrame(1514, 8));
    const frames = b.frames({ copy: true });
    const first = (await frames.next()).value as Uint8Array;
    expect(first.length).toBe(60);
    expect(first.subarray(0, 20)).toEqual(ethFrame(20, 7));
    expect(first.subarray(20).every((byte) => byte === 0)).toBe(true);
    const second = (await frames.next()).value as Uint8Array;
    expect(second).toEqual(ethFrame(1514, 8));
    await frames.return!();
    const sent = await a.getStats();
    const received = await b.getStats();
    expect(sent).toMatchObject({ txPackets: 2, txBytes: 1534, txDropped: 0 });
    expect(received).toMatchObject({ rxPackets: 2, rxBytes: 1534, multicast: 2, rxRingDropped: 0 });
    expect(received.collisions).toBeNull();
    expect(received.rxQueueDropped).toBeNull(); // no kernel queue in between
  });

  it('keeps frames in order and intact through batches, losing none that is not counted as a drop', async () => {
    const [a, b] = await wire();
    const total = 20_000;
    let received = 0;
    let last = -1;
    let bad = '';
    const receiving = (async () => {
      for await (const batch of b.batches({ max: 64 })) {
        if (batch.length === 0 || batch.length > 64) bad ||= `batch of ${batch.length}`;
        for (const frame of batch) {
          const seq = seqOf(frame);
          if (seq <= last) bad ||= `frame ${seq} after ${last}`;
          const expected = ethFrame(64 + (seq % 1400), seq);
          if (!Buffer.from(frame).equals(expected)) bad ||= `frame ${seq} damaged`;
          last = seq;
          received++;
        }
      }
    })();
    for (let seq = 0; seq < total; seq++) {
      await a.send(ethFrame(64 + (seq % 1400), seq));
      if (seq % 128 === 0) await new Promise((resolve) => setImmediate(resolve));
    }
    // Everything left a, everything on the wire reached b, and b's reader has had all it kept.
    const accounted = async () => {
      const [sent, got] = [await a.getStats(), await b.getStats()];
      return sent.txPackets! + sent.txDropped! === total && got.rxPackets! + got.rxDropped! === sent.txPackets && received + got.rxRingDropped! === got.rxPackets;
    };
    await eventually(accounted); // then the counts must tie exactly:
    const [sent, got] = [await a.getStats(), await b.getStats()];
    // A full wire is backpressure: a drops nothing, and b receives every frame a sent.
    expect([sent.txPackets, sent.txDropped, sent.txErrors]).toEqual([total, 0, 0]);
    expect([got.rxPackets, got.rxDropped, got.rxErrors]).toEqual([total, 0, 0]);
    // What the RX ring could not hold is counted, frame for frame.
    expect(received + got.rxRingDropped!).toBe(total);
    await b.close();
    await receiving;
    expect(bad).toBe('');
    expect(received).toBeGreaterThan(0);
  });

  it('drops and counts frames sent with no peer open, or while down', async () => {
    const a = await mgr.open('dummy:a', { config: { peer: 'dummy:b' } });
    await a.turnFlagsOn({ up: true });
    const dropped = async (n: number) => (await a.getStats()).txDropped === n;
    for (let i = 0; i < 5; i++) await a.send(ethFrame(60, i));
    expect(await eventually(() => dropped(5))).toBe(true);
    const b = await mgr.open('dummy:b');
    for (let i = 0; i < 3; i++) await a.send(ethFrame(60, i));
    expect(await eventually(() => dropped(8))).toBe(true);
    await b.turnFlagsOn({ up: true });
    await a.send(ethFrame(60, 99));
    expect(seqOf((await b.frames().next()).value as Uint8Array)).toBe(99);
    const stats = await a.getStats();
    expect(stats.txDropped).toBe(8);
    expect(stats.txPackets).toBe(1);
  });

  it('filters by ethertype like an AF_PACKET socket', async () => {
    const a = await mgr.open('dummy:a', { config: { peer: 'dummy:b' } });
    const b = await mgr.open('dummy:b', { ethertype: 0x0806 });
    await a.turnFlagsOn({ up: true });
    await b.turnFlagsOn({ up: true });
    await a.send(ethFrame(60, 1, 0x0800));
    await a.send(ethFrame(60, 2, 0x0806));
    const frame = (await b.frames().next()).value as Uint8Array;
    expect(seqOf(frame)).toBe(2);
    expect((await b.getStats()).rxPackets).toBe(2);
  });

  it('receives only 802.2 frames with ethertype 802.2', async () => {
    const a = await mgr.open('dummy:a', { config: { peer: 'dummy:b' } });
    const b = await mgr.open('dummy:b', { ethertype: '802.2' });
    await a.turnFlagsOn({ up: true });
    await b.turnFlagsOn({ up: true });
    await a.send(ethFrame(60, 1, 0x0800));
    await a.send(ethFrame(60, 2, 46));
    expect(seqOf((await b.frames().next()).value as Uint8Array)).toBe(2);
  });

  it('refuses oversize and undersize frames with EMSGSIZE, following the MTU', async () => {
    const [a, b] = await wire();
    const frames = b.frames({ copy: true });
    expect(a.maxFrame).toBe(1518);
    const big = thrown(() => a.trySend(ethFrame(1515)));
    expect([big.code, big.device, big.call]).toEqual(['EMSGSIZE', 'dummy:a', 'trySend']);
    expect(big.message).toContain('frame is 1515 bytes; the device takes 14 to 1514');
    // 13 bytes is less than an Ethernet header: refused by every call; 14 bytes is a frame (padded to 60 on receive).
    expect(thrown(() => a.trySend(ethFrame(13))).code).toBe('EMSGSIZE');
    expect((await rejection(a.send(ethFrame(13)))).code).toBe('EMSGSIZE');
    expect((await rejection(a.inject(ethFrame(13)))).code).toBe('EMSGSIZE');
    expect(thrown(() => a.trySend('frame' as never)).code).toBe('EINVAL');
    const header = ethFrame(14, 0, 0x0801);
    await a.send(header);
    const short = (await frames.next()).value as Uint8Array;
    expect(short.length).toBe(60);
    expect(short.subarray(0, 14)).toEqual(header);
    expect(short.subarray(14).every((byte) => byte === 0)).toBe(true);
    // A tagged frame (802.1Q or 802.1ad) may be 4 bytes longer: MTU + 18, not one byte more.
    for (const tpid of [0x8100, 0x88a8]) {
      const over = thrown(() => a.trySend(ethFrame(1519, 0, tpid)));
      expect(over.code).toBe('EMSGSIZE');
      expect(over.message).toContain('frame is 1519 bytes; the device takes 14 to 1518');
      expect(a.trySend(ethFrame(1518, tpid, tpid))).toBe(true);
      expect((await frames.next()).value).toEqual(ethFrame(1518, tpid, tpid));
    }
    expect(a.trySend(ethFrame(1514, 1))).toBe(true);
    expect((await frames.next()).value).toEqual(ethFrame(1514, 1));
    await a.setMtu(9000);
    await b.setMtu(9000);
    expect(a.maxFrame).toBe(9018);
    expect(a.trySend(ethFrame(9014, 2))).toBe(true);
    expect((await frames.next()).value).toEqual(ethFrame(9014, 2));
    // One bad frame in a batch, wherever it is: EMSGSIZE naming it, and none of the batch queued.
    for (const [bad, at] of [[ethFrame(9100), 1], [ethFrame(13), 2], [ethFrame(9023, 0, 0x8100), 0]] as const) {
      const batch = [ethFrame(60, 10), ethFrame(60, 11), ethFrame(60, 12)];
      batch[at] = bad;
      const error = thrown(() => a.trySendBatch(batch));
      expect([error.code, error.call]).toEqual(['EMSGSIZE', 'trySendBatch']);
      expect(error.message).toContain(`frame ${at} is ${bad.length} bytes`);
      expect((await rejection(a.sendBatch(batch))).code).toBe('EMSGSIZE');
    }
    // A marker sent after them is the next frame b receives: nothing of those batches went out.
    await a.send(ethFrame(60, 99));
    expect(seqOf((await frames.next()).value as Uint8Array)).toBe(99);
    expect((await a.getStats()).txPackets).toBe(6);
  });

  it('drops frames over the receiving end\'s MTU and counts them', async () => {
    const [a, b] = await wire();
    await a.setMtu(9000);
    await a.send(ethFrame(5000, 1));
    await a.send(ethFrame(100, 2));
    expect(seqOf((await b.frames().next()).value as Uint8Array)).toBe(2);
    expect((await b.getStats()).rxDropped).toBe(1);
  });

  it('drops and counts frames when the RX ring is full, never delivering a damaged one', async () => {
    const [a, b] = await wire({ ringSize: 4096 });
    const total = 500;
    for (let seq = 0; seq < total; seq++) await a.send(ethFrame(200, seq));
    // Let the workers move everything before anybody reads.
    let stats = await b.getStats();
    for (let i = 0; i < 200 && (stats.rxPackets ?? 0) + (stats.rxDropped ?? 0) < total; i++) {
      await sleep(5);
      stats = await b.getStats();
    }
    // The wire dropped nothing (a full wire is backpressure): every frame reached b.
    expect((await a.getStats()).txDropped).toBe(0);
    expect(stats.rxPackets).toBe(total);
    let delivered = 0;
    let last = -1;
    for (let frame = b.tryRecv(); frame; frame = b.tryRecv()) {
      expect(frame).toEqual(ethFrame(200, seqOf(frame)));
      expect(seqOf(frame)).toBeGreaterThan(last);
      last = seqOf(frame);
      delivered++;
    }
    stats = await b.getStats();
    expect(stats.rxRingDropped).toBeGreaterThan(0);
    expect(delivered + stats.rxRingDropped!).toBe(total);
  });

  it('returns null from tryRecv and false from trySend when it would block, and send waits instead', async () => {
    const [a, b] = await wire({ ringSize: 4096 });
    expect(b.tryRecv()).toBeNull();
    const frame = ethFrame(1500);
    let refused = false;
    for (let i = 0; i < 100_000 && !refused; i++) refused = !a.trySend(frame);
    expect(refused).toBe(true);
    await expect(a.send(frame)).resolves.toBeUndefined();
  });

  it('sendBatch queues a batch larger than the TX ring, in order, waiting for room', async () => {
    // a's TX ring holds 8 of these frames; b's RX ring (default size) holds them all.
    const a = await mgr.open('dummy:a', { config: { peer: 'dummy:b' }, ringSize: 8192 });
    const b = await mgr.open('dummy:b');
    await a.turnFlagsOn({ up: true });
    await b.turnFlagsOn({ up: true });
    const frames = Array.from({ length: 200 }, (_, seq) => ethFrame(1000, seq));
    const received: number[] = [];
    const receiving = (async () => {
      for await (const frame of b.frames()) {
        received.push(seqOf(frame));
        if (received.length === frames.length) break;
      }
    })();
    await a.sendBatch(frames);
    await receiving;
    expect(received).toEqual(frames.map((_, seq) => seq));
  });

  it('injects frames as if received', async () => {
    const dev = await mgr.open('dummy:x');
    await dev.inject(ethFrame(30, 5));
    const frame = (await dev.frames().next()).value as Uint8Array;
    expect(frame.length).toBe(60);
    expect(seqOf(frame)).toBe(5);
    expect((await dev.getStats()).rxPackets).toBe(1);
  });

  it('drains frames waiting to be received', async () => {
    const dev = await mgr.open('dummy:x');
    for (let i = 0; i < 10; i++) await dev.inject(ethFrame(60, i));
    await dev.drain();
    expect(dev.tryRecv()).toBeNull();
    await dev.inject(ethFrame(60, 42));
    expect(seqOf((await dev.frames().next()).value as Uint8Array)).toBe(42);
  });

  it('lets one iterator read a device at a time (EBUSY), and frees it when the loop ends', async () => {
    const dev = await mgr.open('dummy:x');
    const other = await mgr.open('dummy:x');
    const frames = dev.frames();
    expect(thrown(() => other.batches()).code).toBe('EBUSY');
    expect(thrown(() => dev.tryRecv()).code).toBe('EBUSY');
    await frames.return!();
    await dev.inject(ethFrame(60, 3));
    for await (const frame of other.frames()) {
      expect(seqOf(frame)).toBe(3);
      break;
    }
    expect(dev.tryRecv()).toBeNull();
  });

  // b's RX ring of 4096 bytes holds 20 frames of 200 bytes: 100 frames wrap it five times.
  const WRAP_FRAMES = 100;
  const ROUND = 10;

  /** Takes `count` frames that have arrived at a device, and returns what it keeps. */
  type Take = (count: number) => Promise<Uint8Array[]>;

  /**
   * Sends WRAP_FRAMES frames of 200 bytes a -> b in rounds of ROUND (fewer than b's RX ring holds,
   * so none is dropped); once b has received a round, the reader `reader(b)` made takes it.
   * Returns every frame the reader kept.
   */
  async function keepThroughWraps(reader: (b: Netdev) => Take): Promise<Uint8Array[]> {
    const a = await mgr.open('dummy:a', { config: { peer: 'dummy:b' } });
    const b = await mgr.open('dummy:b', { ringSize: 4096 });
    await a.turnFlagsOn({ up: true });
    await b.turnFlagsOn({ up: true });
    const take = reader(b);
    const kept: Uint8Array[] = [];
    for (let seq = 0; seq < WRAP_FRAMES; seq += ROUND) {
      for (let i = seq; i < seq + ROUND; i++) await a.send(ethFrame(200, i));
      expect(await eventually(async () => (await b.getStats()).rxPackets === seq + ROUND)).toBe(true);
      kept.push(...(await take(ROUND)));
    }
    expect((await b.getStats()).rxRingDropped).toBe(0);
    return kept;
  }

  /** Checks every byte of every kept frame, and that they are frames 0 .. WRAP_FRAMES - 1 in order. */
  function expectIntactCopies(kept: Uint8Array[]): void {
    expect(kept.map(seqOf)).toEqual(Array.from({ length: WRAP_FRAMES }, (_, seq) => seq));
    const damaged = kept.filter((frame) => !Buffer.from(frame).equals(ethFrame(200, seqOf(frame))));
    expect(damaged.map(seqOf)).toEqual([]);
  }

  it('frames({ copy: true }) hands out copies that stay intact after the RX ring has wrapped many times', async () => {
    const kept = await keepThroughWraps((b) => {
      const frames = b.frames({ copy: true });
      return async (count) => {
        const out: Uint8Array[] = [];
        while (out.length < count) out.push((await frames.next()).value as Uint8Array);
        return out;
      };
    });
    expectIntactCopies(kept);
  });

  it('batches({ copy: true }) hands out arrays of copies that stay intact after the RX ring has wrapped many times', async () => {
    const batches: Uint8Array[][] = [];
    const kept = await keepThroughWraps((b) => {
      const iterator = b.batches({ copy: true, max: 4 });
      return async (count) => {
        const out: Uint8Array[] = [];
        while (out.length < count) {
          const batch = (await iterator.next()).value as Uint8Array[];
          batches.push(batch);
          out.push(...batch);
        }
        return out;
      };
    });
    expectIntactCopies(kept);
    // Each batch is an array of its own, still holding what it held.
    expectIntactCopies(batches.flat());
    expect(new Set(batches).size).toBe(batches.length);
  });

  it('tryRecv() returns copies that stay intact after the RX ring has wrapped many times', async () => {
    const kept = await keepThroughWraps((b) => async (count) => {
      const out: Uint8Array[] = [];
      for (let frame = b.tryRecv(); frame; frame = b.tryRecv()) out.push(frame);
      expect(out.length).toBe(count);
      return out;
    });
    expectIntactCopies(kept);
  });

  for (const take of ['frames', 'batches'] as const) {
    it(`${take}() hands out views into the RX ring: a frame kept past its step is overwritten once the ring wraps`, async () => {
      let first: Uint8Array | null = null;
      await keepThroughWraps((b) => {
        const frames = take === 'frames' ? b.frames() : null;
        const batches = take === 'batches' ? b.batches({ max: 1 }) : null;
        return async (count) => {
          for (let i = 0; i < count; i++) {
            const frame = frames ? ((await frames.next()).value as Uint8Array) : ((await batches!.next()).value as Uint8Array[])[0]!;
            first ??= frame;
          }
          return [];
        };
      });
      // Frame 0 was the first record of the ring; frames 20, 40, 60 and 80 were written over it since.
      expect(seqOf(first!)).toBe(80);
      expect(first).toEqual(ethFrame(200, 80));
    });
  }

  it('ends a waiting iterator when its handle closes', async () => {
    const dev = await mgr.open('dummy:x');
    const waiting = dev.frames().next();
    await sleep(20);
    await dev.close();
    expect(await waiting).toEqual({ value: undefined, done: true });
  });
});
