/**
 * Interface names and struct ifreq: checking a name before any syscall, and the ioctls of
 * OVS's netdev-linux (flags, MAC, MTU, ifindex, addresses, ethtool) on a control socket.
 */
import { netdevError } from '../common/errors.js';
import { addressOf, check, IFNAMSIZ, IFREQ_SIZE, IFREQ_UNION, SIOCETHTOOL, SIOCGIFNAME, sys } from './libc.js';

/** Checks a Linux interface name: 1-15 bytes, not '.' or '..', no '/', ':' or whitespace (EINVAL). */
export function validateIfName(name: string): void {
  const bytes = Buffer.byteLength(name);
  if (bytes === 0 || bytes >= IFNAMSIZ || name === '.' || name === '..' || /[/:\s\0]/.test(name)) {
    throw netdevError('EINVAL', `invalid interface name ${JSON.stringify(name)} (1-15 bytes, no '/', ':' or whitespace)`);
  }
}

/** A struct ifreq naming `name`, the rest zero. */
export function ifreq(name: string): Buffer {
  const buffer = Buffer.alloc(IFREQ_SIZE);
  buffer.write(name, 0, 'utf8');
  return buffer;
}

/** ioctl(fd, request, ifr) for interface `name`; throws errno as NetdevError, returns the filled ifreq. */
export function ifreqIoctl(fd: number, name: string, request: number, what: string, fill?: (ifr: Buffer) => void): Buffer {
  const ifr = ifreq(name);
  fill?.(ifr);
  check(sys.ioctl(fd, request, ifr), '', `${what} ${name}`);
  return ifr;
}

/** The name interface `ifindex` has now (SIOCGIFNAME through `fd`, a socket of its namespace); ENODEV if there is none. */
export function ifnameOf(fd: number, ifindex: number): string {
  const ifr = Buffer.alloc(IFREQ_SIZE);
  ifr.writeInt32LE(ifindex, IFREQ_UNION);
  check(sys.ioctl(fd, SIOCGIFNAME, ifr), '', `SIOCGIFNAME of ifindex ${ifindex}`);
  const nul = ifr.indexOf(0);
  return ifr.toString('utf8', 0, nul < 0 || nul > IFNAMSIZ ? IFNAMSIZ : nul);
}

/** An ifreq whose union holds a pointer to `data` (ethtool requests); `data` must outlive the call. */
export function ifreqWithData(ifr: Buffer, data: Uint8Array): void {
  ifr.writeBigUInt64LE(addressOf(data), IFREQ_UNION);
}

/** ethtool's legacy offload switches: TX checksum, TSO, GSO, GRO (linux/ethtool.h). */
const OFFLOAD_SETTERS = { txChecksum: 0x17, tso: 0x1f, gso: 0x24, gro: 0x2c } as const;

/**
 * Turns TX checksum offload, TSO, GSO and GRO off on `name` through `fd` (a control socket of
 * its namespace), with ethtool's legacy switches: what a device whose frames are forwarded by an
 * AF_PACKET app needs, so that frames are complete and checksummed.  The legacy TSO switch does
 * not reach TSO bits newer than it (tx-tcp-accecn-segmentation): those need ETHTOOL_SFEATURES.
 */
export function disableOffloads(fd: number, name: string): void {
  for (const [what, command] of Object.entries(OFFLOAD_SETTERS)) {
    const value = new Uint8Array(8);
    new DataView(value.buffer).setUint32(0, command, true); // struct ethtool_value { cmd, data = 0 }
    ifreqIoctl(fd, name, SIOCETHTOOL, `ethtool ${what} off`, (ifr) => ifreqWithData(ifr, value));
  }
}
