/**
 * The dummy provider (prefix 'dummy:'): devices simulated entirely in the process, as OVS's
 * netdev-dummy.  Every name is a device that exists; it lives while open.  Attributes are kept
 * here: MAC, MTU, flags, IPv4/IPv6, carrier, and statistics counted by the I/O half from real
 * traffic.  Config `peer=NAME` links two dummies as the two ends of a wire (setting it on either
 * end links both; '' unlinks); what one sends the other receives, through the same worker and
 * ring path as a kernel device.  Carrier is on while the device and its peer are open and up.
 * Config rxq_pcap=FILE / tx_pcap=FILE record received / sent frames in pcap files (as OVS
 * netdev-dummy); '' stops.  Unsupported (EOPNOTSUPP): ifindex, features, advertisements, policing, addRouter, arpLookup;
 * getVlanVid answers ENOENT (not a VLAN device).
 */
import { formatIPv4, formatMac, prefixToNetmask } from '../../common/addresses.js';
import { netdevError } from '../../common/errors.js';
import { NETDEV_UP } from '../../ring/device-shared.js';
import { FRAME_OVERHEAD, type Config, type CreateOptions, type DeviceContext, type In4, type IoControl, type Provider, type ProviderDevice, type ProviderStats } from '../contract.js';
import { badValue, ConfigSchema } from '../config-schema.js';
import { DummyLinks } from './links.js';
import { countedStats, localMac, nextFlags } from '../in-process.js';

const PREFIX = 'dummy:';
type PcapKey = 'rxq_pcap' | 'tx_pcap';
const NAME_PATTERN = /^[A-Za-z0-9_.-]{1,64}$/;
const MIN_MTU = 68;
const MAX_MTU = 65535;

/** Checks a dummy device suffix: 1-64 of letters, digits, '_', '.', '-'. */
function validateName(suffix: string): void {
  if (!NAME_PATTERN.test(suffix)) {
    throw netdevError('EINVAL', `dummy device names are 1-64 letters, digits, '_', '.' or '-', not ${JSON.stringify(suffix)}`);
  }
}

/** '' (no peer), or another dummy's name, with or without the 'dummy:' prefix; returns the full name. */
function parsePeer(value: string, device: DummyDevice): string {
  if (value === '') return '';
  const suffix = value.startsWith(PREFIX) ? value.slice(PREFIX.length) : value;
  try {
    validateName(suffix);
  } catch {
    badValue(`must name a dummy device, not ${JSON.stringify(value)}`);
  }
  if (PREFIX + suffix === device.name) badValue('cannot name the device itself');
  return PREFIX + suffix;
}

const config = new ConfigSchema<DummyDevice, { peer: string; rxq_pcap: string; tx_pcap: string }>('dummy', {
  peer: { doc: "the dummy at the other end of this one's wire ('' unlinks)", parse: parsePeer, current: (device) => device.peer },
  rxq_pcap: { doc: "a pcap file that records the frames received ('' stops)", parse: (value) => value, current: (device) => device.pcapPath('rxq_pcap') },
  tx_pcap: { doc: "a pcap file that records the frames sent ('' stops)", parse: (value) => value, current: (device) => device.pcapPath('tx_pcap') },
});

/** The config keys of dummy devices. */
export const dummyConfigKeys = config.describe();

export class DummyDevice implements ProviderDevice {
  flags = 0;
  io: IoControl | null = null;
  /** The worker bell of this device's I/O half, while it runs. */
  bell: SharedArrayBuffer | null = null;
  private mac: Uint8Array;
  private in4: { address: number; prefixLength: number } | null = null;
  private in6: { address: string; prefixLength: number } | null = null;
  /** Config rxq_pcap / tx_pcap: the file, and its capture while the I/O half runs. */
  private readonly pcaps = new Map<PcapKey, { path: string; capture: { close(): Promise<void> } | null }>();

  constructor(
    readonly context: DeviceContext,
    private readonly links: DummyLinks,
    private readonly maxFrame: number,
  ) {
    this.mac = localMac(context.name, 0x00); // each dummy its own
    context.shared.mtu = Math.min(1500, maxFrame - FRAME_OVERHEAD);
  }

  get name(): string {
    return this.context.name;
  }

  get up(): boolean {
    return (this.flags & NETDEV_UP) !== 0;
  }

  getConfig(): Config {
    return config.values(this);
  }

  async setConfig(changes: Config): Promise<void> {
    const { peer, rxq_pcap, tx_pcap } = await config.parse(changes, this);
    if (peer !== undefined) await this.links.setPeer(this.name, peer);
    if (rxq_pcap !== undefined) await this.setPcap('rxq_pcap', rxq_pcap);
    if (tx_pcap !== undefined) await this.setPcap('tx_pcap', tx_pcap);
  }

  /** The peer's name, if linked. */
  get peer(): string | undefined {
    return this.links.peerOf(this.name) ?? undefined;
  }

  /** The file config `key` records frames in, if any. */
  pcapPath(key: PcapKey): string | undefined {
    return this.pcaps.get(key)?.path;
  }

  /** Records received (rxq_pcap) or sent (tx_pcap) frames in `path` ('' stops), as OVS netdev-dummy. */
  private async setPcap(key: PcapKey, path: string): Promise<void> {
    await this.pcaps.get(key)?.capture?.close();
    this.pcaps.delete(key);
    if (path === '') return;
    const entry: { path: string; capture: { close(): Promise<void> } | null } = { path, capture: null };
    this.pcaps.set(key, entry);
    if (this.io) entry.capture = await this.startPcap(key, path);
  }

  private startPcap(key: PcapKey, path: string): Promise<{ close(): Promise<void> }> {
    return this.context.capture(path, { direction: key === 'rxq_pcap' ? 'rx' : 'tx' });
  }

  updateFlags(off: number, on: number): number {
    const old = this.flags;
    this.flags = nextFlags(this.context, old, off, on);
    if ((this.flags ^ old) & NETDEV_UP) this.links.peerChanged(this.name); // the peer's carrier
    return old;
  }

  getEtheraddr(): string {
    return formatMac(this.mac);
  }

  setEtheraddr(mac: Uint8Array): void {
    if (formatMac(mac) === formatMac(this.mac)) return;
    this.mac = mac.slice();
    this.context.changed();
  }

  getMtu(): number {
    return this.context.shared.mtu;
  }

  setMtu(mtu: number): void {
    const max = Math.min(MAX_MTU, this.maxFrame - FRAME_OVERHEAD);
    if (mtu < MIN_MTU || mtu > max) throw netdevError('EINVAL', `MTU must be from ${MIN_MTU} to ${max}, not ${mtu}`);
    if (mtu === this.context.shared.mtu) return;
    this.context.shared.mtu = mtu;
    this.context.changed();
  }

  getCarrier(): boolean {
    return this.links.carrier(this.name);
  }

  getStats(): ProviderStats {
    return countedStats(this.context.shared);
  }

  getIn4(): In4 {
    if (!this.in4) throw netdevError('EADDRNOTAVAIL', 'no IPv4 address');
    const { address, prefixLength } = this.in4;
    return { address: formatIPv4(address), netmask: prefixToNetmask(prefixLength), prefixLength };
  }

  setIn4(address: number, prefixLength: number): void {
    this.in4 = address === 0 ? null : { address, prefixLength };
    this.context.changed();
  }

  getIn6(): string {
    if (!this.in6) throw netdevError('EADDRNOTAVAIL', 'no IPv6 address');
    return this.in6.address;
  }

  setIn6(address: string, prefixLength: number): void {
    this.in6 = address === '::' ? null : { address, prefixLength };
    this.context.changed();
  }

  async inject(frames: readonly Uint8Array[]): Promise<void> {
    if (!this.io) throw netdevError('EPIPE', "device is open with ethertype 'none': nothing receives");
    await this.io.call('inject', frames);
  }

  async ioStarted(io: IoControl): Promise<void> {
    this.io = io;
    this.bell = (await io.call('bell')) as SharedArrayBuffer;
    await this.links.plug(this.name);
    for (const [key, entry] of this.pcaps) entry.capture = await this.startPcap(key, entry.path);
  }

  async ioStopping(): Promise<void> {
    await this.links.unplug(this.name);
    this.io = null;
    this.bell = null;
  }

  async ioFailed(): Promise<void> {
    await this.ioStopping();
  }

  destroy(): void {
    this.links.closed(this.name);
  }
}

/** A new dummy provider, with its own set of devices and links. */
export function dummyProvider(): Provider {
  const links = new DummyLinks();
  return {
    type: 'dummy',
    prefix: PREFIX,
    ioModule: new URL('./io.js', import.meta.url),
    configKeys: dummyConfigKeys,
    validateName,
    create(context: DeviceContext, options: CreateOptions): DummyDevice {
      const device = new DummyDevice(context, links, options.maxFrame);
      links.opened(device);
      return device;
    },
    enumerate: () => links.openNames(),
  };
}
