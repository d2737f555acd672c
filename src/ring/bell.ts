/**
 * A doorbell: one sleeping thread (its owner) and any number of threads that may wake it.
 *
 * Protocol (lost-wakeup free with sequentially consistent Atomics):
 *   owner:  seq = bell.prepare(); <re-check every source of work>; if none: await bell.sleep(seq)
 *   waker:  <publish work (an Atomics store)>; bell.ring()
 * A waker that published before the owner's re-check is seen by the re-check; one that published
 * after it sees the owner's sleeping flag, bumps the sequence and notifies, so the owner's wait
 * either returns at once ("not-equal") or is woken.  ring() costs one atomic load while the owner
 * is awake, so producers may call it after every publish.
 *
 * An owner may also sleep in a blocking poll(2) instead (a worker waiting on a socket): it then
 * names an eventfd with setKickFd, and a ring also signals that eventfd, through the kicker that
 * whoever makes the eventfd installs with Bell.useKicker on the threads that ring (this module has
 * no FFI).  The eventfd belongs to whoever rings: the owner never closes it.
 */
const SEQ = 0;
const SLEEPING = 1;
/** The owner's eventfd + 1, or 0. */
const KICK_FD = 2;

export const BELL_BYTES = 12;

export class Bell {
  readonly words: Int32Array;
  /** Resolves the owner's current sleep (set while it sleeps). */
  private wakeHere: ((value: unknown) => void) | null = null;
  /** Owner only: run synchronously by ringHere(), so work found by an I/O callback is done inside it; returns how much it did. */
  onRingHere: (() => number) | null = null;

  /** Wraps `buffer` (a new one if omitted); pass the same buffer to another thread to share the bell. */
  constructor(readonly buffer: SharedArrayBuffer = new SharedArrayBuffer(BELL_BYTES)) {
    this.words = new Int32Array(buffer, 0, 3);
  }

  /** Wakes the owner if it has announced that it is about to sleep. Any thread may call it. */
  ring(): void {
    if (Atomics.load(this.words, SLEEPING) !== 0) this.ringNow();
  }

  /** How this thread signals an eventfd (see useKicker); none until someone names one. */
  private static kick: ((fd: number) => void) | null = null;

  /** Makes rings on this thread signal an owner's eventfd (setKickFd) with `kick`; the code that makes such eventfds installs it. */
  static useKicker(kick: (fd: number) => void): void {
    Bell.kick = kick;
  }

  /** Wakes the owner unconditionally (also from the owner's own thread, e.g. a control handler). */
  ringNow(): void {
    this.notify();
    const fd = Atomics.load(this.words, KICK_FD) - 1;
    if (fd >= 0) Bell.kick?.(fd);
  }

  /** Owner only: from now on a ring also signals eventfd `fd` (-1: no more). */
  setKickFd(fd: number): void {
    Atomics.store(this.words, KICK_FD, fd + 1);
  }

  private notify(): void {
    Atomics.add(this.words, SEQ, 1);
    Atomics.notify(this.words, SEQ);
  }

  /** Owner only: announces the intent to sleep and returns the value to pass to sleep()/sleepSync(). */
  prepare(): number {
    Atomics.store(this.words, SLEEPING, 1);
    return Atomics.load(this.words, SEQ);
  }

  /** Owner only: withdraws a prepare() after the re-check found work. */
  cancel(): void {
    Atomics.store(this.words, SLEEPING, 0);
  }

  /**
   * Owner only: resolves once the bell has rung since prepare() returned `seq` (at once if it already
   * has).  Returns null instead of a promise when it already rang, so a hot loop pays no promise.
   * A pending wait does not keep Node's event loop alive: the owner's thread must be kept alive by
   * something else (an open worker, a MessagePort).
   */
  sleep(seq: number): Promise<unknown> | null {
    const result = Atomics.waitAsync(this.words, SEQ, seq);
    if (!result.async) {
      this.cancel();
      return null;
    }
    return new Promise((resolve) => {
      this.wakeHere = resolve;
      void result.value.then(resolve);
    }).then(() => {
      this.wakeHere = null;
      this.cancel();
    });
  }

  /**
   * Owner's thread only (an I/O callback of the owner): rings, ends the owner's sleep, and runs
   * onRingHere at once: without the hop through the event loop that a notify to one's own thread
   * takes, or a wait for the callback's promise jobs to run.  Returns what onRingHere did (0 without one).
   */
  ringHere(): number {
    const wake = this.wakeHere;
    this.wakeHere = null;
    wake?.(undefined);
    const done = this.onRingHere?.() ?? 0;
    this.notify(); // after the work: it also settles the sleep's pending waitAsync
    return done;
  }

  /** Owner only, never on the main thread: blocks until the bell has rung since prepare() returned `seq`. */
  sleepSync(seq: number, timeoutMs?: number): void {
    Atomics.wait(this.words, SEQ, seq, timeoutMs);
    this.cancel();
  }
}
