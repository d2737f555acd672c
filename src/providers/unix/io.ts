/**
 * The unix provider's I/O half (runs in the device's worker): frames as AF_UNIX SOCK_SEQPACKET
 * messages, one frame per message, between this device and other processes.
 *
 * - listen: binds the socket path (a stale socket there is replaced; any other file is refused)
 *   and accepts any number of peers.  A frame sent goes to every peer; frames from every peer are
 *   received.
 * - connect: connects to the path, and when the peer goes away (or is not there yet) tries again
 *   after 100 ms, doubling up to 2 s, without spinning.
 * A peer whose socket queue is full is backpressure (overflow 'wait'): the frame stays in the TX
 * ring until every connected peer took it, and the peers that already have it are remembered so
 * none gets it twice.  With overflow 'drop', that peer misses the frame instead (one txDropped per
 * peer that missed it).  A peer that went away (EPIPE, ECONNRESET) is dropped and holds up no one.
 * Frames sent while no peer is connected are dropped and counted (txDropped), never queued.
 * Each message is read straight into the RX ring and written straight from the TX ring (iovecs
 * into the shared memory).  Unlike a wire, the peer is a process that can wait: a full RX ring
 * leaves frames in the socket (backpressure), looked at again every millisecond until there is room.  The 'carrier' control answers whether a peer is connected, and
 * 'carrierChange' (with the carrier the caller knows) answers once it differs.
 */
import { lstatSync, unlinkSync } from 'node:fs';
import { NetdevError } from '../../common/errors.js';
import type { RingReader } from '../../ring/ring.js';
import { AF_UNIX, check, errnoError, errnoName, IOVEC_SIZE, lastErrno, SOCK_CLOEXEC, SOCK_NONBLOCK, SOCK_SEQPACKET, sockaddrUn, sys } from '../../sys/libc.js';
import { addressHalves, FdWaker, iovecWords, setIovec } from '../../sys/fd-io.js';
import { MIN_FRAME, type CreateIo, type DeviceIo, type IoContext } from '../contract.js';

/** What the unix I/O half needs: the socket path, the mode, and what a peer with a full queue does to a frame. */
export interface UnixIoOptions {
  path: string;
  mode: 'listen' | 'connect';
  overflow: 'wait' | 'drop';
}

const LARGEST_FRAME = 65536;
const BACKOFF_FIRST_MS = 100;
const BACKOFF_MAX_MS = 2000;

interface Peer {
  fd: number;
  waker: FdWaker;
}

class UnixIo implements DeviceIo {
  private readonly peers: Peer[] = [];
  /** The peers that already have the frame at the TX ring's head, while it waits for the others. */
  private readonly haveHead = new Set<Peer>();
  private listener: { fd: number; waker: FdWaker } | null = null;
  private readonly iovec = Buffer.alloc(IOVEC_SIZE);
  private readonly iovecWords = iovecWords(this.iovec);
  private readonly scrap = Buffer.alloc(LARGEST_FRAME);
  private readonly rxBase: [number, number];
  private txBase: [number, number] | null = null;
  private backoff = BACKOFF_FIRST_MS;
  private reconnect: NodeJS.Timeout | null = null;
  private ringFull: NodeJS.Timeout | null = null;
  private closed = false;
  private readonly carrierWaiters: (() => void)[] = [];

  constructor(
    private readonly context: IoContext,
    private readonly options: UnixIoOptions,
  ) {
    this.rxBase = addressHalves(context.rx.bytes);
    if (options.mode === 'listen') this.listen();
    else this.connect();
  }

  private socket(): number {
    return check(sys.socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), 'socket', 'AF_UNIX socket', this.context.name);
  }

  private listen(): void {
    const { path } = this.options;
    try {
      if (!lstatSync(path).isSocket()) {
        throw new NetdevError({ code: 'EEXIST', device: this.context.name, call: 'open', detail: `${path} exists and is not a socket: refusing to replace it` });
      }
      unlinkSync(path); // a stale socket of an earlier listener
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
    const fd = this.socket();
    if (sys.bind(fd, sockaddrUn(path)) < 0 || sys.listen(fd, 64) < 0) {
      const error = errnoError(lastErrno(), 'open', `bind/listen on ${path}`, this.context.name);
      sys.close(fd);
      throw error;
    }
    this.listener = { fd, waker: new FdWaker(fd, this.context.bell) };
  }

  /** One connection attempt; on failure, another after the backoff. */
  private connect(): void {
    this.reconnect = null;
    if (this.closed) return;
    const fd = this.socket();
    if (sys.connect(fd, sockaddrUn(this.options.path)) === 0) {
      this.backoff = BACKOFF_FIRST_MS;
      this.addPeer(fd);
      this.context.bell.ringHere();
      return;
    }
    sys.close(fd);
    this.connectLater();
  }

  /** Schedules the next connection attempt after the backoff, and doubles the backoff (up to 2 s) for the one after. */
  private connectLater(): void {
    this.reconnect = setTimeout(() => this.connect(), this.backoff);
    this.backoff = Math.min(BACKOFF_MAX_MS, this.backoff * 2);
  }

  private addPeer(fd: number): void {
    const wasConnected = this.peers.length > 0;
    this.peers.push({ fd, waker: new FdWaker(fd, this.context.bell) });
    if (!wasConnected) this.carrierChanged();
  }

  private dropPeer(peer: Peer): void {
    const index = this.peers.indexOf(peer);
    if (index < 0) return;
    this.peers.splice(index, 1);
    peer.waker.close();
    sys.close(peer.fd);
    if (this.peers.length === 0) this.carrierChanged();
    if (this.options.mode === 'connect' && !this.closed && !this.reconnect) this.connectLater();
  }

  private carrierChanged(): void {
    for (const wake of this.carrierWaiters.splice(0)) wake();
  }

  receive(budget: number): number {
    let handled = 0;
    if (this.listener) {
      for (;;) {
        const fd = sys.accept4(this.listener.fd, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) break;
        this.addPeer(fd);
      }
      this.listener.waker.waitReadable();
    }
    const { rx, counters } = this.context;
    const room = Math.min(LARGEST_FRAME, rx.maxRecord);
    for (const peer of [...this.peers]) {
      while (handled < budget) {
        const at = rx.reserve(room);
        if (at < 0) {
          // The RX ring is full: leave the frames in the socket (the peer then waits) and look
          // again in a millisecond, as the reader frees space without waking this worker.
          this.ringFull ??= setTimeout(() => {
            this.ringFull = null;
            this.context.bell.ringHere();
          }, 1);
          return handled;
        }
        setIovec(this.iovecWords, 0, this.rxBase, at, room);
        const length = sys.readv(peer.fd, this.iovec, 1);
        if (length < 0) {
          const code = errnoName(lastErrno());
          if (code === 'EAGAIN' || code === 'EINTR') peer.waker.waitReadable();
          else this.dropPeer(peer);
          break;
        }
        if (length === 0) {
          this.dropPeer(peer); // the peer went away
          break;
        }
        handled++;
        counters.rxPackets++;
        counters.rxBytes += length;
        const padded = length < MIN_FRAME ? MIN_FRAME : length;
        if (padded !== length) rx.bytes.fill(0, at + length, at + padded);
        rx.commit(padded);
      }
    }
    return handled;
  }

  transmit(tx: RingReader, budget: number): number {
    const base = (this.txBase ??= addressHalves(tx.bytes));
    let taken = 0;
    for (let length; taken < budget && (length = tx.next()) >= 0; taken++) {
      setIovec(this.iovecWords, 0, base, tx.offset, length);
      if (!this.deliver(length)) {
        tx.unread(); // backpressure: it stays at the head until every peer has room for it
        break;
      }
    }
    return taken;
  }

  /**
   * Writes the frame of `length` bytes in this.iovec to every peer that does not have it yet and
   * counts it; returns false if it must wait for a peer whose queue is full (overflow 'wait': that
   * peer's waker then rings when it can take more).
   */
  private deliver(length: number): boolean {
    const { counters } = this.context;
    let waiting = false;
    let missed = 0;
    for (const peer of [...this.peers]) {
      if (this.haveHead.has(peer)) continue;
      let written: number;
      do written = sys.writev(peer.fd, this.iovec, 1);
      while (written < 0 && errnoName(lastErrno()) === 'EINTR');
      if (written >= 0) {
        this.haveHead.add(peer);
        continue;
      }
      const code = errnoName(lastErrno());
      if (code !== 'EAGAIN') {
        this.dropPeer(peer); // EPIPE, ECONNRESET: the peer has gone
      } else if (this.options.overflow === 'drop') {
        missed++;
      } else {
        peer.waker.waitWritable();
        waiting = true;
      }
    }
    if (waiting) return false;
    if (this.haveHead.size > 0) {
      counters.txPackets++;
      counters.txBytes += length;
    } else if (missed === 0) {
      missed = 1; // no peer was connected (or every one went away): dropped once
    }
    counters.txDropped += missed;
    this.haveHead.clear();
    return true;
  }

  drain(): void {
    for (const peer of this.peers) while (sys.read(peer.fd, this.scrap, this.scrap.length) > 0);
  }

  control(op: string, arg: unknown): unknown {
    if (op === 'carrier') return this.peers.length > 0;
    if (op === 'carrierChange') {
      if (this.peers.length > 0 !== arg) return this.peers.length > 0;
      return new Promise<boolean>((resolve) => this.carrierWaiters.push(() => resolve(this.peers.length > 0)));
    }
    throw new NetdevError({ code: 'EOPNOTSUPP', device: this.context.name, call: op, detail: `unix I/O has no control '${op}'` });
  }

  close(): void {
    this.closed = true;
    if (this.reconnect) clearTimeout(this.reconnect);
    if (this.ringFull) clearTimeout(this.ringFull);
    for (const peer of [...this.peers]) this.dropPeer(peer);
    if (this.listener) {
      this.listener.waker.close();
      sys.close(this.listener.fd);
      try {
        unlinkSync(this.options.path);
      } catch {
        // already gone
      }
    }
  }
}

export const createIo: CreateIo = (context) => new UnixIo(context, context.options as UnixIoOptions);
