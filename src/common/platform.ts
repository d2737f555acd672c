/**
 * The platform netdev runs on: Linux only, for its kernel interfaces (AF_PACKET sockets,
 * /dev/net/tun, rtnetlink, the libc it loads).
 */
import { NetdevError } from './errors.js';

/** Null on Linux; elsewhere the NetdevError (EOPNOTSUPP) saying that netdev needs Linux. */
export function platformProblem(platform: string = process.platform): NetdevError | null {
  if (platform === 'linux') return null;
  return new NetdevError({ code: 'EOPNOTSUPP', call: 'import', detail: `netdev needs Linux (AF_PACKET, /dev/net/tun, rtnetlink); this is ${platform}` });
}
