/** Opening a kernel tap through /dev/net/tun (the tap and pltap providers). */
import { check, errnoError, IFREQ_UNION, lastErrno, O_CLOEXEC, O_NONBLOCK, O_RDWR, sys, TUNSETIFF } from '../../sys/libc.js';
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
 * attaches it with TUNSETIFF to the device `name` ('' lets the kernel pick one) with IFF_* `flags`;
 * returns the descriptor and the device's name.  The descriptor is closed again if TUNSETIFF fails.
 */
export function openTun(name: string, flags: number, netns: Netns | null): TunDevice {
  const open = (): TunDevice => {
    const fd = check(sys.open(TUN_PATH, O_RDWR | O_NONBLOCK | O_CLOEXEC), 'open', `cannot open ${TUN_PATH}`);
    const ifr = ifreq(name);
    ifr.writeUInt16LE(flags, IFREQ_UNION);
    if (sys.ioctl(fd, TUNSETIFF, ifr) < 0) {
      const error = errnoError(lastErrno(), 'open', name ? `TUNSETIFF ${name}` : 'TUNSETIFF');
      sys.close(fd);
      throw error;
    }
    return { fd, name: ifr.toString('utf8', 0, ifr.indexOf(0)) };
  };
  return netns ? netns.run(open) : open();
}
