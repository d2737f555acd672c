/**
 * Pieces the file-descriptor I/O halves share: waking the worker when a descriptor becomes
 * readable (a libuv poll handle on the worker's own loop, armed only while nothing is waiting)
 * or, where the kernel offers no event, a millisecond later; and iovecs whose addresses point
 * into shared memory, written from two 32-bit halves so no BigInt is made per frame; and the
 * mmsghdr arrays of recvmmsg/sendmmsg.
 */
import {
  addressOf, IOVEC_SIZE, MMSGHDR_LEN, MMSGHDR_SIZE, MSGHDR_FLAGS, MSGHDR_IOV, MSGHDR_IOVLEN, watchReadable,
} from './libc.js';

const TWO_32 = 2 ** 32;

/** What an FdWaker rings: the owner's bell (src/ring/bell.ts), run from this thread's I/O callback; returns how much work it did. */
export interface Ringable {
  ringHere(): number;
}

/** Rings `bell` when `fd` becomes readable or writable (once per wait) or after retryLater(). */
export class FdWaker {
  private readonly poll: ReturnType<typeof watchReadable>;
  private polling = false;
  private writable = false;
  /** Set when the work the bell started asked to wait again: the poll then stays armed (no epoll_ctl per wake-up). */
  private rearmed = false;
  private rearmedWritable = false;
  private retryTimer: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(fd: number, private readonly bell: Ringable) {
    this.poll = watchReadable(fd, (failed) => {
      if (failed) this.polling = false; // libuv has stopped watching (POLLERR): the next wait starts it again
      this.rearmed = false;
      this.rearmedWritable = false;
      const moved = bell.ringHere();
      if (this.closed) return; // the work it started closed this waker (a peer went away)
      // Stays armed if the work asked to wait again, or moved something (and will read on until it does).
      if (!this.rearmed && moved === 0) {
        if (this.polling) this.poll.stop();
        this.polling = false;
        this.writable = false;
      } else if (this.writable && !this.rearmedWritable) {
        this.writable = false; // a writable socket would wake the loop again at once
        this.polling = true;
        this.poll.start(false);
      }
    });
    this.poll.stop();
  }

  /** Rings the bell once `fd` is readable (call when a read found nothing). */
  waitReadable(): void {
    this.rearmed = true;
    if (this.polling) return;
    this.polling = true;
    this.poll.start(this.writable);
  }

  /** Rings the bell once `fd` is readable or writable (call when a write would block). */
  waitWritable(): void {
    this.rearmed = true;
    this.rearmedWritable = true;
    if (this.polling && this.writable) return;
    this.writable = true;
    this.polling = true;
    this.poll.start(true);
  }

  /** Rings the bell in a millisecond (for a full device queue, which has no "room again" event). */
  retryLater(): void {
    this.retryTimer ??= setTimeout(() => {
      this.retryTimer = null;
      this.bell.ringHere();
    }, 1);
  }

  close(): void {
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.poll.close();
  }
}

/** The address of `bytes` as [high, low] 32-bit halves. */
export function addressHalves(bytes: Uint8Array): [number, number] {
  const address = addressOf(bytes);
  return [Number(address >> 32n), Number(address & 0xffffffffn)];
}

/** A view of `iovecs` (a Buffer of struct iovec, from Buffer.alloc: word-aligned) as 32-bit words, for setIovec. */
export function iovecWords(iovecs: Buffer): Uint32Array {
  return new Uint32Array(iovecs.buffer, iovecs.byteOffset, iovecs.length >> 2);
}

/**
 * Writes iovec `index` of the iovec array whose words are `words` (iovecWords): base (high, low)
 * + `offset`, `length` bytes.  Plain typed-array stores: it runs once per frame.
 */
export function setIovec(words: Uint32Array, index: number, [high, low]: [number, number], offset: number, length: number): void {
  const at = index << 2;
  const sum = low + offset;
  words[at] = sum >>> 0;
  words[at + 1] = high + Math.floor(sum / TWO_32);
  words[at + 2] = length;
  words[at + 3] = 0;
}

/**
 * An array of `count` mmsghdrs, each with `iovecsPerMessage` iovecs (whose bases the caller sets:
 * message i's k-th is iovec i * iovecsPerMessage + k).
 */
export class MessageVector {
  readonly headers: Buffer;
  readonly iovecs: Buffer;
  /** `iovecs` as words (for setIovec), and `headers` as words (for the per-message accessors). */
  readonly iovecWords: Uint32Array;
  private readonly headerWords: Int32Array;

  constructor(
    count: number,
    readonly iovecsPerMessage = 1,
  ) {
    this.headers = Buffer.alloc(count * MMSGHDR_SIZE);
    this.iovecs = Buffer.alloc(count * iovecsPerMessage * IOVEC_SIZE);
    this.iovecWords = iovecWords(this.iovecs);
    this.headerWords = new Int32Array(this.headers.buffer, this.headers.byteOffset, this.headers.length >> 2);
    const iovBase = addressOf(this.iovecs);
    for (let i = 0; i < count; i++) {
      this.headers.writeBigUInt64LE(iovBase + BigInt(i * iovecsPerMessage * IOVEC_SIZE), i * MMSGHDR_SIZE + MSGHDR_IOV);
      this.headers.writeBigUInt64LE(BigInt(iovecsPerMessage), i * MMSGHDR_SIZE + MSGHDR_IOVLEN);
    }
  }

  /** Bytes moved by message `i` (msg_len). */
  length(i: number): number {
    return this.headerWords[(i * MMSGHDR_SIZE + MMSGHDR_LEN) >> 2]! >>> 0;
  }

  /** Flags of received message `i` (msg_flags, e.g. MSG_TRUNC). */
  flags(i: number): number {
    return this.headerWords[(i * MMSGHDR_SIZE + MSGHDR_FLAGS) >> 2]!;
  }

  /** Length of iovec `i` as set with setIovec. */
  iovecLength(i: number): number {
    return this.iovecWords[(i << 2) + 2]!;
  }

  /** Bytes of message `i`: the lengths of its iovecs added up. */
  messageBytes(i: number): number {
    let bytes = 0;
    for (let k = 0; k < this.iovecsPerMessage; k++) bytes += this.iovecLength(i * this.iovecsPerMessage + k);
    return bytes;
  }
}
