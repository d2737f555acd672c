/**
 * The Switch's MAC table, in shared memory, so that port workers forward and learn without the
 * main thread.  Keys are (VLAN, MAC); values a port index and when the MAC was last seen.
 *
 * Open addressing with linear probing.  Writers (any thread) take a spin lock held for a few
 * stores (and give up after a bounded spin: the MAC is learned from a later frame); readers take
 * no lock: each slot has a sequence number, odd while the slot is written,
 * and a read that sees it change reads again.  A reader racing a deletion (which shifts entries
 * back) may miss an entry and flood one frame: what a learning switch does for an unknown
 * destination anyway.  Times are ticks of TICK_MS since the table's epoch.
 *
 * Every move of a MAC from one port to another is also written, under the lock, to a move log
 * after the slots (MOVE_LOG entries, a ring, with a count of moves in the header), so that the
 * main thread can tell a MAC that flaps between ports without a message per frame (readMoves).
 */

const LOCK = 0;
const COUNT = 1;
const EPOCH = 2;
/** Moves written to the move log so far. */
const MOVES = 3;
const HEADER = 4;
const STRIDE = 5; // seq, key1, key2, port, seen
/** Entries of the move log, and the words of one: key1, key2, from port, to port, when. */
const MOVE_LOG = 1024;
const MOVE_STRIDE = 5;
const USED = 1 << 28;
const TICK_MS = 16;
/** Attempts at the lock before a writer gives up (a few milliseconds). */
const LOCK_SPINS = 1_000_000;

/** What a MAC table shares between threads (pass it in a worker message). */
export interface MacTableDescriptor {
  buffer: SharedArrayBuffer;
  capacity: number;
}

export class MacTable {
  /** The shared memory, to hand to another thread's MacTable. */
  readonly descriptor: MacTableDescriptor;
  private readonly words: Int32Array;
  private readonly mask: number;
  /** Where the slots end and the move log begins. */
  private readonly slotsEnd: number;
  private readonly epochMs: number;
  /** Largest number of entries (half the slots). */
  readonly maxEntries: number;
  /** Set by find(): the slot found and when its MAC was last seen. */
  private foundSlot = -1;
  private foundSeen = 0;

  /** Wraps `descriptor`, or makes a table for `maxEntries` MACs (a power of two). */
  constructor(descriptor: MacTableDescriptor | number) {
    if (typeof descriptor === 'number') {
      if (!(descriptor >= 1 && (descriptor & (descriptor - 1)) === 0)) throw new RangeError(`MAC table size must be a power of two, not ${descriptor}`);
      const capacity = descriptor * 2;
      descriptor = { buffer: new SharedArrayBuffer((HEADER + capacity * STRIDE + MOVE_LOG * MOVE_STRIDE) * 4), capacity };
      new Int32Array(descriptor.buffer)[EPOCH] = Math.floor(Date.now() / 1000);
    }
    this.descriptor = descriptor;
    this.words = new Int32Array(descriptor.buffer);
    this.mask = descriptor.capacity - 1;
    this.slotsEnd = HEADER + descriptor.capacity * STRIDE;
    this.maxEntries = descriptor.capacity / 2;
    this.epochMs = this.words[EPOCH]! * 1000;
  }

  /** The current time in this table's ticks (read once per batch). */
  now(): number {
    return Math.floor((Date.now() - this.epochMs) / TICK_MS);
  }

  /** Ticks in `ms` milliseconds, rounded up. */
  static ticks(ms: number): number {
    return Math.ceil(ms / TICK_MS);
  }

  /** Number of entries. */
  get size(): number {
    return Atomics.load(this.words, COUNT);
  }

  /** The port of MAC `bytes[at..at+6]` in `vlan` if seen within `maxAge` ticks of `now`; else -1. */
  lookup(vlan: number, bytes: Uint8Array, at: number, now: number, maxAge: number): number {
    const port = this.find(key1(vlan, bytes, at), key2(bytes, at));
    return port >= 0 && now - this.foundSeen <= maxAge ? port : -1;
  }

  /**
   * Records that MAC `bytes[at..at+6]` in `vlan` was seen on `port` at `now`.  Lock-free when
   * the MAC is known on that port; returns false if the table is full (or its lock stuck).
   */
  learn(vlan: number, bytes: Uint8Array, at: number, port: number, now: number): boolean {
    const k1 = key1(vlan, bytes, at);
    const k2 = key2(bytes, at);
    if (this.find(k1, k2) === port) {
      if (this.foundSeen !== now) Atomics.store(this.words, this.foundSlot + 4, now);
      return true;
    }
    if (!this.tryLock()) return false; // busy far too long (a writer died holding it): learn from a later frame
    try {
      let slot = this.home(k1, k2);
      for (;;) {
        const at1 = Atomics.load(this.words, slot + 1);
        if (at1 === 0) break;
        if (at1 === k1 && Atomics.load(this.words, slot + 2) === k2) {
          const from = this.words[slot + 3]!;
          this.write(slot, k1, k2, port, now);
          if (from !== port) this.logMove(k1, k2, from, port, now);
          return true;
        }
        slot = this.next(slot);
      }
      if (this.size >= this.maxEntries) return false;
      this.write(slot, k1, k2, port, now);
      Atomics.add(this.words, COUNT, 1);
      return true;
    } finally {
      Atomics.store(this.words, LOCK, 0);
    }
  }

  /** Moves written to the move log so far (pass it to readMoves later). */
  get moves(): number {
    return Atomics.load(this.words, MOVES);
  }

  /**
   * Calls `visit` for each move of a MAC between ports (VLAN, MAC as 6 bytes, the port it left,
   * the port it moved to, when in ticks) logged since `since` (what `moves` was), in order; returns
   * the new count, and how many moves were overwritten before they could be read (the log keeps
   * the last MOVE_LOG / 2 safely while writers go on).
   */
  readMoves(since: number, visit: (vlan: number, mac: Uint8Array, from: number, to: number, when: number) => void): { moves: number; lost: number } {
    const w = this.words;
    const moves = Atomics.load(w, MOVES);
    // The count is a 32-bit word that wraps (a storm moves MACs a million times a second): differences, not comparisons.
    const pending = (moves - since) | 0;
    const lost = pending > MOVE_LOG / 2 ? pending - MOVE_LOG / 2 : 0;
    const mac = new Uint8Array(6);
    for (let k = lost; k < pending; k++) {
      const at = this.slotsEnd + ((since + k) & (MOVE_LOG - 1)) * MOVE_STRIDE;
      const k1 = Atomics.load(w, at);
      const k2 = Atomics.load(w, at + 1);
      mac[0] = (k1 >> 8) & 0xff;
      mac[1] = k1 & 0xff;
      mac[2] = (k2 >>> 24) & 0xff;
      mac[3] = (k2 >> 16) & 0xff;
      mac[4] = (k2 >> 8) & 0xff;
      mac[5] = k2 & 0xff;
      visit((k1 >> 16) & 0xfff, mac, Atomics.load(w, at + 2), Atomics.load(w, at + 3), Atomics.load(w, at + 4));
    }
    return { moves, lost };
  }

  /** Lock held: logs that (k1, k2) moved from port `from` to `to` at `now`. */
  private logMove(k1: number, k2: number, from: number, to: number, now: number): void {
    const w = this.words;
    const moves = w[MOVES]!;
    const at = this.slotsEnd + (moves & (MOVE_LOG - 1)) * MOVE_STRIDE;
    Atomics.store(w, at, k1);
    Atomics.store(w, at + 1, k2);
    Atomics.store(w, at + 2, from);
    Atomics.store(w, at + 3, to);
    Atomics.store(w, at + 4, now);
    Atomics.store(w, MOVES, (moves + 1) | 0);
  }

  /** Deletes every entry of `port`. */
  forgetPort(port: number): void {
    this.deleteWhere((slotPort) => slotPort === port);
  }

  /** Deletes every entry not seen within `maxAge` ticks of `now`. */
  purge(now: number, maxAge: number): void {
    this.deleteWhere((_, seen) => now - seen > maxAge);
  }

  private deleteWhere(doomed: (port: number, seen: number) => boolean): void {
    if (!this.tryLock()) return;
    try {
      // A deletion shifts later entries back, possibly across the wrap to slots already passed: repeat until a pass deletes nothing.
      for (let deleted = 1; deleted > 0; ) {
        deleted = 0;
        for (let slot = HEADER; slot < this.slotsEnd; slot += STRIDE) {
          while (this.words[slot + 1] !== 0 && doomed(this.words[slot + 3]!, this.words[slot + 4]!)) {
            this.delete(slot);
            deleted++;
          }
        }
      }
    } finally {
      Atomics.store(this.words, LOCK, 0);
    }
  }

  /** Lock held: empties `slot`, moving back later entries of its probe run that would be lost (Knuth's algorithm R). */
  private delete(slot: number): void {
    const w = this.words;
    let hole = slot;
    for (let probe = this.next(slot); w[probe + 1] !== 0; probe = this.next(probe)) {
      const home = this.home(w[probe + 1]!, w[probe + 2]!);
      // The entry at `probe` may fill the hole only if its home is not cyclically within (hole, probe].
      const stays = hole <= probe ? hole < home && home <= probe : hole < home || home <= probe;
      if (stays) continue;
      this.write(hole, w[probe + 1]!, w[probe + 2]!, w[probe + 3]!, w[probe + 4]!);
      hole = probe;
    }
    this.write(hole, 0, 0, 0, 0);
    Atomics.sub(w, COUNT, 1);
  }

  /** Lock-free lookup: the port of (k1, k2), or -1; sets foundSlot and foundSeen. */
  private find(k1: number, k2: number): number {
    const w = this.words;
    for (let slot = this.home(k1, k2); ; slot = this.next(slot)) {
      let seq: number;
      let at1: number;
      let at2: number;
      let port: number;
      let seen: number;
      do {
        seq = Atomics.load(w, slot);
        at1 = Atomics.load(w, slot + 1);
        at2 = Atomics.load(w, slot + 2);
        port = Atomics.load(w, slot + 3);
        seen = Atomics.load(w, slot + 4);
      } while ((seq & 1) !== 0 || Atomics.load(w, slot) !== seq);
      if (at1 === 0) return -1;
      if (at1 === k1 && at2 === k2) {
        this.foundSlot = slot;
        this.foundSeen = seen;
        return port;
      }
    }
  }

  /** Lock held: writes a slot, odd sequence number while it does. */
  private write(slot: number, k1: number, k2: number, port: number, seen: number): void {
    const w = this.words;
    Atomics.add(w, slot, 1);
    Atomics.store(w, slot + 1, k1);
    Atomics.store(w, slot + 2, k2);
    Atomics.store(w, slot + 3, port);
    Atomics.store(w, slot + 4, seen);
    Atomics.add(w, slot, 1);
  }

  /**
   * Takes the writers' lock, spinning a bounded time: a writer holds it for a few stores, but one
   * terminated while holding it never lets go, and no thread (the main thread least) may then hang.
   */
  private tryLock(): boolean {
    for (let spins = 0; spins < LOCK_SPINS; spins++) {
      if (Atomics.compareExchange(this.words, LOCK, 0, 1) === 0) return true;
    }
    return false;
  }

  private home(k1: number, k2: number): number {
    let h = k2 ^ Math.imul(k1, 0x9e3779b1);
    h ^= h >>> 16;
    h = Math.imul(h, 0x85ebca6b);
    h ^= h >>> 13;
    return HEADER + (h & this.mask) * STRIDE;
  }

  private next(slot: number): number {
    const following = slot + STRIDE;
    return following < this.slotsEnd ? following : HEADER;
  }
}

function key1(vlan: number, bytes: Uint8Array, at: number): number {
  return USED | (vlan << 16) | (bytes[at]! << 8) | bytes[at + 1]!;
}

function key2(bytes: Uint8Array, at: number): number {
  return (bytes[at + 2]! << 24) | (bytes[at + 3]! << 16) | (bytes[at + 4]! << 8) | bytes[at + 5]!;
}
