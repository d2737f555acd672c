/**
 * The tunnel providers (prefix 'vxlan:', one provider per entry of kinds.ts), as Open vSwitch's
 * netdev-vport classes put the kernel's own tunnel devices under a switch: opening 'vxlan:NAME'
 * creates the kernel device NAME through rtnetlink (RTM_NEWLINK, IFLA_INFO_KIND 'vxlan') in the
 * device's namespace, up, from config keys named as OVS names its tunnel options (key, remote_ip,
 * local_ip, dst_port, ttl) and what the kernel needs besides (dev, learning, mtu), all checked
 * before anything is made.  From then on it is a system device: the same control calls and the
 * same I/O half (an AF_PACKET socket on the tunnel device, with offloads).  Several remotes are
 * entries of all zeros in the device's forwarding table (floods go to each: head-end
 * replication); remote_ip may change while the device is open, its first (the device's own
 * remote) included.  Closing deletes the device, unless config persist=true keeps it (it is then
 * an ordinary system device by its name); an open that fails after making it deletes it whatever
 * persist says, and so does the process ending without closing it (atExit) unless persist=true.
 */
import { ipBytes, isMulticastIp } from '../../common/addresses.js';
import { NetdevError, netdevError } from '../../common/errors.js';
import { IFREQ_UNION, SIOCGIFINDEX, SIOCGIFMTU } from '../../sys/libc.js';
import { ifreqIoctl, validateIfName } from '../../sys/ifreq.js';
import { changeLinkRequest, deleteLinkRequest, floodEntryRequest, newLinkRequest, payload, type Attribute } from '../../sys/netlink.js';
import { iproute2InNetns } from '../../sys/netns.js';
import type { Config, CreateOptions, DeviceContext, Provider } from '../contract.js';
import { badValue, ConfigSchema, mustBe, oneOf, type ConfigKey, type ConfigKeyInfo } from '../config-schema.js';
import { LinuxServices, type DeviceServices } from '../linux/services.js';
import { SystemDevice } from '../system/control.js';
import type { TunnelKind } from './kinds.js';

/** A tunnel device's parameters, as its config keys set them. */
export interface TunnelSettings {
  key: number;
  /** Canonical addresses: one multicast group, or unicast remotes (the first is the device's own remote). */
  remotes: string[];
  local: string | null;
  port: number;
  ttl: number;
  dev: string | null;
  learning: boolean;
  /** Set by config (null: the underlay's MTU less the encapsulation's overhead); once made, the MTU the kernel gave the device. */
  mtu: number | null;
  persist: boolean;
}

/** Config keys by name, with their parsed values. */
interface TunnelValues {
  key: number;
  remote_ip: string[];
  local_ip: string;
  dst_port: number;
  ttl: number;
  dev: string;
  learning: boolean;
  mtu: number;
  persist: boolean;
}

/** The keys that may change while the device is open; the others are fixed once it is made. */
const CHANGEABLE = new Set(['remote_ip', 'persist']);

/** A parser of decimal integers from `min` to `max`. */
function integer(min: number, max: number): (value: string) => number {
  return (value) => {
    const number = /^\d{1,10}$/.test(value) ? Number(value) : NaN;
    return number >= min && number <= max ? number : mustBe(`an integer from ${min} to ${max}`, value);
  };
}

/** An IPv4 or IPv6 address in canonical text. */
function address(value: string): string {
  try {
    ipBytes(value);
  } catch {
    return mustBe('an IPv4 or IPv6 address', value);
  }
  return value.includes(':') ? new URL(`http://[${value}]/`).hostname.slice(1, -1) : value;
}

const family = (text: string): 4 | 6 => (text.includes(':') ? 6 : 4);

/** remote_ip: addresses separated by commas, all of one family; a multicast group stands alone. */
function remotes(value: string): string[] {
  const list = value.split(',').map((text) => address(text.trim()));
  if (new Set(list).size !== list.length) badValue(`names an address twice: ${value}`);
  if (list.some((text) => family(text) !== family(list[0]!))) badValue(`mixes IPv4 and IPv6 addresses: ${value}`);
  if (list.length > 1 && list.some((text) => isMulticastIp(ipBytes(text)))) badValue(`may name one multicast group or unicast remotes, not both or two groups: ${value}`);
  return list;
}

const booleanKey = oneOf('true', 'false');

/** The config schema of one kind: the keys its attributes allow. */
function schemaOf(kind: TunnelKind): ConfigSchema<TunnelSettings, TunnelValues> {
  const a = kind.attributes;
  const keys: { [K in keyof TunnelValues]?: ConfigKey<TunnelSettings, TunnelValues[K]> } = {
    key: { doc: `the virtual network identifier (VNI), 0-${kind.maxId}`, default: '0', parse: integer(0, kind.maxId), current: (s) => String(s.key) },
    remote_ip: {
      doc: 'the remote host (IPv4 or IPv6), several separated by commas (floods go to each), or one multicast group (needs dev); needed',
      parse: remotes,
      current: (s) => s.remotes.join(','),
    },
    ...(a.local4 === undefined ? {} : { local_ip: { doc: 'the local address the tunnel sends from (default: as the route to the remote says)', parse: address, current: (s: TunnelSettings) => s.local ?? '' } }),
    dst_port: { doc: 'the destination UDP port, 1-65535', default: String(kind.defaultPort), parse: integer(1, 65535), current: (s) => String(s.port) },
    ttl: { doc: 'the outer IP header\'s TTL (hop limit), 1-255 (default 64; 1 with a multicast group, as the kernel)', default: '64', parse: integer(1, 255), current: (s) => String(s.ttl) },
    ...(a.link === undefined ? {} : {
      dev: {
        doc: 'the underlay device (needed with a multicast group; default: none, the route to the remote decides)',
        parse: (value: string) => {
          try {
            validateIfName(value);
          } catch {
            mustBe('an interface name', value);
          }
          return value;
        },
        current: (s: TunnelSettings) => s.dev ?? '',
      },
    }),
    ...(a.learning === undefined ? {} : {
      learning: { doc: 'true: the device learns which remote each inner source MAC is behind, and sends to it alone', default: 'true', parse: (value: string) => booleanKey(value) === 'true', current: (s: TunnelSettings) => String(s.learning) },
    }),
    mtu: {
      doc: `the device's MTU, 68-65535 (default: the underlay's less ${kind.overhead.ipv4} over IPv4, ${kind.overhead.ipv6} over IPv6)`,
      parse: integer(68, 65535),
      current: (s) => (s.mtu === null ? '' : String(s.mtu)),
    },
    persist: { doc: 'true: the device stays after it closes (a system device by its name then)', default: 'false', parse: (value) => booleanKey(value) === 'true', current: (s) => String(s.persist) },
  };
  return new ConfigSchema(kind.kind, keys as Required<typeof keys>);
}

/** `settings` with the parsed `values` of a config change applied (nothing checked across keys). */
function applied(settings: TunnelSettings, values: Partial<TunnelValues>): TunnelSettings {
  const next = { ...settings, remotes: [...settings.remotes] };
  if (values.key !== undefined) next.key = values.key;
  if (values.remote_ip !== undefined) next.remotes = values.remote_ip;
  if (values.local_ip !== undefined) next.local = values.local_ip;
  if (values.dst_port !== undefined) next.port = values.dst_port;
  if (values.ttl !== undefined) next.ttl = values.ttl;
  if (values.dev !== undefined) next.dev = values.dev;
  if (values.learning !== undefined) next.learning = values.learning;
  if (values.mtu !== undefined) next.mtu = values.mtu;
  if (values.persist !== undefined) next.persist = values.persist;
  return next;
}

/** The settings of a new device, from its open's config (EINVAL naming the key for anything wrong), before anything is made. */
async function settingsOf(kind: TunnelKind, schema: ConfigSchema<TunnelSettings, TunnelValues>, config: Config): Promise<TunnelSettings> {
  const defaults: TunnelSettings = { key: 0, remotes: [], local: null, port: kind.defaultPort, ttl: 64, dev: null, learning: true, mtu: null, persist: false };
  const settings = applied(defaults, await schema.parse(config, defaults));
  const [first] = settings.remotes;
  if (first === undefined) throw netdevError('EINVAL', `config key 'remote_ip' is needed (the remote host, or a multicast group)`);
  // As the kernel's own default: a group's packets stay on the underlay's link unless ttl says otherwise.
  if (isMulticastIp(ipBytes(first)) && (config.ttl === undefined || config.ttl === '')) settings.ttl = 1;
  if (isMulticastIp(ipBytes(first)) && settings.dev === null) throw netdevError('EINVAL', `config key 'dev' is needed with a multicast remote_ip (${first}): the underlay device to join the group on`);
  if (settings.local !== null && isMulticastIp(ipBytes(settings.local))) throw netdevError('EINVAL', `config key 'local_ip' must be a unicast address, not ${settings.local}`);
  if (settings.local !== null && family(settings.local) !== family(first)) throw netdevError('EINVAL', `config key 'local_ip' (${settings.local}) is not of remote_ip's family (${first})`);
  return settings;
}

const isLinkLocal6 = (bytes: Uint8Array): boolean => bytes.length === 16 && bytes[0] === 0xfe && (bytes[1]! & 0xc0) === 0x80;

/**
 * Refuses (EINVAL naming remote_ip) remotes the device must not have: the unspecified address, a
 * loopback address, local_ip itself or any other address of this host (the route to it is of
 * type local: the kernel would hand each frame back to the device, and floods would come back
 * into the switch), and an IPv6 link-local remote without a link-local local_ip and dev (the
 * kernel needs both to reach it).
 */
async function checkRemotes(services: DeviceServices, netns: string | undefined, settings: TunnelSettings, remotes: readonly string[]): Promise<void> {
  const refuse = (remote: string, why: string): never => {
    throw netdevError('EINVAL', `config key 'remote_ip' cannot name ${remote}: ${why}`);
  };
  for (const remote of remotes) {
    const bytes = ipBytes(remote);
    if (bytes.every((byte) => byte === 0)) refuse(remote, 'the unspecified address');
    if (bytes.length === 4 ? bytes[0] === 127 : remote === '::1') refuse(remote, 'a loopback address');
    if (remote === settings.local) refuse(remote, 'it is local_ip');
    if (isLinkLocal6(bytes) && (settings.dev === null || settings.local === null || !isLinkLocal6(ipBytes(settings.local)))) {
      refuse(remote, 'an IPv6 link-local remote needs dev and a link-local local_ip');
    }
    if (isMulticastIp(bytes)) continue;
    const route = await services.runProgram(iproute2InNetns(netns, 'ip', ['-j', 'route', 'get', remote]));
    const type = route.status === 0 ? (JSON.parse(route.stdout) as { type?: string }[])[0]?.type : undefined;
    if (type === 'local') refuse(remote, 'an address of this host (the route to it is local)');
  }
}

/** The IFLA_INFO_DATA attributes creating a device of `kind` with `settings` (the underlay's ifindex `link`, or 0). */
function infoData(kind: TunnelKind, settings: TunnelSettings, link: number): Attribute[] {
  const a = kind.attributes;
  const v6 = family(settings.remotes[0]!) === 6;
  const data: Attribute[] = [
    { type: a.id, payload: payload.u32(settings.key) },
    { type: v6 ? a.remote6 : a.remote4, payload: ipBytes(settings.remotes[0]!) },
    { type: a.port, payload: payload.be16(settings.port) },
    { type: a.ttl, payload: payload.u8(settings.ttl) },
  ];
  const local = v6 ? a.local6 : a.local4;
  if (settings.local !== null && local !== undefined) data.push({ type: local, payload: ipBytes(settings.local) });
  if (link && a.link !== undefined) data.push({ type: a.link, payload: payload.u32(link) });
  if (a.learning !== undefined) data.push({ type: a.learning, payload: payload.u8(settings.learning ? 1 : 0) });
  return data;
}

/** The remotes a tunnel device has in the kernel: its own (IFLA_*_GROUP), and every flood entry's (its own's included). */
interface KernelRemotes {
  own: string;
  flood: Set<string>;
}

/** A kernel tunnel device this provider made: a system device that adds its config and deletes the device when it closes. */
class TunnelDevice extends SystemDevice {
  constructor(
    context: DeviceContext,
    netns: string | undefined,
    private readonly services: DeviceServices,
    private readonly kind: TunnelKind,
    private readonly schema: ConfigSchema<TunnelSettings, TunnelValues>,
    private readonly settings: TunnelSettings,
  ) {
    super(context, context.suffix, netns, services);
  }

  /** The config, with the device's MTU as the kernel has it now (or as it was made, once the device is gone). */
  override getConfig(): Config {
    const values = this.schema.values(this.settings);
    try {
      return { ...values, mtu: String(this.getMtu()) };
    } catch {
      return values;
    }
  }

  /**
   * remote_ip and persist change while the device is open: the unicast remotes added and removed
   * as flood entries; any other key must keep its value (EINVAL naming it).
   */
  override async setConfig(changes: Config): Promise<void> {
    const values = await this.schema.parse(changes, this.settings);
    const current = this.getConfig();
    const wanted = this.schema.values(applied(this.settings, values));
    for (const name of Object.keys(changes)) {
      if (CHANGEABLE.has(name) || current[name] === wanted[name]) continue;
      throw netdevError('EINVAL', `config key '${name}' is fixed once the device is made (it is ${current[name] ?? 'unset'}; close the device and open it again)`);
    }
    if (values.remote_ip !== undefined) {
      await checkRemotes(this.services, this.netnsSpec, this.settings, values.remote_ip.filter((text) => !this.settings.remotes.includes(text)));
      this.changeRemotes(values.remote_ip);
    }
    if (values.persist !== undefined) this.settings.persist = values.persist;
  }

  /** Adds the flood entries of the remotes after the first (the first is the device's own remote). */
  addFloodEntries(): void {
    const kernel = { own: this.settings.remotes[0]!, flood: new Set([this.settings.remotes[0]!]) };
    for (const text of this.settings.remotes.slice(1)) this.addFlood(kernel, text);
  }

  /**
   * Changes the remotes with no moment in which a remote of both lists is missing: the new flood
   * entries first, then the device's own remote if it changes (changelink of IFLA_*_GROUP: the
   * kernel adds the new one's flood entry and removes the old one's), then the old entries; a
   * failure undoes what was done.  settings.remotes follows what the kernel did, step by step.
   */
  private changeRemotes(next: string[]): void {
    const now = this.settings.remotes;
    if (next.join() === now.join()) return;
    if ([...now, ...next].some((text) => isMulticastIp(ipBytes(text)))) throw netdevError('EINVAL', `config key 'remote_ip' is fixed while it is a multicast group (it is ${now.join(',')})`);
    if (next.length === 0) throw netdevError('EINVAL', `config key 'remote_ip' cannot be cleared (the device needs a remote)`);
    if (family(next[0]!) !== family(now[0]!)) throw netdevError('EINVAL', `config key 'remote_ip' cannot change family (it is ${now.join(',')})`);
    const kernel = { own: now[0]!, flood: new Set(now) };
    const undo: (() => void)[] = [];
    try {
      for (const text of next.filter((t) => !now.includes(t))) {
        this.addFlood(kernel, text);
        undo.push(() => this.deleteFlood(kernel, text));
      }
      const [own] = next as [string];
      const old = kernel.own;
      if (own !== old) {
        this.setOwnRemote(kernel, own);
        undo.push(() => {
          this.setOwnRemote(kernel, old);
          if (now.includes(own)) this.addFlood(kernel, own);
        });
        if (next.includes(old)) {
          this.addFlood(kernel, old);
          undo.push(() => this.deleteFlood(kernel, old));
        }
      }
      for (const text of now.filter((t) => !next.includes(t))) {
        this.deleteFlood(kernel, text);
        undo.push(() => this.addFlood(kernel, text));
      }
    } catch (error) {
      for (const step of undo.reverse()) {
        try {
          step();
        } catch {
          // what could not be undone stays, and settings.remotes says so
        }
      }
      throw error;
    } finally {
      const flooded = [...new Set([...next, ...now])].filter((text) => text !== kernel.own && kernel.flood.has(text));
      this.settings.remotes = [kernel.own, ...flooded];
    }
  }

  /** Adds the flood entry of `remote` (RTM_NEWNEIGH), and to `kernel`, what the device has. */
  private addFlood(kernel: KernelRemotes, remote: string): void {
    this.floodEntry(true, remote);
    kernel.flood.add(remote);
  }

  /** Deletes the flood entry of `remote` if the device has it. */
  private deleteFlood(kernel: KernelRemotes, remote: string): void {
    if (!kernel.flood.has(remote)) return;
    this.floodEntry(false, remote);
    kernel.flood.delete(remote);
  }

  /** Makes `remote` the device's own (changelink): the kernel adds its flood entry and deletes the old own remote's. */
  private setOwnRemote(kernel: KernelRemotes, remote: string): void {
    const a = this.kind.attributes;
    const type = family(remote) === 6 ? a.remote6 : a.remote4;
    const ifindex = this.getIfindex();
    this.services.notifier.request((seq) => changeLinkRequest(ifindex, this.kind.kind, [{ type, payload: ipBytes(remote) }], seq), `RTM_NEWLINK (change) ${this.ifname} remote ${remote}`);
    kernel.flood.delete(kernel.own);
    kernel.flood.add(remote);
    kernel.own = remote;
  }

  private floodEntry(add: boolean, remote: string): void {
    const ifindex = this.getIfindex();
    this.services.notifier.request((seq) => floodEntryRequest(add, ifindex, ipBytes(remote), seq), `${add ? 'RTM_NEWNEIGH' : 'RTM_DELNEIGH'} 00:00:00:00:00:00 dst ${remote} on ${this.ifname}`);
  }

  /** Set once the open that made the device completed: persist=true applies from then on. */
  private completed = false;

  openCompleted(): void {
    this.completed = true;
  }

  /** True if closing deletes the kernel device: always after a failed open, else unless persist=true. */
  private deletesDevice(): boolean {
    return !this.completed || !this.settings.persist;
  }

  /** Deletes the kernel device (unless an open completed and persist=true), after the worker stopped. */
  override destroy(): void {
    const ifindex = this.liveIfindex();
    super.destroy();
    if (ifindex && this.deletesDevice()) this.deleteDevice(ifindex);
  }

  /** The process ends without closing the device: deletes it as destroy() would (the worker dies with the process). */
  atExit(): void {
    const ifindex = this.liveIfindex();
    if (ifindex && this.deletesDevice()) this.deleteDevice(ifindex);
  }

  /** The device's ifindex, or 0 if it is gone. */
  private liveIfindex(): number {
    try {
      return this.getIfindex();
    } catch {
      return 0;
    }
  }

  private deleteDevice(ifindex: number): void {
    this.services.notifier.request((seq) => deleteLinkRequest(ifindex, seq), `RTM_DELLINK ${this.ifname}`);
  }
}

/**
 * The underlay's MTU: `dev`'s, or else that of the device the route to the first remote leaves
 * by (`ip route get` in the namespace); null if there is no such route.
 */
async function underlayMtu(services: DeviceServices, netns: string | undefined, settings: TunnelSettings): Promise<number | null> {
  let dev = settings.dev;
  if (dev === null) {
    const route = await services.runProgram(iproute2InNetns(netns, 'ip', ['-j', 'route', 'get', settings.remotes[0]!]));
    if (route.status !== 0) return null;
    dev = (JSON.parse(route.stdout) as { dev?: string }[])[0]?.dev ?? null;
    if (dev === null) return null;
  }
  return ifreqIoctl(services.socket.fd, dev, SIOCGIFMTU, 'SIOCGIFMTU').readInt32LE(IFREQ_UNION);
}

/** Creates the kernel device `name` of `kind` with `settings`, up (EEXIST if the name, or the key and port, are taken). */
async function createKernelDevice(kind: TunnelKind, name: string, services: DeviceServices, netns: string | undefined, settings: TunnelSettings): Promise<void> {
  let link = 0;
  if (settings.dev !== null) {
    try {
      link = ifreqIoctl(services.socket.fd, settings.dev, SIOCGIFINDEX, 'SIOCGIFINDEX').readInt32LE(IFREQ_UNION);
    } catch (error) {
      if (error instanceof NetdevError && error.code === 'ENODEV') throw netdevError('ENODEV', `config key 'dev' names no device here: ${settings.dev}`);
      throw error;
    }
  }
  const underlay = settings.mtu === null || settings.dev !== null ? await underlayMtu(services, netns, settings) : null;
  const overhead = family(settings.remotes[0]!) === 6 ? kind.overhead.ipv6 : kind.overhead.ipv4;
  // With dev, the kernel would lower a larger MTU to what dev leaves, silently.
  if (settings.mtu !== null && settings.dev !== null && underlay !== null && settings.mtu > underlay - overhead) {
    throw netdevError('EINVAL', `config key 'mtu' (${settings.mtu}) is more than dev ${settings.dev} leaves: its MTU ${underlay} less the ${overhead} bytes of the encapsulation, ${underlay - overhead}`);
  }
  const mtu = settings.mtu ?? (underlay === null ? 0 : underlay - overhead);
  try {
    services.notifier.request((seq) => newLinkRequest({ name, mtu, kind: kind.kind, data: infoData(kind, settings, link) }, seq), `RTM_NEWLINK ${kind.kind} ${name}`);
  } catch (error) {
    if (!(error instanceof NetdevError) || error.code !== 'EEXIST') throw error;
    throw netdevError('EEXIST', `cannot create ${kind.kind} device ${name}: a device of that name exists (open it by its plain name as a system device, or delete it), or a ${kind.kind} device with key ${settings.key} and dst_port ${settings.port} does`);
  }
}

/** Runs the cleanup `undo` of a failed create; its own failure is a process warning, so that the create's error is the one thrown. */
function bestEffort(undo: () => void, name: string): void {
  try {
    undo();
  } catch (error) {
    process.emitWarning(`netdev: cannot delete the half-made tunnel device ${name}: ${(error as Error).message}`);
  }
}

/** The config keys of `kind`'s devices (for `netdev show`). */
export function tunnelConfigKeys(kind: TunnelKind): ConfigKeyInfo[] {
  return schemaOf(kind).describe();
}

/** A new provider of `kind`'s devices (prefix 'KIND:'). */
export function tunnelProvider(kind: TunnelKind): Provider {
  const services = new LinuxServices();
  const schema = schemaOf(kind);
  return {
    type: kind.kind,
    prefix: `${kind.kind}:`,
    ioModule: new URL('../system/io.js', import.meta.url),
    namespaced: true,
    offloads: true,
    configKeys: schema.describe(),
    init: (context) => services.init(context),
    close: () => services.close(),
    validateName: validateIfName,
    async create(context: DeviceContext, options: CreateOptions): Promise<TunnelDevice> {
      const settings = await settingsOf(kind, schema, options.config ?? {});
      const namespace = services.forNamespace(options.netns);
      await checkRemotes(namespace, options.netns, settings, settings.remotes);
      await createKernelDevice(kind, context.suffix, namespace, options.netns, settings);
      const device = new TunnelDevice(context, options.netns, namespace, kind, schema, settings);
      try {
        device.open();
        settings.mtu = device.getMtu();
      } catch (error) {
        bestEffort(() => namespace.notifier.request((seq) => deleteLinkRequest(context.suffix, seq), `RTM_DELLINK ${context.suffix}`), context.suffix);
        throw error;
      }
      try {
        device.addFloodEntries();
      } catch (error) {
        bestEffort(() => device.destroy(), context.suffix);
        throw error;
      }
      return device;
    },
  };
}
