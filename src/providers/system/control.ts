/**
 * The system provider (prefix '', names like 'eth0'): Linux network devices, as OVS's
 * netdev-linux class 'linux'.  Control calls are ioctls on one AF_INET datagram socket per
 * network namespace (created inside it, so it answers for that namespace) and reads of
 * /proc/thread-self/net; packet I/O is an AF_PACKET socket in the device's worker (io.ts).
 * A device is the kernel device it opened, by ifindex: every call names it by the name that
 * ifindex has now (so it follows renames), and once the ifindex is gone every call is ENODEV,
 * even if another device took the name.
 */
import { formatIPv4, formatMac, prefixToNetmask } from '../../common/addresses.js';
import { NetdevError, netdevError } from '../../common/errors.js';
import type { LinkMessage } from '../../sys/netlink.js';
import {
  AF_INET, ARP_DEV, ARP_HA, ARP_PA, ARPHRD_ETHER, ARPREQ_SIZE, check, ECMD_ADVERTISING, ETHTOOL_CMD_SIZE, ETHTOOL_GSET, ETHTOOL_SSET,
  IFREQ_UNION, RT_DST, RT_FLAGS, RT_GATEWAY, RT_GENMASK, RTENTRY_SIZE, RTF_UP_GATEWAY, SIOCADDRT, SIOCETHTOOL, SIOCGARP, SIOCGIFADDR,
  SIOCGIFFLAGS, SIOCGIFHWADDR, SIOCGIFINDEX, SIOCGIFMTU, SIOCGIFNETMASK, SIOCSIFADDR, SIOCSIFFLAGS, SIOCSIFHWADDR, SIOCSIFMTU,
  SIOCSIFNETMASK, sys,
} from '../../sys/libc.js';
import { disableOffloads, ifnameOf, ifreqIoctl, ifreqWithData, validateIfName } from '../../sys/ifreq.js';
import { iproute2InNetns, netnsPath, readProcNet } from '../../sys/netns.js';
import type { Config, CreateOptions, DeviceContext, Features, In4, IoControl, Provider, ProviderContext, ProviderDevice, ProviderStats } from '../contract.js';
import { ConfigSchema } from '../config-schema.js';
import { featuresOf, ofppfToEthtool } from '../linux/ethtool-features.js';
import { netdevFlagsOf, withNetdevFlags } from '../linux/iff-flags.js';
import type { LinkNotifier, RouteChange } from '../linux/link-notifier.js';
import { LinuxServices, type ControlSocket, type DeviceServices } from '../linux/services.js';

/** The statistics the kernel keeps of a device (it always has rxErrors and txErrors). */
type KernelStats = Omit<ProviderStats, 'rxQueueDropped' | 'rxErrors' | 'txErrors'> & { rxErrors: number; txErrors: number };

/** What the worker counts that the kernel does not (SystemDevice.workerStats). */
export interface WorkerStats {
  rxErrors: number;
  txErrors: number;
  rxQueueDropped: number | null;
}

/** The burst OVS uses when none is given, in kbit. */
const DEFAULT_BURST_KBIT = 10;

/** What the I/O half needs: where the device is. */
export interface SystemIoOptions {
  ifindex: number;
  netnsPath: string | null;
}

/** System devices have no config keys. */
const config = new ConfigSchema<SystemDevice, object>('system', {});

/** The config keys of system devices: none. */
export const systemConfigKeys = config.describe();

/** A Linux network device as OVS's netdev-linux sees it: attributes through ioctls and /proc. */
export class SystemDevice implements ProviderDevice {
  /** Attribute values read since the notifier last reported a change of this device (OVS's cache). */
  private readonly cache = new Map<string, unknown>();
  private unsubscribe: (() => void) | null = null;
  /** The kernel's index of the device this object controls, read once at open. */
  private ifindex = 0;
  /** Why every call fails, once the device is known to be gone (ENODEV). */
  private gone: NetdevError | null = null;

  protected readonly socket: ControlSocket;
  private readonly notifier: LinkNotifier;
  private readonly runProgram: ProviderContext['runProgram'];
  private io: IoControl | null = null;

  constructor(
    protected readonly context: DeviceContext,
    protected readonly ifname: string,
    protected readonly netnsSpec: string | undefined,
    services: DeviceServices,
  ) {
    this.socket = services.socket;
    this.notifier = services.notifier;
    this.runProgram = services.runProgram;
  }

  /**
   * Finds the device named `ifname` now (ENODEV if there is none), binds this object to its
   * ifindex, reads the kernel's view once and follows its changes (from before the ifindex is
   * read, so that no change is missed).
   */
  open(): void {
    this.unsubscribe = this.notifier.subscribe((change) => {
      if (change.kind === 'resync' || change.ifindex === this.ifindex) this.kernelChanged(change);
    });
    try {
      this.ifindex = ifreqIoctl(this.socket.fd, this.ifname, SIOCGIFINDEX, 'SIOCGIFINDEX').readInt32LE(IFREQ_UNION);
      this.getMtu();
      this.context.shared.flags = this.updateFlags(0, 0);
    } catch (error) {
      this.unsubscribe();
      this.unsubscribe = null;
      throw error;
    }
  }

  /** A change the notifier reported for this device, or a resync (anything may have changed, this device may be gone). */
  private kernelChanged(change: RouteChange): void {
    this.cache.clear();
    let link: LinkMessage | undefined;
    if (change.kind === 'resync') {
      if (change.links === null) {
        try {
          this.currentName(); // the links could not be listed: asks the kernel itself whether this device is gone
        } catch {
          // lostDevice() has run if it is gone
        }
      } else {
        link = change.links.get(this.ifindex);
        if (!link) this.lostDevice();
      }
    } else if (change.kind === 'link') {
      if (change.deleted) this.lostDevice();
      link = change;
    }
    if (this.gone) return;
    if (link) {
      if (link.mtu !== undefined) this.context.shared.mtu = link.mtu;
      this.context.shared.flags = netdevFlagsOf(link.flags);
    }
    this.context.changed();
  }

  /** `key`'s cached value, or `read()`'s, cached while the notifier follows the device. */
  private cached<T>(key: string, read: () => T): T {
    if (this.cache.has(key)) return this.cache.get(key) as T;
    const value = read();
    if (this.unsubscribe) this.cache.set(key, value);
    return value;
  }

  /** Forgets cached values after a change made here (the notifier will confirm it). */
  private changedHere(): void {
    this.cache.clear();
    this.context.changed();
  }

  /** The device is gone (its ifindex vanished): every later call fails with ENODEV, and its users learn it. */
  private lostDevice(): void {
    if (this.gone) return;
    this.gone = netdevError('ENODEV', `${this.ifname} (ifindex ${this.ifindex}) was deleted (or moved to another namespace)`);
    this.unsubscribe?.();
    this.unsubscribe = null;
    this.cache.clear();
    this.context.lost(new NetdevError({ code: 'ENODEV', device: this.context.name, call: 'notifier', detail: this.gone.detail }));
  }

  /**
   * The name the device has now (SIOCGIFNAME of its ifindex: renames are followed), for the
   * calls that name it.  ENODEV once its ifindex is gone, even if another device took its name.
   */
  protected currentName(): string {
    if (!this.gone) {
      try {
        return ifnameOf(this.socket.fd, this.ifindex);
      } catch (error) {
        if (!(error instanceof NetdevError) || error.code !== 'ENODEV') throw error;
        this.lostDevice();
      }
    }
    throw this.gone!;
  }

  /** False once the name it was opened by no longer leads to this device (deleted, renamed, or taken by another). */
  holdsName(): boolean {
    if (this.gone) return false;
    try {
      return ifreqIoctl(this.socket.fd, this.ifname, SIOCGIFINDEX, 'SIOCGIFINDEX').readInt32LE(IFREQ_UNION) === this.ifindex;
    } catch {
      return false;
    }
  }

  /** An ifreq ioctl on the device, by the name it has now. */
  protected ioctl(request: number, what: string, fill?: (ifr: Buffer) => void): Buffer {
    return ifreqIoctl(this.socket.fd, this.currentName(), request, what, fill);
  }

  getConfig(): Config {
    return config.values(this);
  }

  async setConfig(changes: Config): Promise<void> {
    await config.parse(changes, this);
  }

  ioOptions(): unknown {
    return { ifindex: this.getIfindex(), netnsPath: this.netnsSpec === undefined ? null : netnsPath(this.netnsSpec) };
  }

  /** The ifindex the device was opened with; ENODEV once it is gone. */
  getIfindex(): number {
    this.currentName();
    return this.ifindex;
  }

  updateFlags(off: number, on: number): number {
    const iff = this.ioctl(SIOCGIFFLAGS, 'SIOCGIFFLAGS').readUInt16LE(IFREQ_UNION);
    const old = netdevFlagsOf(iff);
    const wanted = (old & ~off) | on;
    if (wanted !== old) {
      const next = withNetdevFlags(iff, wanted);
      this.ioctl(SIOCSIFFLAGS, 'SIOCSIFFLAGS', (ifr) => ifr.writeUInt16LE(next, IFREQ_UNION));
      this.context.shared.flags = wanted;
      this.changedHere();
    }
    return old;
  }

  getEtheraddr(): string {
    return this.cached('mac', () => formatMac(this.ioctl(SIOCGIFHWADDR, 'SIOCGIFHWADDR').subarray(IFREQ_UNION + 2, IFREQ_UNION + 8)));
  }

  setEtheraddr(mac: Uint8Array): void {
    this.ioctl(SIOCSIFHWADDR, 'SIOCSIFHWADDR', (ifr) => {
      ifr.writeUInt16LE(ARPHRD_ETHER, IFREQ_UNION);
      ifr.set(mac, IFREQ_UNION + 2);
    });
    this.changedHere();
  }

  getMtu(): number {
    return this.cached('mtu', () => {
      const mtu = this.ioctl(SIOCGIFMTU, 'SIOCGIFMTU').readInt32LE(IFREQ_UNION);
      this.context.shared.mtu = mtu;
      return mtu;
    });
  }

  setMtu(mtu: number): void {
    // ifr_mtu is a C int: a value outside it could not even reach the kernel's own range check.
    if (mtu < 0 || mtu > 0x7fff_ffff) throw netdevError('EINVAL', `MTU must be from 0 to 2147483647 (the ioctl's C int), not ${mtu}`);
    this.ioctl(SIOCSIFMTU, 'SIOCSIFMTU', (ifr) => ifr.writeInt32LE(mtu, IFREQ_UNION));
    this.context.shared.mtu = mtu;
    this.changedHere();
  }

  /** Carrier as rtnetlink reports it (IFLA_CARRIER: answers in any namespace; false while down). */
  getCarrier(): boolean {
    return this.cached('carrier', () => this.notifier.queryLink(this.getIfindex()).carrier === true);
  }

  /**
   * The kernel's statistics, plus what only the worker sees: frames it received or sent that the
   * kernel does not count as errors (cut, too large for the RX ring, refused by the socket) in
   * rxErrors and txErrors, and rxQueueDropped, brought up to date first.
   */
  async getStats(): Promise<ProviderStats> {
    const worker = await this.workerStats();
    const kernel = this.kernelStats();
    return { ...kernel, rxErrors: kernel.rxErrors + worker.rxErrors, txErrors: kernel.txErrors + worker.txErrors, rxQueueDropped: worker.rxQueueDropped };
  }

  /** Keeps the I/O half's control while its worker runs, for workerStats. */
  ioStarted(io: IoControl): void {
    this.io = io;
  }

  ioStopping(): void {
    this.io = null;
  }

  ioFailed(): void {
    this.io = null;
  }

  /**
   * What only the worker counts: frames it could not deliver or send, and the frames the kernel
   * dropped from the packet socket's queue (the worker reads PACKET_STATISTICS first while it
   * runs, so the count is exact up to this call).
   */
  protected async workerStats(): Promise<WorkerStats> {
    await this.io?.call('readQueueDrops');
    const { rxErrors, txErrors, rxQueueDropped } = this.context.shared.read();
    return { rxErrors, txErrors, rxQueueDropped };
  }

  /** Statistics from rtnetlink (IFLA_STATS64), or /proc/net/dev of the device's namespace if that fails. */
  private kernelStats(): KernelStats {
    let link: LinkMessage | null = null;
    try {
      link = this.notifier.queryLink(this.getIfindex());
    } catch {
      // fall back to /proc/net/dev below
    }
    const s = link?.stats;
    if (!s) return this.getProcStats();
    return {
      rxPackets: s[0]!, txPackets: s[1]!, rxBytes: s[2]!, txBytes: s[3]!, rxErrors: s[4]!, txErrors: s[5]!, rxDropped: s[6]!, txDropped: s[7]!,
      multicast: s[8]!, collisions: s[9]!, rxLengthErrors: s[10]!, rxOverErrors: s[11]!, rxCrcErrors: s[12]!, rxFrameErrors: s[13]!,
      rxFifoErrors: s[14]!, rxMissedErrors: s[15]!, txAbortedErrors: s[16]!, txCarrierErrors: s[17]!, txFifoErrors: s[18]!,
      txHeartbeatErrors: s[19]!, txWindowErrors: s[20]!,
    };
  }

  /** Statistics from /proc/net/dev of the device's namespace; the fields it lacks are null. */
  private getProcStats(): KernelStats {
    const name = this.currentName();
    const line = readProcNet('dev', this.socket.netns)
      .split('\n')
      .find((l) => l.trimStart().startsWith(`${name}:`));
    if (!line) throw netdevError('ENODEV', `${name} is not in /proc/net/dev`);
    const f = line.slice(line.indexOf(':') + 1).trim().split(/\s+/).map(Number);
    return {
      rxBytes: f[0]!, rxPackets: f[1]!, rxErrors: f[2]!, rxDropped: f[3]!, rxFifoErrors: f[4]!, rxFrameErrors: f[5]!, multicast: f[7]!,
      txBytes: f[8]!, txPackets: f[9]!, txErrors: f[10]!, txDropped: f[11]!, txFifoErrors: f[12]!, collisions: f[13]!, txCarrierErrors: f[14]!,
      rxLengthErrors: null, rxOverErrors: null, rxCrcErrors: null, rxMissedErrors: null,
      txAbortedErrors: null, txHeartbeatErrors: null, txWindowErrors: null,
    };
  }

  getIn4(): In4 {
    return this.cached('in4', () => {
      const address = this.ioctl(SIOCGIFADDR, 'SIOCGIFADDR').readUInt32BE(IFREQ_UNION + 4);
      const mask = this.ioctl(SIOCGIFNETMASK, 'SIOCGIFNETMASK').readUInt32BE(IFREQ_UNION + 4);
      const prefixLength = 32 - Math.log2((~mask >>> 0) + 1);
      return { address: formatIPv4(address), netmask: prefixToNetmask(prefixLength), prefixLength };
    });
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
    this.changedHere();
  }

  /** An ethtool request: `cmd` is ETHTOOL_GSET/SSET; the struct ethtool_cmd is filled in place. */
  private ethtool(command: number, what: string, ecmd = new Uint8Array(ETHTOOL_CMD_SIZE)): DataView {
    const view = new DataView(ecmd.buffer, ecmd.byteOffset, ecmd.byteLength);
    view.setUint32(0, command, true);
    this.ioctl(SIOCETHTOOL, what, (ifr) => ifreqWithData(ifr, ecmd));
    return view;
  }

  /** OpenFlow feature bits from ETHTOOL_GSET, mapped as OVS maps them (peer: 0, as OVS). */
  getFeatures(): Features {
    return featuresOf(this.ethtool(ETHTOOL_GSET, 'ETHTOOL_GSET'));
  }

  /** Advertises the OpenFlow bits `bits` (ETHTOOL_GSET, then ETHTOOL_SSET with the advertising mask replaced). */
  setAdvertisements(bits: number): void {
    const ecmd = new Uint8Array(ETHTOOL_CMD_SIZE);
    this.ethtool(ETHTOOL_GSET, 'ETHTOOL_GSET', ecmd).setUint32(ECMD_ADVERTISING, ofppfToEthtool(bits), true);
    this.ethtool(ETHTOOL_SSET, 'ETHTOOL_SSET', ecmd);
    this.changedHere();
  }

  disableOffloads(): void {
    disableOffloads(this.socket.fd, this.currentName());
    this.changedHere();
  }

  /** Adds a default route via `gateway` (SIOCADDRT, RTF_UP | RTF_GATEWAY), as OVS. */
  addRouter(gateway: number): void {
    this.currentName(); // ENODEV for a device that is gone
    const rtentry = Buffer.alloc(RTENTRY_SIZE);
    for (const at of [RT_DST, RT_GATEWAY, RT_GENMASK]) rtentry.writeUInt16LE(AF_INET, at);
    rtentry.writeUInt32BE(gateway, RT_GATEWAY + 4);
    rtentry.writeUInt16LE(RTF_UP_GATEWAY, RT_FLAGS);
    check(sys.ioctl(this.socket.fd, SIOCADDRT, rtentry), '', `SIOCADDRT via ${formatIPv4(gateway)}`);
  }

  /**
   * Polices input with tc, as OVS: an ingress qdisc and a u32 filter with a police action
   * (rate `kbitsRate` kbit/s, burst `kbitsBurst` kbit, 10 if 0); rate 0 removes the qdisc.  tc runs
   * in the job pool with an argument vector, inside the device's namespace; its complaint is the error.
   */
  async setPolicing(kbitsRate: number, kbitsBurst: number): Promise<void> {
    const dev = ['dev', this.currentName()];
    await this.tc(['qdisc', 'del', ...dev, 'handle', 'ffff:', 'ingress'], true);
    if (kbitsRate !== 0) {
      await this.tc(['qdisc', 'add', ...dev, 'handle', 'ffff:', 'ingress']);
      const burst = kbitsBurst || DEFAULT_BURST_KBIT;
      await this.tc(['filter', 'add', ...dev, 'parent', 'ffff:', 'protocol', 'ip', 'prio', '50', 'u32', 'match', 'ip', 'src', '0.0.0.0/0',
        'police', 'rate', `${kbitsRate}kbit`, 'burst', `${burst}kbit`, 'mtu', '65535', 'drop', 'flowid', ':1']);
    }
    this.context.changed();
  }

  /** Runs tc in the device's namespace; a failure (unless `mayFail`) is EINVAL carrying tc's words. */
  private async tc(args: string[], mayFail = false): Promise<void> {
    const result = await this.runProgram(iproute2InNetns(this.netnsSpec, 'tc', args));
    if (result.status !== 0 && !mayFail) {
      throw netdevError('EINVAL', `tc ${args.slice(0, 2).join(' ')} failed: ${result.stderr.trim() || `exit status ${result.status}`}`);
    }
  }

  /** The VLAN VID of an 802.1Q device (rtnetlink link info); ENOENT for any other device. */
  getVlanVid(): number {
    const link = this.notifier.queryLink(this.getIfindex());
    if (link.linkKind !== 'vlan' || link.vlanId === undefined) throw netdevError('ENOENT', `${this.currentName()} is not a VLAN device`);
    return link.vlanId;
  }

  /** The first IPv6 address of the device, from /proc/net/if_inet6 of its namespace. */
  getIn6(): string {
    return this.cached('in6', () => this.readIn6());
  }

  private readIn6(): string {
    const name = this.currentName();
    // Lines: address, ifindex (hex), prefix length, scope, flags, name.
    const entry = readProcNet('if_inet6', this.socket.netns)
      .split('\n')
      .map((l) => l.trim().split(/\s+/))
      .find((fields) => fields.length >= 6 && parseInt(fields[1]!, 16) === this.ifindex);
    if (!entry) throw netdevError('EADDRNOTAVAIL', `${name} has no IPv6 address`);
    const hex = entry[0]!;
    return new URL(`http://[${hex.match(/.{4}/g)!.join(':')}]/`).hostname.slice(1, -1);
  }

  /** The ARP table's MAC for `ip` on this device (SIOCGARP); ENXIO if there is no entry. */
  arpLookup(ip: number): string {
    const arpreq = Buffer.alloc(ARPREQ_SIZE);
    arpreq.writeUInt16LE(AF_INET, ARP_PA);
    arpreq.writeUInt32BE(ip, ARP_PA + 4);
    const name = this.currentName();
    arpreq.write(name, ARP_DEV, 'utf8');
    check(sys.ioctl(this.socket.fd, SIOCGARP, arpreq), '', `SIOCGARP on ${name}`);
    return formatMac(arpreq.subarray(ARP_HA + 2, ARP_HA + 8));
  }

  destroy(): void {
    this.unsubscribe?.();
    this.unsubscribe = null;
  }
}

/** A new system provider (one control socket per namespace, opened on first use). */
export function systemProvider(): Provider {
  const services = new LinuxServices();
  return {
    type: 'system',
    prefix: '',
    ioModule: new URL('./io.js', import.meta.url),
    namespaced: true,
    offloads: true,
    configKeys: systemConfigKeys,
    init: (context) => services.init(context),
    close: () => services.close(),
    validateName: validateIfName,
    create(context: DeviceContext, options: CreateOptions): SystemDevice {
      const device = new SystemDevice(context, context.suffix, options.netns, services.forNamespace(options.netns));
      device.open();
      return device;
    },
    enumerate: (netns?: string) =>
      readProcNet('dev', services.forNamespace(netns).socket.netns)
        .split('\n')
        .slice(2)
        .map((line) => line.slice(0, line.indexOf(':')).trim())
        .filter((name) => name),
  };
}
