/**
 * The main thread's end of a device's TX ring.  trySend copies a frame into the ring and publishes
 * it at once (the worker is rung only if it sleeps), so a frame sent to an idle device leaves
 * without delay.  send() waits, in order, while the ring is full: senders queue in FIFO order and
 * the first one sleeps on the space bell, which the worker rings after it frees space.  trySend
 * refuses while senders wait, so frames never overtake each other.  A waiting send whose signal
 * aborts is withdrawn from the queue: the senders behind it move up, in the same order.
 */
import type { NetdevError } from '../common/errors.js';
import { Bell } from '../ring/bell.js';
import { RingWriter, type RingDescriptor } from '../ring/ring.js';

interface PendingSend {
  frame: Uint8Array;
  resolve: () => void;
  reject: (error: NetdevError) => void;
}

const RESOLVED = Promise.resolve();

export class TxQueue {
  readonly writer: RingWriter;
  private readonly spaceBell: Bell;
  private readonly pending: PendingSend[] = [];
  private pumping = false;
  private failure: NetdevError | null = null;

  constructor(descriptor: RingDescriptor) {
    this.writer = new RingWriter(descriptor);
    this.spaceBell = new Bell(descriptor.spaceBell!);
  }

  /** Queues `frame` (already validated) if it fits now and nobody waits before it; false otherwise. */
  trySend(frame: Uint8Array): boolean {
    if (this.pending.length !== 0 || !this.writer.push(frame)) return false;
    this.writer.publish();
    return true;
  }

  /** Queues as many of `frames` (already validated) as fit now, in order, with one publish; returns how many. */
  trySendBatch(frames: readonly Uint8Array[]): number {
    if (this.pending.length !== 0) return 0;
    let queued = 0;
    while (queued < frames.length && this.writer.push(frames[queued]!)) queued++;
    this.writer.publish();
    return queued;
  }

  /**
   * Queues `frame` (already validated), waiting in FIFO order while the ring is full.  If `signal`
   * has aborted, or aborts while the frame waits, the frame is not queued and the promise rejects
   * with `aborted()`.
   */
  send(frame: Uint8Array, signal?: AbortSignal, aborted?: () => NetdevError): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (signal?.aborted) return Promise.reject(aborted!());
    if (this.trySend(frame)) return RESOLVED;
    return new Promise<void>((resolve, reject) => {
      const waiting: PendingSend = { frame, resolve, reject };
      if (signal) {
        const withdraw = (): void => this.withdraw(waiting, aborted!());
        signal.addEventListener('abort', withdraw, { once: true });
        waiting.resolve = () => {
          signal.removeEventListener('abort', withdraw);
          resolve();
        };
        waiting.reject = (error) => {
          signal.removeEventListener('abort', withdraw);
          reject(error);
        };
      }
      this.pending.push(waiting);
      if (!this.pumping) void this.pump();
    });
  }

  /** Rejects every waiting send with `error` and every later one too. */
  fail(error: NetdevError): void {
    this.failure = error;
    for (const waiting of this.pending.splice(0)) waiting.reject(error);
    this.spaceBell.ringNow();
  }

  /** Takes `waiting` out of the queue (if still there) and rejects it; the pump re-checks if it was the head. */
  private withdraw(waiting: PendingSend, error: NetdevError): void {
    const index = this.pending.indexOf(waiting);
    if (index < 0) return;
    this.pending.splice(index, 1);
    waiting.reject(error);
    if (index === 0) this.spaceBell.ringNow(); // the pump sleeps until the head fits: let it look at the new head
  }

  private async pump(): Promise<void> {
    this.pumping = true;
    while (this.pending.length !== 0 && !this.failure) {
      const head = this.pending[0]!;
      if (this.writer.push(head.frame)) {
        this.writer.publish();
        this.pending.shift();
        head.resolve();
        continue;
      }
      const seq = this.spaceBell.prepare();
      if (this.writer.fits(head.frame.length) || this.failure) {
        this.spaceBell.cancel();
        continue;
      }
      await this.spaceBell.sleep(seq);
    }
    this.pumping = false;
  }
}
