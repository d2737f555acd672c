/**
 * Self-checking frames for integrity tests, and a checker that verifies every byte of every
 * frame a receiver gets.
 *
 * A test frame, untagged, of L bytes (L >= 60):
 *   0  destination MAC      6  source MAC      12  ethertype 0x88b5
 *   14 magic 0x4e44         16 sender id       17  flow id          18 seq (32 bits)
 *   22 L (16 bits)          24 .. L-4: bytes derived from (sender, seq, offset)
 *   L-4 FNV-1a 32 of bytes 0 .. L-4
 * An 802.1Q tag may be inserted after the MACs on the way (it is not covered by the checksum;
 * the checker compares its VID with the one expected).  A receiver may pad a frame with zeros.
 */
export const TEST_ETHERTYPE = 0x88b5;
const MAGIC = 0x4e44;
const TPID = 0x8100;
const HEADER = 24;

/** The MAC of test host `n` (1-based): 02:00:00:00:0n:n. */
export function hostMac(n: number): Uint8Array {
  return Uint8Array.of(2, 0, 0, 0, (n >> 8) & 0xff, n & 0xff);
}

/** A unicast MAC no port ever learns (so frames to it are flooded). */
export const UNKNOWN_MAC = Uint8Array.of(2, 0, 0, 0xee, 0xee, 0xee);
export const BROADCAST_MAC = new Uint8Array(6).fill(0xff);

function fnv1a(bytes: Uint8Array, from: number, to: number): number {
  let hash = 0x811c9dc5;
  for (let i = from; i < to; i++) hash = Math.imul(hash ^ bytes[i]!, 0x01000193);
  return hash >>> 0;
}

/** The pattern byte at `offset` of the frame `seq` of `sender`. */
function patternByte(sender: number, seq: number, offset: number): number {
  return (sender * 31 + seq * 7 + offset * 13 + (offset >> 8)) & 0xff;
}

export interface FrameSpec {
  dst: Uint8Array;
  sender: number;
  flow?: number;
  seq: number;
  /** Untagged length, 60 or more. */
  length: number;
  /** If given, the frame carries an 802.1Q tag with this VID (the frame is then length + 4). */
  vid?: number;
}

/** Builds a self-checking frame. */
export function testFrame(spec: FrameSpec): Uint8Array {
  const { length } = spec;
  if (length < 60 || length > 0xffff) throw new RangeError(`test frames are 60-65535 bytes, not ${length}`);
  const f = new Uint8Array(length);
  const view = new DataView(f.buffer);
  f.set(spec.dst, 0);
  f.set(hostMac(spec.sender), 6);
  view.setUint16(12, TEST_ETHERTYPE);
  view.setUint16(14, MAGIC);
  f[16] = spec.sender & 0xff;
  f[17] = (spec.flow ?? 0) & 0xff;
  view.setUint32(18, spec.seq);
  view.setUint16(22, length);
  for (let i = HEADER; i < length - 4; i++) f[i] = patternByte(spec.sender, spec.seq, i);
  view.setUint32(length - 4, fnv1a(f, 0, length - 4));
  return spec.vid === undefined ? f : withTag(f, spec.vid);
}

function withTag(frame: Uint8Array, vid: number): Uint8Array {
  const out = new Uint8Array(frame.length + 4);
  out.set(frame.subarray(0, 12), 0);
  new DataView(out.buffer).setUint16(12, TPID);
  new DataView(out.buffer).setUint16(14, vid & 0x0fff);
  out.set(frame.subarray(12), 16);
  return out;
}

/** What a received test frame says about itself, or why it is damaged. */
export type Verdict = { ok: true; sender: number; flow: number; seq: number; length: number; vid: number | null } | { ok: false; why: string };

/** Checks every byte of `frame` (a view or a copy); `vidOf(sender)` is the tag it must carry (null: untagged). */
export function verifyFrame(frame: Uint8Array, vidOf: (sender: number) => number | null): Verdict {
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  if (frame.length < 18) return { ok: false, why: `runt of ${frame.length} bytes` };
  const type = view.getUint16(12);
  let untagged = frame;
  let got: number | null = null;
  if (type === TPID) {
    got = view.getUint16(14) & 0x0fff;
    untagged = new Uint8Array(frame.length - 4);
    untagged.set(frame.subarray(0, 12), 0);
    untagged.set(frame.subarray(16), 12);
  }
  const u = new DataView(untagged.buffer, untagged.byteOffset, untagged.byteLength);
  if (untagged.length < 60) return { ok: false, why: `${untagged.length} bytes (untagged), under 60` };
  if (u.getUint16(12) !== TEST_ETHERTYPE || u.getUint16(14) !== MAGIC) return { ok: false, why: `ethertype/magic ${u.getUint16(12).toString(16)}/${u.getUint16(14).toString(16)}` };
  const length = u.getUint16(22);
  if (length < 60 || length > untagged.length) return { ok: false, why: `says ${length} bytes, has ${untagged.length}` };
  const sender = untagged[16]!;
  const seq = u.getUint32(18);
  if (u.getUint32(length - 4) !== fnv1a(untagged, 0, length - 4)) return { ok: false, why: `checksum of frame ${sender}/${seq}` };
  for (let i = 6; i < 12; i++) if (untagged[i] !== hostMac(sender)[i - 6]) return { ok: false, why: `source MAC of frame ${sender}/${seq}` };
  for (let i = HEADER; i < length - 4; i++) if (untagged[i] !== patternByte(sender, seq, i)) return { ok: false, why: `byte ${i} of frame ${sender}/${seq}` };
  for (let i = length; i < untagged.length; i++) if (untagged[i] !== 0) return { ok: false, why: `padding byte ${i} of frame ${sender}/${seq}` };
  if (got !== vidOf(sender)) return { ok: false, why: `VLAN ${got} on frame ${sender}/${seq} where ${vidOf(sender)} was expected` };
  return { ok: true, sender, flow: untagged[17]!, seq, length, vid: got };
}

/** Per receiver: checks each frame it gets, and counts them per sender (in order, or not). */
export class FrameChecker {
  /** Good frames received, by sender. */
  readonly received = new Map<number, number>();
  readonly corrupted: string[] = [];
  /** Frames that came in a lower or equal sequence than an earlier one of the same sender. */
  reordered = 0;
  /** A few of the out-of-order arrivals, as 'sender:seq after last'. */
  readonly samples: string[] = [];
  private readonly last = new Map<number, number>();

  /** @param vidOf the VLAN tag a frame from `sender` must carry here (null: untagged). */
  constructor(private readonly vidOf: (sender: number) => number | null = () => null) {}

  /** Checks one frame; returns its verdict. */
  check(frame: Uint8Array): Verdict {
    const verdict = verifyFrame(frame, this.vidOf);
    if (!verdict.ok) {
      if (this.corrupted.length < 20) this.corrupted.push(verdict.why);
      else this.corrupted.length++;
      return verdict;
    }
    const last = this.last.get(verdict.sender);
    if (last !== undefined && verdict.seq <= last) {
      this.reordered++;
      if (this.samples.length < 10) this.samples.push(`${verdict.sender}:${verdict.seq} after ${last}`);
    }
    this.last.set(verdict.sender, verdict.seq);
    this.received.set(verdict.sender, (this.received.get(verdict.sender) ?? 0) + 1);
    return verdict;
  }

  /** Good frames received from `sender`. */
  from(sender: number): number {
    return this.received.get(sender) ?? 0;
  }

  /** The sequence number of the last frame from `sender`, or -1. */
  lastFrom(sender: number): number {
    return this.last.get(sender) ?? -1;
  }

  /** Good frames from every sender. */
  get total(): number {
    let n = 0;
    for (const count of this.received.values()) n += count;
    return n;
  }
}

/** A frame length from `min` to `max` for frame `seq` (deterministic, spread over the range). */
export function lengthFor(seq: number, min: number, max: number): number {
  return min + ((seq * 2654435761) >>> 0) % (max - min + 1);
}
