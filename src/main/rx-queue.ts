/**
 * The main thread's end of a device's RX ring, and the iterators that read it.
 *
 * Frames are handed out as views into the ring (no copy) unless `copy` is asked for: a view is
 * valid until the iterator's next step (or until the loop leaves), when its space goes back to
 * the worker.  A device has one receive queue: one iterator may read it at a time (EBUSY
 * otherwise), whichever handle it belongs to.  Waiting for frames uses Atomics.waitAsync on the
 * queue's bell, which the worker rings only when this side has announced it sleeps.
 */
import { NetdevError } from '../common/errors.js';
import { Bell } from '../ring/bell.js';
import { RingReader, type RingDescriptor } from '../ring/ring.js';

/** Decides, at each step, whether reading goes on: throws to fail, returns true to end. */
export type ReadGate = () => boolean;

export interface ReadOptions {
  /** Hand out owned copies instead of views into the ring (default false). */
  copy?: boolean;
  /** Cancels the reading: the step waiting (or the next one) rejects with ECANCELED, and the iterator ends. */
  signal?: AbortSignal;
}

export interface BatchOptions extends ReadOptions {
  /** Largest number of frames per batch (default 256). */
  max?: number;
}

const DONE: IteratorResult<never> = Object.freeze({ value: undefined, done: true }) as IteratorResult<never>;

export class RxQueue {
  readonly reader: RingReader;
  private readonly bell: Bell;
  private owner: object | null = null;
  /** The ring's buffer and the offset of its record region, kept apart: a typed array's .buffer is slow to read per frame. */
  private readonly buffer: SharedArrayBuffer;
  private readonly base: number;

  constructor(descriptor: RingDescriptor) {
    this.reader = new RingReader(descriptor);
    this.bell = new Bell(descriptor.dataBell);
    this.buffer = descriptor.buffer;
    this.base = this.reader.bytes.byteOffset;
  }

  /** Frames the worker dropped because this ring was full. */
  droppedCount(): number {
    return this.reader.droppedCount();
  }

  /** Makes `owner` the queue's only reader; EBUSY if another reads it. */
  claim(owner: object, device: string, call: string): void {
    if (this.owner && this.owner !== owner) {
      throw new NetdevError({ code: 'EBUSY', device, call, detail: 'another iterator is reading this device' });
    }
    this.owner = owner;
  }

  /** Gives up the queue (releasing what the owner held). */
  unclaim(owner: object): void {
    if (this.owner !== owner) return;
    this.reader.release();
    this.owner = null;
  }

  /** True while an iterator reads the queue. */
  get claimed(): boolean {
    return this.owner !== null;
  }

  /** Resolves when a frame may be waiting, or on wakeAll(). */
  async waitForFrames(gate: ReadGate): Promise<void> {
    const seq = this.bell.prepare();
    if (this.reader.usedBytes() !== 0 || gate()) {
      this.bell.cancel();
      return;
    }
    await this.bell.sleep(seq);
  }

  /** Wakes every waiting reader so it re-checks its gate (device closed or failed). */
  wakeAll(): void {
    this.bell.ringNow();
  }

  /** The record last stepped to by reader.next(), as a view or a copy. */
  frame(length: number, copy: boolean): Uint8Array {
    const offset = this.reader.offset;
    return copy ? this.reader.bytes.slice(offset, offset + length) : new Uint8Array(this.buffer, this.base + offset, length);
  }
}

/**
 * The control flow both iterators share: release what the last step handed out, check the gate,
 * take what is waiting or wait for it.  Subclasses say what one step takes.  An abort of `signal`
 * wakes a step that waits, so that it checks the gate (which checks the signal) at once.
 */
abstract class RxIterator<T> implements AsyncIterableIterator<T> {
  private finished = false;
  private readonly wake = (): void => this.queue.wakeAll();

  constructor(
    protected readonly queue: RxQueue,
    private readonly gate: ReadGate,
    private readonly signal: AbortSignal | undefined,
  ) {}

  /** Takes the next step's value from the ring, or returns null if nothing is waiting. */
  protected abstract take(): T | null;

  next(): Promise<IteratorResult<T>> {
    if (this.finished) return Promise.resolve(DONE);
    this.queue.reader.release();
    try {
      if (this.gate()) return this.return();
    } catch (error) {
      this.finish();
      return Promise.reject(error);
    }
    const value = this.take();
    if (value !== null) return Promise.resolve({ value, done: false });
    return this.nextAfterWait();
  }

  private async nextAfterWait(): Promise<IteratorResult<T>> {
    this.signal?.addEventListener('abort', this.wake);
    try {
      for (;;) {
        try {
          await this.queue.waitForFrames(this.gate);
          if (this.finished) return DONE; // return() was called while this step waited
          if (this.gate()) return this.return();
        } catch (error) {
          this.finish();
          throw error;
        }
        const value = this.take();
        if (value !== null) return { value, done: false };
      }
    } finally {
      this.signal?.removeEventListener('abort', this.wake);
    }
  }

  /** Ends the iterator; a step still waiting for frames ends too. */
  return(): Promise<IteratorResult<T>> {
    if (!this.finished) {
      this.finish();
      this.queue.wakeAll();
    }
    return Promise.resolve(DONE);
  }

  protected finish(): void {
    this.finished = true;
    this.queue.unclaim(this);
  }

  [Symbol.asyncIterator](): this {
    return this;
  }
}

/** Async iterator of single frames; see RxQueue for view lifetime. */
export class FrameIterator extends RxIterator<Uint8Array> {
  constructor(
    queue: RxQueue,
    gate: ReadGate,
    private readonly copy: boolean,
    signal?: AbortSignal,
  ) {
    super(queue, gate, signal);
  }

  protected take(): Uint8Array | null {
    const length = this.queue.reader.next();
    return length >= 0 ? this.queue.frame(length, this.copy) : null;
  }
}

/**
 * Async iterator of batches: arrays of every frame waiting (up to `max`), never empty.  Without
 * `copy`, the same array object is reused and refilled at each step.
 */
export class BatchIterator extends RxIterator<Uint8Array[]> {
  private batch: Uint8Array[] = [];

  constructor(
    queue: RxQueue,
    gate: ReadGate,
    private readonly copy: boolean,
    private readonly max: number,
    signal?: AbortSignal,
  ) {
    super(queue, gate, signal);
  }

  protected take(): Uint8Array[] | null {
    const { reader } = this.queue;
    const batch = this.copy ? [] : this.batch;
    batch.length = 0;
    for (let length = 0; batch.length < this.max && (length = reader.next()) >= 0; ) {
      batch.push(this.queue.frame(length, this.copy));
    }
    this.batch = batch;
    return batch.length > 0 ? batch : null;
  }

  protected override finish(): void {
    super.finish();
    this.batch = [];
  }
}
