/**
 * The tap provider's I/O half (runs in the device's worker) on the tun descriptor the main thread
 * opened.  A tap has no batched syscall: each frame is one readv() straight into the RX ring and
 * one writev() straight from the TX ring (iovecs pointing into the rings' shared memory, so no
 * copy in JavaScript).  The kernel delivers every frame to a tap, so the ethertype filter is
 * applied here.  Nothing waiting: a libuv poll handle rings the worker's bell when the descriptor
 * becomes readable.  Drain reads at most the device's TX queue length, as OVS.
 *
 * For pltap devices (options.packetInfo) every frame carries the 4-byte struct tun_pi: it is read
 * into a scratch header and stripped, and written before each frame as sliver-openvswitch writes
 * it (flags 0, proto 0x86 in host order); a short write is counted in txErrors.  A pltap device
 * moves frames only once finalized (options.ready, or the 'ready' control): until then frames
 * wait in the TX ring and the worker sleeps.
 */
import { NetdevError } from '../../common/errors.js';
import type { RingReader } from '../../ring/ring.js';
import { errnoName, IOVEC_SIZE, lastErrno, sys } from '../../sys/libc.js';
import { addressHalves, FdWaker, setIovec } from '../../sys/fd-io.js';
import { matchesEthertype, MIN_FRAME, type CreateIo, type DeviceIo, type IoContext } from '../contract.js';
import type { TapIoOptions } from './control.js';

const LARGEST_FRAME = 65536;
const PI_SIZE = 4;
/** sliver-openvswitch's struct tun_pi { 0, 0x86 } as a little-endian host writes it (module-lived, so its address stays valid). */
const PI_OUT = Buffer.from([0, 0, 0x86, 0]);

class TapIo implements DeviceIo {
  /** Two iovecs each way: the packet-info header (pltap only), then the frame. */
  private readonly rxIovecs = Buffer.alloc(2 * IOVEC_SIZE);
  private readonly txIovecs = Buffer.alloc(2 * IOVEC_SIZE);
  private readonly scrap = Buffer.alloc(LARGEST_FRAME + PI_SIZE);
  private readonly piIn = Buffer.alloc(PI_SIZE);
  private readonly waker: FdWaker;
  private readonly rxBase: [number, number];
  private txBase: [number, number] | null = null;
  /** The frame's iovec (1 with a packet-info header, 0 without) and the header's size. */
  private readonly frameIovec: number;
  private readonly header: number;
  private ready: boolean;

  constructor(
    private readonly context: IoContext,
    private readonly fd: number,
    private readonly options: TapIoOptions,
  ) {
    this.waker = new FdWaker(fd, context.bell);
    this.rxBase = addressHalves(context.rx.bytes);
    this.frameIovec = options.packetInfo ? 1 : 0;
    this.header = options.packetInfo ? PI_SIZE : 0;
    this.ready = options.ready;
    if (options.packetInfo) {
      setIovec(this.rxIovecs, 0, addressHalves(this.piIn), 0, PI_SIZE);
      setIovec(this.txIovecs, 0, addressHalves(PI_OUT), 0, PI_SIZE);
    }
  }

  receive(budget: number): number {
    if (!this.ready) return 0;
    const { rx, counters, ethertype } = this.context;
    const room = Math.min(LARGEST_FRAME, rx.maxRecord);
    let handled = 0;
    for (; handled < budget; handled++) {
      const at = rx.reserve(room);
      const read = at < 0 ? sys.read(this.fd, this.scrap, this.scrap.length) : this.readInto(at, room);
      const length = read - this.header;
      if (read < 0) {
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

  /** readv() of one frame (after its packet-info header, if any) into the RX ring at `at`, reserved for `room` bytes. */
  private readInto(at: number, room: number): number {
    setIovec(this.rxIovecs, this.frameIovec, this.rxBase, at, room);
    return sys.readv(this.fd, this.rxIovecs, this.frameIovec + 1);
  }

  transmit(tx: RingReader, budget: number): number {
    if (!this.ready) return 0;
    const base = (this.txBase ??= addressHalves(tx.bytes));
    let taken = 0;
    for (let length; taken < budget && (length = tx.next()) >= 0; taken++) {
      setIovec(this.txIovecs, this.frameIovec, base, tx.offset, length);
      const written = sys.writev(this.fd, this.txIovecs, this.frameIovec + 1);
      if (written >= 0) {
        if (written !== length + this.header) this.context.counters.txErrors++; // a short write
        continue;
      }
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
    for (let i = 0; i < this.options.txQueueLength && sys.read(this.fd, this.scrap, this.scrap.length) >= 0; i++);
  }

  control(op: string): unknown {
    if (op !== 'ready') throw new NetdevError({ code: 'EOPNOTSUPP', device: this.context.name, call: op, detail: `tap I/O has no control '${op}'` });
    this.ready = true;
    return undefined;
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
  const options = context.options as TapIoOptions;
  return new TapIo(context, options.fd, options);
};
