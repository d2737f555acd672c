/**
 * The small block of shared memory each device has besides its rings: a few state words the main
 * thread writes and the worker reads (flags, MTU), and traffic counters the worker writes and the
 * main thread reads.  Counters are 64-bit, updated once per batch with Atomics.add.
 */

/** Netdev flag bits, as OVS's enum netdev_flags. */
export const NETDEV_UP = 1;
export const NETDEV_PROMISC = 2;

const STATE_WORDS = 16;
const FLAGS = 0;
const MTU = 1;

/** The counters every I/O half may keep; order is the layout. */
export const COUNTER_NAMES = [
  'rxPackets',
  'rxBytes',
  'txPackets',
  'txBytes',
  'rxDropped',
  'txDropped',
  'rxErrors',
  'txErrors',
  'multicast',
  /** Frames the kernel dropped from the device's receive queue in the process (a full AF_PACKET socket buffer). */
  'rxQueueDropped',
  /** Super-frames segmented in software, and frames whose partial checksum was finished there, for a device without offloads. */
  'rxSegmented',
  'rxChecksummed',
] as const;
export type CounterName = (typeof COUNTER_NAMES)[number];
export type CounterValues = Record<CounterName, number>;

const COUNTER_INDEX = Object.fromEntries(COUNTER_NAMES.map((name, i) => [name, i])) as Record<CounterName, number>;

export const DEVICE_SHARED_BYTES = STATE_WORDS * 4 + COUNTER_NAMES.length * 8;

/** A view of one device's shared block; the same buffer may be viewed from any thread. */
export class DeviceShared {
  private readonly state: Int32Array;
  private readonly counters: BigInt64Array;

  constructor(readonly buffer: SharedArrayBuffer = new SharedArrayBuffer(DEVICE_SHARED_BYTES)) {
    this.state = new Int32Array(buffer, 0, STATE_WORDS);
    this.counters = new BigInt64Array(buffer, STATE_WORDS * 4, COUNTER_NAMES.length);
  }

  get flags(): number {
    return Atomics.load(this.state, FLAGS);
  }
  set flags(value: number) {
    Atomics.store(this.state, FLAGS, value);
  }

  get mtu(): number {
    return Atomics.load(this.state, MTU);
  }
  set mtu(value: number) {
    Atomics.store(this.state, MTU, value);
  }

  /** Adds `amount` to one counter (worker side; call once per batch, not per frame). */
  add(name: CounterName, amount: number): void {
    if (amount !== 0) Atomics.add(this.counters, COUNTER_INDEX[name], BigInt(amount));
  }

  /** Reads one counter. */
  value(name: CounterName): number {
    return Number(Atomics.load(this.counters, COUNTER_INDEX[name]));
  }

  /** Reads every counter. */
  read(): CounterValues {
    const values = {} as CounterValues;
    for (const name of COUNTER_NAMES) values[name] = Number(Atomics.load(this.counters, COUNTER_INDEX[name]));
    return values;
  }
}

/**
 * Per-batch accumulator for the counters: an I/O half counts frames into plain numbers and
 * flushes once per batch, so the hot path does no atomic operation per frame.
 */
export class CounterBatch {
  rxPackets = 0;
  rxBytes = 0;
  txPackets = 0;
  txBytes = 0;
  rxDropped = 0;
  txDropped = 0;
  rxErrors = 0;
  txErrors = 0;
  multicast = 0;
  rxQueueDropped = 0;
  rxSegmented = 0;
  rxChecksummed = 0;

  constructor(private readonly shared: DeviceShared) {}

  /** Adds the accumulated counts to the shared counters and zeroes them. */
  flush(): void {
    for (const name of COUNTER_NAMES) {
      if (this[name] !== 0) {
        this.shared.add(name, this[name]);
        this[name] = 0;
      }
    }
  }
}
