/**
 * The classic pcap file format (what tcpdump -w writes and tcpdump -r / tshark -r read): a 24-byte
 * file header (magic, version 2.4, snap length, LINKTYPE_ETHERNET) and, per frame, a 16-byte
 * record header (seconds, microseconds or nanoseconds, captured and original length) and the
 * bytes.  Writing builds headers; reading checks every length against the file and says where a
 * malformed or truncated file goes wrong (file and byte offset), never crashing on any input.
 */
import { NetdevError } from './errors.js';

export const PCAP_HEADER_SIZE = 24;
export const PCAP_RECORD_HEADER_SIZE = 16;
export const LINKTYPE_ETHERNET = 1;
export const DEFAULT_SNAPLEN = 262144;

const MAGIC_MICROS = 0xa1b2c3d4;
const MAGIC_NANOS = 0xa1b23c4d;

/** The file header of a pcap file of Ethernet frames, with microsecond or nanosecond timestamps. */
export function pcapFileHeader(nanoseconds: boolean, snaplen = DEFAULT_SNAPLEN): Buffer {
  const header = Buffer.alloc(PCAP_HEADER_SIZE);
  header.writeUInt32LE(nanoseconds ? MAGIC_NANOS : MAGIC_MICROS, 0);
  header.writeUInt16LE(2, 4);
  header.writeUInt16LE(4, 6);
  header.writeUInt32LE(snaplen, 16);
  header.writeUInt32LE(LINKTYPE_ETHERNET, 20);
  return header;
}

/** Writes a record header at `at` in `target`: time (seconds, and the fraction in the file's unit), captured and original length. */
export function writeRecordHeader(target: Buffer, at: number, seconds: number, fraction: number, length: number): void {
  target.writeUInt32LE(seconds, at);
  target.writeUInt32LE(fraction, at + 4);
  target.writeUInt32LE(length, at + 8);
  target.writeUInt32LE(length, at + 12);
}

/** One frame read back from a pcap file. */
export interface PcapRecord {
  /** Timestamp in nanoseconds since the epoch (exact for nanosecond files). */
  timeNs: bigint;
  /** The captured bytes (a view into the file's buffer). */
  frame: Uint8Array;
  /** The frame's length on the wire (more than frame.length if the capture cut it). */
  originalLength: number;
}

/** The frames of a pcap file, checked: EINVAL naming `file` and the byte offset for anything malformed. */
export function* readPcap(bytes: Uint8Array, file: string): Generator<PcapRecord> {
  const fail = (offset: number, what: string): never => {
    throw new NetdevError({ code: 'EINVAL', call: 'readPcap', detail: `${file}: offset ${offset}: ${what}` });
  };
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < PCAP_HEADER_SIZE) fail(bytes.length, `file is ${bytes.length} bytes, shorter than a pcap header`);
  const magicLE = view.getUint32(0, true);
  const magicBE = view.getUint32(0, false);
  const little = magicLE === MAGIC_MICROS || magicLE === MAGIC_NANOS;
  if (!little && magicBE !== MAGIC_MICROS && magicBE !== MAGIC_NANOS) fail(0, `not a pcap file (magic 0x${magicLE.toString(16)})`);
  const nanos = (little ? magicLE : magicBE) === MAGIC_NANOS;
  const major = view.getUint16(4, little);
  if (major !== 2) fail(4, `unsupported pcap version ${major}`);
  const snaplen = view.getUint32(16, little);
  const linktype = view.getUint32(20, little) & 0x0fffffff;
  if (linktype !== LINKTYPE_ETHERNET) fail(20, `link type ${linktype} is not Ethernet (1)`);
  for (let at = PCAP_HEADER_SIZE; at < bytes.length; ) {
    if (bytes.length - at < PCAP_RECORD_HEADER_SIZE) fail(at, 'file ends inside a record header');
    const seconds = view.getUint32(at, little);
    const fraction = view.getUint32(at + 4, little);
    const captured = view.getUint32(at + 8, little);
    const original = view.getUint32(at + 12, little);
    if (captured > Math.max(snaplen, DEFAULT_SNAPLEN)) fail(at + 8, `record of ${captured} bytes exceeds the snap length ${snaplen}`);
    if (fraction >= (nanos ? 1e9 : 1e6)) fail(at + 4, `timestamp fraction ${fraction} out of range`);
    const data = at + PCAP_RECORD_HEADER_SIZE;
    if (bytes.length - data < captured) fail(data, `file ends inside a record of ${captured} bytes`);
    yield {
      timeNs: BigInt(seconds) * 1_000_000_000n + BigInt(nanos ? fraction : fraction * 1000),
      frame: bytes.subarray(data, data + captured),
      originalLength: original,
    };
    at = data + captured;
  }
}
