import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { insertVlanTag } from '../dist/common/ethernet.js';
import { pcapFileHeader, writeRecordHeader } from '../dist/common/pcap.js';
import { SoftwareOffload, type FrameSink } from '../dist/common/software-offload.js';
import {
  readVnetHeader,
  shiftVnetHeader,
  vnetHeaderProblem,
  writeVnetHeader,
  VNET_F_DATA_VALID,
  VNET_F_NEEDS_CSUM,
  VNET_GSO_ECN,
  VNET_GSO_NONE,
  VNET_GSO_TCPV4,
  VNET_GSO_TCPV6,
  VNET_GSO_UDP,
  VNET_GSO_UDP_L4,
  VNET_HDR_LEN,
} from '../dist/common/vnet-header.js';
import { requireTool, tempDir } from './helpers.js';

// ---- A reference internet checksum, written plainly (RFC 1071), independent of the one under test.

/** The folded one's complement sum of bytes[start .. end) read as big-endian 16-bit words (an odd last byte padded with zero). */
function onesSum(bytes: ArrayLike<number>, start: number, end: number, initial = 0): number {
  let sum = initial;
  for (let i = start; i < end; i++) sum += (i - start) % 2 === 0 ? bytes[i]! * 256 : bytes[i]!;
  while (sum > 0xffff) sum = (sum % 65536) + Math.floor(sum / 65536);
  return sum;
}

/** The pseudo-header's sum of the IP packet at frame[l3 ..]: addresses, protocol and `l4Length`. */
function pseudoSum(frame: Uint8Array, l3: number, protocol: number, l4Length: number): number {
  const v4 = frame[l3]! >> 4 === 4;
  const addresses = v4 ? onesSum(frame, l3 + 12, l3 + 20) : onesSum(frame, l3 + 8, l3 + 40);
  return onesSum([0, protocol, (l4Length >> 8) & 0xff, l4Length & 0xff, (l4Length >> 24) & 0xff, (l4Length >> 16) & 0xff], 0, 6, addresses);
}

const be16 = (bytes: Uint8Array, at: number): number => (bytes[at]! << 8) | bytes[at + 1]!;
const be32 = (bytes: Uint8Array, at: number): number => ((bytes[at]! << 24) | (bytes[at + 1]! << 16) | (bytes[at + 2]! << 8) | bytes[at + 3]!) >>> 0;
const put16 = (bytes: Uint8Array, at: number, value: number): void => {
  bytes[at] = (value >> 8) & 0xff;
  bytes[at + 1] = value & 0xff;
};
const put32 = (bytes: Uint8Array, at: number, value: number): void => {
  put16(bytes, at, value >>> 16);
  put16(bytes, at + 2, value & 0xffff);
};

/** The self-checking payload: byte k of the stream (k counted from the first payload byte of the super-frame). */
const patternByte = (k: number): number => (k ^ (k >>> 8) ^ (k >>> 16) ^ 0x5a) & 0xff;

/** Fails, saying where they first differ, unless `actual` and `expected` hold the same bytes. */
function expectSameBytes(actual: Uint8Array, expected: Uint8Array, what: string): void {
  if (Buffer.compare(actual, expected) === 0) return;
  let at = 0;
  while (at < actual.length && at < expected.length && actual[at] === expected[at]) at++;
  throw new Error(`${what}: ${actual.length} bytes against ${expected.length}, first difference at byte ${at}`);
}

/** Fails unless both lists of frames are the same, frame for frame. */
function expectSameFrames(actual: Uint8Array[], expected: Uint8Array[], what: string): void {
  expect(actual.length, what).toBe(expected.length);
  actual.forEach((frame, i) => expectSameBytes(frame, expected[i]!, `${what}, frame ${i}`));
}

// ---- Vnet frames built as the kernel hands them over.

const TCP_FIN = 0x01;
const TCP_PSH = 0x08;
const TCP_ACK = 0x10;
const TCP_ECE = 0x40;
const TCP_CWR = 0x80;

interface FrameSpec {
  family: 4 | 6;
  l4: 'tcp' | 'udp';
  payload: number;
  /** 0: not a super-frame (gso_type NONE). */
  gsoSize: number;
  /** TPIDs of VLAN tags in the frame, outermost first. */
  tags?: number[];
  /** IPv4 option bytes (a multiple of 4). */
  ipOptions?: number;
  tcpFlags?: number;
  ecn?: boolean;
  /** NEEDS_CSUM (the default) or another flags byte. */
  flags?: number;
}

interface Built {
  vnet: Uint8Array;
  spec: FrameSpec;
  l3: number;
  l4: number;
  /** All headers' length, from the Ethernet frame's start. */
  headers: number;
  seq: number;
  ipId: number;
}

const FIRST_SEQ = 0xfffff000; // wraps within the first super-frame
const FIRST_IP_ID = 0xfffe; // wraps at the third segment

function build(spec: FrameSpec): Built {
  const tags = spec.tags ?? [];
  const l3 = 14 + 4 * tags.length;
  const ipHeader = spec.family === 4 ? 20 + (spec.ipOptions ?? 0) : 40;
  const l4 = l3 + ipHeader;
  const l4Header = spec.l4 === 'tcp' ? 32 : 8;
  const headers = l4 + l4Header;
  const frameLength = headers + spec.payload;
  const vnet = new Uint8Array(VNET_HDR_LEN + frameLength);
  const f = vnet.subarray(VNET_HDR_LEN);
  f.set([2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1], 0);
  tags.forEach((tpid, i) => {
    put16(f, 12 + 4 * i, tpid);
    put16(f, 14 + 4 * i, 100 + i);
  });
  put16(f, l3 - 2, spec.family === 4 ? 0x0800 : 0x86dd);
  const protocol = spec.l4 === 'tcp' ? 6 : 17;
  const l4Length = frameLength - l4;
  if (spec.family === 4) {
    f[l3] = 0x40 | (ipHeader / 4);
    put16(f, l3 + 2, frameLength - l3 <= 0xffff ? frameLength - l3 : 0);
    put16(f, l3 + 4, FIRST_IP_ID);
    put16(f, l3 + 6, 0x4000); // DF
    f[l3 + 8] = 64;
    f[l3 + 9] = protocol;
    f.set([10, 0, 0, 1, 10, 0, 0, 2], l3 + 12);
    for (let i = 20; i < ipHeader; i += 4) f.set([0x94, 0x04, 0, 0], l3 + i); // Router Alert
    put16(f, l3 + 10, ~onesSum(f, l3, l4) & 0xffff);
  } else {
    put32(f, l3, 0x60012345);
    put16(f, l3 + 4, l4Length);
    f[l3 + 6] = protocol;
    f[l3 + 7] = 64;
    f.set([0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], l3 + 8);
    f.set([0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2], l3 + 24);
  }
  if (spec.l4 === 'tcp') {
    put16(f, l4, 40000);
    put16(f, l4 + 2, 5201);
    put32(f, l4 + 4, FIRST_SEQ);
    put32(f, l4 + 8, 0x01020304);
    f[l4 + 12] = 8 << 4;
    f[l4 + 13] = spec.tcpFlags ?? TCP_ACK | TCP_PSH;
    put16(f, l4 + 14, 502);
    f.set([1, 1, 8, 10, 0, 0, 0, 7, 0, 0, 0, 9], l4 + 20); // NOP NOP timestamps
  } else {
    put16(f, l4, 40001);
    put16(f, l4 + 2, 5202);
    put16(f, l4 + 4, l4Length <= 0xffff ? l4Length : 0);
  }
  for (let k = 0; k < spec.payload; k++) f[headers + k] = patternByte(k);
  // CHECKSUM_PARTIAL: the checksum field holds the pseudo-header's sum (not complemented).
  put16(f, l4 + (spec.l4 === 'tcp' ? 16 : 6), pseudoSum(f, l3, protocol, l4Length));
  const gso = spec.gsoSize === 0 ? VNET_GSO_NONE : spec.l4 === 'udp' ? VNET_GSO_UDP_L4 : spec.family === 4 ? VNET_GSO_TCPV4 : VNET_GSO_TCPV6;
  writeVnetHeader(vnet, 0, {
    flags: spec.flags ?? VNET_F_NEEDS_CSUM,
    gsoType: gso | (spec.ecn ? VNET_GSO_ECN : 0),
    hdrLen: spec.gsoSize === 0 ? 0 : Math.min(frameLength, 128), // the linear part's length, as the kernel gives it
    gsoSize: spec.gsoSize,
    csumStart: l4,
    csumOffset: spec.l4 === 'tcp' ? 16 : 6,
  });
  return { vnet, spec, l3, l4, headers, seq: FIRST_SEQ, ipId: FIRST_IP_ID };
}

/** A sink over a SharedArrayBuffer (at byte offset `skew`), keeping a copy of every committed record; room for `room` records. */
class ArraySink implements FrameSink {
  readonly bytes: Uint8Array;
  readonly records: Uint8Array[] = [];
  reserves = 0;
  private position = 0;
  private reserved = -1;
  private reservedLength = 0;

  constructor(
    private readonly room = Infinity,
    skew = 0,
  ) {
    this.bytes = new Uint8Array(new SharedArrayBuffer((1 << 20) + 8), skew, 1 << 20);
  }

  reserve(length: number): number {
    this.reserves++;
    if (this.records.length >= this.room) return -1;
    let at = ((this.position + 3) & ~3) + 4; // as a ring: a 4-byte length word, then the data
    if (at + length > this.bytes.length) at = 4;
    this.reserved = at;
    this.reservedLength = length;
    return at;
  }

  commit(length: number): void {
    if (this.reserved < 0 || length > this.reservedLength) throw new Error(`commit(${length}) without a reservation of that much`);
    this.records.push(this.bytes.slice(this.reserved, this.reserved + length));
    this.position = this.reserved + length;
    this.reserved = -1;
  }
}

/** Segments `built` and checks every segment against the kernel's rules with the reference checksum; returns the segments. */
function segmentAndCheck(built: Built, skew = 0): Uint8Array[] {
  const { vnet, spec, l3, l4, headers } = built;
  const sink = new ArraySink(Infinity, skew);
  const offload = new SoftwareOffload();
  const original = vnet.slice();
  expect(offload.toPlain(vnet, 0, vnet.length, sink, false)).toBe(true);
  expectSameBytes(vnet, original, 'the source'); // left alone
  const count = Math.ceil(spec.payload / spec.gsoSize);
  expect(sink.records).toHaveLength(count);
  expect({ segmented: offload.segmented, emitted: offload.emitted, dropped: offload.dropped, checksummed: offload.checksummed }).toEqual({
    segmented: 1,
    emitted: count,
    dropped: 0,
    checksummed: 0,
  });
  const tcp = spec.l4 === 'tcp';
  const superFrame = vnet.subarray(VNET_HDR_LEN);
  const payloads: Uint8Array[] = [];
  sink.records.forEach((segment, i) => {
    const last = i === count - 1;
    const chunk = last ? spec.payload - i * spec.gsoSize : spec.gsoSize;
    expect(chunk).toBeLessThanOrEqual(spec.gsoSize);
    expect(segment.length).toBe(Math.max(60, headers + chunk));
    // What no segment changes: MACs, tags, addresses, ports, ack, window, options.
    expectSameBytes(segment.subarray(0, l3), superFrame.subarray(0, l3), `segment ${i}: unchanged bytes [0, l3]`);
    if (spec.family === 4) {
      expectSameBytes(segment.subarray(l3 + 12, l4), superFrame.subarray(l3 + 12, l4), `segment ${i}: unchanged bytes [l3 + 12, l4]`);
      expect(be16(segment, l3 + 2)).toBe(headers - l3 + chunk);
      expect(be16(segment, l3 + 4)).toBe((built.ipId + i) & 0xffff);
      expect(be16(segment, l3 + 6)).toBe(0x4000);
      expect(onesSum(segment, l3, l4)).toBe(0xffff);
    } else {
      expectSameBytes(segment.subarray(l3 + 6, l4), superFrame.subarray(l3 + 6, l4), `segment ${i}: unchanged bytes [l3 + 6, l4]`);
      expect(be16(segment, l3 + 4)).toBe(headers - l4 + chunk);
    }
    expectSameBytes(segment.subarray(l4, l4 + 4), superFrame.subarray(l4, l4 + 4), `segment ${i}: unchanged bytes [l4, l4 + 4]`);
    if (tcp) {
      expect(be32(segment, l4 + 4)).toBe((built.seq + i * spec.gsoSize) >>> 0);
      expectSameBytes(segment.subarray(l4 + 8, l4 + 13), superFrame.subarray(l4 + 8, l4 + 13), `segment ${i}: unchanged bytes [l4 + 8, l4 + 13]`);
      expectSameBytes(segment.subarray(l4 + 14, l4 + 16), superFrame.subarray(l4 + 14, l4 + 16), `segment ${i}: unchanged bytes [l4 + 14, l4 + 16]`);
      expectSameBytes(segment.subarray(l4 + 18, headers), superFrame.subarray(l4 + 18, headers), `segment ${i}: unchanged bytes [l4 + 18, headers]`);
      const flags = superFrame[l4 + 13]!;
      let expected = flags;
      if (!last) expected &= ~(TCP_FIN | TCP_PSH);
      if (i !== 0) expected &= ~TCP_CWR;
      expect(segment[l4 + 13]).toBe(expected);
    } else {
      expect(be16(segment, l4 + 4)).toBe(8 + chunk);
    }
    expect(onesSum(segment, l4, headers + chunk, pseudoSum(segment, l3, tcp ? 6 : 17, headers + chunk - l4))).toBe(0xffff);
    const payload = segment.subarray(headers, headers + chunk);
    for (let j = 0; j < chunk; j++) {
      if (payload[j] !== patternByte(i * spec.gsoSize + j)) throw new Error(`segment ${i} byte ${j} is ${payload[j]}, not ${patternByte(i * spec.gsoSize + j)}`);
    }
    expect(segment.subarray(headers + chunk).every((b) => b === 0)).toBe(true); // padding
    payloads.push(payload);
  });
  expect(Buffer.concat(payloads).equals(Buffer.from(superFrame.subarray(headers)))).toBe(true);
  return sink.records;
}

/** tshark's checksum verdicts (tcp, ip, udp columns) for each frame; writes them to a pcap file first. */
function tsharkChecksums(frames: Uint8Array[], file: string): string[][] {
  const parts: Uint8Array[] = [pcapFileHeader(false)];
  for (const frame of frames) {
    const record = Buffer.alloc(16);
    writeRecordHeader(record, 0, 1, 0, frame.length);
    parts.push(record, frame);
  }
  writeFileSync(file, Buffer.concat(parts));
  const fields = ['tcp.checksum.status', 'ip.checksum.status', 'udp.checksum.status'];
  const output = execFileSync(
    'tshark',
    ['-r', file, '-o', 'tcp.check_checksum:TRUE', '-o', 'ip.check_checksum:TRUE', '-o', 'udp.check_checksum:TRUE', '-T', 'fields', ...fields.flatMap((field) => ['-e', field])],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] },
  );
  return output.replace(/\n$/, '').split('\n').map((line) => line.split('\t'));
}

// tshark's checksum status values (epan/proto.h proto_checksum_enum_e): 0 bad, 1 good, 2 unverified, 3 not present.
const GOOD = '1';
const BAD = '0';

/** The checksum verdicts tshark must give a correct frame of `spec`: [tcp, ip, udp]. */
const expectedVerdicts = (spec: FrameSpec): string[] => [spec.l4 === 'tcp' ? GOOD : '', spec.family === 4 ? GOOD : '', spec.l4 === 'udp' ? GOOD : ''];

const SUPER_FRAMES: Record<string, FrameSpec> = {
  'IPv4/TCP': { family: 4, l4: 'tcp', payload: 60_000, gsoSize: 1448, tcpFlags: TCP_ACK | TCP_PSH | TCP_FIN },
  'IPv4/TCP with IP options, ECN': { family: 4, l4: 'tcp', payload: 20_001, gsoSize: 1440, ipOptions: 8, tcpFlags: TCP_ACK | TCP_PSH | TCP_CWR | TCP_ECE, ecn: true },
  'IPv6/TCP': { family: 6, l4: 'tcp', payload: 45_123, gsoSize: 1428 },
  'VLAN-tagged IPv4/TCP': { family: 4, l4: 'tcp', payload: 30_000, gsoSize: 1448, tags: [0x8100] },
  'QinQ-tagged IPv6/TCP': { family: 6, l4: 'tcp', payload: 25_000, gsoSize: 1400, tags: [0x88a8, 0x8100] },
  'IPv4/UDP_L4 (USO)': { family: 4, l4: 'udp', payload: 40_000, gsoSize: 1472 },
  'IPv6/UDP_L4 (USO), a short last segment': { family: 6, l4: 'udp', payload: 14_521, gsoSize: 1452 },
};

describe('SoftwareOffload: segmenting super-frames', () => {
  for (const [name, spec] of Object.entries(SUPER_FRAMES)) {
    test(`${name}: segments as the kernel does, with checksums the reference implementation accepts, at any buffer alignment`, () => {
      const built = build(spec);
      expect(vnetHeaderProblem(built.vnet, 0, built.vnet.length)).toBeNull();
      const segments = segmentAndCheck(built, 0);
      for (const skew of [1, 2, 3]) expectSameFrames(segmentAndCheck(built, skew), segments, `sink at byte offset ${skew}`);
    });
  }

  test('tshark finds every IPv4, TCP and UDP checksum of every segment good (and a corrupted one bad)', (t) => {
    const frames: Uint8Array[] = [];
    const verdicts: string[][] = [];
    for (const spec of Object.values(SUPER_FRAMES)) {
      const segments = segmentAndCheck(build(spec));
      frames.push(...segments);
      verdicts.push(...segments.map(() => expectedVerdicts(spec)));
    }
    // The control: a segment with one payload byte changed must be reported bad.
    const corrupted = frames[0]!.slice();
    corrupted[corrupted.length - 1]! ^= 1;
    frames.push(corrupted);
    verdicts.push([BAD, GOOD, '']);
    requireTool(t, 'tshark', 'tshark');
    expect(tsharkChecksums(frames, join(tempDir('offload'), 'segments.pcap'))).toEqual(verdicts);
  });

  test('a zero vnet header before each segment with prefix', () => {
    const built = build(SUPER_FRAMES['IPv4/TCP']!);
    const plain = new ArraySink();
    const prefixed = new ArraySink();
    expect(new SoftwareOffload().toPlain(built.vnet, 0, built.vnet.length, plain, false)).toBe(true);
    expect(new SoftwareOffload().toPlain(built.vnet, 0, built.vnet.length, prefixed, true)).toBe(true);
    expect(prefixed.records.map((record) => record.subarray(0, VNET_HDR_LEN).every((b) => b === 0))).toEqual(plain.records.map(() => true));
    expectSameFrames(prefixed.records.map((record) => record.subarray(VNET_HDR_LEN)), plain.records, 'frames after the prefix');
  });

  test('a vnet frame in the middle of a larger buffer', () => {
    const built = build(SUPER_FRAMES['IPv6/TCP']!);
    const buffer = new Uint8Array(built.vnet.length + 100).fill(0xee);
    buffer.set(built.vnet, 37);
    const sink = new ArraySink();
    expect(new SoftwareOffload().toPlain(buffer, 37, built.vnet.length, sink, false)).toBe(true);
    expectSameFrames(sink.records, segmentAndCheck(built), 'segments');
  });

  test('a sink that fills up mid-super-frame: the segments that did not fit are counted as dropped', () => {
    const built = build(SUPER_FRAMES['IPv4/TCP']!);
    const count = Math.ceil(60_000 / 1448);
    const sink = new ArraySink(5);
    const offload = new SoftwareOffload();
    expect(offload.toPlain(built.vnet, 0, built.vnet.length, sink, false)).toBe(true);
    expect(sink.records).toHaveLength(5);
    expectSameFrames(sink.records, segmentAndCheck(built).slice(0, 5), 'the segments that fit');
    expect({ segmented: offload.segmented, emitted: offload.emitted, dropped: offload.dropped }).toEqual({ segmented: 1, emitted: 5, dropped: count - 5 });

    const full = new ArraySink(0);
    expect(offload.toPlain(built.vnet, 0, built.vnet.length, full, false)).toBe(true);
    expect(full.records).toHaveLength(0);
    // A super-frame none of whose segments went out is not counted as segmented, only as dropped.
    expect({ segmented: offload.segmented, emitted: offload.emitted, dropped: offload.dropped }).toEqual({ segmented: 1, emitted: 5, dropped: 2 * count - 5 });

    const plain = build({ family: 4, l4: 'udp', payload: 100, gsoSize: 0 });
    expect(offload.toPlain(plain.vnet, 0, plain.vnet.length, full, false)).toBe(true);
    expect(offload.dropped).toBe(2 * count - 5 + 1);
    expect(offload.checksummed).toBe(0);
  });

  test('segments a 64 KiB super-frame (the time it takes is printed, not asserted: a timed test would be a benchmark)', () => {
    for (const family of [4, 6] as const) {
      const payload = family === 4 ? 65535 - 20 - 32 : 65535 - 32;
      const built = build({ family, l4: 'tcp', payload, gsoSize: 1448 });
      const offload = new SoftwareOffload();
      let sink = new ArraySink();
      for (let i = 0; i < 200; i++) {
        offload.toPlain(built.vnet, 0, built.vnet.length, sink, false);
        if (i % 8 === 7) sink = new ArraySink();
      }
      // A sink on shared memory like a ring's, keeping no copies, so that only the segmentation is timed.
      const bytes = new Uint8Array(new SharedArrayBuffer(1 << 17));
      let position = 0;
      const bare: FrameSink = {
        bytes,
        reserve: (length) => (position + length > bytes.length ? (position = 0) : position),
        commit: (length) => void (position += (length + 3) & ~3),
      };
      const runs = 500;
      const start = process.hrtime.bigint();
      for (let i = 0; i < runs; i++) offload.toPlain(built.vnet, 0, built.vnet.length, bare, false);
      const microseconds = Number(process.hrtime.bigint() - start) / runs / 1000;
      expect(offload.emitted).toBe((200 + runs) * Math.ceil(payload / 1448));
      console.log(`SoftwareOffload: a ${built.vnet.length - VNET_HDR_LEN}-byte IPv${family}/TCP super-frame into ${Math.ceil(payload / 1448)} segments: ${microseconds.toFixed(1)} us`);
    }
  });
});

describe('SoftwareOffload: frames that are not super-frames', () => {
  const finish = (built: Built, prefix = false): { record: Uint8Array; offload: SoftwareOffload } => {
    const sink = new ArraySink();
    const offload = new SoftwareOffload();
    const original = built.vnet.slice();
    expect(offload.toPlain(built.vnet, 0, built.vnet.length, sink, prefix)).toBe(true);
    expectSameBytes(built.vnet, original, 'the source');
    expect(sink.records).toHaveLength(1);
    expect(offload.emitted).toBe(1);
    return { record: sink.records[0]!, offload };
  };
  const l4Valid = (frame: Uint8Array, built: Built, length: number) =>
    onesSum(frame, built.l4, length, pseudoSum(frame, built.l3, built.spec.l4 === 'tcp' ? 6 : 17, length - built.l4)) === 0xffff;

  test('a partial UDP and TCP checksum is finished; the rest of the frame is as it was; tshark agrees', (t) => {
    const frames: Uint8Array[] = [];
    const specs: FrameSpec[] = [
      { family: 4, l4: 'udp', payload: 100, gsoSize: 0 },
      { family: 6, l4: 'udp', payload: 1001, gsoSize: 0 },
      { family: 4, l4: 'tcp', payload: 0, gsoSize: 0, tcpFlags: 0x02 },
      { family: 6, l4: 'tcp', payload: 1440, gsoSize: 0, tags: [0x8100] },
    ];
    for (const spec of specs) {
      const built = build(spec);
      const { record, offload } = finish(built);
      const length = built.vnet.length - VNET_HDR_LEN;
      expect(record.length).toBe(length);
      expect(offload.checksummed).toBe(1);
      expect(offload.segmented).toBe(0);
      expect(l4Valid(record, built, length)).toBe(true);
      const field = built.l4 + (spec.l4 === 'tcp' ? 16 : 6);
      expect(Buffer.concat([record.subarray(0, field), record.subarray(field + 2)])).toEqual(
        Buffer.concat([built.vnet.subarray(VNET_HDR_LEN, VNET_HDR_LEN + field), built.vnet.subarray(VNET_HDR_LEN + field + 2)]),
      );
      frames.push(record);
    }
    requireTool(t, 'tshark', 'tshark');
    expect(tsharkChecksums(frames, join(tempDir('offload'), 'partial.pcap'))).toEqual(specs.map(expectedVerdicts));
  });

  test('a short frame is padded to 60 bytes with zeros, its checksum finished over the frame only', () => {
    const built = build({ family: 4, l4: 'udp', payload: 3, gsoSize: 0 });
    const length = built.vnet.length - VNET_HDR_LEN;
    expect(length).toBe(45);
    const { record, offload } = finish(built);
    expect(record.length).toBe(60);
    expect(record.subarray(length).every((b) => b === 0)).toBe(true);
    expect(l4Valid(record, built, length)).toBe(true);
    expect(offload.checksummed).toBe(1);
  });

  test('a UDP checksum that comes out 0 is sent as 0xffff', () => {
    const built = build({ family: 4, l4: 'udp', payload: 2, gsoSize: 0 });
    const frame = built.vnet.subarray(VNET_HDR_LEN);
    const headers = built.headers;
    frame[headers] = 0;
    frame[headers + 1] = 0;
    const word = 0xffff - onesSum(frame, built.l4, frame.length); // makes the whole sum 0xffff: a computed checksum of 0
    put16(frame, headers, word);
    const { record } = finish(built);
    expect(be16(record, built.l4 + 6)).toBe(0xffff);
    expect(l4Valid(record, built, frame.length)).toBe(true);
  });

  test('a frame without NEEDS_CSUM (none, or DATA_VALID) is copied as it is, with prefix too', () => {
    for (const flags of [0, VNET_F_DATA_VALID]) {
      const built = build({ family: 4, l4: 'tcp', payload: 500, gsoSize: 0, flags });
      const { record, offload } = finish(built, true);
      expect(record.subarray(0, VNET_HDR_LEN).every((b) => b === 0)).toBe(true);
      expectSameBytes(record.subarray(VNET_HDR_LEN), built.vnet.subarray(VNET_HDR_LEN), 'the frame');
      expect(offload.checksummed).toBe(0);
    }
  });
});

describe('bad vnet headers', () => {
  /** Sets fields of the vnet header of a copy of `built`. */
  const withHeader = (built: Built, fields: Partial<ReturnType<typeof readVnetHeader>>, length = built.vnet.length): Uint8Array => {
    const vnet = built.vnet.slice(0, length);
    writeVnetHeader(vnet, 0, { ...readVnetHeader(vnet), ...fields });
    return vnet;
  };
  const tcp4 = build({ family: 4, l4: 'tcp', payload: 5000, gsoSize: 1448 });
  const udp4 = build({ family: 4, l4: 'udp', payload: 5000, gsoSize: 1472 });

  const refusedByHeader: Array<[string, Uint8Array, RegExp]> = [
    ['gso_size 0', withHeader(tcp4, { gsoSize: 0 }), /gso_size 0/],
    ['csum_start beyond the frame', withHeader(tcp4, { gsoType: VNET_GSO_NONE, gsoSize: 0, csumStart: 5100 }), /beyond the 5066-byte frame/],
    ['csum_start + csum_offset + 2 one byte beyond the frame', withHeader(tcp4, { gsoType: VNET_GSO_NONE, gsoSize: 0, csumStart: 5066 - 17 }), /beyond/],
    ['csum_start inside the Ethernet header', withHeader(tcp4, { gsoType: VNET_GSO_NONE, gsoSize: 0, csumStart: 8 }), /Ethernet header/],
    ['hdr_len larger than the frame', withHeader(tcp4, { hdrLen: 5067 }), /hdr_len 5067/],
    ['UFO (gso_type UDP)', withHeader(udp4, { gsoType: VNET_GSO_UDP }), /UDP fragmentation/],
    ['an unknown gso_type', withHeader(tcp4, { gsoType: 2 }), /unknown gso_type 0x2/],
    ['ECN without a gso_type', withHeader(tcp4, { gsoType: VNET_GSO_ECN, gsoSize: 0 }), /unknown gso_type 0x80/],
    ['an unknown flag', withHeader(tcp4, { flags: VNET_F_NEEDS_CSUM | 4 }), /unknown vnet header flags 0x5/],
    ['a super-frame without NEEDS_CSUM', withHeader(tcp4, { flags: VNET_F_DATA_VALID }), /without NEEDS_CSUM/],
    ['a TCP super-frame with csum_offset 6', withHeader(tcp4, { csumOffset: 6 }), /csum_offset 6 of a TCP super-frame is not 16/],
    ['a UDP super-frame with csum_offset 16', withHeader(udp4, { csumOffset: 16 }), /csum_offset 16 of a UDP super-frame is not 6/],
    ['shorter than a vnet and an Ethernet header', withHeader(tcp4, { flags: 0, gsoType: 0, gsoSize: 0, hdrLen: 0 }, VNET_HDR_LEN + 13), /shorter than/],
  ];

  /** A super-frame whose header is right but whose frame cannot be segmented as it says. */
  const unsegmentable = (): Array<[string, Uint8Array]> => {
    const notTcp = withHeader(udp4, { gsoType: VNET_GSO_TCPV4, csumOffset: 16 });
    const v6AsTcpv4 = withHeader(build({ family: 6, l4: 'tcp', payload: 3000, gsoSize: 1400 }), { gsoType: VNET_GSO_TCPV4 });
    const v4AsTcpv6 = withHeader(tcp4, { gsoType: VNET_GSO_TCPV6 });
    const truncatedIp = withHeader(tcp4, { hdrLen: 0, csumStart: 14 }, VNET_HDR_LEN + 32); // 18 bytes of IPv4 header
    const ihlBeyond = tcp4.vnet.slice(0, VNET_HDR_LEN + 14 + 60 + 18);
    ihlBeyond[VNET_HDR_LEN + 14] = 0x4f; // IHL 15: 60 bytes of IPv4 header, then 18 of a 20-byte TCP header
    writeVnetHeader(ihlBeyond, 0, { ...readVnetHeader(ihlBeyond), hdrLen: 0, csumStart: 74 });
    const ihlShort = tcp4.vnet.slice();
    ihlShort[VNET_HDR_LEN + 14] = 0x44;
    const fragment = tcp4.vnet.slice();
    put16(fragment, VNET_HDR_LEN + 14 + 6, 0x2000); // More Fragments
    const csumStartElsewhere = withHeader(tcp4, { csumStart: 38 });
    const extensionHeader = build({ family: 6, l4: 'tcp', payload: 3000, gsoSize: 1400 }).vnet;
    extensionHeader[VNET_HDR_LEN + 14 + 6] = 0; // next header: hop-by-hop options
    const tcpDataOffset = tcp4.vnet.slice();
    tcpDataOffset[VNET_HDR_LEN + 34 + 12] = 4 << 4;
    const notIp = tcp4.vnet.slice();
    put16(notIp, VNET_HDR_LEN + 12, 0x0806);
    return [
      ['UDP under GSO_TCPV4', notTcp],
      ['IPv6 under GSO_TCPV4', v6AsTcpv4],
      ['IPv4 under GSO_TCPV6', v4AsTcpv6],
      ['a truncated IPv4 header', truncatedIp],
      ['an IPv4 header whose IHL leaves no room for TCP', ihlBeyond],
      ['an IPv4 IHL below 5', ihlShort],
      ['an IPv4 fragment', fragment],
      ['csum_start not at the TCP header', csumStartElsewhere],
      ['an IPv6 extension header before TCP', extensionHeader],
      ['a TCP data offset below 5', tcpDataOffset],
      ['not IP (ARP)', notIp],
    ];
  };

  const expectRefused = (vnet: Uint8Array): void => {
    const sink = new ArraySink();
    const offload = new SoftwareOffload();
    expect(offload.toPlain(vnet, 0, vnet.length, sink, false)).toBe(false);
    expect(sink.reserves).toBe(0);
    expect(sink.records).toHaveLength(0);
    expect({ segmented: offload.segmented, checksummed: offload.checksummed, emitted: offload.emitted, dropped: offload.dropped }).toEqual({
      segmented: 0,
      checksummed: 0,
      emitted: 0,
      dropped: 0,
    });
  };

  for (const [name, vnet, reason] of refusedByHeader) {
    test(`${name}: vnetHeaderProblem says why; toPlain writes nothing`, () => {
      expect(vnetHeaderProblem(vnet, 0, vnet.length)).toMatch(reason);
      expectRefused(vnet);
    });
  }

  test('frames whose headers cannot be segmented as gso_type says: toPlain refuses and writes nothing', () => {
    for (const [, vnet] of unsegmentable()) expectRefused(vnet);
  });

  test('a partial checksum other than a 16-bit internet sum (SCTP CRC32c at csum_offset 8) is not finished: refused', () => {
    const sctp = withHeader(udp4, { flags: VNET_F_NEEDS_CSUM, gsoType: VNET_GSO_NONE, gsoSize: 0, hdrLen: 0, csumStart: 34, csumOffset: 8 });
    expect(vnetHeaderProblem(sctp, 0, sctp.length)).toBeNull(); // a valid header: a reader with offloads gets it
    expectRefused(sctp);
  });

  test('a super-frame whose transport header is not at csum_start is a bad header: a UDP tunnel (TCP in vxlan), or not what gso_type says', () => {
    // The kernel describes TCP in vxlan as GSO_TCPV4 with csum_start at the inner TCP header.
    const tunnel = withHeader(udp4, { gsoType: VNET_GSO_TCPV4, csumOffset: 16, csumStart: 34 + 8 + 8 + 14 + 20 });
    expect(vnetHeaderProblem(tunnel, 0, tunnel.length)).toMatch(/csum_start 84 past its own transport header at 34 \(a tunnel's inner header\)/);
    expectRefused(tunnel);
    const [[, notTcp]] = unsegmentable() as [[string, Uint8Array]];
    expect(vnetHeaderProblem(notTcp, 0, notTcp.length)).toMatch(/carries protocol 17, not the TCP its gso_type says/);
    for (const [name, vnet] of unsegmentable().filter(([n]) => /IPv6 under GSO_TCPV4|IPv4 under GSO_TCPV6|fragment/.test(n))) {
      expect(vnetHeaderProblem(vnet, 0, vnet.length), name).toMatch(/as its gso_type says/);
    }
  });

  test('vnetHeaderProblem reads the frame where it is in a larger buffer, and only its length', () => {
    const buffer = new Uint8Array(tcp4.vnet.length + 64);
    buffer.set(tcp4.vnet, 20);
    expect(vnetHeaderProblem(buffer, 20, tcp4.vnet.length)).toBeNull();
    expect(vnetHeaderProblem(buffer, 20, 100)).toMatch(/hdr_len 128 is beyond the 90-byte frame/);
  });
});

describe('vnet header fields', () => {
  test('readVnetHeader and writeVnetHeader use the little-endian layout of struct virtio_net_hdr', () => {
    const bytes = new Uint8Array(14).fill(0xaa);
    const header = { flags: VNET_F_NEEDS_CSUM, gsoType: VNET_GSO_TCPV6 | VNET_GSO_ECN, hdrLen: 0x0142, gsoSize: 0x05a8, csumStart: 0x0036, csumOffset: 0x0010 };
    writeVnetHeader(bytes, 2, header);
    expect([...bytes]).toEqual([0xaa, 0xaa, 0x01, 0x84, 0x42, 0x01, 0xa8, 0x05, 0x36, 0x00, 0x10, 0x00, 0xaa, 0xaa]);
    expect(readVnetHeader(bytes, 2)).toEqual(header);
  });

  test('shiftVnetHeader moves csum_start (with NEEDS_CSUM) and hdr_len (when nonzero) by a tag, both ways', () => {
    const bytes = new Uint8Array(VNET_HDR_LEN);
    writeVnetHeader(bytes, 0, { flags: VNET_F_NEEDS_CSUM, gsoType: VNET_GSO_TCPV4, hdrLen: 66, gsoSize: 1448, csumStart: 34, csumOffset: 16 });
    shiftVnetHeader(bytes, 0, 4);
    expect(readVnetHeader(bytes)).toEqual({ flags: VNET_F_NEEDS_CSUM, gsoType: VNET_GSO_TCPV4, hdrLen: 70, gsoSize: 1448, csumStart: 38, csumOffset: 16 });
    shiftVnetHeader(bytes, 0, -4);
    expect(readVnetHeader(bytes)).toEqual({ flags: VNET_F_NEEDS_CSUM, gsoType: VNET_GSO_TCPV4, hdrLen: 66, gsoSize: 1448, csumStart: 34, csumOffset: 16 });
    writeVnetHeader(bytes, 0, { flags: VNET_F_DATA_VALID, gsoType: VNET_GSO_NONE, hdrLen: 0, gsoSize: 0, csumStart: 34, csumOffset: 16 });
    shiftVnetHeader(bytes, 0, 4);
    expect(readVnetHeader(bytes)).toEqual({ flags: VNET_F_DATA_VALID, gsoType: VNET_GSO_NONE, hdrLen: 0, gsoSize: 0, csumStart: 34, csumOffset: 16 });
  });

  test('a tag put into a super-frame with the header shifted segments into tagged frames; without the shift it is refused', () => {
    const untagged = build(SUPER_FRAMES['IPv4/TCP']!);
    const tagged = new Uint8Array(untagged.vnet.length + 4);
    tagged.set(untagged.vnet);
    const length = VNET_HDR_LEN + insertVlanTag(tagged, VNET_HDR_LEN, untagged.vnet.length - VNET_HDR_LEN, 0x8100, 100);
    expect(new SoftwareOffload().toPlain(tagged, 0, length, new ArraySink(), false)).toBe(false);
    shiftVnetHeader(tagged, 0, 4);
    const expected = segmentAndCheck(build({ ...SUPER_FRAMES['IPv4/TCP']!, tags: [0x8100] }));
    const sink = new ArraySink();
    expect(new SoftwareOffload().toPlain(tagged, 0, length, sink, false)).toBe(true);
    expectSameFrames(sink.records, expected, 'tagged segments');
  });
});
