/**
 * The unix provider (prefix 'unix:', e.g. 'unix:/run/sw.sock'): a device whose wire is an AF_UNIX
 * SOCK_SEQPACKET socket to other processes (OVS's reason for an abstract netdev layer).
 * Config mode=listen|connect (default connect), overflow=wait|drop (what a peer whose queue is
 * full does to a frame: holds it up, or misses it; default wait; both fixed once the device does
 * I/O), mtu (68-65535, default 1500) and mac (default a locally administered address derived from
 * the path).  Flags
 * live in the process; carrier is on while at least one peer is connected, and its changes reach
 * monitors (the control half keeps one call pending in the worker that answers on a change).
 * Statistics are counted from real traffic.  Everything else is EOPNOTSUPP.
 */
import { formatMac, isGroupMac, parseMac } from '../../common/addresses.js';
import { netdevError } from '../../common/errors.js';
import { FRAME_OVERHEAD, type Config, type CreateOptions, type DeviceContext, type IoControl, type Provider, type ProviderDevice, type ProviderStats } from '../contract.js';
import type { UnixIoOptions } from './io.js';
import { badValue, ConfigSchema, mustBe, oneOf } from '../config-schema.js';
import { countedStats, localMac, nextFlags } from '../in-process.js';

const MAX_PATH = 107;
const MIN_MTU = 68;
const MAX_MTU = 65535;

function validateName(suffix: string): void {
  if (suffix.length === 0 || Buffer.byteLength(suffix) > MAX_PATH || suffix.includes('\0')) {
    throw netdevError('EINVAL', `unix device names are socket paths of 1-${MAX_PATH} bytes, not ${JSON.stringify(suffix)}`);
  }
}

/** A parser of `choices` that also refuses a change of the key while the device does I/O (its worker has read it). */
function fixedDuringIo<T extends string>(key: 'mode' | 'overflow', ...choices: T[]): (value: string, device: UnixDevice) => T {
  const parse = oneOf(...choices);
  return (value, device) => {
    const parsed = parse(value);
    if (device.doesIo && parsed !== device[key]) badValue('cannot change while the device does I/O', 'EBUSY');
    return parsed;
  };
}

function parseMtu(value: string, device: UnixDevice): number {
  const max = device.largestMtu;
  const mtu = Number(value);
  if (!/^\d+$/.test(value) || mtu < MIN_MTU || mtu > max) mustBe(`from ${MIN_MTU} to ${max}`, value);
  return mtu;
}

function parseUnicastMac(value: string): Uint8Array {
  let mac: Uint8Array;
  try {
    mac = parseMac(value);
  } catch {
    mustBe('a MAC address', value);
  }
  if (isGroupMac(mac)) badValue('cannot be a multicast address');
  return mac;
}

const config = new ConfigSchema<UnixDevice, { mode: 'listen' | 'connect'; overflow: 'wait' | 'drop'; mtu: number; mac: Uint8Array }>('unix', {
  mode: {
    doc: 'listen: bind the path and take any number of peers; connect: connect to it (and reconnect)',
    default: 'connect',
    parse: fixedDuringIo('mode', 'listen', 'connect'),
    current: (device) => device.mode,
  },
  overflow: {
    doc: 'what a peer whose queue is full does to a frame: holds it up (wait) or misses it (drop)',
    default: 'wait',
    parse: fixedDuringIo('overflow', 'wait', 'drop'),
    current: (device) => device.overflow,
  },
  mtu: { doc: `the MTU (${MIN_MTU}-${MAX_MTU})`, default: '1500', parse: parseMtu, current: (device) => String(device.mtu) },
  mac: { doc: 'the MAC address (default: a locally administered address derived from the path)', parse: parseUnicastMac, current: (device) => device.configuredMac },
});

/** The config keys of unix devices. */
export const unixConfigKeys = config.describe();

class UnixDevice implements ProviderDevice {
  mode: 'listen' | 'connect' = 'connect';
  overflow: 'wait' | 'drop' = 'wait';
  private mac: Uint8Array;
  private macConfigured = false;
  private flags = 0;
  private carrier = false;
  private io: IoControl | null = null;

  constructor(
    private readonly context: DeviceContext,
    private readonly maxFrame: number,
  ) {
    this.mac = localMac(context.suffix, 0x55);
    context.shared.mtu = Math.min(1500, maxFrame - FRAME_OVERHEAD);
  }

  getConfig(): Config {
    return config.values(this);
  }

  async setConfig(changes: Config): Promise<void> {
    const { mode, overflow, mtu, mac } = await config.parse(changes, this);
    if (mode) this.mode = mode;
    if (overflow) this.overflow = overflow;
    if (mtu !== undefined) this.context.shared.mtu = mtu;
    if (mac) {
      this.mac = mac;
      this.macConfigured = true;
    }
    if (mtu !== undefined || mac) this.context.changed();
  }

  /** True while the I/O half runs (it has read mode and overflow). */
  get doesIo(): boolean {
    return this.io !== null;
  }

  /** The largest MTU the device's rings can carry frames of (at most 65535). */
  get largestMtu(): number {
    return Math.min(MAX_MTU, this.maxFrame - FRAME_OVERHEAD);
  }

  get mtu(): number {
    return this.context.shared.mtu;
  }

  /** The MAC set by config, if any. */
  get configuredMac(): string | undefined {
    return this.macConfigured ? formatMac(this.mac) : undefined;
  }

  updateFlags(off: number, on: number): number {
    const old = this.flags;
    this.flags = nextFlags(this.context, old, off, on);
    return old;
  }

  getEtheraddr(): string {
    return formatMac(this.mac);
  }

  getMtu(): number {
    return this.context.shared.mtu;
  }

  getCarrier(): boolean {
    return this.carrier;
  }

  getStats(): ProviderStats {
    return countedStats(this.context.shared);
  }

  ioOptions(): UnixIoOptions {
    return { path: this.context.suffix, mode: this.mode, overflow: this.overflow };
  }

  async ioStarted(io: IoControl): Promise<void> {
    this.io = io;
    this.carrier = (await io.call('carrier')) as boolean;
    void this.followCarrier(io);
  }

  /** Keeps one call pending in the worker that answers when carrier changes; ends with the I/O half. */
  private async followCarrier(io: IoControl): Promise<void> {
    while (this.io === io) {
      let carrier: boolean;
      try {
        carrier = (await io.call('carrierChange', this.carrier)) as boolean;
      } catch {
        return; // the worker stopped
      }
      if (carrier !== this.carrier) {
        this.carrier = carrier;
        this.context.changed();
      }
    }
  }

  ioStopping(): void {
    this.io = null;
    this.carrier = false;
  }

  destroy(): void {}
}

/** A new unix provider. */
export function unixProvider(): Provider {
  return {
    type: 'unix',
    prefix: 'unix:',
    ioModule: new URL('./io.js', import.meta.url),
    configKeys: unixConfigKeys,
    validateName,
    create: (context: DeviceContext, options: CreateOptions) => new UnixDevice(context, options.maxFrame),
  };
}
