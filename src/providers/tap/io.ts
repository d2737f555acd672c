/**
 * The tap provider's I/O half (runs in the device's worker) on the tun descriptor the main thread
 * opened.  A tap has no batched syscall: each frame is one readv() straight into the RX ring and
 * one writev() straight from the TX ring (iovecs pointing into the rings' shared memory, so no
 * copy in JavaScript).  The kernel delivers every frame to a tap, so the ethertype filter is
 * applied here.  Nothing waiting: a libuv poll handle rings the worker's bell when the descriptor
 * becomes readable.  Drain reads at most the device's TX queue length, as OVS.
 *
 * The descriptor has IFF_VNET_HDR: every frame read or written carries a 10-byte virtio_net_hdr
 * first.  With offloads (IoContext.offloads) the tap takes TSO and checksum offload
 * (TUNSETOFFLOAD), so a frame read may be a GSO super-frame of up to 64 KiB with a partial
 * checksum; the rings carry the vnet frames as read and written, and a frame read whose header is
 * bad is counted in rxErrors.  Without, TUNSETOFFLOAD 0 makes the kernel segment and checksum
 * every frame before the tap hands it over: the header is read into a scratch buffer and dropped,
 * and a zero header is written before each frame.  A read the kernel refuses with EINVAL (a
 * frame whose GSO type a virtio_net_hdr cannot describe, which the kernel then drops) is counted
 * in rxErrors too.
 *
 * For pltap devices (options.packetInfo) every frame carries the 4-byte struct tun_pi before the
 * virtio_net_hdr: it is read into the scratch header and stripped, and written before each frame
 * as sliver-openvswitch writes it (flags 0, proto 0x86 in host order); a short write is counted in
 * txErrors.  A pltap device moves frames only once finalized (options.ready, or the 'ready'
 * control): until then frames wait in the TX ring and the worker sleeps.
 */
import { NetdevError } from '../../common/errors.js';
import { LARGEST_SUPER_FRAME, VNET_HDR_LEN, vnetHeaderProblem } from '../../common/vnet-header.js';
import type { RingReader } from '../../ring/ring.js';
import { errnoName, IOVEC_SIZE, lastErrno, sys } from '../../sys/libc.js';
import { addressHalves, FdWaker, iovecWords, setIovec } from '../../sys/fd-io.js';
import { matchesEthertype, MIN_FRAME, type CreateIo, type DeviceIo, type IoContext } from '../contract.js';
import { setTunOffloads } from '../linux/tun.js';
import type { TapIoOptions } from './control.js';

const PI_SIZE = 4;
/**
 * What is written before each TX record (module-lived, so their addresses stay valid): the
 * packet-info header (pltap: sliver-openvswitch's struct tun_pi { 0, 0x86 } as a little-endian
 * host writes it), a zero virtio_net_hdr (no offloads: a plain frame), or both.
 */
const PI_OUT = Buffer.from([0, 0, 0x86, 0]);
const NO_OFFLOADS_OUT = Buffer.alloc(VNET_HDR_LEN);
const PI_NO_OFFLOADS_OUT = Buffer.concat([PI_OUT, NO_OFFLOADS_OUT]);

class TapIo implements DeviceIo {
  /** Up to two iovecs each way: the header the rings do not carry (if any), then the record. */
  private readonly rxIovecs = Buffer.alloc(2 * IOVEC_SIZE);
  private readonly txIovecs = Buffer.alloc(2 * IOVEC_SIZE);
  private readonly rxIovecWords = iovecWords(this.rxIovecs);
  private readonly txIovecWords = iovecWords(this.txIovecs);
  private readonly waker: FdWaker;
  private readonly rxBase: [number, number];
  private txBase: [number, number] | null = null;
  /** Bytes before each record on the descriptor, not in the rings: struct tun_pi (pltap), the virtio_net_hdr (no offloads). */
  private readonly header: number;
  /** Scratch for that header on receive. */
  private readonly headerIn: Buffer;
  /** The record's iovec: 1 after a header, 0 without one. */
  private readonly recordIovec: number;
  /** The largest record a frame read can make: a vnet frame of a super-frame with offloads, else the largest Ethernet frame. */
  private readonly largestRecord: number;
  /** Where a frame is read when the RX ring has no room (it is dropped), and what drain() reads into. */
  private readonly scrap: Buffer;
  private ready: boolean;

  constructor(
    private readonly context: IoContext,
    private readonly fd: number,
    private readonly options: TapIoOptions,
  ) {
    this.waker = new FdWaker(fd, context.bell);
    this.rxBase = addressHalves(context.rx.bytes);
    const { offloads } = context;
    this.header = (options.packetInfo ? PI_SIZE : 0) + (offloads ? 0 : VNET_HDR_LEN);
    this.headerIn = Buffer.alloc(this.header);
    this.recordIovec = this.header > 0 ? 1 : 0;
    this.largestRecord = offloads ? VNET_HDR_LEN + LARGEST_SUPER_FRAME : LARGEST_SUPER_FRAME;
    this.scrap = Buffer.alloc(this.header + this.largestRecord);
    this.ready = options.ready;
    if (this.header > 0) {
      const out = options.packetInfo ? (offloads ? PI_OUT : PI_NO_OFFLOADS_OUT) : NO_OFFLOADS_OUT;
      setIovec(this.rxIovecWords, 0, addressHalves(this.headerIn), 0, this.header);
      setIovec(this.txIovecWords, 0, addressHalves(out), 0, this.header);
    }
  }

  receive(budget: number): number {
    if (!this.ready) return 0;
    const { rx, counters, ethertype, offloads } = this.context;
    const room = Math.min(this.largestRecord, rx.maxRecord);
    const lead = offloads ? VNET_HDR_LEN : 0; // the record's vnet header, before its Ethernet frame
    let handled = 0;
    for (; handled < budget; handled++) {
      const at = rx.reserve(room);
      const read = at < 0 ? sys.read(this.fd, this.scrap, this.scrap.length) : this.readInto(at, room);
      if (read < 0) {
        const code = errnoName(lastErrno());
        if (code === 'EINVAL') {
          counters.rxErrors++; // a frame the kernel could not describe in a virtio_net_hdr, dropped there
          continue;
        }
        if (code === 'EAGAIN') this.waker.waitReadable();
        else if (code !== 'EINTR') this.fail('read', code);
        break;
      }
      if (at < 0) {
        rx.countDrops(1);
        continue;
      }
      const length = read - this.header;
      if (length >= room && room < this.largestRecord) {
        counters.rxErrors++; // possibly cut to fit the ring: never delivered
        continue;
      }
      if (offloads && vnetHeaderProblem(rx.bytes, at, length) !== null) {
        counters.rxErrors++;
        continue;
      }
      if (!matchesEthertype(ethertype, rx.bytes, at + lead, length - lead)) continue;
      const padded = length < lead + MIN_FRAME ? lead + MIN_FRAME : length;
      if (padded !== length) rx.bytes.fill(0, at + length, at + padded);
      rx.commit(padded);
    }
    return handled;
  }

  /** readv() of one frame (after the header the ring does not carry, if any) into the RX ring at `at`, reserved for `room` bytes. */
  private readInto(at: number, room: number): number {
    setIovec(this.rxIovecWords, this.recordIovec, this.rxBase, at, room);
    return sys.readv(this.fd, this.rxIovecs, this.recordIovec + 1);
  }

  transmit(tx: RingReader, budget: number): number {
    if (!this.ready) return 0;
    const base = (this.txBase ??= addressHalves(tx.bytes));
    let taken = 0;
    for (let length; taken < budget && (length = tx.next()) >= 0; taken++) {
      setIovec(this.txIovecWords, this.recordIovec, base, tx.offset, length);
      const written = sys.writev(this.fd, this.txIovecs, this.recordIovec + 1);
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
      this.context.counters.txErrors++; // refused for good (EIO while down, EINVAL for a header the kernel refuses ...): counted, skipped
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
  setTunOffloads(options.fd, context.offloads, context.name);
  return new TapIo(context, options.fd, options);
};
