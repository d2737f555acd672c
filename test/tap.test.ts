import { describe, expect, it } from 'vitest';
import { execFileSync, spawn } from 'node:child_process';
import { ethFrame, eventually, rejection, requireTool, seqOf, untilPrinted } from './helpers.js';
import { freshEachTest, privileged, requirePrivilege } from './netns-harness.js';

const TEST_TYPE = 0x88b5;
const RAW_SOCKET = new URL('./fixtures/raw-socket.py', import.meta.url).pathname;

requirePrivilege('tap provider tests');

describe.skipIf(!privileged)('tap devices in a network namespace of the test run', () => {
  const bed = freshEachTest();

  const links = () => bed.ns.json<{ ifname: string; linkinfo?: { info_kind: string } }[]>('-d', 'link', 'show').map((l) => [l.ifname, l.linkinfo?.info_kind]);

  it('creates the kernel tap on open and removes it on close, unless persistent', async () => {
    const tap = await bed.mgr.open('tap:t0', { netns: bed.ns.name, ethertype: 'none' });
    expect(tap.type).toBe('tap');
    expect(links()).toContainEqual(['t0', 'tun']);
    expect(await tap.getIfindex()).toBe(bed.ns.link('t0').ifindex);
    await tap.close();
    expect(links().map(([name]) => name)).not.toContain('t0');

    const kept = await bed.mgr.open('tap:t1', { netns: bed.ns.name, ethertype: 'none', config: { persist: true } });
    expect(await kept.getConfig()).toEqual({ persist: 'true' });
    expect((await rejection(kept.setConfig({ persist: 'maybe' }))).code).toBe('EINVAL');
    expect((await rejection(kept.setConfig({ colour: 'red' }))).code).toBe('EINVAL');
    await kept.close();
    expect(links()).toContainEqual(['t1', 'tun']);
  });

  it('has the attribute calls of a system device', async () => {
    const tap = await bed.mgr.open('tap:t0', { netns: bed.ns.name, ethertype: 'none' });
    await tap.setMtu(1400);
    await tap.setEtheraddr('02:00:00:00:aa:01');
    await tap.turnFlagsOn({ up: true }, { permanent: true });
    const link = bed.ns.link('t0');
    expect([link.mtu, link.address]).toEqual([1400, '02:00:00:00:aa:01']);
    expect(link.flags).toContain('UP');
  });

  it('writes frames that a plain socket on the kernel side reads, byte for byte', async (test) => {
    const tap = await bed.mgr.open('tap:t0', { netns: bed.ns.name, ethertype: TEST_TYPE });
    await tap.turnFlagsOn({ up: true });
    const frames = [ethFrame(60, 1, TEST_TYPE), ethFrame(200, 2, TEST_TYPE), ethFrame(1514, 3, TEST_TYPE)];
    requireTool(test, 'python3', 'python3');
    const reader = spawn('ip', ['netns', 'exec', bed.ns.name, 'python3', RAW_SOCKET, 'recv', 't0', String(frames.length)]);
    let output = '';
    reader.stdout.on('data', (chunk: Buffer) => (output += chunk));
    await untilPrinted(reader);
    for (const frame of frames) await tap.send(frame);
    await new Promise((resolve) => reader.on('exit', resolve));
    const lines = output.trim().split('\n').slice(1);
    expect(lines).toEqual(frames.map((frame) => Buffer.from(frame).toString('hex')));
  });

  it('receives, padded, the frames the kernel sends through the tap', async (test) => {
    const tap = await bed.mgr.open('tap:t0', { netns: bed.ns.name, ethertype: TEST_TYPE });
    await tap.turnFlagsOn({ up: true });
    const frames = [ethFrame(20, 1, TEST_TYPE), ethFrame(1000, 2, TEST_TYPE)];
    const receiving = tap.frames({ copy: true });
    requireTool(test, 'python3', 'python3');
    execFileSync('ip', ['netns', 'exec', bed.ns.name, 'python3', RAW_SOCKET, 'send', 't0', ...frames.map((f) => Buffer.from(f).toString('hex'))]);
    const first = (await receiving.next()).value as Uint8Array;
    expect(first.length).toBe(60);
    expect(first.subarray(0, 20)).toEqual(frames[0]);
    const second = (await receiving.next()).value as Uint8Array;
    expect(seqOf(second)).toBe(2);
    expect(second).toEqual(frames[1]);
    expect((await tap.getStats()).rxQueueDropped).toBeNull(); // a tap has no packet socket queue
  });
  it('counts in rxRingDropped every frame that finds a reader\'s RX ring full: what the kernel sent through the tap = received + dropped, exactly', async (test) => {
    const tap = await bed.mgr.open('tap:t0', { netns: bed.ns.name, ethertype: TEST_TYPE, ringSize: 65536 }); // room for a few dozen frames of 1000 bytes
    bed.ns.ip('link', 'set', 't0', 'addrgenmode', 'none'); // no IPv6 of the kernel's own through the tap
    await tap.turnFlagsOn({ up: true });
    const [total, length] = [400, 1000];
    const kernel = () => bed.ns.link('t0').stats64!.tx.packets;
    const kernelBefore = kernel();
    requireTool(test, 'python3', 'python3');
    // A burst the reader does not read while it comes.
    const sent = Number(execFileSync('ip', ['netns', 'exec', bed.ns.name, 'python3', RAW_SOCKET, 'flood', 't0', String(total), String(length)], { encoding: 'utf8' }));
    expect(sent).toBe(total);
    const received: number[] = [];
    let bad = '';
    const dropped = async () => (await tap.getStats()).rxRingDropped!;
    const accounted = await eventually(async () => {
      for (let frame; (frame = tap.tryRecv()) !== null;) {
        const seq = seqOf(frame);
        if (!Buffer.from(frame).equals(Buffer.from(ethFrame(length, seq, TEST_TYPE))) || seq <= (received.at(-1) ?? -1)) bad ||= `frame ${received.length}: seq ${seq}`;
        received.push(seq);
      }
      return received.length + (await dropped()) === total;
    });
    expect([accounted, bad, received.length + (await dropped())]).toEqual([true, '', total]);
    expect(kernel() - kernelBefore).toBe(total); // every frame went through the tap to the reader's worker
    expect(bed.ns.link('t0').stats64!.tx).toMatchObject({ dropped: 0 });
    expect(await dropped()).toBeGreaterThan(0);
    expect(received.slice(0, 20)).toEqual(Array.from({ length: 20 }, (_, seq) => seq)); // the ring filled first, then dropped
    // Nothing else is on its way: a marker sent now is the next frame, and the account stays as it is.
    execFileSync('ip', ['netns', 'exec', bed.ns.name, 'python3', RAW_SOCKET, 'send', 't0', Buffer.from(ethFrame(100, 9999, TEST_TYPE)).toString('hex')]);
    expect(seqOf((await tap.frames().next()).value as Uint8Array)).toBe(9999);
    expect(received.length + (await dropped())).toBe(total);
  });
});
