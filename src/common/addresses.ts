/**
 * Parsing and formatting of the addresses the API takes as strings: MAC, IPv4, IPv4 netmask,
 * IPv6.  Every parser throws NetdevError EINVAL naming what was wrong; callers add device and call.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { netdevError } from './errors.js';

const MAC_PATTERN = /^[0-9a-f]{2}([:-])[0-9a-f]{2}(\1[0-9a-f]{2}){4}$/i;

/** Parses "02:00:00:00:00:01" (or with dashes) into 6 bytes. */
export function parseMac(text: unknown): Uint8Array {
  if (typeof text !== 'string' || !MAC_PATTERN.test(text)) {
    throw netdevError('EINVAL', `invalid MAC address ${JSON.stringify(text)} (expected six hex pairs like 02:00:00:00:00:01)`);
  }
  return Uint8Array.from(text.split(/[:-]/), (pair) => parseInt(pair, 16));
}

/** Formats 6 bytes as "02:00:00:00:00:01". */
export function formatMac(bytes: Uint8Array): string {
  return Array.from(bytes.subarray(0, 6), (b) => b.toString(16).padStart(2, '0')).join(':');
}

/** True for a multicast/broadcast MAC (group bit set), which no device may take as its own. */
export function isGroupMac(bytes: Uint8Array): boolean {
  return (bytes[0]! & 1) !== 0;
}

/** Parses a dotted-quad IPv4 address into a uint32 (host order). */
export function parseIPv4(text: unknown): number {
  if (typeof text !== 'string' || !isIPv4(text)) {
    throw netdevError('EINVAL', `invalid IPv4 address ${JSON.stringify(text)}`);
  }
  return text.split('.').reduce((acc, octet) => acc * 256 + Number(octet), 0);
}

/** Formats a uint32 (host order) as a dotted quad. */
export function formatIPv4(value: number): string {
  return [value >>> 24, (value >>> 16) & 255, (value >>> 8) & 255, value & 255].join('.');
}

/**
 * Parses a netmask given as a dotted quad ("255.255.255.0") or a prefix length (24 or "24") into
 * a prefix length 0-32.  A dotted mask must be contiguous ones then zeros.
 */
export function parsePrefixLength(mask: unknown): number {
  if (typeof mask === 'number' || (typeof mask === 'string' && /^\d{1,2}$/.test(mask))) {
    const prefix = Number(mask);
    if (Number.isInteger(prefix) && prefix >= 0 && prefix <= 32) return prefix;
  } else if (typeof mask === 'string' && isIPv4(mask)) {
    const bits = parseIPv4(mask);
    const inverted = ~bits >>> 0;
    if ((inverted & (inverted + 1)) === 0) return 32 - Math.log2(inverted + 1);
  }
  throw netdevError('EINVAL', `invalid netmask ${JSON.stringify(mask)} (expected a prefix length 0-32 or a contiguous dotted mask)`);
}

/** The dotted-quad netmask of a prefix length. */
export function prefixToNetmask(prefix: number): string {
  return formatIPv4(prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0);
}

/** Parses an IPv6 address and returns its canonical (RFC 5952) text. */
export function canonicalIPv6(text: unknown): string {
  if (typeof text !== 'string' || !isIPv6(text)) {
    throw netdevError('EINVAL', `invalid IPv6 address ${JSON.stringify(text)}`);
  }
  return new URL(`http://[${text}]/`).hostname.slice(1, -1);
}

/** The network-order bytes of an IPv4 (4 bytes) or IPv6 (16 bytes) address; EINVAL for anything else. */
export function ipBytes(text: string): Uint8Array {
  if (isIPv4(text)) return Uint8Array.from(text.split('.'), Number);
  if (!isIPv6(text)) throw netdevError('EINVAL', `invalid IP address ${JSON.stringify(text)}`);
  const canonical = canonicalIPv6(text);
  const [head = '', tail = ''] = canonical.split('::');
  const groups = (part: string) => (part ? part.split(':') : []);
  const missing = canonical.includes('::') ? 8 - groups(head).length - groups(tail).length : 0;
  const all = [...groups(head), ...Array<string>(missing).fill('0'), ...groups(tail)];
  const bytes = new Uint8Array(16);
  all.forEach((group, i) => {
    const value = parseInt(group, 16);
    bytes[i * 2] = value >> 8;
    bytes[i * 2 + 1] = value & 255;
  });
  return bytes;
}

/** The text of an IPv4 (4 bytes) or IPv6 (16 bytes, canonical) address. */
export function formatIp(bytes: Uint8Array): string {
  if (bytes.length === 4) return bytes.join('.');
  const groups = Array.from({ length: 8 }, (_, i) => ((bytes[i * 2]! << 8) | bytes[i * 2 + 1]!).toString(16));
  return canonicalIPv6(groups.join(':'));
}

/** True for a multicast address (224.0.0.0/4, ff00::/8). */
export function isMulticastIp(bytes: Uint8Array): boolean {
  return bytes.length === 4 ? (bytes[0]! & 0xf0) === 0xe0 : bytes[0] === 0xff;
}
