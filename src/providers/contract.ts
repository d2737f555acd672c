/**
 * The provider contract: this project's `struct netdev_class`.
 *
 * A provider has two halves.  The control half (Provider, ProviderDevice) runs on the main thread
 * and answers control calls; the I/O half (DeviceIo, created by the module named by
 * Provider.ioModule) runs inside the device's worker thread and moves frames between the device
 * and the device's two rings.  The manager (src/main) owns everything generic: names and
 * prefixes, refcounting, handles, flag bookkeeping, monitors, workers and rings.
 *
 * Errors: members throw (or reject with) NetdevError, usually via netdevError('EINVAL', detail);
 * the manager adds the device name and the call.  An optional member that is absent means the call
 * is unsupported: the manager rejects it with EOPNOTSUPP, as OVS's netdev.c does for a null
 * class member (except getVlanVid, which OVS answers with ENOENT).
 */
import type { NetdevError } from '../common/errors.js';
import type { ConfigKeyInfo } from './config-schema.js';
import type { RingReader, RingWriter } from '../ring/ring.js';
import type { Bell } from '../ring/bell.js';
import type { CounterBatch, DeviceShared } from '../ring/device-shared.js';

/** Which frames a device receives: none (control only), all, IEEE 802.2 LLC frames, or one ethertype. */
export type Ethertype = 'none' | 'any' | '802.2' | number;

/** Device flags as booleans; internally OVS's bits NETDEV_UP and NETDEV_PROMISC. */
export interface Flags {
  up: boolean;
  promisc: boolean;
}

/** Device statistics; a field the device cannot count is null (OVS's UINT64_MAX). */
export interface Stats {
  rxPackets: number | null;
  txPackets: number | null;
  rxBytes: number | null;
  txBytes: number | null;
  rxErrors: number | null;
  txErrors: number | null;
  rxDropped: number | null;
  txDropped: number | null;
  multicast: number | null;
  collisions: number | null;
  rxLengthErrors: number | null;
  rxOverErrors: number | null;
  rxCrcErrors: number | null;
  rxFrameErrors: number | null;
  rxFifoErrors: number | null;
  rxMissedErrors: number | null;
  txAbortedErrors: number | null;
  txCarrierErrors: number | null;
  txFifoErrors: number | null;
  txHeartbeatErrors: number | null;
  txWindowErrors: number | null;
  /** Frames the device's worker received but dropped because the RX ring was full (added by the manager). */
  rxRingDropped: number | null;
  /**
   * Frames the kernel dropped from the device's receive queue in the process (the AF_PACKET
   * socket buffer was full) before the worker read them; null for a device without such a queue.
   */
  rxQueueDropped: number | null;
  /** Super-frames the device's worker segmented in software, for a handle without offloads (added by the manager). */
  rxSegmented: number | null;
  /** Frames whose partial checksum the device's worker finished in software, for a handle without offloads (added by the manager). */
  rxChecksummed: number | null;
}

/** The statistics a provider answers: all but what the manager adds from the rings and the worker's counters. */
export type ProviderStats = Omit<Stats, 'rxRingDropped' | 'rxSegmented' | 'rxChecksummed'>;

/** An IPv4 address with its netmask. */
export interface In4 {
  address: string;
  netmask: string;
  prefixLength: number;
}

/** OpenFlow port-feature bitmaps (enum ofp_port_features), as OVS's get_features. */
export interface Features {
  current: number;
  advertised: number;
  supported: number;
  peer: number;
}

/** Config keys and values, as OVS's smap; values are strings once validated. */
export type Config = Record<string, string>;

/** Result of a program run through the job pool. */
export interface ProgramResult {
  status: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

/** Options of a program run through the job pool. */
export interface ProgramOptions {
  /** Kill the program and fail with ETIMEDOUT after this many milliseconds (default 10000). */
  timeoutMs?: number;
  /** Bytes written to the program's standard input. */
  input?: string;
}

/** What the manager lends a provider at init: services shared by all its devices. */
export interface ProviderContext {
  /**
   * Runs a program with an argument vector (never a shell) in the job pool, so that the main
   * thread never blocks; resolves with its exit status and output whatever the status.
   */
  runProgram(argv: readonly string[], options?: ProgramOptions): Promise<ProgramResult>;
  /**
   * Runs one vsys transaction (write `body` to DIR/SCRIPT.in, read the reply from DIR/SCRIPT.out)
   * in the job pool, DIR being the manager's vsysDir.  Resolves on an empty reply; a non-empty
   * reply rejects with EAGAIN carrying it; a missing FIFO is ENOENT, a silent backend ETIMEDOUT.
   */
  vsys(script: string, body: string): Promise<void>;
}

/** Provider-specific control of a device's I/O half, from the main thread (through comlink). */
export interface IoControl {
  /** Calls DeviceIo.control(op, arg) in the device's worker and resolves with its result. */
  call(op: string, arg?: unknown): Promise<unknown>;
}

/** What the manager gives a provider for each device it creates. */
export interface DeviceContext {
  /** Full name, e.g. 'dummy:a'. */
  readonly name: string;
  /** The name after the provider's prefix, e.g. 'a'. */
  readonly suffix: string;
  /** The device's shared block: flag and MTU words the I/O half reads, counters it writes. */
  readonly shared: DeviceShared;
  /** Bumps the device's change sequence and notifies every monitor watching it. */
  changed(): void;
  /**
   * The device is gone (deleted under I/O): puts it in an error state (its readers and senders fail
   * with `error`, normally ENODEV) and notifies every monitor watching it.
   */
  lost(error: NetdevError): void;
  /** Starts a pcap capture of the device's frames (as Netdev.capture; EPIPE before its I/O half runs). */
  capture(path: string, options: { direction?: 'rx' | 'tx' | 'both'; nanoseconds?: boolean }): Promise<{ close(): Promise<void> }>;
}

/** Options the manager passes to Provider.create. */
export interface CreateOptions {
  /** The ethertype of the first handle; the I/O half learns it through IoContext. */
  readonly ethertype: Ethertype;
  /** The largest frame the device's rings can carry; MTU settings above it must fail (EINVAL). */
  readonly maxFrame: number;
  /** The network namespace (an `ip netns` name or a path) the device is in; undefined: the process's own. */
  readonly netns: string | undefined;
  /**
   * The config of the open that creates the device (normalized, not yet validated), for a
   * provider that makes the device from it (tunnels); setConfig is called with it afterwards too.
   */
  readonly config?: Config | undefined;
}

/**
 * One device of a provider, as the provider sees it (OVS's struct netdev subclass).  Created
 * on the first open of a name, destroyed on the last close.
 */
export interface ProviderDevice {
  /** Returns the device's configuration: every key that has a value or a default (ConfigSchema.values). */
  getConfig(): Config;
  /**
   * Applies `changes` (key -> string value; '' clears a key).  Validates every key and value
   * first and applies nothing if any is bad: an unknown key or bad value is EINVAL naming the key.
   */
  setConfig(changes: Config): void | Promise<void>;

  /**
   * Retrieves the current flags (NETDEV_UP | NETDEV_PROMISC bits), then turns off the bits in `off`
   * and turns on those in `on` (off & on == 0), and returns the flags as they were.  Synchronous,
   * and must not depend on the event loop: the manager also calls it from its exit and signal
   * hooks to restore flags (OVS's "may be invoked from a signal handler").
   */
  updateFlags(off: number, on: number): number;

  /**
   * Serializable options for the device's I/O half, given to it when its worker starts (the
   * worker starts when the first handle with an ethertype other than 'none' opens).
   */
  ioOptions?(): unknown;
  /** Called once the device's worker has started its I/O half; `io` reaches DeviceIo.control. */
  ioStarted?(io: IoControl): void | Promise<void>;
  /** Called before the device's worker stops (its last I/O handle closed, or the device closes). */
  ioStopping?(): void | Promise<void>;
  /**
   * Called once if the device's worker dies unexpectedly (the device is then in an error state
   * until closed); undo whatever ties other devices' I/O to this one.  ioStopping is not called.
   */
  ioFailed?(error: Error): void | Promise<void>;
  /**
   * Called once the open that created the device has completed (its config applied, its I/O
   * started); until then, destroy() undoes everything create() made, whatever the config says.
   */
  openCompleted?(): void;
  /** Releases the device's resources; called after its worker has stopped. */
  destroy(): void | Promise<void>;
  /**
   * Undoes what must not outlive the process (a tunnel deletes the kernel device it made, unless
   * persist=true), when it ends without closing the device: called from the manager's exit and
   * signal hooks, after flags are restored.  Synchronous, and must not depend on the event loop.
   */
  atExit?(): void;
  /**
   * False once the name the device was opened by no longer leads to it (the kernel device was
   * deleted, renamed, or its name given to another): the manager then gives a new open of the
   * name a new device, while the handles of this one stay bound to it.  Synchronous.
   */
  holdsName?(): boolean;

  /** Returns the MAC address, "02:00:00:00:00:01". */
  getEtheraddr?(): string | Promise<string>;
  /** Sets the MAC address; `mac` is already validated (6 bytes, not a group address). */
  setEtheraddr?(mac: Uint8Array): void | Promise<void>;
  /** Returns the MTU: the largest payload, not counting the Ethernet header (typically 1500). */
  getMtu?(): number | Promise<number>;
  /** Sets the MTU; `mtu` is an integer, range checks are the provider's (EINVAL). */
  setMtu?(mtu: number): void | Promise<void>;
  /** Returns the kernel interface index. */
  getIfindex?(): number | Promise<number>;
  /** Returns true if carrier is active (link light is on). */
  getCarrier?(): boolean | Promise<boolean>;
  /** Returns statistics; fields the device cannot count are null. The manager fills rxRingDropped, rxSegmented and rxChecksummed. */
  getStats?(): ProviderStats | Promise<ProviderStats>;
  /** Returns the OpenFlow feature bitmaps. */
  getFeatures?(): Features | Promise<Features>;
  /** Sets the advertised features (OpenFlow bits). */
  setAdvertisements?(bits: number): void | Promise<void>;
  /** Returns the VLAN VID if this is a VLAN device; ENOENT if it is not. */
  getVlanVid?(): number | Promise<number>;
  /** Polices input to `kbitsRate` kbit/s with bursts of `kbitsBurst` kbit; rate 0 removes policing. */
  setPolicing?(kbitsRate: number, kbitsBurst: number): void | Promise<void>;
  /** Returns the IPv4 address; EADDRNOTAVAIL if there is none. */
  getIn4?(): In4 | Promise<In4>;
  /** Sets the IPv4 address and prefix length; address 0.0.0.0 clears it. Both are validated. */
  setIn4?(address: number, prefixLength: number): void | Promise<void>;
  /** Returns the (first) IPv6 address; EADDRNOTAVAIL if there is none. */
  getIn6?(): string | Promise<string>;
  /** Sets the IPv6 address (canonical text) and prefix length; '::' clears it. */
  setIn6?(address: string, prefixLength: number): void | Promise<void>;
  /** Adds `gateway` as the default IPv4 gateway of the stack the device belongs to. */
  addRouter?(gateway: number): void | Promise<void>;
  /** Returns the MAC address the ARP table holds for `ip`; ENXIO if there is no entry. */
  arpLookup?(ip: number): string | Promise<string>;
  /** Turns off TX checksum offload, TSO, GSO and GRO, so that frames are whole and checksummed (for forwarding). */
  disableOffloads?(): void | Promise<void>;
  /** Hands `frames` to the device's receive path, in order, as if they had arrived on the wire (tests, replay). */
  inject?(frames: readonly Uint8Array[]): void | Promise<void>;
}

/** A provider of devices: OVS's struct netdev_class. */
export interface Provider {
  /** Type name, e.g. 'dummy'; used in error messages and as Netdev.type. */
  readonly type: string;
  /**
   * Name prefix including its colon, e.g. 'dummy:'; '' for the provider of names without a colon
   * (system devices).  Names are matched on the text up to and including the first colon.
   */
  readonly prefix: string;
  /**
   * URL (file: URL or absolute path) of the module run inside each device's worker; it must
   * export `createIo: CreateIo`.  A provider without one supports only ethertype 'none'.
   */
  readonly ioModule?: string | URL;
  /** True if its devices can carry offload metadata (OpenOptions.offloads; IoContext.offloads tells the I/O half); EOPNOTSUPP otherwise. */
  readonly offloads?: boolean;
  /** True if its devices may be opened in another network namespace (OpenOptions.netns); EINVAL otherwise. */
  readonly namespaced?: boolean;
  /** The config keys its devices know, with their defaults and doc lines (see config-schema.ts). */
  readonly configKeys?: readonly ConfigKeyInfo[];

  /**
   * One-time initialization, run before the provider's first device is created.  If it fails,
   * every open of this provider's devices fails with that error; other providers are unaffected.
   */
  init?(context: ProviderContext): void | Promise<void>;
  /** Checks the part of a name after the prefix; throws EINVAL for a bad one. */
  validateName(suffix: string): void;
  /** Releases provider-wide resources (sockets, descriptors); called by mgr.close() after every device closed. */
  close?(): void | Promise<void>;
  /**
   * Commands answered by NetdevManager.command(name, ...args) (OVS's unixctl commands, e.g.
   * 'netdev-pltap/get-tapname'): each returns its answer, or throws a NetdevError with its error text.
   */
  readonly commands?: Readonly<Record<string, (...args: string[]) => string | Promise<string>>>;
  /** Creates (opens) the device named `context.suffix`; ENODEV if no such device exists. */
  create(context: DeviceContext, options: CreateOptions): ProviderDevice | Promise<ProviderDevice>;
  /**
   * Returns the full names of every device of this provider that could be opened now, in network
   * namespace `netns` (undefined: the process's own; only asked of namespaced providers).
   */
  enumerate?(netns?: string): string[] | Promise<string[]>;
}

/* ------------------------------------------------------------------------------------------ */
/* The I/O half, inside the device's worker.                                                  */

/** Received frames shorter than this are padded with zeros (OVS's ETH_TOTAL_MIN). */
export const MIN_FRAME = 60;

// A device's largest frame is its MTU plus FRAME_OVERHEAD, so its MTU is at most maxFrame minus it.
export { FRAME_OVERHEAD } from '../common/ethernet.js';

/** What the worker gives the I/O half. */
export interface IoContext {
  /** Full device name, for errors. */
  readonly name: string;
  readonly ethertype: Ethertype;
  /**
   * True if the device was opened with offloads: every record of both rings is a vnet frame (a
   * 10-byte virtio_net_hdr, then the Ethernet frame; src/common/vnet-header.ts), possibly a GSO
   * super-frame.  False: records are plain frames with complete checksums, and super-frames the
   * device hands over are segmented (and partial checksums finished) here, counted in
   * rxSegmented and rxChecksummed.
   */
  readonly offloads: boolean;
  /** Options from ProviderDevice.ioOptions(). */
  readonly options: unknown;
  /**
   * The device's RX ring (this worker is its only producer).  Write each received frame padded to
   * MIN_FRAME (push(frame, MIN_FRAME)); when push() returns false the ring is full: drop the frame
   * and countDrops(1).  The worker publishes after each round; do not publish yourself.
   */
  readonly rx: RingWriter;
  /** Flag and MTU words (written by the control half) and the shared counters. */
  readonly shared: DeviceShared;
  /**
   * Counts for this round; the worker flushes them to the shared counters after each round.  An
   * I/O half that makes frames visible to another thread within the round (a ring to a peer)
   * flushes first, so no reader sees a frame before the counters that count it.
   */
  readonly counters: CounterBatch;
  /**
   * The worker's bell.  The loop sleeps on it (Atomics.waitAsync) when a round moves nothing, so
   * the worker's event loop keeps running while it sleeps.  Whatever gives the I/O half new work
   * must ring it: another thread (a peer filling a ring, space freed) with ring(), and an
   * asynchronous callback on this thread (socket data, a libuv poll handle on a file
   * descriptor: see FdWaker in src/sys/fd-io.ts) with ringHere().  An I/O half never blocks, and
   * uses a timer only where no event exists: a full device queue (FdWaker.retryLater), or a full
   * RX ring it leaves frames behind for (the unix provider's backpressure).
   */
  readonly bell: Bell;
}

/** The I/O half of one device. All members run on the device's worker thread and must not block. */
export interface DeviceIo {
  /**
   * Moves up to `budget` frames from the device into ctx.rx (padded, counted in ctx.counters,
   * dropped and counted when the ring is full) and returns how many frames it handled, 0 if
   * none was waiting.  An I/O half whose input is not pushed to it (a file descriptor) arranges,
   * when nothing is waiting, to be told when something is: e.g. an asynchronous poll whose
   * callback rings ctx.bell.
   */
  receive(budget: number): number;
  /**
   * Transmits up to `budget` frames from `tx`: for each, `length = tx.next()` (-1: none left),
   * data at `tx.bytes[tx.offset ..]`.  A frame the device cannot take now (EAGAIN) is put back
   * with `tx.unread()` (several, read for one batch: `tx.rewind(mark, count)` to the `tx.mark()`
   * taken before them), and the I/O half must then arrange for ctx.bell to ring when the device
   * can take more.  Frames that fail for good are counted (txErrors/txDropped), not retried.
   * Returns how many frames it took; the worker releases them.
   */
  transmit(tx: RingReader, budget: number): number;
  /** Optional: receiving into the I/O half's own staging memory, for worker agents that forward (see FrameStaging). */
  readonly staging?: FrameStaging;
  /**
   * Optional, for forwarding inside other workers: a new AF_PACKET socket (close-on-exec) on the
   * device, for sending only, on which any thread of the process may call sendmmsg (of vnet
   * frames: the socket has PACKET_VNET_HDR).  The caller owns and closes it; it stays usable after
   * the I/O half closes.
   */
  sendingSocket?(): number;
  /** Discards every frame waiting to be received on the device. */
  drain(): void | Promise<void>;
  /** Provider-specific control from the main thread (IoControl.call). */
  control?(op: string, arg: unknown): unknown;
  /** Releases everything the I/O half holds; nothing is called after it. */
  close(): void | Promise<void>;
}

/**
 * An I/O half's staging capability, for worker agents that forward (the Switch's): frames
 * received into the I/O half's own memory instead of the RX ring, to be sent on from there.
 * Staged frames are vnet frames (a 10-byte virtio_net_hdr, then the Ethernet frame, possibly a
 * GSO super-frame), whatever IoContext.offloads says, and `fd` sends them as such.
 */
export interface FrameStaging {
  /**
   * Like DeviceIo.receive(), but leaves up to `budget` frames in `bytes`, padded and counted;
   * returns how many.  Arranges a wake-up like receive().
   */
  receive(budget: number): number;
  /** The staging memory: frame i of the last receive() is bytes[offset(i) ..] of length(i) bytes (-1: a bad frame, already counted), until the next receive(). */
  readonly bytes: Uint8Array;
  offset(i: number): number;
  length(i: number): number;
  /** The descriptor receive() reads (a packet socket with vnet headers): an agent in a hurry may wait on it with poll(2). */
  readonly fd: number;
}

/** The export `createIo` of a provider's ioModule. */
export type CreateIo = (context: IoContext) => DeviceIo | Promise<DeviceIo>;

/**
 * True if a frame of `length` bytes at `bytes[offset]` matches `ethertype` the way an AF_PACKET
 * socket bound to it would: 'any' matches all, '802.2' frames whose type field is an 802.3 length
 * (< 0x600), a number that type.  For I/O halves that filter in software.
 */
export function matchesEthertype(ethertype: Ethertype, bytes: Uint8Array, offset: number, length: number): boolean {
  if (ethertype === 'any') return true;
  if (ethertype === 'none' || length < 14) return false;
  const type = (bytes[offset + 12]! << 8) | bytes[offset + 13]!;
  return ethertype === '802.2' ? type < 0x600 : type === ethertype;
}
