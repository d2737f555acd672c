/**
 * NetdevMonitor: coalesced change notices for a set of devices (OVS's netdev_monitor).  Each
 * change of a watched device marks its name; reading takes one marked name at a time, so many
 * changes between two reads give one notice.  Iterating waits for the next notice and ends when
 * the monitor closes (or its manager does).
 */
import type { Device } from './device.js';

/** What a monitor needs from a handle: its device. */
export interface Watchable {
  readonly name: string;
}

const DONE: IteratorResult<never> = Object.freeze({ value: undefined, done: true }) as IteratorResult<never>;

export class NetdevMonitor implements AsyncIterable<string> {
  private readonly watched = new Map<Device, () => void>();
  private readonly changed = new Set<string>();
  private wake: (() => void) | null = null;
  private closed = false;

  /** @internal Created by NetdevManager.monitor; `deviceOf` maps a handle to its device. */
  constructor(
    private readonly deviceOf: (handle: Watchable) => Device,
    private readonly onClose: (monitor: NetdevMonitor) => void,
  ) {}

  /** Watches the device of `handle`; adding a device twice is the same as once. */
  add(handle: Watchable): void {
    const device = this.deviceOf(handle);
    if (this.closed || this.watched.has(device)) return;
    this.watched.set(device, device.onChange((name) => this.mark(name)));
  }

  /** Stops watching the device of `handle` and drops its pending notice. */
  remove(handle: Watchable): void {
    const device = this.deviceOf(handle);
    this.watched.get(device)?.();
    this.watched.delete(device);
    this.changed.delete(device.label);
  }

  /** @internal Forgets a device that closed. */
  forget(device: Device): void {
    this.watched.delete(device);
  }

  /** Takes one pending notice: a device name, or null if none is pending (OVS's EAGAIN). */
  poll(): string | null {
    const first = this.changed.values().next();
    if (first.done) return null;
    this.changed.delete(first.value);
    return first.value;
  }

  /** Notices as they come; ends when the monitor closes. */
  [Symbol.asyncIterator](): AsyncIterator<string> {
    return {
      next: async (): Promise<IteratorResult<string>> => {
        for (;;) {
          const name = this.poll();
          if (name !== null) return { value: name, done: false };
          if (this.closed) return DONE;
          await new Promise<void>((resolve) => {
            this.wake = resolve;
          });
        }
      },
      return: async (): Promise<IteratorResult<string>> => DONE,
    };
  }

  /** Stops watching everything and ends iteration. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const unsubscribe of this.watched.values()) unsubscribe();
    this.watched.clear();
    this.changed.clear();
    this.notify();
    this.onClose(this);
  }

  private mark(name: string): void {
    this.changed.add(name);
    this.notify();
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = null;
    wake?.();
  }
}
