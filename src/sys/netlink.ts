/**
 * rtnetlink wire format: building requests (RTM_GETLINK, RTM_NEWLINK/DELLINK of tunnel devices,
 * RTM_NEWNEIGH/DELNEIGH of their flood entries) and parsing what NETLINK_ROUTE sockets deliver
 * (RTM_NEWLINK/DELLINK, RTM_NEWADDR/DELADDR, errors with the kernel's extended-ack message).  Pure functions over bytes, apart
 * from what reads and writes them, and safe on any input: every length is checked against what is
 * there, and what cannot be parsed is reported as such (OVS's "something may have changed").
 */

export const NETLINK_ROUTE = 0;
export const AF_NETLINK = 16;
export const RTMGRP_LINK = 0x1;
export const RTMGRP_IPV4_IFADDR = 0x10;
export const RTMGRP_IPV6_IFADDR = 0x100;
export const SOL_NETLINK = 270;
/** Socket options: errors carry the kernel's message (extended acknowledgements), and leave out the request they answer. */
export const NETLINK_CAP_ACK = 10;
export const NETLINK_EXT_ACK = 11;

const NLMSG_HDRLEN = 16;
const NLMSG_NOOP = 1;
const NLMSG_ERROR = 2;
const NLMSG_DONE = 3;
const NLMSG_OVERRUN = 4;
const NLM_F_REQUEST = 1;
const NLM_F_ACK = 4;
const NLM_F_EXCL = 0x200;
const NLM_F_CREATE = 0x400;
const NLM_F_APPEND = 0x800;
const NLM_F_DUMP_INTR = 0x10;
const NLM_F_CAPPED = 0x100;
const NLM_F_ACK_TLVS = 0x200;
const NLMSGERR_ATTR_MSG = 1;
const NLM_F_DUMP = 0x300;
export const RTM_NEWLINK = 16;
export const RTM_DELLINK = 17;
const RTM_GETLINK = 18;
const RTM_NEWADDR = 20;
const RTM_NEWNEIGH = 28;
const RTM_DELNEIGH = 29;
const RTM_DELADDR = 21;
const IFINFOMSG_LEN = 16;
const IFADDRMSG_LEN = 8;
const NDMSG_LEN = 12;
const AF_BRIDGE = 7;
const IFF_UP = 1;
const NUD_PERMANENT = 0x80;
const NTF_SELF = 0x02;
const NDA_DST = 1;
const NDA_LLADDR = 2;
const NLA_F_NESTED = 0x8000;
const IFLA_ADDRESS = 1;
const IFLA_IFNAME = 3;
const IFLA_MTU = 4;
const IFLA_MASTER = 10;
const IFLA_LINKINFO = 18;
const IFLA_STATS64 = 23;
const IFLA_CARRIER = 33;
const IFLA_INFO_KIND = 1;
const IFLA_INFO_DATA = 2;
const IFLA_VLAN_ID = 1;
const STATS64_FIELDS = 21;

/** A link as an RTM_NEWLINK/RTM_DELLINK message describes it (fields absent from the message are undefined). */
export interface LinkMessage {
  kind: 'link';
  deleted: boolean;
  ifindex: number;
  flags: number;
  name?: string | undefined;
  mtu?: number | undefined;
  master?: number | undefined;
  carrier?: boolean | undefined;
  mac?: Uint8Array | undefined;
  /** 'vlan', 'veth', 'tun' ... (IFLA_INFO_KIND). */
  linkKind?: string | undefined;
  vlanId?: number | undefined;
  /** The IFLA_INFO_DATA attributes of a link of any kind but 'vlan', by type (raw payloads). */
  infoData?: Map<number, Uint8Array> | undefined;
  /** struct rtnl_link_stats64's first 21 counters, in the kernel's order. */
  stats?: number[] | undefined;
}

/** An address added to or removed from a link. */
export interface AddressMessage {
  kind: 'address';
  ifindex: number;
  family: number;
}

/** An error answer (NLMSG_ERROR) to a request: errno 0 is an acknowledgement. */
export interface ErrorMessage {
  kind: 'error';
  errno: number;
  seq: number;
  /** The kernel's explanation (NLMSGERR_ATTR_MSG of an extended acknowledgement), if it gave one. */
  message?: string | undefined;
}

/** Something unparsable, or an overrun: anything may have changed. */
export interface UnknownChange {
  kind: 'unparsable';
  reason: string;
}

/** The end of the dump requested with `seq`; `interrupted` if the links changed while it ran (NLM_F_DUMP_INTR: it may be inconsistent). */
export interface DumpDone {
  kind: 'done';
  seq: number;
  interrupted: boolean;
}

export type RouteMessage = LinkMessage | AddressMessage | ErrorMessage | UnknownChange | DumpDone;

const align4 = (n: number): number => (n + 3) & ~3;

/** Calls `visit(type, offset, length)` for each rtattr in bytes[start, end); false if they are malformed. */
function forEachAttribute(view: DataView, start: number, end: number, visit: (type: number, offset: number, length: number) => void): boolean {
  let at = start;
  while (at + 4 <= end) {
    const length = view.getUint16(at, true);
    const type = view.getUint16(at + 2, true) & 0x3fff; // without NLA_F_NESTED / NLA_F_NET_BYTEORDER
    if (length < 4 || at + length > end) return false;
    visit(type, at + 4, length - 4);
    at += align4(length);
  }
  return true;
}

function cString(bytes: Uint8Array, offset: number, length: number): string {
  const slice = bytes.subarray(offset, offset + length);
  const nul = slice.indexOf(0);
  return Buffer.from(slice.subarray(0, nul < 0 ? slice.length : nul)).toString('utf8');
}

function parseLink(bytes: Uint8Array, view: DataView, start: number, end: number, deleted: boolean): LinkMessage | UnknownChange {
  if (end - start < IFINFOMSG_LEN) return { kind: 'unparsable', reason: 'short ifinfomsg' };
  const link: LinkMessage = { kind: 'link', deleted, ifindex: view.getInt32(start + 4, true), flags: view.getUint32(start + 8, true) };
  const ok = forEachAttribute(view, start + IFINFOMSG_LEN, end, (type, offset, length) => {
    if (type === IFLA_IFNAME) link.name = cString(bytes, offset, length);
    else if (type === IFLA_MTU && length >= 4) link.mtu = view.getUint32(offset, true);
    else if (type === IFLA_MASTER && length >= 4) link.master = view.getUint32(offset, true);
    else if (type === IFLA_CARRIER && length >= 1) link.carrier = bytes[offset] !== 0;
    else if (type === IFLA_ADDRESS) link.mac = bytes.slice(offset, offset + length);
    else if (type === IFLA_STATS64 && length >= STATS64_FIELDS * 8) {
      link.stats = Array.from({ length: STATS64_FIELDS }, (_, i) => Number(view.getBigUint64(offset + i * 8, true)));
    } else if (type === IFLA_LINKINFO) {
      forEachAttribute(view, offset, offset + length, (infoType, infoOffset, infoLength) => {
        if (infoType === IFLA_INFO_KIND) link.linkKind = cString(bytes, infoOffset, infoLength);
        else if (infoType === IFLA_INFO_DATA && link.linkKind === 'vlan') {
          forEachAttribute(view, infoOffset, infoOffset + infoLength, (dataType, dataOffset, dataLength) => {
            if (dataType === IFLA_VLAN_ID && dataLength >= 2) link.vlanId = view.getUint16(dataOffset, true);
          });
        } else if (infoType === IFLA_INFO_DATA) {
          const data = new Map<number, Uint8Array>();
          forEachAttribute(view, infoOffset, infoOffset + infoLength, (dataType, dataOffset, dataLength) => {
            data.set(dataType, bytes.slice(dataOffset, dataOffset + dataLength));
          });
          link.infoData = data;
        }
      });
    }
  });
  return ok ? link : { kind: 'unparsable', reason: 'malformed link attributes' };
}

/** An NLMSG_ERROR body (errno, then the request's header, or all of it unless NLM_F_CAPPED, then any NLM_F_ACK_TLVS attributes). */
function parseError(bytes: Uint8Array, view: DataView, body: number, end: number, flags: number, seq: number): ErrorMessage {
  const error: ErrorMessage = { kind: 'error', errno: -view.getInt32(body, true), seq };
  const request = body + 4;
  if ((flags & NLM_F_ACK_TLVS) === 0 || end - request < NLMSG_HDRLEN) return error;
  const requestLength = (flags & NLM_F_CAPPED) !== 0 ? NLMSG_HDRLEN : view.getUint32(request, true);
  if (requestLength < NLMSG_HDRLEN || requestLength > end - request) return error;
  const attributes = request + align4(requestLength);
  forEachAttribute(view, attributes, end, (type, offset, length) => {
    if (type === NLMSGERR_ATTR_MSG) error.message = cString(bytes, offset, length);
  });
  return error;
}

/**
 * Parses the first `length` bytes of `bytes` (what one recv returned) into messages.  Never
 * throws: anything malformed ends the parse with an 'unparsable' entry.
 */
export function parseRouteMessages(bytes: Uint8Array, length: number): RouteMessage[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, Math.min(length, bytes.byteLength));
  const end = view.byteLength;
  const messages: RouteMessage[] = [];
  for (let at = 0; at < end; ) {
    if (end - at < NLMSG_HDRLEN) {
      messages.push({ kind: 'unparsable', reason: 'short netlink header' });
      break;
    }
    const messageLength = view.getUint32(at, true);
    const type = view.getUint16(at + 4, true);
    const flags = view.getUint16(at + 6, true);
    const seq = view.getUint32(at + 8, true);
    if (messageLength < NLMSG_HDRLEN || at + messageLength > end) {
      messages.push({ kind: 'unparsable', reason: `netlink message length ${messageLength} does not fit` });
      break;
    }
    const body = at + NLMSG_HDRLEN;
    const bodyEnd = at + messageLength;
    if (type === RTM_NEWLINK || type === RTM_DELLINK) {
      messages.push(parseLink(bytes, view, body, bodyEnd, type === RTM_DELLINK));
    } else if (type === RTM_NEWADDR || type === RTM_DELADDR) {
      messages.push(
        bodyEnd - body < IFADDRMSG_LEN
          ? { kind: 'unparsable', reason: 'short ifaddrmsg' }
          : { kind: 'address', family: bytes[body]!, ifindex: view.getUint32(body + 4, true) },
      );
    } else if (type === NLMSG_ERROR) {
      messages.push(bodyEnd - body < 4 ? { kind: 'unparsable', reason: 'short error' } : parseError(bytes, view, body, bodyEnd, flags, seq));
    } else if (type === NLMSG_DONE) {
      messages.push({ kind: 'done', seq, interrupted: (flags & NLM_F_DUMP_INTR) !== 0 });
    } else if (type === NLMSG_OVERRUN) {
      messages.push({ kind: 'unparsable', reason: 'overrun' });
    } else if (type !== NLMSG_NOOP) {
      messages.push({ kind: 'unparsable', reason: `unexpected message type ${type}` });
    }
    at += align4(messageLength);
  }
  return messages;
}

/** An RTM_GETLINK request for `ifindex` (the kernel answers with one RTM_NEWLINK carrying IFLA_STATS64). */
export function getLinkRequest(ifindex: number, seq: number): Buffer {
  return linkRequest(NLM_F_REQUEST, ifindex, seq);
}

/** An RTM_GETLINK dump request: the kernel answers with an RTM_NEWLINK per link, then NLMSG_DONE. */
export function dumpLinksRequest(seq: number): Buffer {
  return linkRequest(NLM_F_REQUEST | NLM_F_DUMP, 0, seq);
}

function linkRequest(flags: number, ifindex: number, seq: number): Buffer {
  const request = Buffer.alloc(NLMSG_HDRLEN + IFINFOMSG_LEN);
  request.writeUInt32LE(request.length, 0);
  request.writeUInt16LE(RTM_GETLINK, 4);
  request.writeUInt16LE(flags, 6);
  request.writeUInt32LE(seq, 8);
  request.writeInt32LE(ifindex, NLMSG_HDRLEN + 4);
  return request;
}

/** A struct sockaddr_nl joined to `groups`. */
export function netlinkAddress(groups: number): Buffer {
  const address = Buffer.alloc(12);
  address.writeUInt16LE(AF_NETLINK, 0);
  address.writeUInt32LE(groups, 8);
  return address;
}

/** One netlink attribute: its type and payload (a nested attribute's payload is its attributes, encoded). */
export interface Attribute {
  type: number;
  payload: Uint8Array;
}

/** Encodes `attributes` one after another, each padded to 4 bytes. */
export function encodeAttributes(attributes: readonly Attribute[]): Buffer {
  const parts: Buffer[] = [];
  for (const { type, payload } of attributes) {
    const part = Buffer.alloc(align4(4 + payload.length));
    part.writeUInt16LE(4 + payload.length, 0);
    part.writeUInt16LE(type, 2);
    part.set(payload, 4);
    parts.push(part);
  }
  return Buffer.concat(parts);
}

/** Attribute payloads of the widths the kernel reads: u8, u32 (host order, little-endian here), be16, a NUL-terminated string. */
export const payload = {
  u8: (value: number): Uint8Array => Uint8Array.of(value),
  u32: (value: number): Uint8Array => {
    const bytes = Buffer.alloc(4);
    bytes.writeUInt32LE(value >>> 0);
    return bytes;
  },
  be16: (value: number): Uint8Array => {
    const bytes = Buffer.alloc(2);
    bytes.writeUInt16BE(value);
    return bytes;
  },
  string: (text: string): Uint8Array => Buffer.from(`${text}\0`, 'utf8'),
};

/** A netlink request: header (with NLM_F_REQUEST | NLM_F_ACK | `flags`), a fixed body, then attributes. */
function request(type: number, flags: number, seq: number, body: Buffer, attributes: readonly Attribute[]): Buffer {
  const message = Buffer.concat([Buffer.alloc(NLMSG_HDRLEN), body, encodeAttributes(attributes)]);
  message.writeUInt32LE(message.length, 0);
  message.writeUInt16LE(type, 4);
  message.writeUInt16LE(NLM_F_REQUEST | NLM_F_ACK | flags, 6);
  message.writeUInt32LE(seq, 8);
  return message;
}

/** What a new link is: its name, MTU (0: the kernel's), kind (IFLA_INFO_KIND) and IFLA_INFO_DATA attributes. */
export interface NewLink {
  name: string;
  mtu: number;
  kind: string;
  data: readonly Attribute[];
}

/** An RTM_NEWLINK request creating `link`, up, and failing (EEXIST) if its name is taken. */
export function newLinkRequest(link: NewLink, seq: number): Buffer {
  const ifinfo = Buffer.alloc(IFINFOMSG_LEN);
  ifinfo.writeUInt32LE(IFF_UP, 8); // ifi_flags
  ifinfo.writeUInt32LE(IFF_UP, 12); // ifi_change
  const linkInfo = encodeAttributes([
    { type: IFLA_INFO_KIND, payload: payload.string(link.kind) },
    { type: IFLA_INFO_DATA | NLA_F_NESTED, payload: encodeAttributes(link.data) },
  ]);
  return request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, seq, ifinfo, [
    { type: IFLA_IFNAME, payload: payload.string(link.name) },
    ...(link.mtu ? [{ type: IFLA_MTU, payload: payload.u32(link.mtu) }] : []),
    { type: IFLA_LINKINFO | NLA_F_NESTED, payload: linkInfo },
  ]);
}

/** An RTM_NEWLINK request changing the link `ifindex` of kind `kind` (changelink): the IFLA_INFO_DATA attributes `data`, the others kept. */
export function changeLinkRequest(ifindex: number, kind: string, data: readonly Attribute[], seq: number): Buffer {
  const ifinfo = Buffer.alloc(IFINFOMSG_LEN);
  ifinfo.writeInt32LE(ifindex, 4);
  const linkInfo = encodeAttributes([
    { type: IFLA_INFO_KIND, payload: payload.string(kind) },
    { type: IFLA_INFO_DATA | NLA_F_NESTED, payload: encodeAttributes(data) },
  ]);
  return request(RTM_NEWLINK, 0, seq, ifinfo, [{ type: IFLA_LINKINFO | NLA_F_NESTED, payload: linkInfo }]);
}

/** An RTM_DELLINK request deleting the link `link`: an ifindex, or a name. */
export function deleteLinkRequest(link: number | string, seq: number): Buffer {
  const ifinfo = Buffer.alloc(IFINFOMSG_LEN);
  if (typeof link === 'number') ifinfo.writeInt32LE(link, 4);
  return request(RTM_DELLINK, 0, seq, ifinfo, typeof link === 'string' ? [{ type: IFLA_IFNAME, payload: payload.string(link) }] : []);
}

/**
 * An RTM_NEWNEIGH (`add`) or RTM_DELNEIGH request for the forwarding entry 00:00:00:00:00:00 ->
 * `destination` (4 or 16 address bytes) of the tunnel device `ifindex` (AF_BRIDGE, NTF_SELF,
 * permanent): the entries of all zeros are where the device sends floods, one copy to each
 * (`bridge fdb append 00:00:00:00:00:00 dev DEV dst ADDR`).
 */
export function floodEntryRequest(add: boolean, ifindex: number, destination: Uint8Array, seq: number): Buffer {
  const ndmsg = Buffer.alloc(NDMSG_LEN);
  ndmsg[0] = AF_BRIDGE;
  ndmsg.writeInt32LE(ifindex, 4);
  ndmsg.writeUInt16LE(NUD_PERMANENT, 8);
  ndmsg[10] = NTF_SELF;
  return request(add ? RTM_NEWNEIGH : RTM_DELNEIGH, add ? NLM_F_CREATE | NLM_F_APPEND : 0, seq, ndmsg, [
    { type: NDA_LLADDR, payload: new Uint8Array(6) },
    { type: NDA_DST, payload: destination },
  ]);
}
