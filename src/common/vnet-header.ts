/**
 * The virtio-net header (struct virtio_net_hdr of linux/virtio_net.h) that a packet socket with
 * PACKET_VNET_HDR and a tap with IFF_VNET_HDR put before every frame: 10 bytes, little-endian,
 *   u8 flags @0, u8 gso_type @1, u16 hdr_len @2, u16 gso_size @4, u16 csum_start @6, u16 csum_offset @8.
 * A "vnet frame" is this header followed by the Ethernet frame.  csum_start counts from the
 * Ethernet frame's first byte (the byte after the header), as the kernel's.
 */
import { ETH_HEADER } from './ethernet.js';

/** Bytes of a virtio_net_hdr (the variant without num_buffers). */
export const VNET_HDR_LEN = 10;
/** flags: the L4 checksum is partial; finish it from csum_start, storing at csum_start + csum_offset. */
export const VNET_F_NEEDS_CSUM = 1;
/** flags: the checksums were verified already (receive only). */
export const VNET_F_DATA_VALID = 2;
/** gso_type: not a super-frame. */
export const VNET_GSO_NONE = 0;
/** gso_type: TCP over IPv4 super-frame (TSO4), cut into gso_size payload bytes per segment. */
export const VNET_GSO_TCPV4 = 1;
/** gso_type: UDP fragmentation offload (UFO): one UDP datagram to split into IP fragments. */
export const VNET_GSO_UDP = 3;
/** gso_type: TCP over IPv6 super-frame (TSO6). */
export const VNET_GSO_TCPV6 = 4;
/** gso_type: UDP segmentation offload (USO): a train of UDP datagrams of gso_size payload bytes each. */
export const VNET_GSO_UDP_L4 = 5;
/** gso_type bit: the TCP super-frame has ECN (CWR is set on the first segment only). */
export const VNET_GSO_ECN = 0x80;

/** Offset of the checksum field from the L4 header's start: TCP and UDP. */
export const TCP_CSUM_OFFSET = 16;
export const UDP_CSUM_OFFSET = 6;

/** The fields of a virtio_net_hdr. */
export interface VnetHeader {
  /** VNET_F_NEEDS_CSUM, VNET_F_DATA_VALID. */
  flags: number;
  /** VNET_GSO_*, possibly with VNET_GSO_ECN. */
  gsoType: number;
  /** Length of the headers (the kernel gives the length of the linear part: a hint). */
  hdrLen: number;
  /** Payload bytes per segment of a super-frame. */
  gsoSize: number;
  /** Where the partial checksum starts, from the Ethernet frame's first byte. */
  csumStart: number;
  /** Where the checksum goes, from csumStart. */
  csumOffset: number;
}

const u16 = (bytes: Uint8Array, at: number): number => bytes[at]! | (bytes[at + 1]! << 8);
const setU16 = (bytes: Uint8Array, at: number, value: number): void => {
  bytes[at] = value & 0xff;
  bytes[at + 1] = (value >> 8) & 0xff;
};

/** The virtio_net_hdr at bytes[at ..] (10 bytes must be there). */
export function readVnetHeader(bytes: Uint8Array, at = 0): VnetHeader {
  return {
    flags: bytes[at]!,
    gsoType: bytes[at + 1]!,
    hdrLen: u16(bytes, at + 2),
    gsoSize: u16(bytes, at + 4),
    csumStart: u16(bytes, at + 6),
    csumOffset: u16(bytes, at + 8),
  };
}

/** Writes `header` as a virtio_net_hdr at bytes[at ..]. */
export function writeVnetHeader(bytes: Uint8Array, at: number, header: VnetHeader): void {
  bytes[at] = header.flags;
  bytes[at + 1] = header.gsoType;
  setU16(bytes, at + 2, header.hdrLen);
  setU16(bytes, at + 4, header.gsoSize);
  setU16(bytes, at + 6, header.csumStart);
  setU16(bytes, at + 8, header.csumOffset);
}

/**
 * Why the vnet frame at bytes[at .. at + length) (header and Ethernet frame) is unusable, or null.
 * The frame must hold an Ethernet header; flags and gso_type must be known; a partial checksum
 * (and hdr_len) must lie inside the frame.  A super-frame needs gso_size, NEEDS_CSUM and the TCP or
 * UDP checksum offset, and its own headers are read as far as the transport header: an IP packet
 * of the family its gso_type says (IPv4 not a fragment; IPv6 without extension headers), carrying
 * the TCP or UDP it says, with csum_start there (a UDP tunnel's super-frame, which the kernel
 * describes by its inner TCP header, is refused).  UFO (VNET_GSO_UDP) is refused, as it cannot be
 * segmented here.  SoftwareOffload checks the rest when it segments.  Allocates only to describe a
 * bad frame.
 */
export function vnetHeaderProblem(bytes: Uint8Array, at: number, length: number): string | null {
  if (length < VNET_HDR_LEN + ETH_HEADER) return `vnet frame of ${length} bytes is shorter than a vnet header and an Ethernet header (${VNET_HDR_LEN + ETH_HEADER})`;
  const frameLength = length - VNET_HDR_LEN;
  // Most frames: no flags, no GSO, so nothing but hdr_len to check (checked once per frame received).
  if (bytes[at] === 0 && bytes[at + 1] === VNET_GSO_NONE && u16(bytes, at + 2) <= frameLength) return null;
  const flags = bytes[at]!;
  if ((flags & ~(VNET_F_NEEDS_CSUM | VNET_F_DATA_VALID)) !== 0) return `unknown vnet header flags 0x${flags.toString(16)}`;
  const hdrLen = u16(bytes, at + 2);
  if (hdrLen > frameLength) return `hdr_len ${hdrLen} is beyond the ${frameLength}-byte frame`;
  const csumStart = u16(bytes, at + 6);
  const csumOffset = u16(bytes, at + 8);
  if ((flags & VNET_F_NEEDS_CSUM) !== 0) {
    if (csumStart < ETH_HEADER) return `csum_start ${csumStart} is inside the Ethernet header`;
    if (csumStart + csumOffset + 2 > frameLength) return `checksum at csum_start ${csumStart} + csum_offset ${csumOffset} is beyond the ${frameLength}-byte frame`;
  }
  const gsoType = bytes[at + 1]!;
  if (gsoType === VNET_GSO_NONE) return null;
  const gso = gsoType & ~VNET_GSO_ECN;
  if (gso === VNET_GSO_UDP) return 'UDP fragmentation offload (gso_type UDP) is not supported';
  if (gso !== VNET_GSO_TCPV4 && gso !== VNET_GSO_TCPV6 && gso !== VNET_GSO_UDP_L4) return `unknown gso_type 0x${gsoType.toString(16)}`;
  if (u16(bytes, at + 4) === 0) return 'gso_size 0 in a super-frame';
  if ((flags & VNET_F_NEEDS_CSUM) === 0) return 'super-frame without NEEDS_CSUM';
  const expected = gso === VNET_GSO_UDP_L4 ? UDP_CSUM_OFFSET : TCP_CSUM_OFFSET;
  if (csumOffset !== expected) return `csum_offset ${csumOffset} of a ${gso === VNET_GSO_UDP_L4 ? 'UDP' : 'TCP'} super-frame is not ${expected}`;
  const protocol = gso === VNET_GSO_UDP_L4 ? IPPROTO_UDP : IPPROTO_TCP;
  const family = gso === VNET_GSO_TCPV4 ? 4 : gso === VNET_GSO_TCPV6 ? 6 : 0;
  const frame = at + VNET_HDR_LEN;
  const l3 = ipHeaderOffset(bytes, frame, frameLength, family);
  if (l3 < 0) return family === 0 ? 'super-frame that is not an unfragmented IPv4 packet or an IPv6 packet without extension headers' : `super-frame that is not an unfragmented IPv${family} packet${family === 6 ? ' without extension headers' : ''}, as its gso_type says`;
  // The kernel describes a UDP-tunnel super-frame (TCP in vxlan) as TCP with csum_start at the inner
  // TCP header: no virtio_net_hdr can say what it is, and it cannot be segmented as it says.
  const ipv4 = bytes[frame + l3]! >> 4 === 4;
  const l4 = ipv4 ? l3 + (bytes[frame + l3]! & 0x0f) * 4 : l3 + 40;
  const transportProtocol = bytes[frame + l3 + (ipv4 ? 9 : 6)]!;
  if (csumStart > l4 && transportProtocol === IPPROTO_UDP && protocol === IPPROTO_TCP) return `super-frame with csum_start ${csumStart} past its own transport header at ${l4} (a tunnel's inner header)`;
  if (transportProtocol !== protocol) return `super-frame whose IP header carries protocol ${transportProtocol}, not the ${protocol === IPPROTO_TCP ? 'TCP' : 'UDP'} its gso_type says`;
  if (csumStart !== l4) return `super-frame with csum_start ${csumStart}, not at its transport header (${l4})`;
  return null;
}

const IPPROTO_TCP = 6;
const IPPROTO_UDP = 17;

/**
 * The offset, in the Ethernet frame at bytes[frame .. frame + length), of its IP header after up
 * to two VLAN tags: an IPv4 header (version 4, not a fragment, 20 bytes there) or an IPv6 one
 * (version 6, 40 bytes there), of IP version `family` (0: either); -1 if there is none such.
 * The version nibble at the offset says which.
 */
export function ipHeaderOffset(bytes: Uint8Array, frame: number, length: number, family: number): number {
  let l3 = 12;
  let type = (bytes[frame + l3]! << 8) | bytes[frame + l3 + 1]!;
  for (let tags = 0; tags < 2 && (type === 0x8100 || type === 0x88a8) && l3 + 6 <= length; tags++) {
    l3 += 4;
    type = (bytes[frame + l3]! << 8) | bytes[frame + l3 + 1]!;
  }
  l3 += 2;
  const ip = frame + l3;
  if (type === 0x0800 && family !== 6 && l3 + 20 <= length && bytes[ip]! >> 4 === 4 && (((bytes[ip + 6]! << 8) | bytes[ip + 7]!) & 0x3fff) === 0) return l3;
  if (type === 0x86dd && family !== 4 && l3 + 40 <= length && bytes[ip]! >> 4 === 6) return l3;
  return -1;
}

/**
 * Adjusts the vnet header at bytes[at ..] for a VLAN tag inserted into (delta +4) or removed from
 * (delta -4) its frame after the MAC addresses: csum_start moves (when NEEDS_CSUM) and so does
 * hdr_len (when nonzero), as both count from the frame's first byte.
 */
export function shiftVnetHeader(bytes: Uint8Array, at: number, delta: 4 | -4): void {
  if ((bytes[at]! & VNET_F_NEEDS_CSUM) !== 0) setU16(bytes, at + 6, u16(bytes, at + 6) + delta);
  const hdrLen = u16(bytes, at + 2);
  if (hdrLen !== 0) setU16(bytes, at + 2, hdrLen + delta);
}

/** The largest Ethernet frame a GSO super-frame can be: an IP packet of 64 KiB, an Ethernet header and an 802.1Q tag. */
export const LARGEST_SUPER_FRAME = 65535 + ETH_HEADER + 4;

/** True if the vnet frame at bytes[at ..] is a GSO super-frame (gso_type other than NONE). */
export function isGsoFrame(bytes: Uint8Array, at: number): boolean {
  return bytes[at + 1] !== VNET_GSO_NONE;
}

/** True if the vnet frame at bytes[at ..] must be segmented or have its checksum finished before it is a plain frame. */
export function needsSoftwareOffload(bytes: Uint8Array, at: number): boolean {
  return (bytes[at]! & VNET_F_NEEDS_CSUM) !== 0 || bytes[at + 1] !== VNET_GSO_NONE;
}
