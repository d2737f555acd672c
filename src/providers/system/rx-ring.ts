/**
 * The system I/O half's receive path: a TPACKET_V2 receive ring (PACKET_RX_RING) of the packet
 * socket, mapped into the worker, so that the kernel writes each frame straight into memory this
 * thread reads, with no system call per batch.  The socket must have PACKET_VNET_HDR already: the
 * kernel then writes each frame's virtio_net_hdr just before its MAC header, so a frame is read in
 * place as a vnet frame.
 *
 * - Ring frames are RING_FRAME bytes; a frame too large for one (a GSO super-frame, a jumbo frame)
 *   is cut short in the ring and, with PACKET_COPY_THRESH, also queued whole on the socket
 *   (TP_STATUS_COPY); those are read with recvmmsg, in ring order, into overflow slots that hold
 *   the largest frame a device can carry.  The ring and the slots are one mapping (`bytes`),
 *   overflow pages touched only when used.
 * - Frames are held (TP_STATUS_USER) from one receive() to the next, so that a worker agent can
 *   send them on from where they lie; the next receive() gives them back to the kernel first.
 * - 802.1Q tags, which the kernel takes out of frames, are put back from the ring frame's header
 *   (the vnet header's csum_start and hdr_len move with them).
 * - A frame the kernel had no room for (ring full), or could not describe in a vnet header, is
 *   counted by the kernel in PACKET_STATISTICS; one cut short without a copy (the socket's queue
 *   for copies full) is counted here in rxQueueDropped.
 */
import koffi from 'koffi';
import { NetdevError } from '../../common/errors.js';
import { insertVlanTag, MAC_ADDRESSES, TPID_8021Q, VLAN_TAG } from '../../common/ethernet.js';
import { shiftVnetHeader, VNET_HDR_LEN } from '../../common/vnet-header.js';
import { addressHalves, MessageVector, setIovec } from '../../sys/fd-io.js';
import {
  check, errnoError, errnoName, lastErrno, MAP_FAILED, MMSGHDR_SIZE, MSG_DONTWAIT, MSG_TRUNC, PACKET_COPY_THRESH, PACKET_RX_RING, PACKET_VERSION, SOL_PACKET,
  sys, TP_STATUS_COPY, TP_STATUS_USER, TP_STATUS_VLAN_TPID_VALID, TP_STATUS_VLAN_VALID, TPACKET_V2,
} from '../../sys/libc.js';
import type { CounterBatch } from '../../ring/device-shared.js';

/** Bytes per ring frame: the tpacket2_hdr, the sockaddr_ll, the vnet header and a 1518-byte tagged frame fit (the frame starts at byte 76). */
export const RING_FRAME = 2048;
/** Bytes per ring block (frames never cross one): an order-4 allocation in the kernel. */
const RING_BLOCK = 64 * 1024;
/** 2048 frames: 5 ms of 64-byte frames at 0.4 M frames/s. */
const RING_BYTES = 4 * 1024 * 1024;
const FRAMES_PER_BLOCK = RING_BLOCK / RING_FRAME;
const RING_FRAMES = RING_BYTES / RING_FRAME;
/** The virtio_net_hdr + ETH_MAX_MTU + Ethernet header + 802.1Q tag = 65563 bytes, rounded up to 64. */
export const OVERFLOW_SLOT = 65600;
/** struct tpacket2_hdr offsets: tp_status, tp_len, tp_snaplen, tp_mac (u16), tp_vlan_tci (u16) and tp_vlan_tpid (u16). */
const TP_LEN = 4;
const TP_SNAPLEN = 8;
const TP_MAC = 12;
const TP_VLAN = 24;
/** TPACKET2_HDRLEN: the tpacket2_hdr and the sockaddr_ll after it; a frame's vnet header may be moved back as far as this. */
const TPACKET2_HDRLEN = 52;
/**
 * x86-64 keeps loads in order with loads and stores with stores (TSO), so plain accesses to
 * tp_status read frames and give them back correctly there as long as V8 emits them in program
 * order and reads memory each time: not a language guarantee (V8 may assume a non-shared buffer is
 * not changed by another thread), but what V8 does, each status read being separated from the last
 * by stores and FFI calls.  They cost a tenth of an Atomics call (about 20 ns in Node 20, not
 * inlined); other CPUs get Atomics' ordering.
 */
const IN_ORDER = process.arch === 'x64';
/** A ring entry whose frame waits to be read from the socket (TP_STATUS_COPY). */
const PENDING = -2;
/** Pending socket errors one readCopies() clears and reads past before it gives up. */
const PENDING_ERRORS = 8;
/** Bytes of a copy compared with the start of the frame its ring entry holds. */
const MATCH_BYTES = 32;
/** Where drain() reads each copy it discards (MSG_TRUNC: nothing is copied). */
const DISCARD = new Uint8Array(1);

export class RxRing {
  /** The ring, then `batch` overflow slots. */
  readonly bytes: Uint8Array;
  /** Where frame i of the last receive() starts in `bytes` (its vnet header), and its length (-1: lost, counted). */
  readonly offsets: Int32Array;
  readonly lengths: Int32Array;
  private readonly words: Int32Array;
  private readonly mapping: unknown;
  private readonly mappedBytes: number;
  /** The next ring frame the kernel fills (and this thread reads), by number. */
  private head = 0;
  /** Ring frames (byte offsets) held since the last receive(), and how many. */
  private readonly held: Int32Array;
  private heldCount = 0;
  /** For the frames read from the socket: which frame of the batch each is, and its ring entry's status and VLAN word. */
  private readonly copyOf: Int32Array;
  private readonly copyStatus: Int32Array;
  private readonly copyVlan: Int32Array;
  /** Where the start of each one's frame lies in the ring, to be matched with what the socket gives. */
  private readonly copyFrame: Int32Array;
  private readonly copyVector: MessageVector;

  /** Sets PACKET_VERSION, PACKET_COPY_THRESH and PACKET_RX_RING on `fd` (PACKET_VNET_HDR already set) and maps the ring. */
  constructor(
    private readonly fd: number,
    batch: number,
    private readonly device: string,
  ) {
    check(sys.setsockoptInt(fd, SOL_PACKET, PACKET_VERSION, TPACKET_V2), 'setsockopt', 'PACKET_VERSION TPACKET_V2', device);
    check(sys.setsockoptInt(fd, SOL_PACKET, PACKET_COPY_THRESH, 1), 'setsockopt', 'PACKET_COPY_THRESH', device);
    const request = Uint32Array.of(RING_BLOCK, RING_BYTES / RING_BLOCK, RING_FRAME, RING_FRAMES);
    check(sys.setsockopt(fd, SOL_PACKET, PACKET_RX_RING, request), 'setsockopt', 'PACKET_RX_RING', device);
    this.mappedBytes = RING_BYTES + batch * OVERFLOW_SLOT;
    const region = sys.mmapAnonymous(this.mappedBytes);
    if (koffi.address(region) === MAP_FAILED) throw errnoErrorOf('mmap', 'the receive ring and its overflow slots', device);
    if (koffi.address(sys.mmapSocketAt(region, RING_BYTES, fd)) === MAP_FAILED) {
      const error = errnoErrorOf('mmap', 'PACKET_RX_RING', device);
      sys.munmap(region, this.mappedBytes);
      throw error;
    }
    this.mapping = region;
    try {
      this.bytes = new Uint8Array(koffi.view(region as never, this.mappedBytes));
    } catch (error) {
      sys.munmap(region, this.mappedBytes); // the ring's mapping would keep the socket alive
      throw error;
    }
    this.words = new Int32Array(this.bytes.buffer, 0, RING_BYTES >> 2);
    this.offsets = new Int32Array(batch);
    this.lengths = new Int32Array(batch);
    this.held = new Int32Array(batch);
    this.copyOf = new Int32Array(batch);
    this.copyStatus = new Int32Array(batch);
    this.copyVlan = new Int32Array(batch);
    this.copyFrame = new Int32Array(batch);
    this.copyVector = new MessageVector(batch);
    const base = addressHalves(this.bytes);
    for (let i = 0; i < batch; i++) setIovec(this.copyVector.iovecWords, i, base, RING_BYTES + i * OVERFLOW_SLOT, OVERFLOW_SLOT);
  }

  /**
   * Gives the frames of the last receive() back to the kernel, then takes up to `want` (at most
   * `batch`) frames: frame i is bytes[offsets[i] ..] of lengths[i] bytes, a vnet frame with its
   * VLAN tag put back, until the next receive() or drain().  Returns how many (0: the ring is empty).
   */
  receive(want: number, counters: CounterBatch): number {
    this.release();
    const { words, bytes } = this;
    let count = 0;
    let copies = 0;
    while (count < want) {
      const at = frameOffset(this.head);
      const status = IN_ORDER ? words[at >> 2]! : Atomics.load(words, at >> 2);
      if ((status & TP_STATUS_USER) === 0) break;
      this.head = this.head + 1 === RING_FRAMES ? 0 : this.head + 1;
      this.held[this.heldCount++] = at;
      const vlan = words[(at + TP_VLAN) >> 2]!;
      if ((status & TP_STATUS_COPY) !== 0) {
        this.copyFrame[copies] = at + (bytes[at + TP_MAC]! | (bytes[at + TP_MAC + 1]! << 8));
        this.copyOf[copies] = count;
        this.copyStatus[copies] = status;
        this.copyVlan[copies++] = vlan;
        this.lengths[count++] = PENDING;
        continue;
      }
      const snap = words[(at + TP_SNAPLEN) >> 2]!;
      if (snap < words[(at + TP_LEN) >> 2]!) {
        counters.rxQueueDropped++; // cut short, and no room on the socket's queue for the whole frame
        this.lengths[count++] = -1;
        continue;
      }
      let from = at + (bytes[at + TP_MAC]! | (bytes[at + TP_MAC + 1]! << 8)) - VNET_HDR_LEN;
      let length = VNET_HDR_LEN + snap;
      if ((status & TP_STATUS_VLAN_VALID) !== 0 && length >= VNET_HDR_LEN + MAC_ADDRESSES) {
        if (from - VLAN_TAG < at + TPACKET2_HDRLEN) {
          counters.rxErrors++; // no room before the frame: cannot happen with the kernel's layout
          this.lengths[count++] = -1;
          continue;
        }
        // The vnet header and the MAC addresses move back by the tag, which goes after them.
        bytes.copyWithin(from - VLAN_TAG, from, from + VNET_HDR_LEN + MAC_ADDRESSES);
        from -= VLAN_TAG;
        writeTag(bytes, from + VNET_HDR_LEN + MAC_ADDRESSES, status, vlan);
        shiftVnetHeader(bytes, from, VLAN_TAG);
        length += VLAN_TAG;
      }
      this.offsets[count] = from;
      this.lengths[count++] = length;
    }
    if (copies > 0) this.readCopies(copies, counters);
    return count;
  }

  /**
   * Reads the `copies` frames the kernel queued on the socket for ring entries marked
   * TP_STATUS_COPY, in ring order, into the overflow slots.  recvmmsg reports the socket's pending
   * error (ENETDOWN: the device went down meanwhile) before it takes anything, and clears it: the
   * read is tried again.  A copy the kernel could not give a vnet header (EINVAL; it has dropped
   * it) is counted in rxErrors.  Copies missing from the queue, which the kernel never allows (it
   * queues each before it marks its entry), end the worker rather than let every later copy be
   * matched with the wrong entry; so does a copy that is not the frame its entry begins with.
   */
  private readCopies(copies: number, counters: CounterBatch): void {
    const vector = this.copyVector;
    let done = 0;
    let errors = 0;
    while (done < copies) {
      const headers = done === 0 ? vector.headers : vector.headers.subarray(done * MMSGHDR_SIZE);
      const got = sys.recvmmsg(this.fd, headers, copies - done, MSG_DONTWAIT);
      if (got > 0) {
        for (let j = done; j < done + got; j++) this.placeCopy(j, counters);
        done += got;
        continue;
      }
      const code = got === 0 ? 'EAGAIN' : errnoName(lastErrno());
      if (code === 'EINTR') continue;
      if (code === 'EINVAL') {
        counters.rxErrors++;
        this.lengths[this.copyOf[done++]!] = -1;
        continue;
      }
      // Another error was the socket's pending one (ENETDOWN: the device went down meanwhile),
      // reported, and cleared, before anything was taken: read again.
      if (code !== 'EAGAIN' && ++errors <= PENDING_ERRORS) continue;
      throw new NetdevError({
        code: code === 'EAGAIN' ? 'EIO' : code,
        device: this.device,
        call: 'recvmmsg',
        detail: `${copies - done} frames too large for the receive ring could not be read from the socket's queue (${code})`,
      });
    }
  }

  /** Frame `j` read from the socket into overflow slot j: its place in the batch, its VLAN tag put back. */
  private placeCopy(j: number, counters: CounterBatch): void {
    const i = this.copyOf[j]!;
    const from = RING_BYTES + j * OVERFLOW_SLOT;
    let length = this.copyVector.length(j);
    const status = this.copyStatus[j]!;
    if ((this.copyVector.flags(j) & MSG_TRUNC) !== 0 || ((status & TP_STATUS_VLAN_VALID) !== 0 && length + VLAN_TAG > OVERFLOW_SLOT)) {
      counters.rxErrors++; // larger than a device can carry (BIG TCP): never delivered cut
      this.lengths[i] = -1;
      return;
    }
    const { bytes } = this;
    const ring = this.copyFrame[j]!;
    for (let k = 0; k < MATCH_BYTES && k < length - VNET_HDR_LEN; k++) {
      if (bytes[ring + k] !== bytes[from + VNET_HDR_LEN + k]) {
        throw new NetdevError({ code: 'EIO', device: this.device, call: 'recvmmsg', detail: 'a frame read from the socket\'s queue is not the one its receive ring entry begins with' });
      }
    }
    if ((status & TP_STATUS_VLAN_VALID) !== 0 && length >= VNET_HDR_LEN + MAC_ADDRESSES) {
      const vlan = this.copyVlan[j]!;
      length = VNET_HDR_LEN + insertVlanTag(this.bytes, from + VNET_HDR_LEN, length - VNET_HDR_LEN, tpidOf(status, vlan), vlan & 0xffff);
      shiftVnetHeader(this.bytes, from, VLAN_TAG);
    }
    this.offsets[i] = from;
    this.lengths[i] = length;
  }

  /** Gives the frames held back to the kernel. */
  private release(): void {
    const { words, held } = this;
    if (IN_ORDER) for (let i = 0; i < this.heldCount; i++) words[held[i]! >> 2] = 0;
    else for (let i = 0; i < this.heldCount; i++) Atomics.store(words, held[i]! >> 2, 0);
    this.heldCount = 0;
  }

  /**
   * Gives back every frame in the ring, held or waiting, and discards the whole frame queued on
   * the socket for each one marked TP_STATUS_COPY (and only those: a frame another CPU is still
   * writing may have its copy queued already, for the next receive() to read).
   */
  drain(): void {
    this.release();
    const { words } = this;
    for (;;) {
      const at = frameOffset(this.head) >> 2;
      const status = IN_ORDER ? words[at]! : Atomics.load(words, at);
      if ((status & TP_STATUS_USER) === 0) break;
      if ((status & TP_STATUS_COPY) !== 0) sys.recv(this.fd, DISCARD, 1, MSG_DONTWAIT | MSG_TRUNC);
      if (IN_ORDER) words[at] = 0;
      else Atomics.store(words, at, 0);
      this.head = this.head + 1 === RING_FRAMES ? 0 : this.head + 1;
    }
  }

  /** Unmaps the ring and the slots; nothing is called after it. */
  close(): void {
    sys.munmap(this.mapping, this.mappedBytes);
  }
}

/** Byte offset of ring frame `n` (frames fill each block from its start, and never cross one). */
function frameOffset(n: number): number {
  const block = (n / FRAMES_PER_BLOCK) | 0;
  return block * RING_BLOCK + (n - block * FRAMES_PER_BLOCK) * RING_FRAME;
}

/** The tag's TPID: the ring header's tp_vlan_tpid (the VLAN word's high half) if the kernel says it is valid, else 802.1Q. */
function tpidOf(status: number, vlan: number): number {
  return (status & TP_STATUS_VLAN_TPID_VALID) !== 0 ? vlan >>> 16 : TPID_8021Q;
}

/** Writes the 802.1Q tag of ring header `status` and VLAN word `vlan` (tp_vlan_tci, tp_vlan_tpid) at bytes[at ..]. */
function writeTag(bytes: Uint8Array, at: number, status: number, vlan: number): void {
  const tpid = tpidOf(status, vlan);
  bytes[at] = tpid >> 8;
  bytes[at + 1] = tpid & 0xff;
  bytes[at + 2] = (vlan >> 8) & 0xff;
  bytes[at + 3] = vlan & 0xff;
}

function errnoErrorOf(call: string, what: string, device: string): Error {
  return errnoError(lastErrno(), call, what, device);
}
