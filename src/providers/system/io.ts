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
 *   super-frame among them, which the kernel describes as TCP) is counted in rxErrors; a frame the
 *   kernel cannot describe at all (recvmmsg EINVAL) is lost in the kernel, and counted there too.
 * - Receive: recvmmsg batches into a staging area of slots that hold the largest frame a device
 *   can carry (MTU 65535, 802.1Q-tagged, or a GSO frame of up to 64 KiB) after its header; a
 *   frame that does not fit (BIG TCP) is counted in rxErrors, never delivered cut.  Then one copy
 *   per frame into the RX ring, padded to 60 bytes.  Its staging capability leaves the vnet
 *   frames in the staging area for a worker agent (the Switch's), and packetFd shares the socket
 *   (with its vnet headers) with the other ports' workers.
 * - Frames the kernel drops because the socket's receive buffer is full (the worker fell behind)
 *   are read from PACKET_STATISTICS into rxQueueDropped: every few full batches (the queue may be
 *   overflowing), whenever the queue is found empty after frames were received (so the count is
 *   exact once traffic stops), and on demand (control 'readQueueDrops').
 * - Transmit: sendmmsg batches straight from the TX ring: each iovec points into the ring's
 *   shared memory, so frames are not copied in JavaScript.  ENOBUFS/EAGAIN is backpressure: the
 *   frames are put back and the worker retries a millisecond later (AF_PACKET has no event for
 *   "the device queue has room again").  A frame the
 *   kernel refuses (EMSGSIZE, ENETDOWN ...) is counted in txErrors and skipped.
 * - Waiting: when nothing is waiting, a libuv poll handle on the socket (koffi.node.poll, on the
 *   worker's own event loop) rings the worker's bell once it becomes readable.
 * - 802.1Q tags, which the kernel takes out of received frames, are put back from PACKET_AUXDATA
 *   (the header's csum_start and hdr_len move with them).
 * - Frames this socket sends are not received back (PACKET_IGNORE_OUTGOING).  The socket is
 *   made with protocol 0 and given its protocol by bind(), so it never hears another interface.
 */
import { NetdevError } from '../../common/errors.js';
import { insertVlanTag, MAC_ADDRESSES, TPID_8021Q, VLAN_TAG } from '../../common/ethernet.js';
import { boundedSink, SoftwareOffload, type FrameSink } from '../../common/software-offload.js';
import { needsSoftwareOffload, shiftVnetHeader, VNET_HDR_LEN, vnetHeaderProblem } from '../../common/vnet-header.js';
import type { RingReader } from '../../ring/ring.js';
import {
  AF_PACKET, AUXDATA_STATUS, AUXDATA_VLAN_TCI, AUXDATA_VLAN_TPID, CMSG_HEADER, CMSG_LEVEL, CMSG_TYPE, PACKET_AUXDATA,
  TP_STATUS_VLAN_TPID_VALID, TP_STATUS_VLAN_VALID, check, ETH_P_802_2, ETH_P_ALL, errnoName, htons, lastErrno, MSG_DONTWAIT, MSG_TRUNC, PACKET_IGNORE_OUTGOING,
  PACKET_VNET_HDR, SOCK_CLOEXEC, SOCK_NONBLOCK, SOCK_RAW, SOCKADDR_LL_SIZE, SOL_PACKET, SOL_SOCKET, SO_RCVBUF, sys,
} from '../../sys/libc.js';
import { addressHalves, FdWaker, MessageVector, setIovec } from '../../sys/fd-io.js';
import { Netns } from '../../sys/netns.js';
import { MIN_FRAME, type CreateIo, type DeviceIo, type Ethertype, type FrameStaging, type IoContext } from '../contract.js';
import type { SystemIoOptions } from './control.js';

const BATCH = 32;
/** The virtio_net_hdr + ETH_MAX_MTU + Ethernet header + 802.1Q tag = 65563 bytes, rounded up to 64. */
const SLOT = 65600;
const RCVBUF = 4 * 1024 * 1024;
/**
 * While full batches keep coming (the socket may be overflowing), the drop count is read every
 * this many: a getsockopt costs about as much as an empty recvmmsg (0.65 us), once per 256 frames.
 */
const DROPS_READ_EVERY = 8;
/** Control buffer per received frame: one cmsghdr with a struct tpacket_auxdata (CMSG_SPACE(20) = 40). */
const CONTROL_BYTES = 48;
const EAGAIN = 'EAGAIN';
/** recvmmsg calls that fail with EINVAL (one frame lost each) tried in one receive before it gives the round back. */
const EINVAL_RETRIES = 8;

function protocolOf(ethertype: Ethertype): number {
  if (ethertype === 'any') return ETH_P_ALL;
  if (ethertype === '802.2') return ETH_P_802_2;
  return ethertype as number;
}

class PacketIo implements DeviceIo {
  private readonly rxVector = new MessageVector(BATCH, CONTROL_BYTES);
  /** With offloads a TX record is a vnet frame: one iovec; without, the zero header and the frame. */
  private readonly txVector: MessageVector;
  /** Without offloads, the header sent before each frame of a batch: no metadata but hdr_len (see linearize). */
  private readonly txHeaders = Buffer.alloc(BATCH * VNET_HDR_LEN);
  private readonly software = new SoftwareOffload();
  /** The RX ring as SoftwareOffload's sink: no room for a record larger than the ring holds. */
  private readonly ringSink: FrameSink;
  private readonly stagingArea = Buffer.alloc(BATCH * SLOT);
  /** Length of each frame staged last, padded; -1 for a bad one. */
  private readonly stagedLengths = new Int32Array(BATCH);
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
  ) {
    const staging = addressHalves(this.stagingArea);
    for (let i = 0; i < BATCH; i++) setIovec(this.rxVector.iovecWords, i, staging, i * SLOT, SLOT);
    this.ringSink = boundedSink(context.rx);
    this.txVector = new MessageVector(BATCH, 0, context.offloads ? 1 : 2);
    const headers = addressHalves(this.txHeaders);
    if (!context.offloads) for (let i = 0; i < BATCH; i++) setIovec(this.txVector.iovecWords, 2 * i, headers, i * VNET_HDR_LEN, VNET_HDR_LEN);
    this.waker = new FdWaker(fd, context.bell);
    this.staging = {
      receive: (budget) => this.receiveStaged(budget),
      bytes: this.stagingArea,
      offset: (i) => i * SLOT,
      length: (i) => this.stagedLengths[i]!,
      fd,
    };
  }

  receive(budget: number): number {
    const count = this.receiveStaged(budget);
    const { rx, offloads, counters } = this.context;
    const staging = this.stagingArea;
    for (let i = 0; i < count; i++) {
      const length = this.stagedLengths[i]!;
      if (length < 0) continue;
      const from = i * SLOT;
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
    if (!this.software.toPlain(this.stagingArea, from, length, this.ringSink, false)) this.context.counters.rxErrors++;
  }

  private receiveStaged(budget: number): number {
    const want = Math.min(budget, BATCH);
    let count = -1;
    for (let tries = 0; count < 0 && tries < EINVAL_RETRIES; tries++) {
      this.rxVector.resetControl(want);
      count = sys.recvmmsg(this.fd, this.rxVector.headers, want, MSG_DONTWAIT);
      if (count >= 0) break;
      const code = errnoName(lastErrno());
      if (code === 'EINVAL') {
        // The kernel could not describe a frame in a virtio_net_hdr and has dropped it.
        this.context.counters.rxErrors++;
        continue;
      }
      if (code === EAGAIN) {
        // The queue is empty: no frame can be dropped until more arrive, so the count is final for now.
        if (this.dropsUnread) this.readQueueDrops();
        this.waker.waitReadable();
      } else if (code !== 'EINTR' && code !== 'ENETDOWN') this.fail('recvmmsg', code);
      return 0;
    }
    if (count < 0) {
      this.waker.waitReadable(); // frames lost to EINVAL only: more may be queued, and the poll says so at once
      return 0;
    }
    this.dropsUnread = true;
    if (count === BATCH && ++this.fullBatches === DROPS_READ_EVERY) this.readQueueDrops();
    const { counters } = this.context;
    const staging = this.stagingArea;
    for (let i = 0; i < count; i++) {
      const truncated = (this.rxVector.flags(i) & MSG_TRUNC) !== 0;
      const length = truncated ? -1 : this.restoreVlanTag(i, this.rxVector.length(i));
      if (length < VNET_HDR_LEN + MAC_ADDRESSES + 2 || vnetHeaderProblem(staging, i * SLOT, length) !== null) {
        counters.rxErrors++;
        this.stagedLengths[i] = -1;
      } else {
        const padded = length < VNET_HDR_LEN + MIN_FRAME ? VNET_HDR_LEN + MIN_FRAME : length;
        if (padded !== length) staging.fill(0, i * SLOT + length, i * SLOT + padded);
        linearize(staging, i * SLOT, padded); // for the agents that send it on as it is
        this.stagedLengths[i] = padded;
      }
    }
    return count;
  }

  /**
   * The kernel takes the 802.1Q tag out of a received frame and reports it in PACKET_AUXDATA:
   * puts it back after the MAC addresses, as it was on the wire, and moves the header's offsets
   * past it.  Returns the vnet frame's length, or -1 if the tagged frame does not fit its slot.
   */
  private restoreVlanTag(i: number, length: number): number {
    // Read as words (the control buffer and each message's part of it are word-aligned): once per frame.
    const words = this.rxVector.controlWords;
    const at = (i * CONTROL_BYTES) >> 2;
    if (this.rxVector.controlLength(i) < CMSG_HEADER + AUXDATA_VLAN_TPID + 2) return length;
    if (words[at + (CMSG_LEVEL >> 2)] !== SOL_PACKET || words[at + (CMSG_TYPE >> 2)] !== PACKET_AUXDATA) return length;
    const status = words[at + ((CMSG_HEADER + AUXDATA_STATUS) >> 2)]!;
    if ((status & TP_STATUS_VLAN_VALID) === 0 || length < VNET_HDR_LEN + MAC_ADDRESSES) return length;
    if (length + VLAN_TAG > SLOT) return -1;
    const tag = words[at + ((CMSG_HEADER + AUXDATA_VLAN_TCI) >> 2)]!; // tp_vlan_tci, then tp_vlan_tpid (little-endian u16s)
    const tpid = (status & TP_STATUS_VLAN_TPID_VALID) !== 0 ? tag >>> 16 : TPID_8021Q;
    const tagged = insertVlanTag(this.stagingArea, i * SLOT + VNET_HDR_LEN, length - VNET_HDR_LEN, tpid, tag & 0xffff);
    shiftVnetHeader(this.stagingArea, i * SLOT, VLAN_TAG);
    return VNET_HDR_LEN + tagged;
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

  packetFd(): number {
    return check(sys.dupCloexec(this.fd), 'fcntl', 'F_DUPFD_CLOEXEC of the packet socket', this.context.name);
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
    drainSocket(this.fd);
  }

  private fail(call: string, code: string): never {
    throw new NetdevError({ code, device: this.context.name, call, detail: `${call} on the packet socket failed: ${code}` });
  }

  close(): void {
    this.waker.close();
    sys.close(this.fd);
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

/** Reads and discards everything queued on `fd` (MSG_TRUNC: no copy). */
function drainSocket(fd: number): void {
  const scrap = new Uint8Array(1);
  while (sys.recv(fd, scrap, 1, MSG_DONTWAIT | MSG_TRUNC) >= 0);
}

export const createIo: CreateIo = (context) => {
  const options = context.options as SystemIoOptions;
  if (options.netnsPath) Netns.enter(options.netnsPath);
  const protocol = htons(protocolOf(context.ethertype));
  // Protocol 0 until bind: a socket made with a protocol receives that protocol from every
  // interface of the namespace at once, and frames of other interfaces could reach the reader.
  const fd = check(sys.socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), 'socket', 'AF_PACKET socket', context.name);
  try {
    sys.setsockoptInt(fd, SOL_SOCKET, SO_RCVBUF, RCVBUF);
    check(sys.setsockoptInt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, 1), 'setsockopt', 'PACKET_IGNORE_OUTGOING', context.name);
    check(sys.setsockoptInt(fd, SOL_PACKET, PACKET_AUXDATA, 1), 'setsockopt', 'PACKET_AUXDATA', context.name);
    check(sys.setsockoptInt(fd, SOL_PACKET, PACKET_VNET_HDR, 1), 'setsockopt', 'PACKET_VNET_HDR', context.name);
    const address = Buffer.alloc(SOCKADDR_LL_SIZE);
    address.writeUInt16LE(AF_PACKET, 0);
    address.writeUInt16LE(protocol, 2);
    address.writeInt32LE(options.ifindex, 4);
    check(sys.bind(fd, address), 'bind', `bind to ifindex ${options.ifindex}`, context.name);
    check(sys.packetDrops(fd), 'getsockopt', 'PACKET_STATISTICS', context.name); // starts the count from zero
  } catch (error) {
    sys.close(fd);
    throw error;
  }
  return new PacketIo(context, fd);
};
