/**
 * Offloads done in software, for frames going where the kernel's cannot follow: turns one vnet
 * frame (virtio_net_hdr + Ethernet frame) into plain frames with complete checksums, written into a
 * sink.  A super-frame (TCP over IPv4 or IPv6, or UDP_L4) is cut into segments as the kernel's
 * tcp_gso_segment and __udp_gso_segment cut it; a partial checksum is finished as the kernel's
 * skb_checksum_help finishes it.  Pure code with no I/O, for any thread; nothing is allocated per
 * frame but the views the copies go through (as the rings' own copies).
 */
import {
  ipHeaderOffset,
  VNET_F_NEEDS_CSUM,
  VNET_GSO_ECN,
  VNET_GSO_NONE,
  VNET_GSO_TCPV4,
  VNET_GSO_TCPV6,
  VNET_GSO_UDP_L4,
  VNET_HDR_LEN,
  vnetHeaderProblem,
  TCP_CSUM_OFFSET,
  UDP_CSUM_OFFSET,
} from './vnet-header.js';

/**
 * Where plain frames go: reserve(length) gives the offset in `bytes` of room for a record of
 * `length` bytes (or -1: no room now; TOO_LARGE: never, the record is larger than the sink
 * holds), commit(length) completes it.  A RingWriter has this shape (boundedSink adds TOO_LARGE).
 */
export interface FrameSink {
  readonly bytes: Uint8Array;
  reserve(length: number): number;
  commit(length: number): void;
}

/** What FrameSink.reserve answers for a record larger than the sink can ever hold. */
export const TOO_LARGE = -2;

/**
 * `writer` (e.g. a RingWriter) as a sink that answers TOO_LARGE for a record longer than its
 * `maxRecord` (instead of throwing), and calls `beforeCommit` just before it commits each record
 * (e.g. to write what must be visible with it).
 */
export function boundedSink(writer: FrameSink & { readonly maxRecord: number }, beforeCommit?: () => void): FrameSink {
  return {
    get bytes() {
      return writer.bytes;
    },
    reserve: (length) => (length <= writer.maxRecord ? writer.reserve(length) : TOO_LARGE),
    commit: (length) => {
      beforeCommit?.();
      writer.commit(length);
    },
  };
}

/** The shortest Ethernet frame written (without FCS); shorter frames are zero-padded to it. */
export const PLAIN_MIN_FRAME = 60;

const IPPROTO_TCP = 6;
const IPPROTO_UDP = 17;
const IPV4_MIN_HEADER = 20;
const IPV6_HEADER = 40;
const TCP_MIN_HEADER = 20;
const UDP_HEADER = 8;
const TCP_FIN = 0x01;
const TCP_PSH = 0x08;
const TCP_CWR = 0x80;

const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

const be16 = (bytes: Uint8Array, at: number): number => (bytes[at]! << 8) | bytes[at + 1]!;
const setBe16 = (bytes: Uint8Array, at: number, value: number): void => {
  bytes[at] = (value >> 8) & 0xff;
  bytes[at + 1] = value & 0xff;
};

/** `sum` folded to 16 bits with end-around carry (any sum below 2^53). */
function fold(sum: number): number {
  while (sum > 0xffff) {
    const high = Math.floor(sum / 65536);
    sum = sum - high * 65536 + high;
  }
  return sum;
}

const swap16 = (value: number): number => ((value & 0xff) << 8) | (value >> 8);

/** The one's complement sum (folded, unswapped) of the big-endian 16-bit words of bytes[start .. end), short ranges. */
function sumPairs(bytes: Uint8Array, start: number, end: number): number {
  let sum = 0;
  for (let i = start; i < end; i += 2) sum += (bytes[i]! << 8) | bytes[i + 1]!;
  return fold(sum);
}

/**
 * Turns vnet frames into plain frames (see toPlain).  The counters are the caller's to read and
 * zero: `segmented` super-frames cut into segments (of which at least one was written),
 * `checksummed` frames (not super-frames) whose partial checksum was finished, `emitted` plain
 * frames written, `dropped` plain frames the sink had no room for now, `tooLarge` those it can
 * never hold (TOO_LARGE).
 */
export class SoftwareOffload {
  segmented = 0;
  checksummed = 0;
  emitted = 0;
  dropped = 0;
  tooLarge = 0;

  /** 32-bit words over the sink's buffer, for checksums at memory speed (rebuilt when the buffer changes). */
  private words: Uint32Array<ArrayBufferLike> = new Uint32Array(0);
  private wordsOf: ArrayBufferLike | null = null;
  // What parseSuperFrame() found, as offsets into the Ethernet frame.
  private l3 = 0;
  private l4 = 0;
  private headerLength = 0;
  private ipv4 = false;

  /** `minFrame`: the length shorter frames are zero-padded to. */
  constructor(private readonly minFrame = PLAIN_MIN_FRAME) {}

  /**
   * Writes the vnet frame at bytes[at .. at + length) into `sink` as plain frames: a super-frame
   * as one frame per segment, a frame with a partial checksum with it finished, any other as it is
   * (without the vnet header); each zero-padded to minFrame and, with `prefix`, preceded by a zero
   * vnet header (the record is then header + frame).  Returns false, writing nothing, if the vnet
   * header is bad (vnetHeaderProblem) or a super-frame's headers cannot be segmented (not
   * Ethernet [+ 1 or 2 VLAN tags] + IPv4 / IPv6 without extension headers + the TCP or UDP its
   * gso_type says, csum_start at the L4 header).  If the sink fills up, the frames that did not
   * fit are counted in `dropped` and it still returns true.  The source bytes are not changed.
   */
  toPlain(bytes: Uint8Array, at: number, length: number, sink: FrameSink, prefix: boolean): boolean {
    if (vnetHeaderProblem(bytes, at, length) !== null) return false;
    const gso = bytes[at + 1]! & ~VNET_GSO_ECN;
    if (gso === VNET_GSO_NONE) {
      // A partial checksum other than TCP's or UDP's 16-bit sum (SCTP's CRC32c, at csum_offset 8) is not finished here.
      const csumOffset = bytes[at + 8]! | (bytes[at + 9]! << 8);
      if ((bytes[at]! & VNET_F_NEEDS_CSUM) !== 0 && csumOffset !== TCP_CSUM_OFFSET && csumOffset !== UDP_CSUM_OFFSET) return false;
      this.writeWhole(bytes, at, length, sink, prefix);
      return true;
    }
    if (!this.parseSuperFrame(bytes, at + VNET_HDR_LEN, length - VNET_HDR_LEN, gso, bytes[at + 6]! | (bytes[at + 7]! << 8))) return false;
    this.writeSegments(bytes, at, length, sink, prefix, gso !== VNET_GSO_UDP_L4);
    return true;
  }

  /** Copies a frame that is not a super-frame into the sink, finishing its partial checksum if it has one. */
  private writeWhole(bytes: Uint8Array, at: number, length: number, sink: FrameSink, prefix: boolean): void {
    const frame = at + VNET_HDR_LEN;
    const frameLength = length - VNET_HDR_LEN;
    const lead = prefix ? VNET_HDR_LEN : 0;
    const written = frameLength < this.minFrame ? this.minFrame : frameLength;
    const offset = sink.reserve(lead + written);
    if (offset < 0) {
      if (offset === TOO_LARGE) this.tooLarge++;
      else this.dropped++;
      return;
    }
    const out = sink.bytes;
    if (prefix) out.fill(0, offset, offset + VNET_HDR_LEN);
    const to = offset + lead;
    out.set(bytes.subarray(frame, frame + frameLength), to);
    if (written > frameLength) out.fill(0, to + frameLength, to + written);
    if ((bytes[at]! & VNET_F_NEEDS_CSUM) !== 0) {
      // The field holds the pseudo-header's sum already (CHECKSUM_PARTIAL): sum it all, as skb_checksum_help.
      const start = to + (bytes[at + 6]! | (bytes[at + 7]! << 8));
      const field = start + (bytes[at + 8]! | (bytes[at + 9]! << 8));
      const checksum = ~this.sum(out, start, to + frameLength) & 0xffff;
      setBe16(out, field, checksum === 0 ? 0xffff : checksum);
      this.checksummed++;
    }
    sink.commit(lead + written);
    this.emitted++;
  }

  /**
   * Finds the L3 and L4 headers of the super-frame at bytes[frame .. frame + frameLength) and the
   * length of all its headers; false if it cannot be segmented as `gso` says.
   */
  private parseSuperFrame(bytes: Uint8Array, frame: number, frameLength: number, gso: number, csumStart: number): boolean {
    const l3 = ipHeaderOffset(bytes, frame, frameLength, gso === VNET_GSO_TCPV4 ? 4 : gso === VNET_GSO_TCPV6 ? 6 : 0);
    if (l3 < 0) return false;
    this.ipv4 = bytes[frame + l3]! >> 4 === 4;
    let l4: number;
    if (this.ipv4) {
      const ihl = (bytes[frame + l3]! & 0x0f) * 4;
      if (ihl < IPV4_MIN_HEADER || l3 + ihl > frameLength) return false;
      l4 = l3 + ihl;
    } else {
      l4 = l3 + IPV6_HEADER;
    }
    const protocol = bytes[frame + l3 + (this.ipv4 ? 9 : 6)]!;
    if (l4 !== csumStart) return false;
    let headerLength: number;
    if (gso === VNET_GSO_UDP_L4) {
      if (protocol !== IPPROTO_UDP) return false;
      headerLength = l4 + UDP_HEADER;
    } else {
      if (protocol !== IPPROTO_TCP || l4 + TCP_MIN_HEADER > frameLength) return false;
      const dataOffset = (bytes[frame + l4 + 12]! >> 4) * 4;
      if (dataOffset < TCP_MIN_HEADER) return false;
      headerLength = l4 + dataOffset;
    }
    if (headerLength > frameLength) return false;
    this.l3 = l3;
    this.l4 = l4;
    this.headerLength = headerLength;
    return true;
  }

  /** Writes the segments of the super-frame parseSuperFrame() just parsed, each with its headers fixed and its checksums computed. */
  private writeSegments(bytes: Uint8Array, at: number, length: number, sink: FrameSink, prefix: boolean, tcp: boolean): void {
    const frame = at + VNET_HDR_LEN;
    const { l3, l4, headerLength } = this;
    const ipv4 = this.ipv4;
    const gsoSize = bytes[at + 4]! | (bytes[at + 5]! << 8);
    const payload = length - VNET_HDR_LEN - headerLength;
    const segments = payload <= gsoSize ? 1 : Math.ceil(payload / gsoSize);
    const lead = prefix ? VNET_HDR_LEN : 0;
    // The pseudo-header without its length: both addresses and the protocol.
    const addresses = ipv4 ? sumPairs(bytes, frame + l3 + 12, frame + l3 + 20) : sumPairs(bytes, frame + l3 + 8, frame + l3 + 40);
    const pseudo = addresses + (tcp ? IPPROTO_TCP : IPPROTO_UDP);
    const firstId = ipv4 ? be16(bytes, frame + l3 + 4) : 0;
    const firstSeq = tcp ? ((bytes[frame + l4 + 4]! << 24) | (bytes[frame + l4 + 5]! << 16) | (bytes[frame + l4 + 6]! << 8) | bytes[frame + l4 + 7]!) >>> 0 : 0;
    const tcpFlags = tcp ? bytes[frame + l4 + 13]! : 0;
    const csumField = l4 + (tcp ? 16 : 6);
    const emittedBefore = this.emitted;
    for (let i = 0; i < segments; i++) {
      const from = frame + headerLength + i * gsoSize;
      const chunk = i === segments - 1 ? payload - i * gsoSize : gsoSize;
      const segmentLength = headerLength + chunk;
      const written = segmentLength < this.minFrame ? this.minFrame : segmentLength;
      const offset = sink.reserve(lead + written);
      if (offset < 0) {
        if (offset === TOO_LARGE) this.tooLarge += segments - i;
        else this.dropped += segments - i;
        break;
      }
      const out = sink.bytes;
      if (prefix) out.fill(0, offset, offset + VNET_HDR_LEN);
      const to = offset + lead;
      out.set(bytes.subarray(frame, frame + headerLength), to);
      out.set(bytes.subarray(from, from + chunk), to + headerLength);
      if (written > segmentLength) out.fill(0, to + segmentLength, to + written);
      if (ipv4) {
        setBe16(out, to + l3 + 2, segmentLength - l3);
        setBe16(out, to + l3 + 4, (firstId + i) & 0xffff);
        setBe16(out, to + l3 + 10, 0);
        setBe16(out, to + l3 + 10, ~sumPairs(out, to + l3, to + l4) & 0xffff);
      } else {
        setBe16(out, to + l3 + 4, segmentLength - l3 - IPV6_HEADER);
      }
      const l4Length = segmentLength - l4;
      if (tcp) {
        const seq = (firstSeq + i * gsoSize) >>> 0;
        out[to + l4 + 4] = seq >>> 24;
        out[to + l4 + 5] = (seq >>> 16) & 0xff;
        out[to + l4 + 6] = (seq >>> 8) & 0xff;
        out[to + l4 + 7] = seq & 0xff;
        let flags = tcpFlags;
        if (i !== segments - 1) flags &= ~(TCP_FIN | TCP_PSH);
        if (i !== 0) flags &= ~TCP_CWR;
        out[to + l4 + 13] = flags;
      } else {
        setBe16(out, to + l4 + 4, l4Length);
      }
      setBe16(out, to + csumField, 0);
      const checksum = ~fold(this.sum(out, to + l4, to + segmentLength) + pseudo + l4Length) & 0xffff;
      setBe16(out, to + csumField, checksum === 0 && !tcp ? 0xffff : checksum);
      sink.commit(lead + written);
      this.emitted++;
    }
    if (this.emitted !== emittedBefore) this.segmented++; // at least one segment went out
  }

  /**
   * The one's complement sum (folded) of the big-endian 16-bit words of out[start .. end), an odd
   * last byte padded with zero.  Sums aligned 32-bit words of the buffer: each byte weighs 1 or
   * 256 by its address's parity, which is the internet checksum, byte-swapped when `start` is at
   * an even address.
   */
  private sum(out: Uint8Array, start: number, end: number): number {
    if (this.wordsOf !== out.buffer) {
      this.words = new Uint32Array(out.buffer, 0, out.buffer.byteLength >>> 2);
      this.wordsOf = out.buffer;
    }
    const words = this.words;
    const base = out.byteOffset;
    let edges = 0;
    let i = base + start;
    const stop = base + end;
    const alignedStop = stop & ~3;
    for (; i < stop && (i & 3) !== 0; i++) edges += (i & 1) !== 0 ? out[i - base]! << 8 : out[i - base]!;
    let middle = 0;
    if (i < alignedStop) {
      for (let w = i >>> 2, last = alignedStop >>> 2; w < last; w++) middle += words[w]!;
      i = alignedStop;
    }
    for (; i < stop; i++) edges += (i & 1) !== 0 ? out[i - base]! << 8 : out[i - base]!;
    const sum = fold(edges + (LITTLE_ENDIAN_HOST ? fold(middle) : swap16(fold(middle))));
    return ((base + start) & 1) === 0 ? swap16(sum) : sum;
  }
}
