/**
 * Ethernet frame layout, in one place: header sizes and the 802.1Q tag (read, insert, remove).
 * Offsets are into the frame; `at` is where the frame starts in a larger buffer.
 */

/** Destination and source MACs. */
export const MAC_ADDRESSES = 12;
/** Destination, source, ethertype. */
export const ETH_HEADER = 14;
/** An 802.1Q (or 802.1ad) tag: TPID and TCI, after the MAC addresses. */
export const VLAN_TAG = 4;
/** What a frame carries at most beyond its MTU's worth of payload: the header and one VLAN tag. */
export const FRAME_OVERHEAD = ETH_HEADER + VLAN_TAG;
/** TPIDs of a customer (802.1Q) and a service (802.1ad) VLAN tag. */
export const TPID_8021Q = 0x8100;
export const TPID_8021AD = 0x88a8;

/** True if the frame at `bytes[at ..]` carries an 802.1Q or 802.1ad tag. */
export function isVlanTagged(bytes: Uint8Array, at = 0): boolean {
  const type = (bytes[at + MAC_ADDRESSES]! << 8) | bytes[at + MAC_ADDRESSES + 1]!;
  return type === TPID_8021Q || type === TPID_8021AD;
}

/** The VID of the 802.1Q-tagged frame at `bytes[at ..]` of `length` bytes, or 0 (untagged, or priority-tagged). */
export function vidAt(bytes: Uint8Array, at: number, length: number): number {
  return length >= ETH_HEADER + VLAN_TAG && bytes[at + MAC_ADDRESSES] === TPID_8021Q >> 8 && bytes[at + MAC_ADDRESSES + 1] === (TPID_8021Q & 0xff)
    ? ((bytes[at + MAC_ADDRESSES + 2]! << 8) | bytes[at + MAC_ADDRESSES + 3]!) & 0x0fff
    : 0;
}

/** A new frame: `frame` with an 802.1Q tag for `vid` inserted after the MAC addresses. */
export function withVlanTag(frame: Uint8Array, vid: number): Uint8Array {
  const out = new Uint8Array(frame.length + VLAN_TAG);
  out.set(frame.subarray(0, MAC_ADDRESSES), 0);
  out[MAC_ADDRESSES] = TPID_8021Q >> 8;
  out[MAC_ADDRESSES + 1] = TPID_8021Q & 0xff;
  out[MAC_ADDRESSES + 2] = (vid >> 8) & 0x0f;
  out[MAC_ADDRESSES + 3] = vid & 0xff;
  out.set(frame.subarray(MAC_ADDRESSES), MAC_ADDRESSES + VLAN_TAG);
  return out;
}

/** A new frame: `frame` without its VLAN tag. */
export function withoutVlanTag(frame: Uint8Array): Uint8Array {
  const out = new Uint8Array(frame.length - VLAN_TAG);
  out.set(frame.subarray(0, MAC_ADDRESSES), 0);
  out.set(frame.subarray(MAC_ADDRESSES + VLAN_TAG), MAC_ADDRESSES);
  return out;
}

/**
 * Puts a tag (`tpid`, `tci`) back into the frame of `length` bytes at `bytes[at ..]`, in place
 * (the buffer must have VLAN_TAG bytes of room after it); returns the new length.
 */
export function insertVlanTag(bytes: Uint8Array, at: number, length: number, tpid: number, tci: number): number {
  bytes.copyWithin(at + MAC_ADDRESSES + VLAN_TAG, at + MAC_ADDRESSES, at + length);
  bytes[at + MAC_ADDRESSES] = tpid >> 8;
  bytes[at + MAC_ADDRESSES + 1] = tpid & 0xff;
  bytes[at + MAC_ADDRESSES + 2] = tci >> 8;
  bytes[at + MAC_ADDRESSES + 3] = tci & 0xff;
  return length + VLAN_TAG;
}
