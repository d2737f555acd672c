/**
 * `netdev list`, `netdev show DEV` and `netdev monitor [DEV...]`: what a network engineer asks of
 * devices, through the library (every device opened with ethertype 'none': control only).  Each
 * prints a table, or with --json one JSON document (monitor: one JSON object per line).
 */
import { NetdevError, netdevError } from '../common/errors.js';
import { LinkNotifier } from '../providers/linux/link-notifier.js';
import { NetdevManager } from '../main/manager.js';
import type { Netdev } from '../main/netdev.js';
import type { ConfigKeyInfo } from '../providers/config-schema.js';
import { dummyConfigKeys } from '../providers/dummy/provider.js';
import { pltapConfigKeys } from '../providers/pltap/control.js';
import { systemConfigKeys } from '../providers/system/control.js';
import { tapConfigKeys } from '../providers/tap/control.js';
import { unixConfigKeys } from '../providers/unix/control.js';
import { tunnelConfigKeys } from '../providers/tunnel/control.js';
import { TUNNEL_KINDS, tunnelParameters } from '../providers/tunnel/kinds.js';
import { Netns } from '../sys/netns.js';
import { untilStopped } from './output.js';

export interface InspectOptions {
  netns?: string | undefined;
  json: boolean;
  out: (line: string) => void;
}

/** The config keys of the built-in providers' devices, by type. */
const CONFIG_KEYS: Readonly<Record<string, readonly ConfigKeyInfo[]>> = {
  system: systemConfigKeys, tap: tapConfigKeys, pltap: pltapConfigKeys, unix: unixConfigKeys, dummy: dummyConfigKeys,
  ...Object.fromEntries(TUNNEL_KINDS.map((kind) => [kind.kind, tunnelConfigKeys(kind)])),
};

/**
 * A kernel tunnel device's parameters as the kernel reports them (rtnetlink, in the device's
 * namespace), under the config keys' names (dev: the underlay's name), with its kind; ENOENT for
 * any other device.
 */
async function tunnelOf(dev: Netdev): Promise<Record<string, string>> {
  const ifindex = await dev.getIfindex();
  const netns = dev.netns === undefined ? null : Netns.open(dev.netns);
  const notifier = new LinkNotifier(netns);
  try {
    const link = notifier.queryLink(ifindex);
    const parameters = tunnelParameters(link.linkKind, link.infoData);
    if (!parameters) throw netdevError('ENOENT', `${dev.name} is not a tunnel`);
    // The underlay by its name, as the dev config key names it.
    const { dev_ifindex: underlay, ...named } = parameters;
    if (underlay !== undefined) named.dev = notifier.queryLink(Number(underlay)).name ?? `ifindex ${underlay}`;
    return { kind: link.linkKind!, ...named };
  } finally {
    notifier.close();
    netns?.close();
  }
}

/** A tunnel's parameters as one line: "vxlan key=42 remote_ip=10.200.0.2 ...". */
function tunnelText(tunnel: unknown): string {
  if (typeof tunnel !== 'object' || tunnel === null) return String(tunnel);
  const { kind, ...parameters } = tunnel as Record<string, string>;
  return [kind, ...Object.entries(parameters).map(([key, value]) => `${key}=${value}`)].join(' ');
}

/** Errors that mean "there is none": no address (EADDRNOTAVAIL), not a VLAN device (ENOENT). */
const NONE = new Set(['EADDRNOTAVAIL', 'ENOENT']);

/** The value of an attribute call, or why there is none: 'none', 'unsupported' (EOPNOTSUPP), or the errno. */
async function attribute<T>(call: () => Promise<T>): Promise<T | string> {
  try {
    return await call();
  } catch (error) {
    if (!(error instanceof NetdevError)) throw error;
    if (NONE.has(error.code)) return 'none';
    return error.code === 'EOPNOTSUPP' ? 'unsupported' : `error ${error.code}`;
  }
}

function flagText(flags: unknown): string {
  if (typeof flags === 'string') return flags;
  const { up, promisc } = flags as { up: boolean; promisc: boolean };
  return [up ? 'UP' : 'DOWN', promisc ? 'PROMISC' : ''].filter(Boolean).join(',');
}

/** The summary `list` shows of one device. */
async function summary(dev: Netdev): Promise<Record<string, unknown>> {
  return {
    name: dev.name,
    type: dev.type,
    mac: await attribute(() => dev.getEtheraddr()),
    mtu: await attribute(() => dev.getMtu()),
    flags: await attribute(() => dev.getFlags()),
    carrier: await attribute(() => dev.getCarrier()),
  };
}

function table(rows: Record<string, unknown>[], columns: string[]): string[] {
  const cells = rows.map((row) => columns.map((c) => (c === 'flags' ? flagText(row[c]) : String(row[c]))));
  const widths = columns.map((c, i) => Math.max(c.length, ...cells.map((r) => r[i]!.length)));
  const line = (values: string[]) => values.map((v, i) => v.padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(columns.map((c) => c.toUpperCase())), ...cells.map(line)];
}

/** `netdev list`: every device of the namespace, with type, MAC, MTU, flags and carrier. */
export async function listDevices(options: InspectOptions): Promise<number> {
  const mgr = new NetdevManager();
  try {
    const rows: Record<string, unknown>[] = [];
    for (const name of (await mgr.enumerate({ netns: options.netns })).sort()) {
      const dev = await mgr.open(name, { ethertype: 'none', netns: options.netns });
      rows.push(await summary(dev));
      await dev.close();
    }
    if (options.json) options.out(JSON.stringify(rows, null, 2));
    else table(rows, ['name', 'type', 'mac', 'mtu', 'flags', 'carrier']).forEach(options.out);
    return 0;
  } finally {
    await mgr.close();
  }
}

/** `netdev show DEV`: every attribute the provider supports; the others say why not. */
export async function showDevice(name: string, options: InspectOptions): Promise<number> {
  const mgr = new NetdevManager();
  try {
    const dev = await mgr.open(name, { ethertype: 'none', netns: options.netns });
    const details: Record<string, unknown> = {
      ...(await summary(dev)),
      netns: dev.netns ?? null,
      ifindex: await attribute(() => dev.getIfindex()),
      in4: await attribute(() => dev.getIn4()),
      in6: await attribute(() => dev.getIn6()),
      vlan: await attribute(() => dev.getVlanVid()),
      tunnel: await attribute(() => tunnelOf(dev)),
      features: await attribute(() => dev.getFeatures()),
      config: await attribute(() => dev.getConfig()),
      stats: await attribute(() => dev.getStats()),
    };
    if (options.json) {
      options.out(JSON.stringify(details, null, 2));
    } else {
      for (const [key, value] of Object.entries(details)) {
        const text = key === 'flags' ? flagText(value) : key === 'tunnel' ? tunnelText(value) : typeof value === 'object' && value !== null ? JSON.stringify(value) : String(value);
        options.out(`${key.padEnd(9)} ${text}`);
        if (key === 'config') configLines(CONFIG_KEYS[dev.type] ?? [], value).forEach(options.out);
      }
    }
    return 0;
  } finally {
    await mgr.close();
  }
}

/** One line per config key under `show`'s config line: the key, its value ('unset' if none), its doc line and default. */
function configLines(keys: readonly ConfigKeyInfo[], config: unknown): string[] {
  const values = typeof config === 'object' && config !== null ? (config as Record<string, string>) : {};
  const width = Math.max(0, ...keys.map(({ name }) => name.length));
  return keys.map(({ name, doc, default: fallback }) => {
    const value = values[name] ?? 'unset';
    return `  ${name.padEnd(width)} = ${value}  ${doc}${fallback === undefined ? '' : ` (default ${fallback})`}`;
  });
}

/**
 * `netdev monitor [DEV...]`: prints a line per change notice until interrupted (all devices if
 * none named).  A system device deleted and later re-created under its name is another device:
 * the rtnetlink notifier of the namespace tells when the name is back, and the new device is
 * opened and watched in the old one's place (a line reports it).
 */
export async function monitorDevices(names: string[], options: InspectOptions): Promise<void> {
  const mgr = new NetdevManager();
  const monitor = mgr.monitor();
  const watched = names.length ? names : await mgr.enumerate({ netns: options.netns });
  const handles = new Map<string, Netdev>();
  const watch = async (name: string): Promise<void> => {
    const dev = await mgr.open(name, { ethertype: 'none', netns: options.netns });
    monitor.add(dev);
    handles.set(dev.netns === undefined ? dev.name : `${dev.netns}/${dev.name}`, dev);
  };
  for (const name of watched) await watch(name);
  const report = async (label: string) => {
    const dev = handles.get(label);
    const state: Record<string, unknown> = dev ? { ...(await summary(dev)), ifindex: await attribute(() => dev.getIfindex()) } : {};
    const time = new Date().toISOString();
    options.out(options.json ? JSON.stringify({ time, device: label, ...state }) : `${time} ${label} ${flagText(state.flags ?? '')} carrier ${String(state.carrier)} mtu ${String(state.mtu)}`);
  };

  /** Watches the device now named `name` instead of the gone one of `label`; nothing if that one lives or the name leads nowhere. */
  const rewatch = async (label: string, name: string) => {
    const old = handles.get(label)!;
    if ((await attribute(() => old.getIfindex())) !== 'error ENODEV') return;
    try {
      await watch(name);
    } catch (error) {
      if (error instanceof NetdevError && error.code === 'ENODEV') return;
      throw error;
    }
    monitor.remove(old);
    await old.close();
    await report(label);
  };
  const systemNames = new Map([...handles].filter(([, dev]) => dev.type === 'system').map(([label, dev]) => [dev.name, label]));
  const netns = options.netns === undefined ? null : Netns.open(options.netns);
  const notifier = new LinkNotifier(netns);
  let rewatching = Promise.resolve();
  const unsubscribe = notifier.subscribe((change) => {
    const comeBack =
      change.kind === 'resync' ? [...systemNames.keys()]
      : change.kind === 'link' && !change.deleted && change.name !== undefined && systemNames.has(change.name) ? [change.name]
      : [];
    for (const name of comeBack) {
      rewatching = rewatching
        .then(() => rewatch(systemNames.get(name)!, name))
        .catch((error: unknown) => process.emitWarning(`netdev monitor: cannot watch the new ${name}: ${(error as Error).message}`));
    }
  });

  void untilStopped().then(async () => {
    unsubscribe();
    notifier.close();
    netns?.close();
    await mgr.close();
    process.exit(0);
  });
  // The notifier does not keep a process alive by itself: this command waits for notices until a signal.
  const keepAlive = setInterval(() => {}, 1 << 30);
  options.out(options.json ? JSON.stringify({ watching: [...handles.keys()] }) : `watching ${[...handles.keys()].join(', ')}`);
  for await (const label of monitor) await report(label);
  clearInterval(keepAlive);
}

/**
 * `netdev capture DEV -w FILE [-c N]`: writes DEV's frames to a pcap file until N have been
 * written, until interrupted (status 0), or until the device fails, e.g. is deleted (status 1,
 * saying why).  Either way the file is closed complete and the summary printed.  The received
 * frames are read and discarded meanwhile, so that the RX ring never fills (frames it drops are
 * never captured).
 */
export async function captureDevice(name: string, file: string, limit: number | undefined, direction: 'rx' | 'tx' | 'both', options: InspectOptions): Promise<number> {
  const mgr = new NetdevManager();
  try {
    const dev = await mgr.open(name, { netns: options.netns });
    const capture = await dev.capture(file, { direction, ...(limit === undefined ? {} : { limit }) });
    options.out(options.json ? JSON.stringify({ capturing: name, file }) : `capturing ${name} to ${file}`);
    // Ends with an error when the device fails; otherwise only when the handle closes, below.
    let failure: Error | undefined;
    const consuming = (async () => {
      try {
        for await (const batch of dev.batches()) void batch;
      } catch (error) {
        failure = error as Error;
      }
    })();
    const ended = new AbortController();
    await Promise.race([capture.done, untilStopped(ended.signal), consuming]);
    ended.abort();
    await capture.close();
    const why = failure && (failure instanceof NetdevError ? `${failure.detail ?? failure.message} (${failure.code})` : failure.message);
    const result = { device: name, file, frames: capture.frames, dropped: capture.dropped, ...(why ? { ended: why } : {}) };
    if (options.json) options.out(JSON.stringify(result));
    else {
      if (why) options.out(`capture of ${name} ended: ${why}`);
      options.out(`${capture.frames} frames of ${name} written to ${file} (${capture.dropped} dropped)`);
    }
    await dev.close();
    await consuming;
    return why ? 1 : 0;
  } finally {
    await mgr.close();
  }
}
