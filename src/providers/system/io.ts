/**
 * The system provider's I/O half (runs in the device's worker): an AF_PACKET raw socket bound to
 * the device, in the device's network namespace (the worker enters it for good).
 *
 * - Offload metadata: the socket has PACKET_VNET_HDR, so every frame received and sent carries a
 *   10-byte virtio_net_hdr before it, and frames may be GSO super-frames (a veth with its default
 *   offloads hands over TCP segments of up to 64 KiB, with partial checksums).  With offloads
 *   (IoContext.offloads) the rings carry these vnet frames as they are; without, each received
 *   super-frame is segmented and each partial checksum finished here (SoftwareOffload), and each
 *   frame sent goes with a zero header.  A frame whose header is bad (vnetHeaderProblem: a UDP-tunnel
 *   super-frame among them, which the kernel describes as TCP) is counted in rxErrors.
 * - Receive: a TPACKET_V2 receive ring mapped into the worker (RxRing, rx-ring.ts): the kernel
 *   writes each frame, after its vnet header, into shared pages, and the worker reads it there
 *   with no system call per batch; a frame too large for a ring frame comes whole through the
 *   socket's queue into an overflow slot, and one too large for that (BIG TCP) is counted in
 *   rxErrors, never delivered cut.  Each frame is checked and padded to 60 bytes in place, then
 *   copied once into the RX ring.  Its staging capability leaves the vnet frames where they lie
 *   for a worker agent (the Switch's), and sendingSocket makes a socket for the other ports'
 *   workers to send on (with vnet headers).
 * - Frames the kernel drops because the ring is full (the worker fell behind) are read from
 *   PACKET_STATISTICS into rxQueueDropped: every few full batches (the ring may be overflowing),
 *   whenever the ring is found empty after frames were received (so the count is exact once
 *   traffic stops), and on demand (control 'readQueueDrops').
 * - Transmit: sendmmsg batches straight from the TX ring: each iovec points into the ring's
 *   shared memory, so frames are not copied in JavaScript.  ENOBUFS/EAGAIN is backpressure: the
 *   frames are put back and the worker retries a millisecond later (AF_PACKET has no event for
 *   "the device queue has room again").  A frame the
 *   kernel refuses (EMSGSIZE, ENETDOWN ...) is counted in txErrors and skipped.
 * - Waiting: when nothing is waiting, a libuv poll handle on the socket (koffi.node.poll, on the
 *   worker's own event loop) rings the worker's bell once it becomes readable (a frame in the
 *   ring).  The socket's pending error (ENETDOWN when the device goes down) is cleared first.
 * - Frames this socket sends are not received back (PACKET_IGNORE_OUTGOING).  The socket is
 *   made with protocol 0 and given its protocol by bind(), so it never hears another interface.
 */
import { NetdevError } from '../../common/errors.js';
import { MAC_ADDRESSES } from '../../common/ethernet.js';
import { boundedSink, SoftwareOffload, type FrameSink } from '../../common/software-offload.js';
import { needsSoftwareOffload, VNET_HDR_LEN, vnetHeaderProblem } from '../../common/vnet-header.js';
import { RxRing } from './rx-ring.js';
import type { RingReader } from '../../ring/ring.js';
import {
  AF_PACKET, check, ETH_P_802_2, ETH_P_ALL, errnoName, htons, lastErrno, MSG_DONTWAIT, PACKET_IGNORE_OUTGOING,
  PACKET_VNET_HDR, SOCK_CLOEXEC, SOCK_NONBLOCK, SOCK_RAW, SOCKADDR_LL_SIZE, SOL_PACKET, SOL_SOCKET, SO_RCVBUF, SO_RCVBUFFORCE, sys,
} from '../../sys/libc.js';
import { addressHalves, FdWaker, MessageVector, setIovec } from '../../sys/fd-io.js';
import { Netns } from '../../sys/netns.js';
import { MIN_FRAME, type CreateIo, type DeviceIo, type Ethertype, type FrameStaging, type IoContext } from '../contract.js';
import type { SystemIoOptions } from './control.js';

const BATCH = 32;
/** The socket's own queue holds only the frames too large for a ring frame (RxRing), until the next batch reads them: 4 MiB, some 60 GSO super-frames. */
const RCVBUF = 4 * 1024 * 1024;
/**
 * While full batches keep coming (the socket may be overflowing), the drop count is read every
 * this many: a getsockopt costs about 0.65 us, once per 256 frames.
 */
const DROPS_READ_EVERY = 8;
const EAGAIN = 'EAGAIN';

function protocolOf(ethertype: Ethertype): number {
  if (ethertype === 'any') return ETH_P_ALL;
  if (ethertype === '802.2') return ETH_P_802_2;
  return ethertype as number;
}

class PacketIo implements DeviceIo {
  /** With offloads a TX record is a vnet frame: one iovec; without, the zero header and the frame. */
  private readonly txVector: MessageVector;
  /** Without offloads, the header sent before each frame of a batch: no metadata but hdr_len (see linearize). */
  private readonly txHeaders = Buffer.alloc(BATCH * VNET_HDR_LEN);
  private readonly software = new SoftwareOffload();
  /** The RX ring as SoftwareOffload's sink: no room for a record larger than the ring holds. */
  private readonly ringSink: FrameSink;
  /** The TX ring's record region address, learned on the first transmit. */
  private txBase: [number, number] | null = null;
  private readonly waker: FdWaker;
  readonly staging: FrameStaging;
  /** Frames were received since the socket's drop count was last read. */
  private dropsUnread = false;
  /** Full batches received since then. */
  private fullBatches = 0;

  constructor(
    private readonly context: IoContext,
    private readonly fd: number,
    private readonly ring: RxRing,
  ) {
    this.ringSink = boundedSink(context.rx);
    this.txVector = new MessageVector(BATCH, context.offloads ? 1 : 2);
    const headers = addressHalves(this.txHeaders);
    if (!context.offloads) for (let i = 0; i < BATCH; i++) setIovec(this.txVector.iovecWords, 2 * i, headers, i * VNET_HDR_LEN, VNET_HDR_LEN);
    this.waker = new FdWaker(fd, context.bell);
    this.staging = {
      receive: (budget) => this.receiveStaged(budget),
      bytes: this.ring.bytes,
      offset: (i) => this.ring.offsets[i]!,
      length: (i) => this.ring.lengths[i]!,
      fd,
    };
  }

  receive(budget: number): number {
    const count = this.receiveStaged(budget);
    const { rx, offloads, counters } = this.context;
    const { bytes: staging, offsets, lengths } = this.ring;
    for (let i = 0; i < count; i++) {
      const length = lengths[i]!;
      if (length < 0) continue;
      const from = offsets[i]!;
      if (!offloads && needsSoftwareOffload(staging, from)) {
        this.finishInSoftware(from, length);
        continue;
      }
      // With offloads the record is the vnet frame; without, the frame after its (empty) header.
      const skip = offloads ? 0 : VNET_HDR_LEN;
      if (length - skip > rx.maxRecord) {
        counters.rxErrors++; // larger than the ring can hold: never delivered cut
        continue;
      }
      const at = rx.reserve(length - skip);
      if (at < 0) {
        rx.countDrops(1);
        continue;
      }
      rx.bytes.set(staging.subarray(from + skip, from + length), at);
      rx.commit(length - skip);
    }
    const { software } = this;
    if (software.dropped !== 0) rx.countDrops(software.dropped);
    counters.rxErrors += software.tooLarge; // larger than the ring can hold: never delivered cut
    counters.rxSegmented += software.segmented;
    counters.rxChecksummed += software.checksummed;
    software.dropped = software.tooLarge = software.segmented = software.checksummed = 0;
    return count;
  }

  /**
   * Segments the super-frame (or finishes the partial checksum) staged at `from` into plain frames
   * in the RX ring; one it cannot make plain (headers it cannot segment, a checksum other than
   * TCP's or UDP's) is counted in rxErrors, and so is one larger than the ring can hold.
   */
  private finishInSoftware(from: number, length: number): void {
    if (!this.software.toPlain(this.ring.bytes, from, length, this.ringSink, false)) this.context.counters.rxErrors++;
  }

  private receiveStaged(budget: number): number {
    const { ring } = this;
    const count = ring.receive(Math.min(budget, BATCH), this.context.counters);
    if (count === 0) {
      // The ring is empty: no frame can be dropped until more arrive, so the count is final for now.
      if (this.dropsUnread) this.readQueueDrops();
      this.clearSocketError();
      this.waker.waitReadable();
      return 0;
    }
    this.dropsUnread = true;
    if (count === BATCH && ++this.fullBatches === DROPS_READ_EVERY) this.readQueueDrops();
    const { counters } = this.context;
    const { bytes, offsets, lengths } = ring;
    for (let i = 0; i < count; i++) {
      const length = lengths[i]!;
      if (length < 0) continue; // lost, and counted
      const at = offsets[i]!;
      if (length < VNET_HDR_LEN + MAC_ADDRESSES + 2 || vnetHeaderProblem(bytes, at, length) !== null) {
        counters.rxErrors++;
        lengths[i] = -1;
      } else {
        const padded = length < VNET_HDR_LEN + MIN_FRAME ? VNET_HDR_LEN + MIN_FRAME : length;
        if (padded !== length) bytes.fill(0, at + length, at + padded);
        linearize(bytes, at, padded); // for the agents that send it on as it is
        lengths[i] = padded;
      }
    }
    return count;
  }

  /**
   * Reads (and so clears) the socket's pending error before it waits: the kernel sets ENETDOWN
   * when the device goes down (or is deleted), or is down at bind, and a pending error would fail
   * the next send and keep poll(2) reporting POLLERR.  ENETDOWN is no error of this socket's (a
   * deleted device ends the worker through the main thread's notifier); any other ends the worker.
   */
  private clearSocketError(): void {
    const pending = sys.socketError(this.fd);
    if (pending < 0) this.fail('getsockopt', errnoName(lastErrno()));
    if (pending !== 0 && errnoName(pending) !== 'ENETDOWN') this.fail('receive', errnoName(pending));
  }

  /** Adds the frames the kernel dropped from the socket's queue since the last read to rxQueueDropped. */
  private readQueueDrops(): void {
    const drops = sys.packetDrops(this.fd);
    if (drops < 0) this.fail('getsockopt', errnoName(lastErrno()));
    this.context.counters.rxQueueDropped += drops;
    this.dropsUnread = false;
    this.fullBatches = 0;
  }

  /** 'readQueueDrops': brings rxQueueDropped up to date (the worker publishes the counters after a control call). */
  control(op: string): unknown {
    if (op !== 'readQueueDrops') throw new NetdevError({ code: 'EOPNOTSUPP', device: this.context.name, call: op, detail: `system I/O has no control '${op}'` });
    this.readQueueDrops();
    return undefined;
  }

  /**
   * A socket of its own, send-only, rather than this one's: a frame sent on a socket wakes, when
   * it is freed, whoever waits on that socket (sock_def_write_space), and this worker waits on this
   * one whenever it is idle: a cost on every frame other workers send through the port.
   */
  sendingSocket(): number {
    return openSendingSocket(this.context.name, (this.context.options as SystemIoOptions).ifindex);
  }

  transmit(tx: RingReader, budget: number): number {
    let taken = 0;
    const base = (this.txBase ??= addressHalves(tx.bytes));
    while (taken < budget) {
      let queued = 0;
      const mark = tx.mark();
      const { offloads } = this.context;
      for (let length; queued < BATCH && taken + queued < budget && (length = tx.next()) >= 0; queued++) {
        if (offloads) {
          linearize(tx.bytes, tx.offset, length);
          setIovec(this.txVector.iovecWords, queued, base, tx.offset, length);
        } else {
          linearize(this.txHeaders, queued * VNET_HDR_LEN, VNET_HDR_LEN + length);
          setIovec(this.txVector.iovecWords, 2 * queued + 1, base, tx.offset, length);
        }
      }
      if (queued === 0) break;
      const sent = sys.sendmmsg(this.fd, this.txVector.headers, queued, MSG_DONTWAIT);
      const code = sent < 0 ? errnoName(lastErrno()) : '';
      const accepted = sent < 0 ? 0 : sent;
      // A frame only partly sent is OVS's EMSGSIZE: counted as an error, not sent again.
      for (let i = 0; i < accepted; i++) if (this.txVector.length(i) !== this.txVector.messageBytes(i)) this.context.counters.txErrors++;
      if (accepted < queued) {
        // The frames not accepted stay in the ring, to be sent again (or, the first, counted below).
        tx.rewind(mark, queued);
        for (let i = 0; i < accepted; i++) tx.next();
      }
      taken += accepted;
      if (sent >= 0 && sent === queued) continue;
      if (sent < 0 && (code === EAGAIN || code === 'ENOBUFS' || code === 'EINTR')) {
        // The device queue is full (AF_PACKET says ENOBUFS and has no event for "room again"):
        // the frames wait in the ring, and the worker retries in a millisecond.
        this.waker.retryLater();
        break;
      }
      if (sent < 0) {
        // The first frame was refused for good: count it and go on with the next.
        tx.next();
        taken++;
        this.context.counters.txErrors++;
      }
    }
    return taken;
  }

  drain(): void {
    this.ring.drain();
  }

  private fail(call: string, code: string): never {
    throw new NetdevError({ code, device: this.context.name, call, detail: `${call} on the packet socket failed: ${code}` });
  }

  close(): void {
    this.waker.close();
    sys.close(this.fd);
    this.ring.close();
  }
}

/**
 * Gives the vnet frame of `length` bytes at bytes[at ..], if it is not a super-frame, the hdr_len
 * of its whole frame: a packet socket copies hdr_len bytes into the socket buffer's linear part
 * and puts the rest in page fragments, and the kernel hands over hdr_len 0 for such frames, which
 * sent back as they are would cost a page per frame.  A super-frame keeps the kernel's hdr_len.
 */
function linearize(bytes: Uint8Array, at: number, length: number): void {
  if (bytes[at + 1] !== 0) return;
  const frame = Math.min(length - VNET_HDR_LEN, 0xffff); // at most the frame's length, as the kernel checks
  bytes[at + 2] = frame & 0xff;
  bytes[at + 3] = frame >> 8;
}

/** struct sockaddr_ll for binding to device `ifindex` with `protocol` (network order). */
function linkAddress(protocol: number, ifindex: number): Buffer {
  const address = Buffer.alloc(SOCKADDR_LL_SIZE);
  address.writeUInt16LE(AF_PACKET, 0);
  address.writeUInt16LE(protocol, 2);
  address.writeInt32LE(ifindex, 4);
  return address;
}

/** A packet socket bound to device `ifindex` with protocol 0 (it takes no frames) and vnet headers: for sending only. */
function openSendingSocket(name: string, ifindex: number): number {
  const fd = check(sys.socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), 'socket', 'AF_PACKET socket for sending', name);
  try {
    check(sys.setsockoptInt(fd, SOL_PACKET, PACKET_VNET_HDR, 1), 'setsockopt', 'PACKET_VNET_HDR', name);
    check(sys.bind(fd, linkAddress(0, ifindex)), 'bind', `bind to ifindex ${ifindex}`, name);
  } catch (error) {
    sys.close(fd);
    throw error;
  }
  return fd;
}

export const createIo: CreateIo = (context) => {
  const options = context.options as SystemIoOptions;
  if (options.netnsPath) Netns.enter(options.netnsPath);
  const protocol = htons(protocolOf(context.ethertype));
  // Protocol 0 until bind: a socket made with a protocol receives that protocol from every
  // interface of the namespace at once, and frames of other interfaces could reach the reader.
  const fd = check(sys.socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), 'socket', 'AF_PACKET socket', context.name);
  let ring: RxRing | undefined;
  try {
    // Past net.core.rmem_max (208 KiB on stock kernels: room for 3 super-frames) where the process may.
    if (sys.setsockoptInt(fd, SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF) < 0) sys.setsockoptInt(fd, SOL_SOCKET, SO_RCVBUF, RCVBUF);
    check(sys.setsockoptInt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, 1), 'setsockopt', 'PACKET_IGNORE_OUTGOING', context.name);
    check(sys.setsockoptInt(fd, SOL_PACKET, PACKET_VNET_HDR, 1), 'setsockopt', 'PACKET_VNET_HDR', context.name);
    // The ring before bind: the first frame the socket takes lands in it.
    ring = new RxRing(fd, BATCH, context.name);
    check(sys.bind(fd, linkAddress(protocol, options.ifindex)), 'bind', `bind to ifindex ${options.ifindex}`, context.name);
    check(sys.packetDrops(fd), 'getsockopt', 'PACKET_STATISTICS', context.name); // starts the count from zero
  } catch (error) {
    sys.close(fd);
    ring?.close();
    throw error;
  }
  return new PacketIo(context, fd, ring);
};
