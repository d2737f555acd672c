/** The kernel's interface flags (IFF_*) and the netdev flags (NETDEV_UP, NETDEV_PROMISC) they carry. */
import { NETDEV_PROMISC, NETDEV_UP } from '../../ring/device-shared.js';
import { IFF_PROMISC, IFF_UP } from '../../sys/libc.js';

/** The netdev flags of kernel flags `iff` (SIOCGIFFLAGS, or a link message's ifi_flags). */
export function netdevFlagsOf(iff: number): number {
  return (iff & IFF_UP ? NETDEV_UP : 0) | (iff & IFF_PROMISC ? NETDEV_PROMISC : 0);
}

/** Kernel flags `iff` with IFF_UP and IFF_PROMISC replaced by what netdev flags `flags` say (the other bits kept). */
export function withNetdevFlags(iff: number, flags: number): number {
  return (iff & ~(IFF_UP | IFF_PROMISC)) | (flags & NETDEV_UP ? IFF_UP : 0) | (flags & NETDEV_PROMISC ? IFF_PROMISC : 0);
}
