/**
 * Netdev: the handle that NetdevManager.open returns.  Each open gives its own handle, even when
 * the device is shared; a handle's flag changes are its own to restore.  Control calls go to the
 * provider's control half on this thread; frames go through the device's rings.
 */
import { canonicalIPv6, isGroupMac, parseIPv4, parseMac, parsePrefixLength } from '../common/addresses.js';
import { readFile } from 'node:fs/promises';
import { NetdevError, toNetdevError } from '../common/errors.js';
import { ETH_HEADER, isVlanTagged, VLAN_TAG } from '../common/ethernet.js';
import { readPcap } from '../common/pcap.js';
import { isGsoFrame, LARGEST_SUPER_FRAME, VNET_HDR_LEN, vnetHeaderProblem } from '../common/vnet-header.js';
import { Bell } from '../ring/bell.js';
import { sys } from '../sys/libc.js';
import type { Config, Ethertype, Features, Flags, In4, ProviderDevice, Stats } from '../providers/contract.js';
import { moduleUrl, type Device, type DeviceIoState } from './device.js';
import { ALL_FLAGS, FlagBook, flagBits, flagsOf } from './flags.js';
import { BatchIterator, FrameIterator, type BatchOptions, type ReadOptions } from './rx-queue.js';
import { Capture, type CaptureOptions } from './capture.js';
import { abortError, checkSignal, throwIfAborted } from './abort.js';
import type { Remote } from '../common/rpc.js';
import type { DeviceWorkerApi } from '../workers/device-worker.js';

/** A worker agent running in a device's worker (Netdev.attachAgent). */
export interface AgentHandle {
  /** What the agent's `started` said. */
  readonly started: unknown;
  /** Calls the agent's control(op, arg) in the worker; resolves with its answer. */
  call(op: string, arg?: unknown): Promise<unknown>;
  /** Detaches the agent (the worker receives into the RX ring again); resolves with what its close() returned. */
  detach(): Promise<unknown>;
}

/** Options of send/sendBatch. */
export interface SendOptions {
  /** Withdraws the send while it waits for room in the TX ring: it rejects with ECANCELED (frames already queued stay queued). */
  signal?: AbortSignal;
}

/** Options of setFlags/turnFlagsOn/turnFlagsOff. */
export interface FlagOptions {
  /** Keep the change when this handle closes or the process exits (default false: restore it). */
  permanent?: boolean;
}

const DEFAULT_BATCH = 256;
/** Frames per worker call when replaying a capture. */
const REPLAY_BATCH = 256;

/** Members of ProviderDevice that are plain optional calls. */
type OptionalMember = {
  [K in keyof ProviderDevice]-?: undefined extends ProviderDevice[K] ? K : never;
}[keyof ProviderDevice];

export class Netdev {
  private readonly flagBook = new FlagBook();
  private open = true;

  /** @internal Created by NetdevManager.open. */
  constructor(
    private readonly device: Device,
    /** The ethertype this handle was opened with. */
    readonly ethertype: Ethertype,
    private readonly release: (handle: Netdev) => Promise<void>,
  ) {}

  /** Full device name, e.g. 'dummy:a' or 'eth0'. */
  get name(): string {
    return this.device.name;
  }

  /** The network namespace the device is in, as given to open; undefined: the process's own. */
  get netns(): string | undefined {
    return this.device.netns;
  }

  /** Provider type, e.g. 'dummy' or 'system'. */
  get type(): string {
    return this.device.provider.type;
  }

  /** Bumps whenever an attribute of the device changes (never 0). */
  get changeSeq(): number {
    return this.device.changeSeq;
  }

  /** False once close() has been called. */
  get isOpen(): boolean {
    return this.open;
  }

  /**
   * True if the device was opened with offloads (OpenOptions.offloads): every frame this handle
   * reads or sends is a vnet frame (a 10-byte virtio_net_hdr, then the Ethernet frame).
   */
  get offloads(): boolean {
    return this.device.io?.offloads ?? false;
  }

  /**
   * The largest frame trySend/send accept now: MTU + Ethernet header + 4 for a VLAN tag, within the
   * ring's limit; with offloads, the largest vnet frame (header + a GSO super-frame of up to 64 KiB).
   */
  get maxFrame(): number {
    return this.offloads ? this.superFrameLimit() : this.frameLimit(true);
  }

  /** The largest vnet frame carrying a GSO super-frame, within the ring's limit. */
  private superFrameLimit(): number {
    return Math.min(this.device.io?.tx.writer.maxRecord ?? Infinity, VNET_HDR_LEN + LARGEST_SUPER_FRAME);
  }

  /** The largest record the device takes, tagged or not: `header` (a vnet header's, or 0) + MTU + 14 (+ 4), at most the TX ring's largest record. */
  private frameLimit(tagged: boolean, header = 0): number {
    const mtu = this.device.shared.mtu;
    const ring = this.device.io?.tx.writer.maxRecord ?? Infinity;
    return mtu > 0 ? Math.min(ring, header + mtu + ETH_HEADER + (tagged ? VLAN_TAG : 0)) : ring;
  }

  /* ---------------------------------------------------------------- frames */

  /**
   * Frames received on the device, one per step, each at least 60 bytes (short frames are padded
   * with zeros); on a handle with offloads, vnet frames (see `offloads`).  Without `copy`, a frame is a view into the RX ring, valid only until the next
   * step.  Ends when this handle closes; throws if the device fails (e.g. its worker crashed).
   * One iterator (or batches()) may read a device at a time: EBUSY otherwise.  An abort of
   * `signal` rejects the step waiting (or the next one) with ECANCELED and ends the iterator.
   */
  frames(options: ReadOptions = {}): AsyncIterableIterator<Uint8Array> {
    const io = this.requireIo('frames');
    this.requireHealthy('frames');
    const signal = checkSignal(options.signal, this.name, 'frames');
    throwIfAborted(signal, this.name, 'frames');
    const iterator = new FrameIterator(io.rx, this.readGate('frames', signal), options.copy === true, signal);
    io.rx.claim(iterator, this.name, 'frames');
    return iterator;
  }

  /**
   * Batches of received frames (arrays of up to `max`, default 256, never empty): the form for
   * forwarding loops.  Without `copy`, the array and its views are reused and valid only until
   * the next step.  Same ending, exclusivity and `signal` as frames().
   */
  batches(options: BatchOptions = {}): AsyncIterableIterator<Uint8Array[]> {
    const io = this.requireIo('batches');
    this.requireHealthy('batches');
    const max = options.max ?? DEFAULT_BATCH;
    if (!Number.isInteger(max) || max < 1) {
      throw new NetdevError({ code: 'EINVAL', device: this.name, call: 'batches', detail: `max must be a positive integer, not ${max}` });
    }
    const signal = checkSignal(options.signal, this.name, 'batches');
    throwIfAborted(signal, this.name, 'batches');
    const iterator = new BatchIterator(io.rx, this.readGate('batches', signal), options.copy === true, max, signal);
    io.rx.claim(iterator, this.name, 'batches');
    return iterator;
  }

  /**
   * Returns one received frame (an owned copy, at least 60 bytes) or null if none is waiting
   * (OVS's EAGAIN).  Never blocks.  EBUSY while an iterator reads the device.
   */
  tryRecv(): Uint8Array | null {
    const io = this.requireIo('tryRecv');
    this.readEnded('tryRecv');
    if (io.rx.claimed) throw new NetdevError({ code: 'EBUSY', device: this.name, call: 'tryRecv', detail: 'an iterator is reading this device' });
    const length = io.rx.reader.next();
    if (length < 0) return null;
    const frame = io.rx.frame(length, true);
    io.rx.reader.release();
    return frame;
  }

  /**
   * Queues `frame` for transmission and resolves once it is in the TX ring (the frame is copied;
   * do not change it before the promise resolves).  Waits, in order, while the ring is full.
   * EMSGSIZE for a frame shorter than an Ethernet header or longer than maxFrame; on a handle with
   * offloads the frame is a vnet frame, and a bad virtio_net_hdr is EINVAL.  An abort of
   * `signal` before the frame is queued withdraws it: ECANCELED, and the senders behind it move up.
   */
  send(frame: Uint8Array, options: SendOptions = {}): Promise<void> {
    try {
      const signal = checkSignal(options.signal, this.name, 'send');
      return this.queueFrame(frame, signal, () => abortError(signal!, this.name, 'send'));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** send() of one frame, an abort rejecting with `aborted()`. */
  private queueFrame(frame: Uint8Array, signal: AbortSignal | undefined, aborted: () => NetdevError): Promise<void> {
    try {
      const io = this.requireSendable(frame, 'send');
      return io.tx.send(frame, signal, aborted).catch((error: unknown) => {
        throw toNetdevError(error, this.name, 'send');
      });
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** Queues `frame` if the TX ring has room now and no send() waits; returns false otherwise (EAGAIN). */
  trySend(frame: Uint8Array): boolean {
    return this.requireSendable(frame, 'trySend').tx.trySend(frame);
  }

  /**
   * Queues as many of `frames` as fit now, in order, with a single wake-up of the worker; returns
   * how many.  Every frame is checked first: if one is bad, none is queued (EMSGSIZE names it).
   */
  trySendBatch(frames: readonly Uint8Array[]): number {
    const io = this.requireIo('trySendBatch');
    this.requireHealthy('trySendBatch');
    for (let i = 0; i < frames.length; i++) this.checkFrame(frames[i], 'trySendBatch', i);
    return io.tx.trySendBatch(frames);
  }

  /**
   * Queues every frame of `frames`, in order: as many as fit at once with one wake-up of the
   * worker, then the rest one by one, waiting while the ring is full.  The frames are copied by
   * the time it resolves (views from batches() may be passed straight through).  An abort of
   * `signal` rejects with ECANCELED saying how many were queued: those, the first ones in order, stay queued.
   */
  async sendBatch(frames: readonly Uint8Array[], options: SendOptions = {}): Promise<void> {
    const signal = checkSignal(options.signal, this.name, 'sendBatch');
    const aborted = (queued: number) => abortError(signal!, this.name, 'sendBatch', `aborted with ${queued} of ${frames.length} frames queued`);
    if (signal?.aborted) throw aborted(0);
    const queued = this.trySendBatch(frames);
    for (let i = queued; i < frames.length; i++) await this.queueFrame(frames[i]!, signal, () => aborted(i));
  }

  /**
   * Writes the frames the device receives and/or sends to a pcap file at `path` (Ethernet,
   * microsecond or nanosecond timestamps) until the returned Capture closes, or the device does.
   * The worker copies frames into a capture ring and the file is written asynchronously, off the
   * hot path; frames the capture cannot keep up with are counted in capture.dropped.
   */
  capture(path: string, options: CaptureOptions = {}): Promise<Capture> {
    try {
      this.requireIo('capture');
    } catch (error) {
      return Promise.reject(error);
    }
    return this.device.capture(path, options);
  }

  /**
   * Runs a worker agent in the device's worker (see "Writing a worker agent" in README and
   * src/workers/agent-contract.ts): the module at `module` (a URL or absolute path) must export
   * `createAgent`; it is given `options` (structured-cloned) and takes over the worker's receive
   * rounds until detached.  Resolves with a handle once it runs.  EPIPE for a control-only
   * handle, EBUSY if an agent runs already, and the agent's own error if it cannot start.
   */
  async attachAgent(module: string | URL, options?: unknown): Promise<AgentHandle> {
    const url = moduleUrl(module);
    Bell.useKicker(sys.signalEventfd); // rings from this thread reach an agent waiting in poll(2) (setKickFd)
    const { id, started } = await this.onWorker('attachAgent', (api) => api.attachAgent(url, options));
    // Both also work once this handle has closed, while the device runs on (another handle keeps it).
    return {
      started,
      call: (op, arg) => this.onWorker('agentCall', (api) => api.agentCall(id, op, arg), true),
      detach: () => this.onWorker('detachAgent', (api) => api.detachAgent(id), true),
    };
  }

  /**
   * A new packet socket on the device (system devices), for sending only (it takes no frames,
   * and has vnet headers), on which any thread of the process may call sendmmsg (a worker agent
   * sending to this device); the caller owns and closes it.  EOPNOTSUPP for a device without one.
   */
  sendingSocket(): Promise<number> {
    return this.onWorker('sendingSocket', (api) => api.sendingSocket());
  }

  /**
   * A call on the device's worker.  EPIPE for a control-only handle, the device's failure if it
   * failed, and the worker's error if the call fails.  With `evenIfClosed`, the call is made
   * while the device runs even if this handle has closed.
   */
  private onWorker<T>(call: string, invoke: (api: Remote<DeviceWorkerApi>) => Promise<T>, evenIfClosed = false): Promise<T> {
    try {
      const io = evenIfClosed ? this.device.io : this.requireIo(call);
      if (!io) throw new NetdevError({ code: 'EBADF', device: this.name, call, detail: 'device is closed' });
      if (!evenIfClosed) this.requireHealthy(call);
      return io.worker.call(invoke, call);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * @internal For the Switch: frames the device received that its reader never got, as counted
   * now: its RX ring was full, or the kernel's queue in front of the worker (rxQueueDropped).
   */
  get receiveDrops(): number {
    return (this.device.io?.rx.droppedCount() ?? 0) + this.device.shared.value('rxQueueDropped');
  }

  /** @internal For the Switch: the number of frames ever taken from the device's RX ring (by any reader of it). */
  get recordsRead(): number {
    return this.device.io?.rx.reader.consumed ?? 0;
  }

  /**
   * @internal For the Switch: takes the frames waiting in the RX ring up to the `until`-th ever
   * put there, calling `each` with each one's number, unless an iterator is reading the ring.
   */
  discardReceived(until: number, each: (record: number) => void): void {
    const rx = this.device.io?.rx;
    if (!rx || rx.claimed) return;
    while (rx.reader.consumed < until && rx.reader.next() >= 0) each(rx.reader.consumed - 1);
    rx.reader.release();
  }

  /** Discards every received frame waiting in the device, and in the RX ring unless an iterator is reading it. */
  async drain(): Promise<void> {
    const io = this.requireIo('drain');
    await io.worker.call((api) => api.drain(), 'drain');
    if (!io.rx.claimed) io.rx.reader.discardAll();
  }

  /** Hands `frame` to the device's receive path as if it had arrived (devices that support it, e.g. dummy). */
  async inject(frame: Uint8Array): Promise<void> {
    this.checkFrame(frame, 'inject');
    await this.control('inject', 'inject', [[frame]]);
  }

  /**
   * Receives the frames of the pcap file at `path`, in order, as if they had arrived on the wire
   * (devices that support inject, e.g. dummy): as fast as possible, or at `rate` frames per
   * second.  Resolves with the number of frames replayed.  A malformed file is EINVAL naming the
   * file and the offset, before any frame is replayed.
   */
  async replay(path: string, options: { rate?: number } = {}): Promise<number> {
    this.requireOpen('replay');
    const { rate } = options;
    if (rate !== undefined && !(rate > 0)) throw new NetdevError({ code: 'EINVAL', device: this.name, call: 'replay', detail: `rate must be a positive number of frames per second, not ${rate}` });
    let frames: Uint8Array[];
    try {
      frames = [...readPcap(await readFile(path), path)].map((record) => record.frame);
    } catch (error) {
      const cause = toNetdevError(error, this.name, 'replay');
      throw new NetdevError({ code: cause.code, device: this.name, call: 'replay', detail: cause.detail }, { cause });
    }
    frames.forEach((frame, i) => this.checkFrame(frame, 'replay', i));
    const batch = rate === undefined ? REPLAY_BATCH : Math.max(1, Math.min(REPLAY_BATCH, Math.floor(rate / 100)));
    const start = performance.now();
    for (let done = 0; done < frames.length; done += batch) {
      if (rate !== undefined) {
        const due = start + (done / rate) * 1000;
        if (due > performance.now()) await new Promise((resolve) => setTimeout(resolve, due - performance.now()));
      }
      await this.control('replay', 'inject', [frames.slice(done, done + batch)]);
    }
    return frames.length;
  }

  /* ---------------------------------------------------------------- attributes */

  /** The MAC address, "02:00:00:00:00:01". */
  getEtheraddr(): Promise<string> {
    return this.control('getEtheraddr', 'getEtheraddr', []);
  }

  /** Sets the MAC address; EINVAL for a malformed or multicast address. */
  async setEtheraddr(mac: string): Promise<void> {
    const bytes = this.parse('setEtheraddr', () => parseMac(mac));
    if (isGroupMac(bytes)) {
      throw new NetdevError({ code: 'EINVAL', device: this.name, call: 'setEtheraddr', detail: `${mac} is a multicast address` });
    }
    await this.control('setEtheraddr', 'setEtheraddr', [bytes]);
  }

  /** The MTU.  On failure the error's fallback is 1500, the value OVS reports. */
  getMtu(): Promise<number> {
    return this.control('getMtu', 'getMtu', [], 1500);
  }

  /** Sets the MTU (an integer; the provider checks its range). */
  async setMtu(mtu: number): Promise<void> {
    if (!Number.isInteger(mtu)) throw new NetdevError({ code: 'EINVAL', device: this.name, call: 'setMtu', detail: `MTU must be an integer, not ${mtu}` });
    await this.control('setMtu', 'setMtu', [mtu]);
  }

  /** The kernel interface index. */
  getIfindex(): Promise<number> {
    return this.control('getIfindex', 'getIfindex', []);
  }

  /** True if carrier is up.  On failure the error's fallback is false. */
  getCarrier(): Promise<boolean> {
    return this.control('getCarrier', 'getCarrier', [], false);
  }

  /** Statistics; fields the device cannot count are null, and so is every field in the error's fallback. */
  async getStats(): Promise<Stats> {
    const unsupported = Object.fromEntries(STAT_FIELDS.map((field) => [field, null])) as unknown as Stats;
    const stats = await this.control<Omit<Stats, 'rxRingDropped'>>('getStats', 'getStats', [], unsupported);
    const { io, shared } = this.device;
    return {
      ...stats,
      rxRingDropped: io ? io.rx.droppedCount() : null,
      rxSegmented: io ? shared.value('rxSegmented') : null,
      rxChecksummed: io ? shared.value('rxChecksummed') : null,
    };
  }

  /** OpenFlow port-feature bitmaps: current, advertised, supported, peer. */
  getFeatures(): Promise<Features> {
    return this.control('getFeatures', 'getFeatures', []);
  }

  /** Sets the advertised features (OpenFlow bits). */
  async setAdvertisements(bits: number): Promise<void> {
    this.checkUint('setAdvertisements', bits, 0xffffffff);
    await this.control('setAdvertisements', 'setAdvertisements', [bits]);
  }

  /** The VLAN VID of a VLAN device; ENOENT for any other (OVS's answer), fallback 0. */
  getVlanVid(): Promise<number> {
    if (!this.device.impl.getVlanVid) {
      return Promise.reject(new NetdevError({ code: 'ENOENT', device: this.name, call: 'getVlanVid', detail: 'not a VLAN device', fallback: 0 }));
    }
    return this.control('getVlanVid', 'getVlanVid', [], 0);
  }

  /** Polices input to `kbitsRate` kbit/s, bursts of `kbitsBurst` kbit (0: the provider's default); rate 0 removes it. */
  async setPolicing(kbitsRate: number, kbitsBurst = 0): Promise<void> {
    this.checkUint('setPolicing', kbitsRate, 0xffffffff);
    this.checkUint('setPolicing', kbitsBurst, 0xffffffff);
    await this.control('setPolicing', 'setPolicing', [kbitsRate, kbitsBurst]);
  }

  /** The IPv4 address and netmask; EADDRNOTAVAIL if none (fallback address 0.0.0.0). */
  getIn4(): Promise<In4> {
    return this.control('getIn4', 'getIn4', [], { address: '0.0.0.0', netmask: '0.0.0.0', prefixLength: 0 });
  }

  /** Sets the IPv4 address and netmask (dotted or prefix length); address 0.0.0.0 clears it. */
  async setIn4(address: string, netmask: string | number): Promise<void> {
    const addr = this.parse('setIn4', () => parseIPv4(address));
    const prefix = this.parse('setIn4', () => parsePrefixLength(netmask));
    await this.control('setIn4', 'setIn4', [addr, prefix]);
  }

  /** The (first) IPv6 address; EADDRNOTAVAIL if none (fallback '::'). */
  getIn6(): Promise<string> {
    return this.control('getIn6', 'getIn6', [], '::');
  }

  /** Sets the IPv6 address and prefix length (default 64); '::' clears it. */
  async setIn6(address: string, prefixLength = 64): Promise<void> {
    const canonical = this.parse('setIn6', () => canonicalIPv6(address));
    this.checkUint('setIn6', prefixLength, 128);
    await this.control('setIn6', 'setIn6', [canonical, prefixLength]);
  }

  /**
   * Turns off TX checksum offload, TSO, GSO and GRO (as `ethtool -K DEV tx off tso off gso off gro
   * off`): a port of a forwarding app needs it, so that the frames it takes are whole and checksummed.
   */
  async disableOffloads(): Promise<void> {
    await this.control('disableOffloads', 'disableOffloads', []);
  }

  /** Adds `gateway` as the default IPv4 gateway of the stack this device belongs to. */
  async addRouter(gateway: string): Promise<void> {
    const addr = this.parse('addRouter', () => parseIPv4(gateway));
    await this.control('addRouter', 'addRouter', [addr]);
  }

  /** The MAC address the ARP table holds for `ip`; ENXIO if none (fallback 00:00:00:00:00:00). */
  arpLookup(ip: string): Promise<string> {
    try {
      const addr = this.parse('arpLookup', () => parseIPv4(ip));
      return this.control('arpLookup', 'arpLookup', [addr], '00:00:00:00:00:00');
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /* ---------------------------------------------------------------- flags */

  /** The device's flags.  On failure the error's fallback is { up: false, promisc: false }. */
  async getFlags(): Promise<Flags> {
    return flagsOf(this.updateFlags('getFlags', 0, 0, true));
  }

  /** Sets the flags to exactly `flags` (missing keys are false); restored on close unless permanent. */
  async setFlags(flags: Partial<Flags>, options: FlagOptions = {}): Promise<void> {
    const on = this.parse('setFlags', () => flagBits(flags));
    this.updateFlags('setFlags', ALL_FLAGS, on, options.permanent === true);
  }

  /** Turns on the flags that are true in `flags`; restored on close unless permanent. */
  async turnFlagsOn(flags: Partial<Flags>, options: FlagOptions = {}): Promise<void> {
    const on = this.parse('turnFlagsOn', () => flagBits(flags));
    this.updateFlags('turnFlagsOn', 0, on, options.permanent === true);
  }

  /** Turns off the flags that are true in `flags`; restored on close unless permanent. */
  async turnFlagsOff(flags: Partial<Flags>, options: FlagOptions = {}): Promise<void> {
    const off = this.parse('turnFlagsOff', () => flagBits(flags));
    this.updateFlags('turnFlagsOff', off, 0, options.permanent === true);
  }

  /** OVS's do_update_flags: returns the old flags, records non-permanent changes in this handle's book. */
  private updateFlags(call: string, off: number, on: number, permanent: boolean): number {
    this.requireOpen(call);
    let old: number;
    try {
      old = this.device.impl.updateFlags(off & ~on, on);
    } catch (error) {
      throw toNetdevError(error, this.name, call, call === 'getFlags' ? flagsOf(0) : undefined);
    }
    if ((off | on) !== 0 && !permanent) this.flagBook.record(old, off, on);
    return old;
  }

  /**
   * @internal Restores this handle's non-permanent flag changes (synchronously).  Never throws: a
   * failure is a process warning (as OVS logs it), and a device that is gone is skipped.
   */
  restoreFlags(): void {
    try {
      this.flagBook.restore((off, on) => {
        if (this.device.failure?.code !== 'ENODEV') this.device.impl.updateFlags(off, on);
      });
    } catch (error) {
      if ((error as NetdevError).code !== 'ENODEV') process.emitWarning(`netdev: ${this.name}: cannot restore flags: ${(error as Error).message}`);
    }
  }

  /* ---------------------------------------------------------------- config */

  /** The device's configuration. */
  async getConfig(): Promise<Config> {
    this.requireOpen('getConfig');
    return { ...this.device.impl.getConfig() };
  }

  /** Changes the configuration; every key and value is checked before any applies (EINVAL names the key). */
  async setConfig(changes: Record<string, string | number | boolean>): Promise<void> {
    this.requireOpen('setConfig');
    const config = this.parse('setConfig', () => normalizeConfig(changes));
    try {
      await this.device.impl.setConfig(config);
    } catch (error) {
      throw toNetdevError(error, this.name, 'setConfig');
    }
  }

  /* ---------------------------------------------------------------- lifetime */

  /** Restores this handle's flag changes and closes it; the device closes with its last handle. Idempotent. */
  async close(): Promise<void> {
    if (!this.open) return;
    this.open = false;
    this.device.io?.rx.wakeAll();
    await this.release(this);
  }

  /** close(), for `await using dev = await mgr.open(...)`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** @internal The manager is closing: restore flags and mark this handle closed. */
  detach(): void {
    if (!this.open) return;
    this.restoreFlags();
    this.open = false;
  }

  /* ---------------------------------------------------------------- helpers */

  private requireOpen(call: string): void {
    if (!this.open) throw new NetdevError({ code: 'EBADF', device: this.name, call, detail: 'handle is closed' });
  }

  /** The device's I/O state, for a handle that does I/O; EPIPE for an 'none' handle (OVS's answer). */
  private requireIo(call: string): DeviceIoState {
    this.requireOpen(call);
    const io = this.device.io;
    if (this.ethertype === 'none' || !io) {
      throw new NetdevError({ code: 'EPIPE', device: this.name, call, detail: "opened with ethertype 'none' (control only)" });
    }
    return io;
  }

  /** The gate of an iterator of `call`: readEnded(), after an ECANCELED if `signal` has aborted. */
  private readGate(call: string, signal: AbortSignal | undefined): () => boolean {
    if (!signal) return () => this.readEnded(call);
    return () => {
      throwIfAborted(signal, this.name, call);
      return this.readEnded(call);
    };
  }

  /** Reading gate: true to end (handle closed), throws the device's failure. */
  private readEnded(call: string): boolean {
    if (!this.open || !this.device.io) return true;
    this.requireHealthy(call);
    return false;
  }

  /** Throws the device's failure, if it has failed. */
  private requireHealthy(call: string): void {
    if (this.device.failure) throw this.device.failure.within(this.name, call);
  }

  private requireSendable(frame: Uint8Array, call: string): DeviceIoState {
    const io = this.requireIo(call);
    this.requireHealthy(call);
    this.checkFrame(frame, call);
    return io;
  }

  /**
   * EMSGSIZE unless `frame` is a Uint8Array from an Ethernet header's length to maxFrame (VLAN-tagged
   * frames may be 4 longer).  With offloads it is a vnet frame: EINVAL for a bad header, and only a
   * GSO super-frame may be longer than the MTU allows.
   */
  private checkFrame(frame: unknown, call: string, index?: number): void {
    const which = index === undefined ? 'frame' : `frame ${index}`;
    if (!(frame instanceof Uint8Array)) {
      throw new NetdevError({ code: 'EINVAL', device: this.name, call, detail: `${which} must be a Uint8Array` });
    }
    const header = this.offloads ? VNET_HDR_LEN : 0;
    const whole = frame.length >= header + ETH_HEADER; // holds its header(s): they can be read
    if (header !== 0 && whole) {
      const problem = vnetHeaderProblem(frame, 0, frame.length);
      if (problem !== null) throw new NetdevError({ code: 'EINVAL', device: this.name, call, detail: `${which} has a bad virtio_net_hdr: ${problem}` });
    }
    const limit = header !== 0 && whole && isGsoFrame(frame, 0) ? this.superFrameLimit() : this.frameLimit(whole && isVlanTagged(frame, header), header);
    if (!whole || frame.length > limit) {
      const what = header !== 0 ? `; the device takes vnet frames of ${header + ETH_HEADER} to ${limit}` : `; the device takes ${ETH_HEADER} to ${limit}`;
      throw new NetdevError({ code: 'EMSGSIZE', device: this.name, call, detail: `${which} is ${frame.length} bytes${what}` });
    }
  }

  private checkUint(call: string, value: number, max: number): void {
    if (!Number.isInteger(value) || value < 0 || value > max) {
      throw new NetdevError({ code: 'EINVAL', device: this.name, call, detail: `expected an integer from 0 to ${max}, got ${value}` });
    }
  }

  /** Runs a parser, turning its EINVAL into one naming this device and call. */
  private parse<T>(call: string, parser: () => T): T {
    try {
      return parser();
    } catch (error) {
      throw toNetdevError(error, this.name, call);
    }
  }

  /**
   * Calls an optional member of the provider's device: EOPNOTSUPP if it has none (OVS's
   * null class member), errors turned into NetdevError naming device and call, with `fallback`.
   */
  private async control<T>(call: string, member: OptionalMember, args: unknown[], fallback?: unknown): Promise<T> {
    this.requireOpen(call);
    const impl = this.device.impl;
    const fn = impl[member] as ((...a: unknown[]) => T | Promise<T>) | undefined;
    if (!fn) {
      throw new NetdevError({ code: 'EOPNOTSUPP', device: this.name, call, detail: `${this.type} devices do not support ${call}`, fallback });
    }
    try {
      return await fn.apply(impl, args);
    } catch (error) {
      throw toNetdevError(error, this.name, call, fallback);
    }
  }
}

const STAT_FIELDS: readonly (keyof Stats)[] = [
  'rxPackets', 'txPackets', 'rxBytes', 'txBytes', 'rxErrors', 'txErrors', 'rxDropped', 'txDropped', 'multicast',
  'collisions', 'rxLengthErrors', 'rxOverErrors', 'rxCrcErrors', 'rxFrameErrors', 'rxFifoErrors', 'rxMissedErrors',
  'txAbortedErrors', 'txCarrierErrors', 'txFifoErrors', 'txHeartbeatErrors', 'txWindowErrors', 'rxRingDropped',
  'rxQueueDropped', 'rxSegmented', 'rxChecksummed',
];

/** Config values as strings; EINVAL for a non-object or a value that is not a string, number or boolean. */
export function normalizeConfig(changes: unknown): Config {
  if (typeof changes !== 'object' || changes === null || Array.isArray(changes)) {
    throw new NetdevError({ code: 'EINVAL', detail: 'config must be an object of key -> value' });
  }
  const config: Config = {};
  for (const [key, value] of Object.entries(changes)) {
    if (typeof value !== 'string' && typeof value !== 'number' && typeof value !== 'boolean') {
      throw new NetdevError({ code: 'EINVAL', detail: `config key '${key}' must have a string, number or boolean value` });
    }
    config[key] = String(value);
  }
  return config;
}
