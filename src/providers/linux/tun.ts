/** Opening a kernel tap through /dev/net/tun (the tap and pltap providers), with virtio-net headers. */
import { NetdevError } from '../../common/errors.js';
import {
  check, errnoError, errnoName, IFF_VNET_HDR, IFREQ_UNION, lastErrno, O_CLOEXEC, O_NONBLOCK, O_RDWR, sys, TUN_F_CSUM, TUN_F_TSO4,
  TUN_F_TSO6, TUN_F_USO4, TUN_F_USO6, TUNGETFEATURES, TUNSETIFF, TUNSETOFFLOAD,
} from '../../sys/libc.js';
import { ifreq } from '../../sys/ifreq.js';
import type { Netns } from '../../sys/netns.js';

const TUN_PATH = '/dev/net/tun';

/** An open tun descriptor and the name of the device it is attached to. */
export interface TunDevice {
  fd: number;
  name: string;
}

/**
 * Opens /dev/net/tun (non-blocking, close-on-exec) inside `netns` (null: this process's own) and
 * attaches it with TUNSETIFF to the device `name` ('' lets the kernel pick one) with IFF_* `flags`
 * and IFF_VNET_HDR: every frame read or written carries a 10-byte virtio_net_hdr first (after the
 * packet-info header, if the flags have one).  EOPNOTSUPP if the kernel's tun driver lacks
 * IFF_VNET_HDR (TUNGETFEATURES).  The tap starts without offloads (TUNSETOFFLOAD 0, also for a
 * persistent tap a reader left with them), until setTunOffloads.  Returns the descriptor and the
 * device's name; the descriptor is closed again if any step fails.
 */
export function openTun(name: string, flags: number, netns: Netns | null): TunDevice {
  const open = (): TunDevice => {
    const fd = check(sys.open(TUN_PATH, O_RDWR | O_NONBLOCK | O_CLOEXEC), 'open', `cannot open ${TUN_PATH}`);
    try {
      requireVnetHeader(fd);
      const ifr = ifreq(name);
      ifr.writeUInt16LE(flags | IFF_VNET_HDR, IFREQ_UNION);
      check(sys.ioctl(fd, TUNSETIFF, ifr), 'open', name ? `TUNSETIFF ${name}` : 'TUNSETIFF');
      const attached = ifr.toString('utf8', 0, ifr.indexOf(0));
      check(sys.ioctlInt(fd, TUNSETOFFLOAD, 0), 'open', `TUNSETOFFLOAD 0 on ${attached}`);
      return { fd, name: attached };
    } catch (error) {
      sys.close(fd);
      throw error;
    }
  };
  return netns ? netns.run(open) : open();
}

/** EOPNOTSUPP unless the tun driver behind `fd` has IFF_VNET_HDR. */
function requireVnetHeader(fd: number): void {
  const features = Buffer.alloc(4);
  check(sys.ioctl(fd, TUNGETFEATURES, features), 'open', 'TUNGETFEATURES');
  const flags = features.readUInt32LE(0);
  if ((flags & IFF_VNET_HDR) === 0) {
    throw new NetdevError({ code: 'EOPNOTSUPP', call: 'open', detail: `the kernel's tun driver has no IFF_VNET_HDR (TUNGETFEATURES 0x${flags.toString(16)})` });
  }
}

/** The offloads a tap reader with offloads takes: checksum, TSO over IPv4 and IPv6, and USO where the kernel has it. */
const TSO = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6;
const USO = TUN_F_USO4 | TUN_F_USO6;

/**
 * Tells the tap behind `fd` which super-frames and partial checksums its reader takes
 * (TUNSETOFFLOAD; the tap's own checksum and segmentation features follow it): with `on`, TCP
 * super-frames (TSO4, TSO6) and UDP ones (USO4, USO6) if the kernel takes them (EINVAL: without);
 * without, none, so the kernel segments and checksums every frame before handing it over.
 * Throws a NetdevError naming `device` if the kernel refuses.
 */
export function setTunOffloads(fd: number, on: boolean, device: string): void {
  if (on && sys.ioctlInt(fd, TUNSETOFFLOAD, TSO | USO) === 0) return;
  if (on && errnoName(lastErrno()) !== 'EINVAL') throw errnoError(lastErrno(), 'open', `TUNSETOFFLOAD 0x${(TSO | USO).toString(16)}`, device);
  const flags = on ? TSO : 0;
  check(sys.ioctlInt(fd, TUNSETOFFLOAD, flags), 'open', `TUNSETOFFLOAD 0x${flags.toString(16)}`, device);
}
