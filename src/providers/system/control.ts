/**
 * The system provider (prefix '', names like 'eth0'): Linux network devices, as the seed's
 * netdev-linux class 'linux'.  Control calls are ioctls on one AF_INET datagram socket per
 * network namespace (created inside it, so it answers for that namespace) and reads of
 * /proc/thread-self/net; packet I/O is an AF_PACKET socket in the device's worker (io.ts).
 */
import { formatIPv4, formatMac, prefixToNetmask } from '../../common/addresses.js';
import { netdevError } from '../../common/errors.js';
import { NETDEV_PROMISC, NETDEV_UP } from '../../ring/device-shared.js';
import {
  AF_INET, ARPHRD_ETHER, check, IFF_PROMISC, IFF_UP, IFREQ_UNION, SIOCETHTOOL, SIOCGARP, SIOCGIFADDR, SIOCGIFFLAGS,
  SIOCGIFHWADDR, SIOCGIFINDEX, SIOCGIFMTU, SIOCGIFNETMASK, SIOCSIFADDR, SIOCSIFFLAGS, SIOCSIFHWADDR, SIOCSIFMTU,
  SIOCSIFNETMASK, SOCK_CLOEXEC, SOCK_DGRAM, sys,
} from '../../sys/libc.js';
import { ifreqIoctl, ifreqWithData, validateIfName } from '../../sys/ifreq.js';
import { Netns, netnsPath, readProcNet } from '../../sys/netns.js';
import type { Config, CreateOptions, DeviceContext, In4, Provider, ProviderDevice, Stats } from '../contract.js';

const ETHTOOL_GLINK = 0x0a;

/** What the I/O half needs: where the device is. */
export interface SystemIoOptions {
  ifindex: number;
  netnsPath: string | null;
}

/** One AF_INET datagram socket for the ioctls of one namespace. */
export interface ControlSocket {
  fd: number;
  netns: Netns | null;
}

/** The control sockets of a provider, one per namespace, each created inside its namespace on first use. */
export class ControlSockets {
  private readonly sockets = new Map<string, ControlSocket>();

  /** The socket of namespace `spec` (undefined: this process's own). */
  get(spec: string | undefined): ControlSocket {
    const key = spec ?? '';
    let socket = this.sockets.get(key);
    if (!socket) {
      const netns = spec === undefined ? null : Netns.open(spec);
      const open = () => check(sys.socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), 'socket', 'cannot create the AF_INET control socket');
      socket = { fd: netns ? netns.run(open) : open(), netns };
      this.sockets.set(key, socket);
    }
    return socket;
  }
}

/** A Linux network device as the seed's netdev-linux sees it: attributes through ioctls and /proc. */
export class SystemDevice implements ProviderDevice {
  constructor(
    protected readonly context: DeviceContext,
    protected readonly socket: ControlSocket,
    protected readonly ifname: string,
    protected readonly netnsSpec: string | undefined,
  ) {}

  /** Reads the kernel's view once at open: ENODEV now if there is no such device. */
  open(): void {
    this.getIfindex();
    this.getMtu();
    this.context.shared.flags = this.updateFlags(0, 0);
  }

  protected ioctl(request: number, what: string, fill?: (ifr: Buffer) => void): Buffer {
    return ifreqIoctl(this.socket.fd, this.ifname, request, what, fill);
  }

  getConfig(): Config {
    return {};
  }

  setConfig(changes: Config): void {
    const key = Object.keys(changes)[0];
    if (key !== undefined) throw netdevError('EINVAL', `unknown config key '${key}' (system devices have none)`);
  }

  ioOptions(): unknown {
    return { ifindex: this.getIfindex(), netnsPath: this.netnsSpec === undefined ? null : netnsPath(this.netnsSpec) };
  }

  getIfindex(): number {
    return this.ioctl(SIOCGIFINDEX, 'SIOCGIFINDEX').readInt32LE(IFREQ_UNION);
  }

  updateFlags(off: number, on: number): number {
    const iff = this.ioctl(SIOCGIFFLAGS, 'SIOCGIFFLAGS').readUInt16LE(IFREQ_UNION);
    const old = (iff & IFF_UP ? NETDEV_UP : 0) | (iff & IFF_PROMISC ? NETDEV_PROMISC : 0);
    const wanted = (old & ~off) | on;
    if (wanted !== old) {
      const next = (iff & ~(IFF_UP | IFF_PROMISC)) | (wanted & NETDEV_UP ? IFF_UP : 0) | (wanted & NETDEV_PROMISC ? IFF_PROMISC : 0);
      this.ioctl(SIOCSIFFLAGS, 'SIOCSIFFLAGS', (ifr) => ifr.writeUInt16LE(next, IFREQ_UNION));
      this.context.shared.flags = wanted;
      this.context.changed();
    }
    return old;
  }

  getEtheraddr(): string {
    const ifr = this.ioctl(SIOCGIFHWADDR, 'SIOCGIFHWADDR');
    return formatMac(ifr.subarray(IFREQ_UNION + 2, IFREQ_UNION + 8));
  }

  setEtheraddr(mac: Uint8Array): void {
    this.ioctl(SIOCSIFHWADDR, 'SIOCSIFHWADDR', (ifr) => {
      ifr.writeUInt16LE(ARPHRD_ETHER, IFREQ_UNION);
      ifr.set(mac, IFREQ_UNION + 2);
    });
    this.context.changed();
  }

  getMtu(): number {
    const mtu = this.ioctl(SIOCGIFMTU, 'SIOCGIFMTU').readInt32LE(IFREQ_UNION);
    this.context.shared.mtu = mtu;
    return mtu;
  }

  setMtu(mtu: number): void {
    this.ioctl(SIOCSIFMTU, 'SIOCSIFMTU', (ifr) => ifr.writeInt32LE(mtu, IFREQ_UNION));
    this.context.shared.mtu = mtu;
    this.context.changed();
  }

  /** Carrier through ethtool's ETHTOOL_GLINK (answers inside any namespace, and false while down). */
  getCarrier(): boolean {
    const value = new Uint8Array(8);
    new DataView(value.buffer).setUint32(0, ETHTOOL_GLINK, true);
    this.ioctl(SIOCETHTOOL, 'ETHTOOL_GLINK', (ifr) => ifreqWithData(ifr, value));
    return new DataView(value.buffer).getUint32(4, true) !== 0;
  }

  /** Statistics from /proc/net/dev of the device's namespace; the fields it lacks are null. */
  getStats(): Omit<Stats, 'rxRingDropped'> {
    const line = readProcNet('dev', this.socket.netns)
      .split('\n')
      .find((l) => l.trimStart().startsWith(`${this.ifname}:`));
    if (!line) throw netdevError('ENODEV', `${this.ifname} is not in /proc/net/dev`);
    const f = line.slice(line.indexOf(':') + 1).trim().split(/\s+/).map(Number);
    return {
      rxBytes: f[0]!, rxPackets: f[1]!, rxErrors: f[2]!, rxDropped: f[3]!, rxFifoErrors: f[4]!, rxFrameErrors: f[5]!, multicast: f[7]!,
      txBytes: f[8]!, txPackets: f[9]!, txErrors: f[10]!, txDropped: f[11]!, txFifoErrors: f[12]!, collisions: f[13]!, txCarrierErrors: f[14]!,
      rxLengthErrors: null, rxOverErrors: null, rxCrcErrors: null, rxMissedErrors: null,
      txAbortedErrors: null, txHeartbeatErrors: null, txWindowErrors: null,
    };
  }

  getIn4(): In4 {
    const address = this.ioctl(SIOCGIFADDR, 'SIOCGIFADDR').readUInt32BE(IFREQ_UNION + 4);
    const mask = this.ioctl(SIOCGIFNETMASK, 'SIOCGIFNETMASK').readUInt32BE(IFREQ_UNION + 4);
    const prefixLength = 32 - Math.log2((~mask >>> 0) + 1);
    return { address: formatIPv4(address), netmask: prefixToNetmask(prefixLength), prefixLength };
  }

  setIn4(address: number, prefixLength: number): void {
    const sockaddrIn = (value: number) => (ifr: Buffer) => {
      ifr.writeUInt16LE(AF_INET, IFREQ_UNION);
      ifr.writeUInt32BE(value, IFREQ_UNION + 4);
    };
    this.ioctl(SIOCSIFADDR, 'SIOCSIFADDR', sockaddrIn(address));
    if (address !== 0) {
      this.ioctl(SIOCSIFNETMASK, 'SIOCSIFNETMASK', sockaddrIn(prefixLength === 0 ? 0 : (0xffffffff << (32 - prefixLength)) >>> 0));
    }
    this.context.changed();
  }

  /** The first IPv6 address of the device, from /proc/net/if_inet6 of its namespace. */
  getIn6(): string {
    const entry = readProcNet('if_inet6', this.socket.netns)
      .split('\n')
      .map((l) => l.trim().split(/\s+/))
      .find((fields) => fields[5] === this.ifname);
    if (!entry) throw netdevError('EADDRNOTAVAIL', `${this.ifname} has no IPv6 address`);
    const hex = entry[0]!;
    return new URL(`http://[${hex.match(/.{4}/g)!.join(':')}]/`).hostname.slice(1, -1);
  }

  /** The ARP table's MAC for `ip` on this device (SIOCGARP); ENXIO if there is no entry. */
  arpLookup(ip: number): string {
    const arpreq = Buffer.alloc(68);
    arpreq.writeUInt16LE(AF_INET, 0);
    arpreq.writeUInt32BE(ip, 4);
    arpreq.write(this.ifname, 52, 'utf8');
    check(sys.ioctl(this.socket.fd, SIOCGARP, arpreq), '', `SIOCGARP on ${this.ifname}`);
    return formatMac(arpreq.subarray(18, 24));
  }

  destroy(): void {}
}

/** A new system provider (one control socket per namespace, opened on first use). */
export function systemProvider(): Provider {
  const sockets = new ControlSockets();
  return {
    type: 'system',
    prefix: '',
    ioModule: new URL('./io.js', import.meta.url),
    namespaced: true,
    init() {
      sockets.get(undefined);
    },
    validateName: validateIfName,
    create(context: DeviceContext, options: CreateOptions): SystemDevice {
      const device = new SystemDevice(context, sockets.get(options.netns), context.suffix, options.netns);
      device.open();
      return device;
    },
    enumerate: () =>
      readProcNet('dev', null)
        .split('\n')
        .slice(2)
        .map((line) => line.slice(0, line.indexOf(':')).trim())
        .filter((name) => name),
  };
}
