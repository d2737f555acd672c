/**
 * One open device, shared by every handle opened on its name: the provider's device, the shared
 * block, the change sequence and its listeners, and (from the first handle that does I/O) the
 * worker with the two rings.  A worker that dies puts the device in an error state: its readers
 * and senders fail with the worker's error, control calls that do not need the worker go on.
 */
import { pathToFileURL } from 'node:url';
import { NetdevError, toNetdevError } from '../common/errors.js';
import { Bell } from '../ring/bell.js';
import { DeviceShared } from '../ring/device-shared.js';
import { createRing } from '../ring/ring.js';
import type { DeviceContext, Ethertype, IoControl, Provider, ProviderDevice } from '../providers/contract.js';
import { RxQueue } from './rx-queue.js';
import { Capture, type CaptureOptions } from './capture.js';
import { TxQueue } from './tx-queue.js';
import { WorkerClient } from './worker-client.js';

/** The I/O side of a device, present while its worker runs. */
export interface DeviceIoState {
  readonly ethertype: Ethertype;
  /** Frames in both rings are vnet frames (OpenOptions.offloads). */
  readonly offloads: boolean;
  readonly worker: WorkerClient;
  readonly rx: RxQueue;
  readonly tx: TxQueue;
}

/** The label of device `name` in `netns`: the name, or NETNS/NAME ('/' appears in no interface name). */
export function deviceLabel(name: string, netns: string | undefined): string {
  return netns === undefined ? name : `${netns}/${name}`;
}

/** A module's URL string (a provider's ioModule, a worker agent): URLs and 'file:' strings as they are, paths through pathToFileURL. */
export function moduleUrl(module: string | URL): string {
  if (module instanceof URL) return module.href;
  return module.startsWith('file:') ? module : pathToFileURL(module).href;
}

export class Device {
  readonly shared = new DeviceShared();
  /** The captures running on this device. */
  readonly captures = new Set<Capture>();
  changeSeq = 1;
  io: DeviceIoState | null = null;
  failure: NetdevError | null = null;
  /** Handles open on this device (objects owned by the manager). */
  readonly handles = new Set<object>();
  private providerDevice: ProviderDevice | null = null;
  private readonly listeners = new Set<(name: string) => void>();

  constructor(
    readonly name: string,
    readonly suffix: string,
    readonly provider: Provider,
    /** Record bytes of each ring (a power of two), fixed when the device is first opened. */
    readonly ringCapacity: number,
    /** The network namespace the device is in, as given to open; undefined: the process's own. */
    readonly netns: string | undefined,
  ) {}

  /** The name monitors report: the name, or NETNS/NAME for a device in another namespace. */
  get label(): string {
    return deviceLabel(this.name, this.netns);
  }

  /** The provider's device; only valid once attach() has run. */
  get impl(): ProviderDevice {
    return this.providerDevice!;
  }

  /** What the provider gets for this device. */
  context(): DeviceContext {
    return {
      name: this.name,
      suffix: this.suffix,
      shared: this.shared,
      changed: () => this.changed(),
      lost: (error) => this.fail(error),
      capture: (path, options) => this.capture(path, options),
    };
  }

  /** Sets the provider's device, once created. */
  attach(providerDevice: ProviderDevice): void {
    this.providerDevice = providerDevice;
  }

  /** Bumps the change sequence (never 0, as OVS's change_seq) and tells every listener. */
  changed(): void {
    this.changeSeq = (this.changeSeq + 1) >>> 0 || 1;
    for (const listener of this.listeners) listener(this.label);
  }

  /** Calls `listener(name)` on every change until the returned function is called. */
  onChange(listener: (name: string) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Starts the worker with the provider's I/O half for `ethertype`; rejects (leaving no worker)
   * with EOPNOTSUPP if the provider has no I/O half, or with the I/O half's error.
   */
  async startIo(ethertype: Ethertype, offloads: boolean): Promise<void> {
    const { ioModule } = this.provider;
    if (!ioModule) {
      throw new NetdevError({ code: 'EOPNOTSUPP', device: this.name, call: 'open', detail: `${this.provider.type} devices do no packet I/O; open with ethertype 'none'` });
    }
    const workerBell = new Bell();
    const rxDescriptor = createRing(this.ringCapacity, new Bell(), null);
    const txDescriptor = createRing(this.ringCapacity, workerBell, new Bell());
    const worker = await WorkerClient.start(
      {
        name: this.name,
        ethertype,
        offloads,
        ioModule: moduleUrl(ioModule),
        options: this.impl.ioOptions?.(),
        rx: rxDescriptor,
        tx: txDescriptor,
        shared: this.shared.buffer,
        bell: workerBell.buffer,
      },
      (error) => this.fail(error),
    );
    const io: DeviceIoState = { ethertype, offloads, worker, rx: new RxQueue(rxDescriptor), tx: new TxQueue(txDescriptor) };
    this.io = io;
    try {
      await this.impl.ioStarted?.(this.ioControl(worker));
    } catch (error) {
      await this.stopIo();
      throw toNetdevError(error, this.name, 'open');
    }
  }

  private ioControl(worker: WorkerClient): IoControl {
    return { call: (op, arg) => worker.call((api) => api.control(op, arg), op) };
  }

  /**
   * Starts a pcap capture of this device's frames (the device must be running its I/O half: EPIPE
   * otherwise); it ends when closed or when the device's I/O stops.
   */
  async capture(path: string, options: CaptureOptions): Promise<Capture> {
    if (!this.io) throw new NetdevError({ code: 'EPIPE', device: this.name, call: 'capture', detail: 'the device does no packet I/O' });
    if (this.failure) throw this.failure.within(this.name, 'capture');
    const capture = await Capture.start(this.io.worker, this.name, path, options, () => this.captures.delete(capture));
    this.captures.add(capture);
    return capture;
  }

  /** Puts the device in an error state: readers and senders fail with `error`. */
  private fail(error: NetdevError): void {
    if (this.failure) return;
    this.failure = error;
    this.io?.tx.fail(error);
    this.io?.rx.wakeAll();
    this.changed();
    Promise.resolve()
      .then(() => this.impl.ioFailed?.(error))
      .catch((cause: unknown) => process.emitWarning(`netdev: ${this.name}: ioFailed: ${String(cause)}`));
  }

  /** Stops the worker (after telling the provider) and ends every reader and sender. */
  async stopIo(): Promise<void> {
    const io = this.io;
    if (!io) return;
    await Promise.all([...this.captures].map((capture) => capture.close()));
    try {
      if (!io.worker.failure) await this.impl.ioStopping?.();
    } finally {
      await io.worker.stop();
      this.io = null;
      io.tx.fail(new NetdevError({ code: 'EBADF', device: this.name, call: 'send', detail: 'device is closed' }));
      io.rx.wakeAll();
    }
  }

  /** Stops I/O and destroys the provider's device. */
  async destroy(): Promise<void> {
    try {
      await this.stopIo();
    } finally {
      this.listeners.clear();
      await this.providerDevice?.destroy();
    }
  }
}
