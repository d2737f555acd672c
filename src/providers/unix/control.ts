/**
 * The unix provider (prefix 'unix:', e.g. 'unix:/run/sw.sock'): a device whose wire is an AF_UNIX
 * SOCK_SEQPACKET socket to other processes (the seed's reason for an abstract netdev layer).
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
import { FRAME_OVERHEAD, type Config, type CreateOptions, type DeviceContext, type IoControl, type Provider, type ProviderDevice, type Stats } from '../contract.js';
import type { UnixIoOptions } from './io.js';
import { countedStats, localMac, nextFlags } from '../in-process.js';

const MAX_PATH = 107;

function validateName(suffix: string): void {
  if (suffix.length === 0 || Buffer.byteLength(suffix) > MAX_PATH || suffix.includes('\0')) {
    throw netdevError('EINVAL', `unix device names are socket paths of 1-${MAX_PATH} bytes, not ${JSON.stringify(suffix)}`);
  }
}

class UnixDevice implements ProviderDevice {
  private mode: 'listen' | 'connect' = 'connect';
  private overflow: 'wait' | 'drop' = 'wait';
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
    const config: Config = { mode: this.mode, mtu: String(this.context.shared.mtu), overflow: this.overflow };
    if (this.macConfigured) config.mac = formatMac(this.mac);
    return config;
  }

  setConfig(changes: Config): void {
    let mode: 'listen' | 'connect' | undefined;
    let overflow: 'wait' | 'drop' | undefined;
    let mtu: number | undefined;
    let mac: Uint8Array | undefined;
    for (const [key, value] of Object.entries(changes)) {
      if (key === 'mode') {
        if (value !== 'listen' && value !== 'connect') throw netdevError('EINVAL', `config key 'mode' must be listen or connect, not ${JSON.stringify(value)}`);
        if (this.io && value !== this.mode) throw netdevError('EBUSY', "config key 'mode' cannot change while the device does I/O");
        mode = value;
      } else if (key === 'overflow') {
        if (value !== 'wait' && value !== 'drop') throw netdevError('EINVAL', `config key 'overflow' must be wait or drop, not ${JSON.stringify(value)}`);
        if (this.io && value !== this.overflow) throw netdevError('EBUSY', "config key 'overflow' cannot change while the device does I/O");
        overflow = value;
      } else if (key === 'mtu') {
        mtu = Number(value);
        const max = Math.min(65535, this.maxFrame - FRAME_OVERHEAD);
        if (!/^\d+$/.test(value) || mtu < 68 || mtu > max) throw netdevError('EINVAL', `config key 'mtu' must be from 68 to ${max}, not ${JSON.stringify(value)}`);
      } else if (key === 'mac') {
        try {
          mac = parseMac(value);
        } catch {
          throw netdevError('EINVAL', `config key 'mac' must be a MAC address, not ${JSON.stringify(value)}`);
        }
        if (isGroupMac(mac)) throw netdevError('EINVAL', "config key 'mac' cannot be a multicast address");
      } else {
        throw netdevError('EINVAL', `unknown config key '${key}' (unix devices know: mode, overflow, mtu, mac)`);
      }
    }
    if (mode) this.mode = mode;
    if (overflow) this.overflow = overflow;
    if (mtu !== undefined) this.context.shared.mtu = mtu;
    if (mac) {
      this.mac = mac;
      this.macConfigured = true;
    }
    if (mtu !== undefined || mac) this.context.changed();
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

  getStats(): Omit<Stats, 'rxRingDropped'> {
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
    validateName,
    create: (context: DeviceContext, options: CreateOptions) => new UnixDevice(context, options.maxFrame),
  };
}
