import { describe, expect, it, onTestFinished, type TestContext } from 'vitest';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readVnetHeader, VNET_GSO_NONE, VNET_GSO_TCPV4, VNET_GSO_TCPV6, VNET_F_NEEDS_CSUM, VNET_HDR_LEN, vnetHeaderProblem, writeVnetHeader, type Netdev, type NetdevManager } from '../dist/index.js';
import { SoftwareOffload, type FrameSink } from '../dist/common/software-offload.js';
import { ethFrame, eventually, requireTool, untilPrinted } from './helpers.js';
import { freshEachTest, privileged, requirePrivilege, TestNetns } from './netns-harness.js';

const TEST_TYPE = 0x88b5;
const RAW_SOCKET = new URL('./fixtures/raw-socket.py', import.meta.url).pathname;
const TCP_TRANSFER = new URL('./fixtures/tcp_transfer.py', import.meta.url).pathname;
const TCP_SUPER_FRAME = new URL('./fixtures/tcp-super-frame.py', import.meta.url).pathname;
const MTU = 1500;
const PLAIN_MAX = MTU + 14;
const TRANSFER_BYTES = 16 * 1024 * 1024;
const PORT = '5001';

requirePrivilege('tap offloads tests');

/** The worker's own count `name` of a device (the tap's getStats() gives the kernel's counters only). */
function workerCount(dev: Netdev, name: 'rxErrors' | 'txErrors'): number {
  return (dev as unknown as { device: { shared: { value(name: string): number } } }).device.shared.value(name);
}

/** The one's complement sum of bytes[start .. end) as big-endian 16-bit words, plus `initial`, folded. */
function onesSum(bytes: Uint8Array, start: number, end: number, initial = 0): number {
  let sum = initial;
  for (let i = start; i + 1 < end; i += 2) sum += (bytes[i]! << 8) | bytes[i + 1]!;
  if ((end - start) % 2 === 1) sum += bytes[end - 1]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 65536);
  return sum;
}

/**
 * Why the plain Ethernet frame `frame` is not a whole, correctly checksummed IPv4/TCP or IPv6/TCP
 * frame of at most MTU + 14 bytes, or null (frames that are not TCP need only the length).  Computed
 * here, independently of the library's checksum code.
 */
function plainFrameProblem(frame: Uint8Array): string | null {
  if (frame.length > PLAIN_MAX) return `${frame.length}-byte frame, more than MTU + 14`;
  const ethertype = (frame[12]! << 8) | frame[13]!;
  if (ethertype === 0x86dd && frame[20] === 6) {
    const tcpLength = (frame[18]! << 8) | frame[19]!;
    if (54 + tcpLength > frame.length) return `IPv6 payload length ${tcpLength} beyond the ${frame.length}-byte frame`;
    const pseudo = onesSum(frame, 22, 54) + 6 + tcpLength;
    return onesSum(frame, 54, 54 + tcpLength, pseudo) === 0xffff ? null : `bad TCP checksum in a ${frame.length}-byte IPv6 frame`;
  }
  if (ethertype !== 0x0800 || frame[23] !== 6) return null;
  const ihl = (frame[14]! & 0x0f) * 4;
  const total = (frame[16]! << 8) | frame[17]!;
  if (14 + total > frame.length) return `IPv4 total length ${total} beyond the ${frame.length}-byte frame`;
  if (onesSum(frame, 14, 14 + ihl) !== 0xffff) return 'bad IPv4 header checksum';
  const tcpLength = total - ihl;
  const pseudo = onesSum(frame, 26, 34) + 6 + tcpLength;
  if (onesSum(frame, 14 + ihl, 14 + total, pseudo) !== 0xffff) return `bad TCP checksum in a ${frame.length}-byte frame`;
  return null;
}

/** What the forwarder saw going one way. */
interface Seen {
  frames: number;
  /** GSO super-frames longer than MTU + 14 (vnet frames of a device with offloads). */
  superFrames: number;
  gsoTypes: Set<number>;
  /** Super-frames cut into plain frames for the side without offloads. */
  segmented: number;
  /** The first problem met: a bad vnet header, a plain frame too long or with a wrong checksum. */
  problem: string | null;
}

/** A frame sink that collects plain frames (copies) for sending, as a RingWriter would take them. */
class CollectingSink implements FrameSink {
  readonly bytes = new Uint8Array(1 << 20);
  private used = 0;
  private pending = 0;
  readonly frames: Uint8Array[] = [];
  reserve(length: number): number {
    if (this.used + length > this.bytes.length) return -1;
    this.pending = this.used;
    return this.used;
  }
  commit(length: number): void {
    this.frames.push(this.bytes.subarray(this.pending, this.pending + length));
    this.used = this.pending + length;
  }
  get room(): number {
    return this.bytes.length - this.used;
  }
  clear(): void {
    this.used = 0;
    this.frames.length = 0;
  }
}

/**
 * Forwards every frame `from` receives to `to` until `signal` aborts, converting between vnet
 * frames and plain frames where the two sides differ (super-frames are cut with SoftwareOffload,
 * plain frames get a zero header), and checks each frame on the way: vnet headers must validate,
 * and every plain frame (read, or made here) must be whole with correct checksums.
 */
async function forward(from: Netdev, to: Netdev, signal: AbortSignal): Promise<Seen> {
  const seen: Seen = { frames: 0, superFrames: 0, gsoTypes: new Set(), segmented: 0, problem: null };
  const software = new SoftwareOffload();
  const sink = new CollectingSink();
  const flush = async () => {
    for (const frame of sink.frames) seen.problem ??= plainFrameProblem(frame); // every frame made here is checked before it goes
    await to.sendBatch(sink.frames);
    sink.clear();
  };
  try {
    for await (const batch of from.batches({ signal })) {
      const out: Uint8Array[] = [];
      for (const frame of batch) {
        seen.frames++;
        if (from.offloads) {
          const problem = vnetHeaderProblem(frame, 0, frame.length);
          if (problem !== null) seen.problem ??= `vnet header: ${problem}`;
          const header = readVnetHeader(frame, 0);
          if (header.gsoType !== VNET_GSO_NONE && frame.length - VNET_HDR_LEN > PLAIN_MAX) {
            seen.superFrames++;
            seen.gsoTypes.add(header.gsoType);
          }
          if (header.flags === 0 && header.gsoType === VNET_GSO_NONE) seen.problem ??= plainFrameProblem(frame.subarray(VNET_HDR_LEN));
          if (to.offloads) {
            out.push(frame);
            continue;
          }
          if (sink.room < 70_000) await flush();
          if (!software.toPlain(frame, 0, frame.length, sink, false)) seen.problem ??= 'SoftwareOffload refused a vnet frame';
          continue;
        }
        seen.problem ??= plainFrameProblem(frame);
        if (!to.offloads) {
          out.push(frame);
          continue;
        }
        const vnet = new Uint8Array(VNET_HDR_LEN + frame.length);
        vnet.set(frame, VNET_HDR_LEN);
        out.push(vnet);
      }
      await flush();
      await to.sendBatch(out);
    }
  } catch (error) {
    if ((error as { code?: string }).code !== 'ECANCELED') throw error;
  }
  seen.segmented = software.segmented;
  return seen;
}

/** Output of a child, and its exit. */
function collect(child: ChildProcess): { output: () => string; exited: Promise<unknown> } {
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk));
  return { output: () => output, exited: once(child, 'exit') };
}

/** Two namespaces, A (the test bed's) with tap tA at 10.77.0.1/24 and B with tap tB at 10.77.0.2/24, joined only by the test's forwarder. */
async function twoTaps(mgr: NetdevManager, a: TestNetns, offloads: { a: boolean; b: boolean }, ringSize?: number): Promise<{ tA: Netdev; tB: Netdev; b: TestNetns }> {
  const b = new TestNetns();
  onTestFinished(() => b.destroy());
  const tA = await mgr.open('tap:tA', { netns: a.name, offloads: offloads.a, ...(ringSize ? { ringSize } : {}) });
  const tB = await mgr.open('tap:tB', { netns: b.name, offloads: offloads.b });
  for (const [ns, tap, address] of [[a, 'tA', '10.77.0.1/24'], [b, 'tB', '10.77.0.2/24']] as const) {
    ns.ip('link', 'set', tap, 'addrgenmode', 'none');
    ns.ip('addr', 'add', address, 'dev', tap);
    ns.ip('link', 'set', tap, 'up');
  }
  return { tA, tB, b };
}

/**
 * A TCP transfer of `bytes` from namespace A to B through the forwarder; returns what the
 * forwarder saw each way, the sender's and receiver's account (count and SHA-256) and the
 * throughput (from the sender's connect to the receiver's close).
 */
async function transfer(test: TestContext, tA: Netdev, tB: Netdev, a: TestNetns, b: TestNetns, bytes: number) {
  requireTool(test, 'python3', 'python3');
  const stop = new AbortController();
  const forwarding = Promise.all([forward(tA, tB, stop.signal), forward(tB, tA, stop.signal)]);
  const server = spawn('ip', ['netns', 'exec', b.name, 'python3', TCP_TRANSFER, 'serve', '10.77.0.2', PORT]);
  onTestFinished(() => void server.kill());
  const received = collect(server);
  await untilPrinted(server);
  const client = spawn('ip', ['netns', 'exec', a.name, 'python3', TCP_TRANSFER, 'send', '10.77.0.2', PORT, String(bytes)]);
  onTestFinished(() => void client.kill());
  const sent = collect(client);
  // A forwarder that fails (or ends) before the transfer does fails the test at once.
  let transferred = false;
  const forwarderFailed = forwarding.then(() => {
    if (!transferred) throw new Error('a forwarder ended before the transfer did');
  });
  await Promise.race([Promise.all([sent.exited, received.exited]), forwarderFailed]);
  transferred = true;
  stop.abort();
  const [aToB, bToA] = await forwarding;
  const [count, digest, seconds] = sent.output().trim().split(' ');
  return { aToB, bToA, sent: `${count} ${digest}`, received: received.output().replace('ready', '').trim(), gbits: (bytes * 8) / Number(seconds) / 1e9 };
}

describe.skipIf(!privileged)('tap devices with offloads (IFF_VNET_HDR), against the kernel in namespaces of the test run', () => {
  const bed = freshEachTest();

  it('moves a 16 MiB TCP transfer tap to tap as GSO super-frames with valid vnet headers, written back with their headers', async (test) => {
    const { tA, tB, b } = await twoTaps(bed.mgr, bed.ns, { a: true, b: true });
    expect([tA.offloads, tB.offloads]).toEqual([true, true]);
    const result = await transfer(test, tA, tB, bed.ns, b, TRANSFER_BYTES);
    console.log(`tap to tap, both with offloads: ${result.gbits.toFixed(2)} Gbit/s, ${result.aToB.frames} frames A->B (${result.aToB.superFrames} super-frames)`);
    expect(result.sent).toMatch(new RegExp(`^${TRANSFER_BYTES} [0-9a-f]{64}$`));
    expect(result.received).toBe(result.sent);
    expect([result.aToB.problem, result.bToA.problem]).toEqual([null, null]);
    expect(result.aToB.superFrames).toBeGreaterThan(0);
    expect([...result.aToB.gsoTypes]).toEqual([VNET_GSO_TCPV4]);
    expect([workerCount(tA, 'rxErrors'), workerCount(tB, 'txErrors')]).toEqual([0, 0]);
  });

  it('without offloads, the kernel hands over only frames of at most MTU + 14 with complete, correct checksums (no segmentation in the worker)', async (test) => {
    const { tA, tB, b } = await twoTaps(bed.mgr, bed.ns, { a: false, b: false });
    expect([tA.offloads, tB.offloads]).toEqual([false, false]);
    const result = await transfer(test, tA, tB, bed.ns, b, TRANSFER_BYTES);
    console.log(`tap to tap, both without offloads: ${result.gbits.toFixed(2)} Gbit/s, ${result.aToB.frames} frames A->B`);
    expect(result.received).toBe(result.sent);
    expect(result.sent).toMatch(new RegExp(`^${TRANSFER_BYTES} `));
    expect([result.aToB.problem, result.bToA.problem]).toEqual([null, null]);
    expect(result.aToB.frames).toBeGreaterThan(TRANSFER_BYTES / PLAIN_MAX); // each data frame whole and at most MTU + 14
  });

  it('between a tap with offloads and one without, the super-frames are cut in software on the way', async (test) => {
    const { tA, tB, b } = await twoTaps(bed.mgr, bed.ns, { a: true, b: false });
    const result = await transfer(test, tA, tB, bed.ns, b, TRANSFER_BYTES);
    console.log(`tap with offloads to tap without: ${result.gbits.toFixed(2)} Gbit/s, ${result.aToB.superFrames} super-frames cut into plain frames`);
    expect(result.received).toBe(result.sent);
    expect(result.sent).toMatch(new RegExp(`^${TRANSFER_BYTES} `));
    expect([result.aToB.problem, result.bToA.problem]).toEqual([null, null]);
    expect(result.aToB.superFrames).toBeGreaterThan(0);
    expect(result.aToB.segmented).toBeGreaterThanOrEqual(result.aToB.superFrames);
  });

  it('reads an IPv6/TCP super-frame the kernel sends as one TCPV6 vnet frame with offloads, and as checksummed segments without, on the same persistent tap', async (test) => {
    const length = 20_000;
    const headers = 14 + 40 + 20;
    requireTool(test, 'python3', 'python3');
    requireTool(test, 'ethtool', 'ethtool');
    const tso = () => /^tcp-segmentation-offload: (on|off)/m.exec(execFileSync('ip', ['netns', 'exec', bed.ns.name, 'ethtool', '-k', 't0'], { encoding: 'utf8' }))?.[1];
    // The second open reattaches to the tap the first left with offloads: TUNSETOFFLOAD is the device's state.
    const ifindexes: number[] = [];
    for (const offloads of [true, false]) {
      const tap = await bed.mgr.open('tap:t0', { netns: bed.ns.name, offloads, ethertype: 0x86dd, config: { persist: true } });
      ifindexes.push(await tap.getIfindex());
      bed.ns.ip('link', 'set', 't0', 'addrgenmode', 'none');
      await tap.turnFlagsOn({ up: true });
      expect(tso()).toBe(offloads ? 'on' : 'off');
      const frames = tap.frames({ copy: true });
      execFileSync('ip', ['netns', 'exec', bed.ns.name, 'python3', TCP_SUPER_FRAME, 't0', String(length)]);
      const payload: number[] = [];
      const payloadOf = (frame: Uint8Array) => payload.push(...frame.subarray(headers, 54 + ((frame[18]! << 8) | frame[19]!)));
      if (offloads) {
        const vnet = (await frames.next()).value as Uint8Array;
        expect(vnetHeaderProblem(vnet, 0, vnet.length)).toBeNull();
        expect(readVnetHeader(vnet, 0)).toMatchObject({ flags: VNET_F_NEEDS_CSUM, gsoType: VNET_GSO_TCPV6, gsoSize: 1428, csumStart: 54, csumOffset: 16 });
        expect(vnet.length).toBe(VNET_HDR_LEN + length);
        payloadOf(vnet.subarray(VNET_HDR_LEN));
      } else {
        const segments = Math.ceil((length - headers) / 1428);
        for (let i = 0; i < segments; i++) {
          const frame = (await frames.next()).value as Uint8Array;
          expect(plainFrameProblem(frame)).toBeNull();
          payloadOf(frame);
        }
      }
      expect(payload.length).toBe(length - headers);
      expect(payload.every((byte, i) => byte === (i & 255))).toBe(true);
      await tap.close();
    }
    expect(ifindexes[1]).toBe(ifindexes[0]);
  });

  it('counts in rxErrors a super-frame too large for the RX ring, and delivers no frame cut', async (test) => {
    // A 64 KiB ring holds records of at most 32764 bytes: TCP super-frames grow past that.
    const { tA, tB, b } = await twoTaps(bed.mgr, bed.ns, { a: true, b: true }, 65536);
    requireTool(test, 'python3', 'python3');
    const stop = new AbortController();
    let cut = '';
    const watching = (async () => {
      try {
        for await (const batch of tA.batches({ signal: stop.signal })) {
          for (const frame of batch) {
            const ethernet = frame.subarray(VNET_HDR_LEN);
            const isIPv4 = ((ethernet[12]! << 8) | ethernet[13]!) === 0x0800;
            if (isIPv4 && 14 + ((ethernet[16]! << 8) | ethernet[17]!) > ethernet.length) cut ||= `a ${frame.length}-byte record holds part of an IPv4 packet`;
          }
          await tB.sendBatch(batch);
        }
      } catch (error) {
        if ((error as { code?: string }).code !== 'ECANCELED') throw error;
      }
    })();
    const back = forward(tB, tA, stop.signal);
    const server = spawn('ip', ['netns', 'exec', b.name, 'python3', TCP_TRANSFER, 'serve', '10.77.0.2', PORT]);
    await untilPrinted(server);
    const client = spawn('ip', ['netns', 'exec', bed.ns.name, 'python3', TCP_TRANSFER, 'send', '10.77.0.2', PORT, String(TRANSFER_BYTES)]);
    onTestFinished(() => {
      client.kill();
      server.kill();
    });
    expect(await eventually(() => workerCount(tA, 'rxErrors') > 0, 10_000)).toBe(true);
    stop.abort();
    await Promise.all([watching, back]);
    expect(cut).toBe('');
    expect(tA.maxFrame).toBeLessThan(32768);
  });

  it('refuses a vnet frame whose header does not match its frame (EINVAL), counts in txErrors one the kernel refuses (EIO: the tap is down), and goes on with the next frame', async (test) => {
    const tap = await bed.mgr.open('tap:t0', { netns: bed.ns.name, offloads: true, ethertype: TEST_TYPE });
    bed.ns.ip('link', 'set', 't0', 'addrgenmode', 'none');
    await tap.turnFlagsOn({ up: true });
    requireTool(test, 'python3', 'python3');
    // An IPv4/TCP frame whose header says TCPV6: send() refuses it before it reaches the worker.
    const tcp = ethFrame(200, 7, 0x0800);
    tcp.set([0x45, 0, 0, 186, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2], 14);
    tcp[46] = 0x50; // TCP data offset: 20 bytes
    const refused = new Uint8Array(VNET_HDR_LEN + tcp.length);
    writeVnetHeader(refused, 0, { flags: VNET_F_NEEDS_CSUM, gsoType: VNET_GSO_TCPV6, hdrLen: 54, gsoSize: 100, csumStart: 34, csumOffset: 16 });
    refused.set(tcp, VNET_HDR_LEN);
    expect(vnetHeaderProblem(refused, 0, refused.length)).toMatch(/IPv6/);
    await expect(tap.send(refused)).rejects.toMatchObject({ code: 'EINVAL', call: 'send' });
    // A frame written while the tap is down: the kernel says EIO, counted, and the next frame goes out.
    const early = ethFrame(100, 6, TEST_TYPE);
    const earlyVnet = new Uint8Array(VNET_HDR_LEN + early.length);
    earlyVnet.set(early, VNET_HDR_LEN);
    bed.ns.ip('link', 'set', 't0', 'down');
    await tap.send(earlyVnet);
    expect(await eventually(() => workerCount(tap, 'txErrors') === 1)).toBe(true);
    bed.ns.ip('link', 'set', 't0', 'up');
    const reader = spawn('ip', ['netns', 'exec', bed.ns.name, 'python3', RAW_SOCKET, 'recv', 't0', '1']);
    const { output, exited } = collect(reader);
    await untilPrinted(reader);
    const good = ethFrame(300, 8, TEST_TYPE);
    const goodVnet = new Uint8Array(VNET_HDR_LEN + good.length);
    goodVnet.set(good, VNET_HDR_LEN);
    await tap.send(goodVnet);
    await exited;
    expect(output().trim().split('\n').slice(1)).toEqual([Buffer.from(good).toString('hex')]);
    expect(await eventually(() => workerCount(tap, 'txErrors') === 1)).toBe(true);
    // The device keeps working both ways: a frame from the kernel arrives as a vnet frame with a zero header.
    const frames = tap.frames({ copy: true });
    const incoming = ethFrame(400, 9, TEST_TYPE);
    execFileSync('ip', ['netns', 'exec', bed.ns.name, 'python3', RAW_SOCKET, 'send', 't0', Buffer.from(incoming).toString('hex')]);
    const received = (await frames.next()).value as Uint8Array;
    expect(received.subarray(0, VNET_HDR_LEN)).toEqual(new Uint8Array(VNET_HDR_LEN));
    expect(received.subarray(VNET_HDR_LEN)).toEqual(incoming);
    expect(workerCount(tap, 'txErrors')).toBe(1);
  });
});
