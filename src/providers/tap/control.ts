/**
 * The tap provider (prefix 'tap:'), as OVS's netdev-linux class 'tap': opening 'tap:NAME'
 * creates (or attaches to) the kernel tap device NAME through /dev/net/tun with IFF_TAP |
 * IFF_NO_PI and IFF_VNET_HDR (so it can be opened with offloads: io.ts).  The main thread opens
 * the tun file descriptor (inside the device's namespace, where the tap then lives) and owns it;
 * the device's worker reads and writes it (io.ts).  Attributes are the system device's, by the
 * kernel name.  The tap goes away when the device closes, unless config persist=true
 * (TUNSETPERSIST) keeps it.
 */
import { check, IFF_NO_PI, IFF_TAP, IFREQ_UNION, SIOCGIFTXQLEN, sys, TUNSETPERSIST } from '../../sys/libc.js';
import { validateIfName } from '../../sys/ifreq.js';
import type { Config, CreateOptions, DeviceContext, Provider } from '../contract.js';
import { ConfigSchema, oneOf } from '../config-schema.js';
import { LinuxServices } from '../linux/services.js';
import { openTun } from '../linux/tun.js';
import { SystemDevice, type WorkerStats } from '../system/control.js';

/** What the tap I/O half needs: the tun file descriptor (owned by the main thread), and how much drain() may read. */
export interface TapIoOptions {
  fd: number;
  txQueueLength: number;
  /** Frames carry struct tun_pi (pltap). */
  packetInfo: boolean;
  /** Frames may move now (a pltap device moves none until finalized). */
  ready: boolean;
}

const config = new ConfigSchema<TapDevice, { persist: boolean }>('tap', {
  persist: {
    doc: 'true: the tap stays after the device closes (TUNSETPERSIST)',
    default: 'false',
    parse: (value) => oneOf('true', 'false')(value) === 'true',
    current: (device) => String(device.persist),
  },
});

/** The config keys of tap devices. */
export const tapConfigKeys = config.describe();

class TapDevice extends SystemDevice {
  private fd = -1;
  persist = false;

  /** Creates or attaches to the tap (in the device's namespace), then reads its attributes. */
  override open(): void {
    this.fd = openTun(this.ifname, IFF_TAP | IFF_NO_PI, this.socket.netns).fd;
    try {
      super.open();
    } catch (error) {
      this.destroy();
      throw error;
    }
  }

  override getConfig(): Config {
    return config.values(this);
  }

  override async setConfig(changes: Config): Promise<void> {
    const { persist } = await config.parse(changes, this);
    if (persist === undefined || persist === this.persist) return;
    check(sys.ioctlInt(this.fd, TUNSETPERSIST, persist ? 1 : 0), '', `TUNSETPERSIST ${this.ifname}`);
    this.persist = persist;
  }

  override ioOptions(): TapIoOptions {
    return { fd: this.fd, txQueueLength: this.ioctl(SIOCGIFTXQLEN, 'SIOCGIFTXQLEN').readInt32LE(IFREQ_UNION), packetInfo: false, ready: true };
  }

  /**
   * None: a tap's statistics are the kernel's, counted from the kernel's side of the tap (what the
   * worker reads is its tx), and it has no packet socket whose queue could overflow.
   */
  protected override async workerStats(): Promise<WorkerStats> {
    return { rxErrors: 0, txErrors: 0, rxQueueDropped: null };
  }

  /** Closes the tun descriptor (after the worker has stopped): the tap goes unless persistent. */
  override destroy(): void {
    super.destroy();
    if (this.fd >= 0) sys.close(this.fd);
    this.fd = -1;
  }
}

/** A new tap provider (one control socket and notifier per namespace). */
export function tapProvider(): Provider {
  const services = new LinuxServices();
  return {
    type: 'tap',
    prefix: 'tap:',
    ioModule: new URL('./io.js', import.meta.url),
    namespaced: true,
    offloads: true,
    configKeys: tapConfigKeys,
    init: (context) => services.init(context),
    close: () => services.close(),
    validateName: validateIfName,
    create(context: DeviceContext, options: CreateOptions): TapDevice {
      const device = new TapDevice(context, context.suffix, options.netns, services.forNamespace(options.netns));
      device.open();
      return device;
    },
  };
}
