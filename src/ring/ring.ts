/**
 * Single-producer / single-consumer ring of variable-length records in a SharedArrayBuffer.
 *
 * Layout: a 256-byte header, then `capacity` bytes of records (capacity a power of two).
 *   header Int32 word 0  : head, bytes ever published by the producer, modulo 2^30
 *   header Int32 word 16 : tail, bytes ever released by the consumer, modulo 2^30 (own cache line)
 *   header BigInt64 at 128: records dropped by the producer because the ring was full
 * A record is a 4-byte length, its bytes, and padding to 4 bytes.  A length of -1 is a wrap
 * marker: the rest of the region is skipped and the next record starts at offset 0.  Records are
 * contiguous, so the consumer can hand out zero-copy views.  A record needs at most half the
 * capacity (the cost of wrapping), so `maxRecord` is capacity / 2 - 4.
 *
 * The producer writes records, then publishes them all with one atomic store of head and rings
 * the consumer's bell; the consumer reads records in place, then releases them with one atomic
 * store of tail and rings the producer's bell (if the producer ever waits for space).
 * No record is ever visible half-written: head moves only after its bytes are in place.
 */
import { Bell } from './bell.js';

const HEAD = 0;
const TAIL = 16;
const DROPS_BIGINT_INDEX = 16; // byte offset 128
const HEADER_BYTES = 256;
const WRAP = -1;
const RECORD_HEADER = 4;

export const MIN_RING_CAPACITY = 1 << 12;
export const MAX_RING_CAPACITY = 1 << 29;
/**
 * Indices count bytes modulo 2^30 (a multiple of every capacity): they stay small integers in V8,
 * where a free-running uint32 would become a heap number (an allocation) after 1 GiB of traffic.
 */
const INDEX_MASK = (1 << 30) - 1;

/** Everything a thread needs to attach to a ring; structured-cloneable (buffers are shared, not copied). */
export interface RingDescriptor {
  readonly buffer: SharedArrayBuffer;
  /** Bell of the consumer, rung when records are published. */
  readonly dataBell: SharedArrayBuffer;
  /** Bell of the producer, rung when space is released; null if the producer never waits. */
  readonly spaceBell: SharedArrayBuffer | null;
}

/** The record capacity a ring asked to hold `capacity` bytes gets: a power of two, at least MIN_RING_CAPACITY. */
export function ringCapacity(capacity: number): number {
  if (!Number.isInteger(capacity) || capacity < 1 || capacity > MAX_RING_CAPACITY) {
    throw new RangeError(`ring capacity must be an integer from 1 to ${MAX_RING_CAPACITY}, not ${capacity}`);
  }
  return Math.max(MIN_RING_CAPACITY, 2 ** Math.ceil(Math.log2(capacity)));
}

/** Allocates a ring of `capacity` bytes of records (see ringCapacity). */
export function createRing(
  capacity: number,
  dataBell: Bell,
  spaceBell: Bell | null,
): RingDescriptor {
  return {
    buffer: new SharedArrayBuffer(HEADER_BYTES + ringCapacity(capacity)),
    dataBell: dataBell.buffer,
    spaceBell: spaceBell ? spaceBell.buffer : null,
  };
}

/** The largest record a ring of `capacity` record bytes can hold. */
export function maxRecordFor(capacity: number): number {
  return capacity / 2 - RECORD_HEADER;
}

function align4(n: number): number {
  return (n + 3) & ~3;
}

abstract class RingEnd {
  readonly capacity: number;
  readonly maxRecord: number;
  /** The record region; record data lies at offsets reported by the reader/writer. */
  readonly bytes: Uint8Array;
  protected readonly header: Int32Array;
  /** The record region as 32-bit words (record data starts word-aligned). */
  readonly words: Int32Array;
  protected readonly drops: BigInt64Array;
  protected readonly mask: number;

  constructor(readonly descriptor: RingDescriptor) {
    const { buffer } = descriptor;
    this.capacity = buffer.byteLength - HEADER_BYTES;
    this.mask = this.capacity - 1;
    this.maxRecord = maxRecordFor(this.capacity);
    this.header = new Int32Array(buffer, 0, HEADER_BYTES / 4);
    this.drops = new BigInt64Array(buffer, 0, HEADER_BYTES / 8);
    this.bytes = new Uint8Array(buffer, HEADER_BYTES, this.capacity);
    this.words = new Int32Array(buffer, HEADER_BYTES, this.capacity / 4);
  }

  /** Records the producer dropped because the ring was full (as published). */
  droppedCount(): number {
    return Number(Atomics.load(this.drops, DROPS_BIGINT_INDEX));
  }

  /** Bytes published and not yet released, as seen now. */
  usedBytes(): number {
    return (Atomics.load(this.header, HEAD) - Atomics.load(this.header, TAIL)) & INDEX_MASK;
  }
}

/** The producer end. Only one thread may use it. */
export class RingWriter extends RingEnd {
  /** Offset in `bytes` of the record reserved by the last successful reserve(). */
  private reserved = 0;
  private head: number;
  private cachedTail: number;
  private pendingDrops = 0;
  private readonly consumerBell: Bell;
  /** Records committed by this writer since it was created. */
  committed = 0;

  constructor(descriptor: RingDescriptor) {
    super(descriptor);
    this.head = Atomics.load(this.header, HEAD);
    this.cachedTail = Atomics.load(this.header, TAIL);
    this.consumerBell = new Bell(descriptor.dataBell);
  }

  /**
   * Reserves room for a record of `length` bytes and returns the offset in `bytes` where its data
   * goes, or -1 if the ring is too full now.  Throws RangeError if `length` exceeds maxRecord.
   * Nothing is visible to the consumer until commit() and publish().
   */
  reserve(length: number): number {
    if (length > this.maxRecord || length < 0) {
      throw new RangeError(`record of ${length} bytes exceeds the ring's maximum of ${this.maxRecord}`);
    }
    const need = RECORD_HEADER + align4(length);
    const pos = this.head & this.mask;
    const skip = pos + need > this.capacity ? this.capacity - pos : 0;
    if (!this.hasRoom(skip + need)) return -1;
    if (skip !== 0) {
      this.words[pos >> 2] = WRAP;
      this.head = (this.head + skip) & INDEX_MASK;
      this.reserved = RECORD_HEADER;
    } else {
      this.reserved = pos + RECORD_HEADER;
    }
    return this.reserved;
  }

  /** Completes the record reserved last, of `length` bytes (at most the reserved length). */
  commit(length: number): void {
    this.words[(this.reserved - RECORD_HEADER) >> 2] = length;
    this.head = (this.head + RECORD_HEADER + align4(length)) & INDEX_MASK;
    this.committed++;
  }

  /**
   * Copies `source` into a new record, zero-padded to at least `padTo` bytes; returns false (and
   * writes nothing) if there is no room now.  Not visible until publish().
   */
  push(source: Uint8Array, padTo = 0): boolean {
    const length = source.length < padTo ? padTo : source.length;
    const offset = this.reserve(length);
    if (offset < 0) return false;
    this.bytes.set(source, offset);
    if (length > source.length) this.bytes.fill(0, offset + source.length, offset + length);
    this.commit(length);
    return true;
  }

  /** Counts `n` records dropped for lack of room; published with the next publish(). */
  countDrops(n: number): void {
    this.pendingDrops += n;
  }

  /** Makes every committed record (and drop count) visible to the consumer, and wakes it if it sleeps. */
  publish(): void {
    if (this.pendingDrops !== 0) {
      Atomics.add(this.drops, DROPS_BIGINT_INDEX, BigInt(this.pendingDrops));
      this.pendingDrops = 0;
    }
    if (Atomics.load(this.header, HEAD) !== this.head) {
      Atomics.store(this.header, HEAD, this.head);
      this.consumerBell.ring();
    }
  }

  /** True if a record of `length` bytes would fit now. */
  fits(length: number): boolean {
    const need = RECORD_HEADER + align4(length);
    const pos = this.head & this.mask;
    const skip = pos + need > this.capacity ? this.capacity - pos : 0;
    return length <= this.maxRecord && this.hasRoom(skip + need);
  }

  private hasRoom(bytes: number): boolean {
    if (this.capacity - ((this.head - this.cachedTail) & INDEX_MASK) >= bytes) return true;
    this.cachedTail = Atomics.load(this.header, TAIL);
    return this.capacity - ((this.head - this.cachedTail) & INDEX_MASK) >= bytes;
  }
}

/** The consumer end. Only one thread may use it. */
export class RingReader extends RingEnd {
  /** Offset in `bytes` of the record returned by the last next(). */
  offset = 0;
  private readPos: number;
  private previousPos: number;
  private released: number;
  private cachedHead: number;
  private readonly producerBell: Bell | null;
  /** Records stepped to by next() since this reader was created (unread() takes one back). */
  consumed = 0;

  constructor(descriptor: RingDescriptor) {
    super(descriptor);
    this.readPos = Atomics.load(this.header, TAIL);
    this.released = this.readPos;
    this.previousPos = this.readPos;
    this.cachedHead = Atomics.load(this.header, HEAD);
    this.producerBell = descriptor.spaceBell ? new Bell(descriptor.spaceBell) : null;
  }

  /**
   * Steps to the next published record: returns its length and sets `offset` to its data in
   * `bytes`, or returns -1 if none is published yet.  The record stays valid (and its space
   * reserved) until release().
   */
  next(): number {
    for (;;) {
      if (this.readPos === this.cachedHead) {
        this.cachedHead = Atomics.load(this.header, HEAD);
        if (this.readPos === this.cachedHead) return -1;
      }
      const pos = this.readPos & this.mask;
      const length = this.words[pos >> 2]!;
      if (length === WRAP) {
        // A producer may publish a wrap marker alone (a reservation it abandoned): loop to re-check.
        this.readPos = (this.readPos + this.capacity - pos) & INDEX_MASK;
        continue;
      }
      this.offset = pos + RECORD_HEADER;
      this.previousPos = this.readPos;
      this.readPos = (this.readPos + RECORD_HEADER + align4(length)) & INDEX_MASK;
      this.consumed++;
      return length;
    }
  }

  /** Steps back over the record returned by the last next(), so that the next next() returns it again (one record only: see mark()). */
  unread(): void {
    this.readPos = this.previousPos;
    this.consumed--;
  }

  /** The reader's position now, for rewind(). */
  mark(): number {
    return this.readPos;
  }

  /**
   * Steps back to `mark` (a mark() taken since the last release()), over the `records` records
   * next() returned since: the next next() returns the first of them again.
   */
  rewind(mark: number, records: number): void {
    this.readPos = mark;
    this.consumed -= records;
  }

  /** Returns the space of every record stepped over so far to the producer. */
  release(): void {
    if (this.released === this.readPos) return;
    this.released = this.readPos;
    Atomics.store(this.header, TAIL, this.readPos);
    this.producerBell?.ring();
  }

  /** Steps over and releases everything published now; returns the number of records discarded. */
  discardAll(): number {
    let n = 0;
    while (this.next() >= 0) n++;
    this.release();
    return n;
  }
}

/**
 * A second reader that never releases: it follows the records of a ring from where it starts
 * (the head: records published from now on, or the tail: records not yet consumed), so that a
 * capture can copy them.  It must read a record before the real consumer's release lets the
 * producer overwrite it; the device worker reads TX records before releasing them, and RX records
 * right after publishing them (it is their producer, and writes nothing more until its next round).
 */
export class RingFollower extends RingEnd {
  /** Offset in `bytes` of the record returned by the last next(). */
  offset = 0;
  private position: number;

  constructor(descriptor: RingDescriptor, from: 'head' | 'tail') {
    super(descriptor);
    this.position = Atomics.load(this.header, from === 'head' ? HEAD : TAIL);
  }

  /** The next published record's length (data at `offset`), or -1 if none. */
  next(): number {
    for (;;) {
      if (this.position === Atomics.load(this.header, HEAD)) return -1;
      const pos = this.position & this.mask;
      const length = this.words[pos >> 2]!;
      if (length === WRAP) {
        this.position = (this.position + this.capacity - pos) & INDEX_MASK;
        continue;
      }
      this.offset = pos + RECORD_HEADER;
      this.position = (this.position + RECORD_HEADER + align4(length)) & INDEX_MASK;
      return length;
    }
  }
}

/** Records up to this long are copied a word at a time (no allocation); longer ones with one memcpy. */
const WORD_COPY_LIMIT = 128;

/**
 * Copies the first `length` bytes of the record `from` last stepped to into `to`'s region at
 * `at` (an offset reserve() returned for at least `length` bytes).  Both are word-aligned, so a
 * short record goes a word at a time, possibly copying up to 3 bytes of padding past `length`.
 */
export function copyRecord(from: RingReader, to: RingWriter, at: number, length: number): void {
  if (length <= WORD_COPY_LIMIT) {
    const source = from.words;
    const target = to.words;
    const first = from.offset >> 2;
    const into = at >> 2;
    const count = (length + 3) >> 2;
    for (let i = 0; i < count; i++) target[into + i] = source[first + i]!;
  } else {
    to.bytes.set(from.bytes.subarray(from.offset, from.offset + length), at);
  }
}
