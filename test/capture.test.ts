import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NetdevError, NetdevManager, readPcap, type Netdev } from '../dist/index.js';
import { ethFrame, eventually, rejection, requireTool, seqOf } from './helpers.js';

let mgr: NetdevManager;
let dir: string;

beforeEach(() => {
  mgr = new NetdevManager();
  dir = mkdtempSync(join(tmpdir(), 'netdev-pcap-'));
});
afterEach(async () => {
  await mgr.close();
  rmSync(dir, { recursive: true, force: true });
});

async function wire(): Promise<[Netdev, Netdev]> {
  const a = await mgr.open('dummy:a', { config: { peer: 'dummy:b' } });
  const b = await mgr.open('dummy:b');
  await a.turnFlagsOn({ up: true });
  await b.turnFlagsOn({ up: true });
  return [a, b];
}

/** Sends 5 frames a -> b and 3 frames b -> a, and waits until a has received its 3. */
async function traffic(a: Netdev, b: Netdev): Promise<void> {
  for (let seq = 0; seq < 5; seq++) await a.send(ethFrame(100 + seq, seq));
  for (let seq = 10; seq < 13; seq++) await b.send(ethFrame(30, seq));
  expect(await eventually(async () => (await a.getStats()).rxPackets === 3)).toBe(true);
}

const records = (path: string) => [...readPcap(readFileSync(path), path)];

describe('capture', () => {
  it('writes a pcap file of what the device sends and receives, that tcpdump and tshark read', async (test) => {
    const [a, b] = await wire();
    const path = join(dir, 'both.pcap');
    const started = Date.now();
    const capture = await a.capture(path);
    await traffic(a, b);
    await capture.close();
    expect([capture.frames, capture.dropped]).toEqual([8, 0]);
    const frames = records(path);
    const sent = frames.filter((r) => r.frame.length > 60).map((r) => Buffer.from(r.frame));
    expect(sent).toEqual([0, 1, 2, 3, 4].map((seq) => Buffer.from(ethFrame(100 + seq, seq))));
    const received = frames.filter((r) => r.frame.length === 60);
    expect(received.map((r) => seqOf(r.frame))).toEqual([10, 11, 12]);
    for (const { timeNs } of frames) {
      expect(Number(timeNs / 1_000_000n)).toBeGreaterThanOrEqual(started - 1);
      expect(Number(timeNs / 1_000_000n)).toBeLessThanOrEqual(Date.now() + 1);
    }
    requireTool(test, 'tcpdump', 'tcpdump');
    const tcpdump = execFileSync('tcpdump', ['-e', '-nn', '-r', path], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    expect(tcpdump.trim().split('\n')).toHaveLength(8);
    expect(tcpdump).toContain('ethertype IPv4 (0x0800), length 104');
    requireTool(test, 'tshark', 'tshark');
    const tshark = execFileSync('tshark', ['-r', path, '-T', 'fields', '-e', 'frame.len'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    expect(tshark.trim().split('\n').map(Number).sort((x, y) => x - y)).toEqual([60, 60, 60, 100, 101, 102, 103, 104]);
  });

  it('captures one direction, with nanosecond timestamps if asked', async (test) => {
    const [a, b] = await wire();
    const rxPath = join(dir, 'rx.pcap');
    const capture = await a.capture(rxPath, { direction: 'rx', nanoseconds: true });
    await traffic(a, b);
    await capture.close();
    expect(records(rxPath).map((r) => seqOf(r.frame))).toEqual([10, 11, 12]);
    expect(readFileSync(rxPath).readUInt32LE(0)).toBe(0xa1b23c4d);

    const txPath = join(dir, 'tx.pcap');
    const tx = await b.capture(txPath, { direction: 'tx' });
    await b.send(ethFrame(64, 42));
    await a.send(ethFrame(64, 43));
    // b has transmitted 42 once a has it (a had 3), and received 43 once b has 6.
    expect(await eventually(async () => (await a.getStats()).rxPackets === 4 && (await b.getStats()).rxPackets === 6)).toBe(true);
    await tx.close();
    expect([tx.frames, tx.dropped]).toEqual([1, 0]);
    expect(records(txPath).map((r) => seqOf(r.frame))).toEqual([42]);
    requireTool(test, 'tcpdump', 'tcpdump');
    const tcpdump = execFileSync('tcpdump', ['-nn', '--nano', '-r', rxPath], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    expect(tcpdump.trim().split('\n')).toHaveLength(3);
  });

  it('runs several captures of one device at once, ends them with the device, and reports a bad path', async () => {
    const [a, b] = await wire();
    const path = join(dir, 'closing.pcap');
    const second = join(dir, 'second.pcap');
    await a.capture(path);
    await a.capture(second, { direction: 'tx' });
    await a.send(ethFrame(80, 1));
    await b.frames().next();
    await a.close(); // closes both captures: the files are complete
    expect(records(path).map((r) => seqOf(r.frame))).toEqual([1]);
    expect(records(second).map((r) => seqOf(r.frame))).toEqual([1]);
    const bad = await rejection(b.capture('/nonexistent/dir/x.pcap'));
    expect([bad.code, bad.device, bad.call]).toEqual(['ENOENT', 'dummy:b', 'capture']);
  });

  it('refuses bad options with EINVAL naming the option, before it creates the file', async () => {
    const [a] = await wire();
    const path = join(dir, 'never.pcap');
    for (const [options, option] of [
      [{ direction: 'in' }, 'direction'],
      [{ nanoseconds: 'yes' }, 'nanoseconds'],
      [{ limit: 0 }, 'limit'],
      [{ limit: 2.5 }, 'limit'],
      [{ limit: Infinity }, 'limit'],
      [{ limit: '10' }, 'limit'],
    ] as const) {
      const error = await rejection(a.capture(path, options as never));
      expect(error).toBeInstanceOf(NetdevError);
      expect([error.code, error.device, error.call]).toEqual(['EINVAL', 'dummy:a', 'capture']);
      expect(error.message).toContain(option);
    }
    expect(existsSync(path)).toBe(false);
    const capture = await a.capture(path, { direction: 'tx', nanoseconds: false, limit: 1 }); // the device still captures
    await a.send(ethFrame(64, 5));
    await capture.done;
    expect(records(path).map((r) => seqOf(r.frame))).toEqual([5]);
  });
});

describe('a capture that falls behind', () => {
  it('drops and counts what it cannot keep, while the device delivers every frame without waiting for it', async () => {
    // a's TX ring and b's RX ring hold the whole burst (9 MB); the capture ring holds 4 MiB of it.
    const ringSize = 16 * 1024 * 1024;
    const a = await mgr.open('dummy:a', { config: { peer: 'dummy:b' }, ringSize });
    const b = await mgr.open('dummy:b', { ringSize });
    await a.turnFlagsOn({ up: true });
    await b.turnFlagsOn({ up: true });
    const path = join(dir, 'behind.pcap');
    const capture = await b.capture(path, { direction: 'rx' });
    const total = 6000;
    const burst = Array.from({ length: total }, (_, seq) => ethFrame(1514, seq));
    expect(a.trySendBatch(burst)).toBe(total);
    // Receive the whole burst without yielding to the event loop: the capture's writer, on this
    // thread, gets no turn, so its ring fills while the device goes on delivering.
    const received: Uint8Array[] = [];
    const deadline = performance.now() + 5000;
    while (received.length < total && performance.now() < deadline) {
      const frame = b.tryRecv();
      if (frame) received.push(frame);
    }
    expect(received.length).toBe(total);
    expect(received.filter((frame, seq) => !Buffer.from(frame).equals(burst[seq]!)).length).toBe(0);
    await capture.close();
    expect(capture.dropped).toBeGreaterThan(0);
    expect(capture.frames).toBeGreaterThan(0);
    expect(capture.frames + capture.dropped).toBe(total);
    const [sent, got] = [await a.getStats(), await b.getStats()];
    expect([sent.txPackets, sent.txDropped]).toEqual([total, 0]);
    expect([got.rxPackets, got.rxDropped, got.rxRingDropped]).toEqual([total, 0, 0]);
    // The file holds the frames the capture kept, whole: the first ones, until its ring was full.
    const kept = records(path);
    expect(kept.length).toBe(capture.frames);
    expect(kept.filter((record, seq) => !Buffer.from(record.frame).equals(burst[seq]!)).length).toBe(0);
  });
});

describe('dummy rxq_pcap and tx_pcap', () => {
  it('record what the dummy receives and sends, as OVS netdev-dummy does', async () => {
    const rxq = join(dir, 'rxq.pcap');
    const tx = join(dir, 'tx.pcap');
    const a = await mgr.open('dummy:a', { config: { peer: 'dummy:b', rxq_pcap: rxq, tx_pcap: tx } });
    const b = await mgr.open('dummy:b');
    await a.turnFlagsOn({ up: true });
    await b.turnFlagsOn({ up: true });
    expect(await a.getConfig()).toEqual({ peer: 'dummy:b', rxq_pcap: rxq, tx_pcap: tx });
    await traffic(a, b);
    await a.setConfig({ rxq_pcap: '', tx_pcap: '' }); // stops both, files complete
    expect(await a.getConfig()).toEqual({ peer: 'dummy:b' });
    expect(records(rxq).map((r) => seqOf(r.frame))).toEqual([10, 11, 12]);
    expect(records(tx).map((r) => seqOf(r.frame))).toEqual([0, 1, 2, 3, 4]);
  });
});

describe('replay', () => {
  it('reproduces a capture exactly as received frames, as fast as possible', async () => {
    const [a, b] = await wire();
    const path = join(dir, 'replay.pcap');
    const sent = Array.from({ length: 300 }, (_, seq) => ethFrame(60 + ((seq * 37) % 1455), seq));
    const capture = await a.capture(path, { direction: 'tx' });
    await a.sendBatch(sent);
    expect(await eventually(async () => (await b.getStats()).rxPackets === 300)).toBe(true);
    await capture.close();

    const c = await mgr.open('dummy:c');
    const received: Buffer[] = [];
    const reading = (async () => {
      for await (const batch of c.batches()) {
        for (const frame of batch) received.push(Buffer.from(frame));
        if (received.length === 300) break;
      }
    })();
    expect(await c.replay(path)).toBe(300);
    await reading;
    expect(received.length).toBe(300);
    expect(received.findIndex((frame, seq) => !frame.equals(sent[seq]!))).toBe(-1); // byte for byte (toEqual on 300 buffers takes seconds)
  });

  it('replays at the rate asked: not faster, not much slower, and spread over the time', async () => {
    const a = await mgr.open('dummy:a');
    const path = join(dir, 'paced.pcap');
    const total = 2000;
    const rate = 5000; // 400 ms; replay injects batches of rate / 100 = 50 frames, one every 10 ms
    const capture = await a.capture(path, { direction: 'tx' });
    for (let seq = 0; seq < total; seq++) await a.send(ethFrame(60, seq));
    expect(await eventually(async () => (await a.getStats()).txDropped === total)).toBe(true); // no peer: sent into nothing
    await capture.close();
    expect(capture.frames).toBe(total);

    const d = await mgr.open('dummy:d');
    const arrivals: number[] = [];
    const reading = (async () => {
      for await (const batch of d.batches()) {
        const now = performance.now();
        for (const frame of batch) arrivals[seqOf(frame)] = now;
        if (arrivals.length === total) break;
      }
    })();
    const started = performance.now();
    expect(await d.replay(path, { rate })).toBe(total);
    const took = performance.now() - started;
    await reading;
    const duration = (total / rate) * 1000;
    const tolerance = 150;
    // The last batch is due 10 ms before the end; it cannot leave earlier, and should not leave much later.
    expect(took).toBeGreaterThanOrEqual(duration - 10);
    expect(took).toBeLessThan(duration + tolerance);
    // Frame i is due at (its batch's first frame) / rate: never before, and not much after.
    const late: number[] = [];
    const early: number[] = [];
    for (let seq = 0; seq < total; seq++) {
      const due = started + (Math.floor(seq / 50) * 50 * 1000) / rate;
      if (arrivals[seq]! < due - 1) early.push(seq);
      if (arrivals[seq]! > due + tolerance) late.push(seq);
    }
    expect({ early: early.length, late: late.length }).toEqual({ early: 0, late: 0 });
  });

  it('refuses a malformed file before replaying anything, and devices that cannot receive injected frames', async () => {
    const c = await mgr.open('dummy:c');
    const bad = join(dir, 'bad.pcap');
    writeFileSync(bad, Buffer.concat([Buffer.from('d4c3b2a1020004000000000000000000ffff000001000000', 'hex'), Buffer.alloc(10)]));
    const error = await rejection(c.replay(bad));
    expect([error.code, error.device, error.call]).toEqual(['EINVAL', 'dummy:c', 'replay']);
    expect(error.message).toContain(`${bad}: offset 24`);
    expect(c.tryRecv()).toBeNull();
    expect((await rejection(c.replay(bad, { rate: -1 }))).code).toBe('EINVAL');
  });
});

describe('reading pcap files', () => {
  it('names the file and the offset where a file is malformed or truncated', async () => {
    const [a, b] = await wire();
    const path = join(dir, 'good.pcap');
    const capture = await a.capture(path);
    await traffic(a, b);
    await capture.close();
    const good = readFileSync(path);
    const cut = join(dir, 'cut.pcap');
    writeFileSync(cut, good.subarray(0, good.length - 10));
    expect(() => records(cut)).toThrow(NetdevError);
    expect(() => records(cut)).toThrow(new RegExp(`${cut}: offset \\d+: file ends inside a record`));
    const notPcap = join(dir, 'text.pcap');
    writeFileSync(notPcap, 'hello, this is not a capture file');
    expect(() => records(notPcap)).toThrow(/offset 0: not a pcap file/);
    writeFileSync(notPcap, 'tiny');
    expect(() => records(notPcap)).toThrow(/shorter than a pcap header/);
    // A first record whose timestamp fraction is a whole second, or whose length exceeds the snap length.
    const badFraction = Buffer.from(good);
    badFraction.writeUInt32LE(1_000_000, 28);
    expect(() => [...readPcap(badFraction, 'f.pcap')]).toThrow('f.pcap: offset 28: timestamp fraction 1000000 out of range');
    const tooLong = Buffer.from(good);
    tooLong.writeUInt32LE(262145, 32);
    expect(() => [...readPcap(tooLong, 'l.pcap')]).toThrow('l.pcap: offset 32: record of 262145 bytes exceeds the snap length 262144');
    // A file cut anywhere but between two records is refused; cut between them, it holds the records before the cut.
    const boundaries = new Map<number, number>([[24, 0]]);
    let end = 24;
    for (const [i, record] of records(path).entries()) boundaries.set((end += 16 + record.frame.length), i + 1);
    for (let length = 24; length < good.length; length++) {
      const parsed = (() => {
        try {
          return [...readPcap(good.subarray(0, length), 'cut')].length;
        } catch (error) {
          expect(error).toBeInstanceOf(NetdevError);
          return -1;
        }
      })();
      expect([length, parsed]).toEqual([length, boundaries.get(length) ?? -1]);
    }
    // Any damage gives a NetdevError (or parses): never another exception, and much of it is caught.
    let seed = 7;
    const next = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
    let rejected = 0;
    for (let round = 0; round < 3000; round++) {
      const damaged = Buffer.from(good);
      for (let i = 0; i < 4; i++) damaged[Math.floor(next() * damaged.length)] = Math.floor(next() * 256);
      try {
        [...readPcap(damaged, 'damaged')];
      } catch (error) {
        expect(error).toBeInstanceOf(NetdevError);
        rejected++;
      }
    }
    expect(rejected).toBeGreaterThan(300); // about 650 of 3000 hit a header or a length field
  });
});
