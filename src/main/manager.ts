/**
 * NetdevManager: the registry of providers by name prefix, the devices open by name (shared and
 * refcounted), handles, monitors, the job pool, and the exit hook that restores flags (and
 * deletes the tunnel devices that must not outlive the process).  Nobody
 * calls run()/wait(): workers, bells and the event loop do OVS's poll loop.  A device whose
 * name no longer leads to it (deleted, renamed) is not given to new opens of the name: they get a
 * new device, and the old one lives on for its handles until they close.
 */
import { formatIPv4, parseIPv4 } from '../common/addresses.js';
import { NetdevError, toNetdevError } from '../common/errors.js';
import { ringCapacity, MAX_RING_CAPACITY, maxRecordFor } from '../ring/ring.js';
import type { CreateOptions, Ethertype, Provider, ProviderContext } from '../providers/contract.js';
import { dummyProvider } from '../providers/dummy/provider.js';
import { systemProvider } from '../providers/system/control.js';
import { tapProvider } from '../providers/tap/control.js';
import { pltapProvider } from '../providers/pltap/control.js';
import { unixProvider } from '../providers/unix/control.js';
import { TUNNEL_KINDS } from '../providers/tunnel/kinds.js';
import { tunnelProvider } from '../providers/tunnel/control.js';
import { Device, deviceLabel } from './device.js';
import { addExitRestorer } from './exit-hooks.js';
import { JobPool } from './job-pool.js';
import { NetdevMonitor, type Watchable } from './monitor.js';
import { Netdev, normalizeConfig } from './netdev.js';
import { abortError, checkSignal, throwIfAborted } from './abort.js';

/** Options of NetdevManager.open. */
export interface OpenOptions {
  /** Frames to receive: 'none' (control only), 'any' (default), '802.2', or an ethertype 0-0xffff. */
  ethertype?: Ethertype;
  /** Provider configuration, applied as setConfig would (validated; unknown keys are EINVAL). */
  config?: Record<string, string | number | boolean>;
  /**
   * Frames carry their offload metadata (default false; providers that can: system, tap, pltap): every
   * frame read or sent is a vnet frame, a 10-byte virtio_net_hdr then the Ethernet frame, and may be
   * a GSO super-frame of up to 64 KiB with a partial checksum (see README, "Offloads").  Without it,
   * frames are plain, at most MTU + header, with complete checksums.  Fixed by the device's first I/O open.
   */
  offloads?: boolean;
  /** Bytes of each of the device's two rings (default 512 KiB, rounded up to a power of two); fixed by the device's first open. */
  ringSize?: number;
  /**
   * The network namespace the device is in: an `ip netns` name or an absolute path (providers
   * that support it, e.g. system and tap).  The same name in two namespaces is two devices.
   */
  netns?: string;
  /**
   * Cancels the open: it rejects with ECANCELED, at once if it has not started (it waits behind
   * other calls on the same name), else after undoing what it did (a device it created is closed).
   */
  signal?: AbortSignal;
}

/** Options of the NetdevManager constructor. */
export interface ManagerOptions {
  /** Register the built-in providers (default true). */
  builtins?: boolean;
  /** The directory of the vsys FIFOs that configure pltap devices (default /vsys). */
  vsysDir?: string;
  /** How long a vsys transaction waits for the backend's answer before ETIMEDOUT (default 5000 ms). */
  vsysTimeoutMs?: number;
}

const DEFAULT_RING_SIZE = 512 * 1024;
/** '' or a name with no colon, then its colon: 'tap:'. */
const PROVIDER_PREFIX = /^(?:[^:]+:)?$/;
const MAX_NAME_LENGTH = 255;

interface ProviderEntry {
  readonly provider: Provider;
  initialized: Promise<void> | null;
}

export class NetdevManager {
  private readonly providers = new Map<string, ProviderEntry>();
  /** The device new opens of a label share. */
  private readonly devices = new Map<string, Device>();
  /** Every device not yet destroyed: those of `devices`, and those a new device of their label replaced. */
  private readonly live = new Set<Device>();
  private readonly handleDevices = new WeakMap<object, Device>();
  private readonly locks = new Map<string, Promise<unknown>>();
  private readonly monitors = new Set<NetdevMonitor>();
  private readonly pool = new JobPool();
  private readonly context: ProviderContext;
  private removeExitRestorer: (() => void) | null = null;
  private closed = false;

  /** A manager with the built-in providers registered: system, tap, pltap, unix, dummy, and one per tunnel kind (vxlan). */
  constructor(options: ManagerOptions = {}) {
    const dir = options.vsysDir ?? '/vsys';
    const timeoutMs = options.vsysTimeoutMs ?? 5000;
    this.context = {
      runProgram: (argv, programOptions) => this.pool.runProgram(argv, programOptions),
      vsys: (script, body) => this.pool.vsys({ dir, script, body, timeoutMs }),
    };
    if (options.builtins !== false) {
      this.register(systemProvider());
      this.register(tapProvider());
      this.register(pltapProvider());
      this.register(unixProvider());
      this.register(dummyProvider());
      for (const kind of TUNNEL_KINDS) this.register(tunnelProvider(kind));
    }
  }

  /**
   * Registers a provider (third-party providers included); its prefix must end with ':' (or be ''
   * for system devices) and not be taken: EEXIST otherwise.  Its init runs on first use.
   */
  register(provider: Provider): void {
    const { prefix, type } = provider ?? {};
    if (typeof type !== 'string' || !type || typeof prefix !== 'string' || !PROVIDER_PREFIX.test(prefix)) {
      throw new NetdevError({ code: 'EINVAL', call: 'register', detail: "a provider needs a type and a prefix ending in its only ':' (or '')" });
    }
    if (typeof provider.create !== 'function' || typeof provider.validateName !== 'function') {
      throw new NetdevError({ code: 'EINVAL', call: 'register', detail: `provider ${type} lacks create() or validateName()` });
    }
    if (this.providers.has(prefix)) {
      throw new NetdevError({ code: 'EEXIST', call: 'register', detail: `prefix '${prefix}' is already registered (${this.providers.get(prefix)!.provider.type})` });
    }
    this.providers.set(prefix, { provider, initialized: null });
  }

  /** The registered providers' types, by prefix. */
  get providerTypes(): Record<string, string> {
    return Object.fromEntries([...this.providers].map(([prefix, entry]) => [prefix, entry.provider.type]));
  }

  /**
   * Opens the device `name` ('dummy:a', 'eth0', ...) and returns a new handle to it.  The first
   * open of a name creates the device (and its worker, if the ethertype is not 'none'); later
   * opens share it.  Errors: EAFNOSUPPORT (no provider for the prefix), EINVAL (bad name, options
   * or config), ENODEV (no such device), EBUSY (already open for I/O with another ethertype, or the other way of offloads), EOPNOTSUPP (offloads asked of a provider without them),
   * ECANCELED (options.signal aborted).
   */
  async open(name: string, options: OpenOptions = {}): Promise<Netdev> {
    const signal = checkSignal(options.signal, name, 'open');
    throwIfAborted(signal, name, 'open');
    if (!signal) return this.openDevice(name, options, undefined);
    let started = false;
    const opening = this.openDevice(name, options, signal, () => (started = true));
    return new Promise<Netdev>((resolve, reject) => {
      const abortWait = (): void => {
        if (!started) reject(abortError(signal, name, 'open'));
      };
      signal.addEventListener('abort', abortWait, { once: true });
      void opening.then(resolve, reject).finally(() => signal.removeEventListener('abort', abortWait));
    });
  }

  /** open(): `start` runs when its turn on the device name comes; an abort of `signal` is checked between its steps. */
  private async openDevice(name: string, options: OpenOptions, signal: AbortSignal | undefined, start?: () => void): Promise<Netdev> {
    const { entry, suffix } = this.resolve(name, 'open');
    const netns = checkNetns(entry.provider, name, options.netns);
    const key = deviceLabel(name, netns);
    const ethertype = checkEthertype(name, options.ethertype ?? 'any');
    const offloads = checkOffloads(entry.provider, name, options.offloads);
    const capacity = checkRingSize(name, options.ringSize ?? DEFAULT_RING_SIZE);
    let config;
    try {
      config = options.config === undefined ? undefined : normalizeConfig(options.config);
    } catch (error) {
      throw toNetdevError(error, name, 'open');
    }
    return this.serialize(key, async () => {
      start?.();
      throwIfAborted(signal, name, 'open');
      this.requireOpen('open');
      await this.initialize(entry, name);
      throwIfAborted(signal, name, 'open');
      let device = this.devices.get(key);
      if (device && !holdsName(device)) device = undefined; // new opens get the device the name leads to now
      const created = !device;
      if (!device) device = await this.createDevice(entry.provider, name, suffix, { ethertype, maxFrame: maxRecordFor(capacity), netns, config }, capacity);
      try {
        throwIfAborted(signal, name, 'open');
        if (config) await device.impl.setConfig(config);
        throwIfAborted(signal, name, 'open');
        if (ethertype !== 'none') await this.ensureIo(device, ethertype, offloads);
        throwIfAborted(signal, name, 'open');
      } catch (error) {
        if (created) await this.destroyDevice(device);
        throw toNetdevError(error, name, 'open');
      }
      if (created) device.impl.openCompleted?.();
      const handle = new Netdev(device, ethertype, (h) => this.release(h));
      device.handles.add(handle);
      this.handleDevices.set(handle, device);
      return handle;
    });
  }

  /**
   * Names of every device every provider can open now (providers that fail are skipped with a
   * process warning); with `netns`, the devices of namespaced providers in that namespace.
   */
  async enumerate(options: { netns?: string } = {}): Promise<string[]> {
    this.requireOpen('enumerate');
    const { netns } = options;
    const names: string[] = [];
    for (const entry of this.providers.values()) {
      if (!entry.provider.enumerate || (netns !== undefined && !entry.provider.namespaced)) continue;
      try {
        await this.initialize(entry, undefined);
        names.push(...(await entry.provider.enumerate(netns)));
      } catch (error) {
        process.emitWarning(`netdev: cannot enumerate ${entry.provider.type} devices: ${(error as Error).message}`);
      }
    }
    return names;
  }

  /** True if a device named `name` exists and may be opened (OVS's netdev_exists). */
  async exists(name: string): Promise<boolean> {
    try {
      const handle = await this.open(name, { ethertype: 'none' });
      await handle.close();
      return true;
    } catch {
      return false;
    }
  }

  /** The name of a device whose IPv4 address is `address`, or null (OVS's netdev_find_dev_by_in4). */
  async findByIn4(address: string): Promise<string | null> {
    let wanted: string;
    try {
      wanted = formatIPv4(parseIPv4(address));
    } catch (error) {
      throw toNetdevError(error, undefined, 'findByIn4');
    }
    for (const name of await this.enumerate()) {
      let handle: Netdev;
      try {
        handle = await this.open(name, { ethertype: 'none' });
      } catch {
        continue;
      }
      try {
        if ((await handle.getIn4()).address === wanted) return name;
      } catch {
        // No IPv4 address, or none supported: not this one.
      } finally {
        await handle.close();
      }
    }
    return null;
  }

  /**
   * Runs a provider's command (OVS's unixctl commands), e.g.
   * command('netdev-pltap/get-tapname', 'pltap:p0') -> 'tap0'.  ENOENT for an unknown command;
   * the command's own errors (with its text) otherwise.
   */
  async command(name: string, ...args: string[]): Promise<string> {
    this.requireOpen('command');
    for (const entry of this.providers.values()) {
      const command = entry.provider.commands?.[name];
      if (!command) continue;
      await this.initialize(entry, undefined);
      try {
        return await command(...args);
      } catch (error) {
        throw toNetdevError(error, args[0], name);
      }
    }
    throw new NetdevError({ code: 'ENOENT', call: 'command', detail: `no command '${name}'` });
  }

  /** A new monitor of device changes; add handles to it. */
  monitor(): NetdevMonitor {
    this.requireOpen('monitor');
    const monitor = new NetdevMonitor(
      (handle) => this.deviceOf(handle),
      (m) => this.monitors.delete(m),
    );
    this.monitors.add(monitor);
    return monitor;
  }

  /** Closes every device (restoring flags), monitor and pool thread. Idempotent; the manager cannot be used after. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const monitor of [...this.monitors]) monitor.close();
    const closing = [...this.live].map((device) =>
      this.serialize(device.label, async () => {
        if (!this.live.has(device)) return;
        for (const handle of device.handles) (handle as Netdev).detach();
        device.handles.clear();
        await this.destroyDevice(device);
      }),
    );
    await Promise.allSettled(closing);
    for (const { provider } of this.providers.values()) {
      try {
        await provider.close?.();
      } catch (error) {
        process.emitWarning(`netdev: closing the ${provider.type} provider: ${(error as Error).message}`);
      }
    }
    await this.pool.close();
    this.removeExitRestorer?.();
    this.removeExitRestorer = null;
  }

  /** close(), for `await using mgr = new NetdevManager()`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /* ---------------------------------------------------------------- internals */

  private requireOpen(call: string): void {
    if (this.closed) throw new NetdevError({ code: 'EBADF', call, detail: 'manager is closed' });
  }

  /** Finds the provider of `name` and checks the name; EINVAL / EAFNOSUPPORT. */
  private resolve(name: unknown, call: string): { entry: ProviderEntry; suffix: string } {
    if (typeof name !== 'string' || name.length === 0 || name.length > MAX_NAME_LENGTH || name.includes('\0')) {
      throw new NetdevError({ code: 'EINVAL', call, detail: `invalid device name ${JSON.stringify(name)}` });
    }
    const colon = name.indexOf(':');
    const prefix = colon < 0 ? '' : name.slice(0, colon + 1);
    const suffix = name.slice(prefix.length);
    const entry = this.providers.get(prefix);
    if (!entry) {
      throw new NetdevError({ code: 'EAFNOSUPPORT', device: name, call, detail: `no provider for prefix '${prefix}'` });
    }
    try {
      entry.provider.validateName(suffix);
    } catch (error) {
      throw toNetdevError(error, name, call);
    }
    return { entry, suffix };
  }

  /** Runs the provider's init once; a failure is kept and reported for every later use. */
  private async initialize(entry: ProviderEntry, device: string | undefined): Promise<void> {
    entry.initialized ??= (async () => {
      try {
        await entry.provider.init?.(this.context);
      } catch (error) {
        const failure = toNetdevError(error, undefined, 'init');
        process.emitWarning(`netdev: failed to initialize the ${entry.provider.type} provider: ${failure.message}`);
        throw failure;
      }
    })();
    try {
      await entry.initialized;
    } catch (error) {
      throw toNetdevError(error, device, 'init');
    }
  }

  private async createDevice(provider: Provider, name: string, suffix: string, options: CreateOptions, capacity: number): Promise<Device> {
    const device = new Device(name, suffix, provider, capacity, options.netns);
    try {
      device.attach(await provider.create(device.context(), options));
    } catch (error) {
      throw toNetdevError(error, name, 'open');
    }
    this.devices.set(device.label, device);
    this.live.add(device);
    this.removeExitRestorer ??= addExitRestorer(() => this.atExit());
    return device;
  }

  private async ensureIo(device: Device, ethertype: Ethertype, offloads: boolean): Promise<void> {
    if (!device.io) {
      await device.startIo(ethertype, offloads);
    } else if (device.io.ethertype !== ethertype) {
      throw new NetdevError({ code: 'EBUSY', device: device.name, call: 'open', detail: `already open for I/O with ethertype ${String(device.io.ethertype)}` });
    } else if (device.io.offloads !== offloads) {
      throw new NetdevError({ code: 'EBUSY', device: device.name, call: 'open', detail: `already open for I/O ${device.io.offloads ? 'with' : 'without'} offloads` });
    }
  }

  private async destroyDevice(device: Device): Promise<void> {
    if (this.devices.get(device.label) === device) this.devices.delete(device.label);
    this.live.delete(device);
    for (const monitor of this.monitors) monitor.forget(device);
    if (this.live.size === 0) {
      this.removeExitRestorer?.();
      this.removeExitRestorer = null;
    }
    await device.destroy();
  }

  /** Closes `handle`: restores its flags; the last handle of a device destroys it. */
  private release(handle: Netdev): Promise<void> {
    const device = this.deviceOf(handle);
    return this.serialize(device.label, async () => {
      if (!device.handles.delete(handle)) return;
      try {
        handle.restoreFlags();
      } finally {
        if (device.handles.size === 0 && this.live.has(device)) await this.destroyDevice(device);
      }
    });
  }

  private deviceOf(handle: Watchable): Device {
    const device = this.handleDevices.get(handle);
    if (!device) throw new NetdevError({ code: 'EINVAL', device: handle?.name, call: 'monitor', detail: 'not a handle of this manager' });
    return device;
  }

  /** The exit and signal hook, while devices are live: each handle's flags restored, then each device's atExit. */
  private atExit(): void {
    for (const device of this.live) {
      for (const handle of device.handles) {
        try {
          (handle as Netdev).restoreFlags();
        } catch {
          // A failing restore must not keep the others from running.
        }
      }
      try {
        device.impl.atExit?.();
      } catch {
        // nor a failing atExit.
      }
    }
  }

  /** Runs `task` after every earlier task on the same device name has settled. */
  private serialize<T>(name: string, task: () => Promise<T>): Promise<T> {
    const previous = this.locks.get(name) ?? Promise.resolve();
    const result = previous.then(task, task);
    const settled = result.then(
      () => undefined,
      () => undefined,
    );
    this.locks.set(name, settled);
    void settled.then(() => {
      if (this.locks.get(name) === settled) this.locks.delete(name);
    });
    return result;
  }
}

/** True while new opens of `device`'s name may share it: it has not failed with ENODEV and its provider says the name still leads to it. */
function holdsName(device: Device): boolean {
  if (device.failure?.code === 'ENODEV') return false;
  try {
    return device.impl.holdsName?.() ?? true;
  } catch {
    return false;
  }
}

/** The offloads option: a boolean, true only for a provider whose devices can carry offload metadata (EOPNOTSUPP). */
function checkOffloads(provider: Provider, name: string, offloads: unknown): boolean {
  if (offloads === undefined || offloads === false) return false;
  if (offloads !== true) throw new NetdevError({ code: 'EINVAL', device: name, call: 'open', detail: `offloads must be a boolean, not ${JSON.stringify(offloads)}` });
  if (!provider.offloads) throw new NetdevError({ code: 'EOPNOTSUPP', device: name, call: 'open', detail: `${provider.type} devices carry no offload metadata: open without offloads` });
  return true;
}

function checkEthertype(name: string, ethertype: unknown): Ethertype {
  if (ethertype === 'none' || ethertype === 'any' || ethertype === '802.2') return ethertype;
  if (typeof ethertype === 'number' && Number.isInteger(ethertype) && ethertype >= 0 && ethertype <= 0xffff) return ethertype;
  throw new NetdevError({ code: 'EINVAL', device: name, call: 'open', detail: `ethertype must be 'none', 'any', '802.2' or an integer 0-0xffff, not ${JSON.stringify(ethertype)}` });
}

function checkNetns(provider: Provider, name: string, netns: unknown): string | undefined {
  if (netns === undefined) return undefined;
  if (!provider.namespaced) {
    throw new NetdevError({ code: 'EINVAL', device: name, call: 'open', detail: `${provider.type} devices cannot be opened in another network namespace` });
  }
  if (typeof netns !== 'string' || netns.length === 0 || netns.includes('\0')) {
    throw new NetdevError({ code: 'EINVAL', device: name, call: 'open', detail: `netns must be a namespace name or path, not ${JSON.stringify(netns)}` });
  }
  return netns;
}

function checkRingSize(name: string, size: unknown): number {
  try {
    return ringCapacity(size as number);
  } catch {
    throw new NetdevError({ code: 'EINVAL', device: name, call: 'open', detail: `ringSize must be an integer from 1 to ${MAX_RING_CAPACITY}, not ${JSON.stringify(size)}` });
  }
}
