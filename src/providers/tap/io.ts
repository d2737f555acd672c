/**
 * The tap provider's I/O half (runs in the device's worker) on the tun descriptor the main thread
 * opened.  A tap has no batched syscall: each frame is one readv() straight into the RX ring and
 * one writev() straight from the TX ring (iovecs pointing into the rings' shared memory, so no
 * copy in JavaScript).  The kernel delivers every frame to a tap, so the ethertype filter is
 * applied here.  Nothing waiting: a libuv poll handle rings the worker's bell when the descriptor
 * becomes readable.  Drain reads at most the device's TX queue length, as the seed.
 */
import { NetdevError } from '../../common/errors.js';
import type { RingReader } from '../../ring/ring.js';
import { errnoName, IOVEC_SIZE, lastErrno, sys } from '../../sys/libc.js';
import { addressHalves, FdWaker, setIovec } from '../../sys/fd-io.js';
import { matchesEthertype, MIN_FRAME, type CreateIo, type DeviceIo, type IoContext } from '../contract.js';
import type { TapIoOptions } from './control.js';

const LARGEST_FRAME = 65536;

class TapIo implements DeviceIo {
  private readonly iovec = Buffer.alloc(IOVEC_SIZE);
  private readonly scrap = Buffer.alloc(LARGEST_FRAME);
  private readonly waker: FdWaker;
  private readonly rxBase: [number, number];
  private txBase: [number, number] | null = null;

  constructor(
    private readonly context: IoContext,
    private readonly fd: number,
    private readonly txQueueLength: number,
  ) {
    this.waker = new FdWaker(fd, context.bell);
    this.rxBase = addressHalves(context.rx.bytes);
  }

  receive(budget: number): number {
    const { rx, counters, ethertype } = this.context;
    const room = Math.min(LARGEST_FRAME, rx.maxRecord);
    let handled = 0;
    for (; handled < budget; handled++) {
      const at = rx.reserve(room);
      const length = at < 0 ? sys.read(this.fd, this.scrap, LARGEST_FRAME) : this.readInto(at, room);
      if (length < 0) {
        const code = errnoName(lastErrno());
        if (code === 'EAGAIN') this.waker.waitReadable();
        else if (code !== 'EINTR') this.fail('read', code);
        break;
      }
      if (at < 0) {
        rx.countDrops(1);
        continue;
      }
      if (length >= room && room < LARGEST_FRAME) {
        counters.rxErrors++; // possibly cut to fit the ring: never delivered
        continue;
      }
      if (!matchesEthertype(ethertype, rx.bytes, at, length)) continue;
      const padded = length < MIN_FRAME ? MIN_FRAME : length;
      if (padded !== length) rx.bytes.fill(0, at + length, at + padded);
      rx.commit(padded);
    }
    return handled;
  }

  /** readv() of one frame into the RX ring at `at` (reserved for `room` bytes). */
  private readInto(at: number, room: number): number {
    setIovec(this.iovec, 0, this.rxBase, at, room);
    return sys.readv(this.fd, this.iovec, 1);
  }

  transmit(tx: RingReader, budget: number): number {
    const base = (this.txBase ??= addressHalves(tx.bytes));
    let taken = 0;
    for (let length; taken < budget && (length = tx.next()) >= 0; taken++) {
      setIovec(this.iovec, 0, base, tx.offset, length);
      const written = sys.writev(this.fd, this.iovec, 1);
      if (written >= 0) continue;
      const code = errnoName(lastErrno());
      if (code === 'EAGAIN' || code === 'ENOBUFS' || code === 'EINTR') {
        tx.unread();
        this.waker.retryLater();
        break;
      }
      this.context.counters.txErrors++; // refused for good (EIO while down, EINVAL ...): counted, skipped
    }
    return taken;
  }

  drain(): void {
    for (let i = 0; i < this.txQueueLength && sys.read(this.fd, this.scrap, LARGEST_FRAME) >= 0; i++);
  }

  private fail(call: string, code: string): never {
    throw new NetdevError({ code, device: this.context.name, call, detail: `${call} on the tap failed: ${code}` });
  }

  /** The descriptor belongs to the main thread, which closes it. */
  close(): void {
    this.waker.close();
  }
}

export const createIo: CreateIo = (context) => {
  const { fd, txQueueLength } = context.options as TapIoOptions;
  return new TapIo(context, fd, txQueueLength);
};
