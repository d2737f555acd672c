/**
 * The pltap provider (prefix 'pltap:'), after sliver-openvswitch's netdev-pltap: a kernel tap
 * with the 4-byte packet-info header, named by the kernel (tapN), configured through vsys FIFO
 * scripts instead of ioctls.  This process opens the tap itself (openTun), so it has IFF_VNET_HDR
 * too and can be opened with offloads, as a tap device.
 *
 * - Config: local_ip (an IPv4 address or a name that resolves to one) and local_netmask (a prefix
 *   length 0-32; netdev-pltap leaves it unchecked, here a bad value is EINVAL naming the key).  Once
 *   both are set the device is finalized: it is to be brought up with vif_up NAME\nIP\nPREFIX\n,
 *   and once it is up its I/O half starts moving frames (those sent before wait in the TX ring).
 * - Flags: updateFlags only records what is wanted and queues the device for a sync (it may run
 *   in an exit hook, where no transaction can); the sync runs on the event loop, one device at a
 *   time, with vif_up / vif_down / promisc transactions in the job pool, and bumps changeSeq; a
 *   device that closes waits for its sync in flight before the tap goes away.
 * - MAC through SIOCGIFHWADDR on the kernel tap; setting it, and statistics, are EOPNOTSUPP as in
 *   netdev-pltap (absent members).
 * - Command 'netdev-pltap/get-tapname' NAME answers the kernel name of the tap.
 */
import { lookup } from 'node:dns/promises';
import { isIPv4 } from 'node:net';
import { formatIPv4, formatMac, parseIPv4 } from '../../common/addresses.js';
import { netdevError } from '../../common/errors.js';
import { NETDEV_PROMISC, NETDEV_UP } from '../../ring/device-shared.js';
import { IFF_TAP, IFREQ_UNION, SIOCGIFFLAGS, SIOCGIFHWADDR, SIOCGIFTXQLEN, sys } from '../../sys/libc.js';
import { ifreqIoctl } from '../../sys/ifreq.js';
import { ConfigSchema, mustBe } from '../config-schema.js';
import type { Config, CreateOptions, DeviceContext, IoControl, Provider, ProviderContext } from '../contract.js';
import { netdevFlagsOf } from '../linux/iff-flags.js';
import { LinuxServices, type ControlSocket } from '../linux/services.js';
import { openTun } from '../linux/tun.js';
import type { TapIoOptions } from '../tap/control.js';
const NAME_PATTERN = /^[A-Za-z0-9_.-]{1,64}$/;

/** Resolves `value` (an IPv4 address or a host name) to an IPv4 address; refuses it otherwise. */
async function resolveIPv4(value: string): Promise<number> {
  if (isIPv4(value)) return parseIPv4(value);
  try {
    if (value && !/[\s/]/.test(value)) return parseIPv4((await lookup(value, { family: 4 })).address);
  } catch {
    // fall through to the error below
  }
  mustBe('an IPv4 address or a name that resolves to one', value);
}

function parseNetmask(value: string): number {
  if (/^\d{1,2}$/.test(value) && Number(value) <= 32) return Number(value);
  mustBe('a prefix length from 0 to 32', value);
}

const config = new ConfigSchema<PltapDevice, { local_ip: number; local_netmask: number }>('pltap', {
  local_ip: {
    doc: 'the IPv4 address (or a name that resolves to one) vif_up gives the tap',
    parse: resolveIPv4,
    current: (device) => (device.localIp === null ? undefined : formatIPv4(device.localIp)),
  },
  local_netmask: {
    doc: 'the prefix length (0-32) vif_up gives the tap; once both keys are set the tap is brought up',
    parse: parseNetmask,
    current: (device) => (device.localNetmask === null ? undefined : String(device.localNetmask)),
  },
});

/** The config keys of pltap devices. */
export const pltapConfigKeys = config.describe();

class PltapDevice {
  /** The kernel's name of the tap ('' until created). */
  realName = '';
  private fd = -1;
  localIp: number | null = null;
  localNetmask: number | null = null;
  /** Flags as last read from the kernel, and as wanted. */
  private flags = 0;
  private wantedFlags = 0;
  private io: IoControl | null = null;
  private ioReady = false;
  /** The sync running now: destroy() waits for it, so no transaction names a tap that is gone. */
  private syncing: Promise<void> | null = null;

  constructor(
    private readonly context: DeviceContext,
    private readonly socket: ControlSocket,
    private readonly vsys: ProviderContext['vsys'],
    private readonly requestSync: (device: PltapDevice) => void,
    private readonly forget: (device: PltapDevice) => void,
  ) {}

  /** Allocates the tap (IFF_TAP with the packet-info header, and the virtio_net_hdr after it; the kernel picks its name). */
  open(): void {
    const tun = openTun('', IFF_TAP, this.socket.netns);
    this.fd = tun.fd;
    this.realName = tun.name;
  }

  get finalized(): boolean {
    return this.localIp !== null && this.localNetmask !== null;
  }

  /** True while the tap is attached (the command's "no real device attached" otherwise). */
  get attached(): boolean {
    return this.fd >= 0;
  }

  private ioctl(request: number, what: string): Buffer {
    return ifreqIoctl(this.socket.fd, this.realName, request, what);
  }

  getConfig(): Config {
    return config.values(this);
  }

  async setConfig(changes: Config): Promise<void> {
    const { local_ip: ip, local_netmask: netmask } = await config.parse(changes, this);
    if (ip !== undefined) this.localIp = ip;
    if (netmask !== undefined) this.localNetmask = netmask;
    if (!this.finalized) return;
    this.wantedFlags |= NETDEV_UP;
    this.requestSync(this);
  }

  updateFlags(off: number, on: number): number {
    if ((off | on) & ~(NETDEV_UP | NETDEV_PROMISC)) throw netdevError('EINVAL', 'pltap devices have only the up and promisc flags');
    if (this.finalized) this.flags = this.readFlags();
    const old = this.flags;
    this.wantedFlags = (this.wantedFlags & ~off) | on;
    if (this.flags !== this.wantedFlags) this.requestSync(this);
    return old;
  }

  private readFlags(): number {
    return netdevFlagsOf(this.ioctl(SIOCGIFFLAGS, 'SIOCGIFFLAGS').readUInt16LE(IFREQ_UNION));
  }

  /** netdev-pltap's netdev_pltap_sync_flags: bring the kernel to the wanted flags through vsys. */
  async sync(): Promise<void> {
    if (!this.attached || !this.finalized) return;
    const running = this.applyWantedFlags();
    this.syncing = running;
    try {
      await running;
    } finally {
      this.syncing = null;
    }
  }

  private async applyWantedFlags(): Promise<void> {
    const { realName: name, wantedFlags: wanted, flags: current } = this;
    if (wanted & NETDEV_UP && !(current & NETDEV_UP)) {
      await this.vsys('vif_up', `${name}\n${formatIPv4(this.localIp!)}\n${this.localNetmask}\n`);
    } else if (!(wanted & NETDEV_UP) && current & NETDEV_UP) {
      await this.vsys('vif_down', `${name}\n`);
    }
    if ((wanted ^ current) & NETDEV_PROMISC) {
      await this.vsys('promisc', wanted & NETDEV_PROMISC ? `${name}\n` : `${name}\n-\n`);
    }
    this.flags = this.readFlags();
    this.context.shared.flags = this.flags;
    this.context.changed();
    await this.releaseIo();
  }

  /**
   * Frames move once the tap is finalized and up (those sent before wait in the TX ring).  Called
   * after each sync and when the I/O half starts, whichever comes last.
   */
  private async releaseIo(): Promise<void> {
    if (!this.io || this.ioReady || !this.finalized || !(this.flags & NETDEV_UP)) return;
    this.ioReady = true;
    await this.io.call('ready');
  }

  getEtheraddr(): string {
    return formatMac(this.ioctl(SIOCGIFHWADDR, 'SIOCGIFHWADDR').subarray(IFREQ_UNION + 2, IFREQ_UNION + 8));
  }

  ioOptions(): TapIoOptions {
    this.ioReady = false; // releaseIo() decides once the I/O half runs
    return { fd: this.fd, txQueueLength: this.ioctl(SIOCGIFTXQLEN, 'SIOCGIFTXQLEN').readInt32LE(IFREQ_UNION), packetInfo: true, ready: false };
  }

  async ioStarted(io: IoControl): Promise<void> {
    this.io = io;
    await this.releaseIo();
  }

  ioStopping(): void {
    this.io = null;
    this.ioReady = false;
  }

  /**
   * Takes the tap away, once a sync already running has ended (a vsys request in flight would
   * otherwise name a tap that is gone, or another tap the kernel gave its name); one not started
   * is dropped, as the tap and its flags go away.
   */
  async destroy(): Promise<void> {
    this.forget(this);
    await this.syncing?.catch(() => {}); // the sync list reports the failure
    if (this.fd >= 0) sys.close(this.fd);
    this.fd = -1;
  }
}

/** A new pltap provider, with its sync list and its get-tapname command. */
export function pltapProvider(): Provider {
  const services = new LinuxServices();
  const devices = new Map<string, PltapDevice>();
  let vsys: ProviderContext['vsys'] | null = null;
  const pending = new Set<PltapDevice>();
  let syncing = false;

  /** Runs the sync list on the event loop, one device and one transaction at a time. */
  const requestSync = (device: PltapDevice) => {
    pending.add(device);
    if (syncing) return;
    syncing = true;
    setImmediate(async () => {
      for (const next of pending) {
        pending.delete(next);
        try {
          await next.sync();
        } catch (error) {
          process.emitWarning(`netdev: pltap ${next.realName}: ${(error as Error).message}`);
        }
      }
      syncing = false;
    });
  };

  return {
    type: 'pltap',
    prefix: 'pltap:',
    ioModule: new URL('../tap/io.js', import.meta.url),
    namespaced: true,
    offloads: true,
    configKeys: pltapConfigKeys,
    init(context) {
      services.init(context);
      vsys = context.vsys;
    },
    close: () => services.close(),
    validateName(suffix) {
      if (!NAME_PATTERN.test(suffix)) throw netdevError('EINVAL', `pltap names are 1-64 letters, digits, '_', '.' or '-', not ${JSON.stringify(suffix)}`);
    },
    create(context: DeviceContext, options: CreateOptions) {
      const forget = (device: PltapDevice) => {
        devices.delete(context.name);
        pending.delete(device);
      };
      const device = new PltapDevice(context, services.forNamespace(options.netns).socket, vsys!, requestSync, forget);
      device.open();
      devices.set(context.name, device);
      return device;
    },
    commands: {
      'netdev-pltap/get-tapname': (name) => {
        const device = devices.get(name ?? '');
        if (!device) throw netdevError('ENODEV', 'no such pltap netdev');
        if (!device.attached) throw netdevError('ENODEV', 'no real device attached');
        return device.realName;
      },
    },
  };
}
