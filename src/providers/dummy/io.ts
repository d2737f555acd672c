/**
 * The dummy provider's I/O half (runs in the device's worker).  Two linked dummies are the two
 * ends of a wire: each direction is a ring from one device's worker to the other's.  Transmitting
 * copies frames from the TX ring onto the outgoing wire; receiving copies frames from the incoming
 * wire into the RX ring, as a kernel would deliver them: counted, filtered by ethertype, padded to
 * 60 bytes, dropped (and counted) when the RX ring is full or the frame exceeds the MTU.
 * A full wire is backpressure: transmit stops, and the peer's worker rings this one's bell when it
 * frees space (a peer whose worker dies is unplugged by the control half, so it cannot stall this
 * device).  Frames sent while the device or its peer is down, or has no peer, are dropped and
 * counted (txDropped).
 */
import { netdevError } from '../../common/errors.js';
import { CounterBatch, DeviceShared, NETDEV_UP } from '../../ring/device-shared.js';
import { copyRecord, RingReader, RingWriter, type RingDescriptor } from '../../ring/ring.js';
import { FRAME_OVERHEAD, matchesEthertype, MIN_FRAME, type CreateIo, type DeviceIo, type IoContext } from '../contract.js';

/** Argument of the 'setOut' control: the outgoing wire and the peer's shared block, or null to unplug. */
export interface OutgoingWire {
  ring: RingDescriptor;
  peerShared: SharedArrayBuffer;
}

/** Largest frame a device with this MTU receives: MTU + Ethernet header + one VLAN tag. */
function frameLimit(mtu: number): number {
  return mtu + FRAME_OVERHEAD;
}

class DummyIo implements DeviceIo {
  private incoming: RingReader | null = null;
  private outgoing: RingWriter | null = null;
  private peer: DeviceShared | null = null;
  private readonly counters: CounterBatch;

  constructor(private readonly context: IoContext) {
    this.counters = context.counters;
  }

  receive(budget: number): number {
    const wire = this.incoming;
    if (!wire) return 0;
    const limit = frameLimit(this.context.shared.mtu);
    let handled = 0;
    for (; handled < budget; handled++) {
      const length = wire.next();
      if (length < 0) break;
      this.deliver(wire, wire.bytes, wire.offset, length, limit);
    }
    wire.release();
    return handled;
  }

  /**
   * Receives one frame as the device would: count, filter, pad into the RX ring or drop.  The
   * frame is `bytes[offset..offset+length]`: the current record of `wire`, or an injected frame.
   */
  private deliver(wire: RingReader | null, bytes: Uint8Array, offset: number, length: number, limit: number): void {
    const counters = this.counters;
    if (length > limit) {
      counters.rxDropped++;
      return;
    }
    counters.rxPackets++;
    counters.rxBytes += length;
    if ((bytes[offset]! & 1) !== 0) counters.multicast++;
    if (!matchesEthertype(this.context.ethertype, bytes, offset, length)) return;
    const rx = this.context.rx;
    const padded = length < MIN_FRAME ? MIN_FRAME : length;
    if (padded > rx.maxRecord) {
      counters.rxErrors++;
      return;
    }
    const at = rx.reserve(padded);
    if (at < 0) {
      rx.countDrops(1);
      return;
    }
    if (wire) copyRecord(wire, rx, at, length);
    else rx.bytes.set(bytes.subarray(offset, offset + length), at);
    if (padded !== length) rx.bytes.fill(0, at + length, at + padded);
    rx.commit(padded);
  }

  transmit(tx: RingReader, budget: number): number {
    const wire = this.outgoing;
    const counters = this.counters;
    const carrier = wire !== null && (this.context.shared.flags & NETDEV_UP) !== 0 && (this.peer!.flags & NETDEV_UP) !== 0;
    let taken = 0;
    for (; taken < budget; taken++) {
      const length = tx.next();
      if (length < 0) break;
      if (!carrier) {
        counters.txDropped++;
        continue;
      }
      if (length > wire.maxRecord) {
        counters.txErrors++;
        continue;
      }
      const at = wire.reserve(length);
      if (at < 0) {
        tx.unread();
        break;
      }
      copyRecord(tx, wire, at, length);
      wire.commit(length);
      counters.txPackets++;
      counters.txBytes += length;
    }
    // Counters first: once on the wire a frame can be read, and its sender's stats must show it.
    counters.flush();
    wire?.publish();
    return taken;
  }

  drain(): void {
    this.incoming?.discardAll();
  }

  control(op: string, arg: unknown): unknown {
    switch (op) {
      case 'bell':
        return this.context.bell.buffer;
      case 'setIn':
        if (arg === null && this.incoming) {
          // Unplugging: what is already on the wire still arrives.
          while (this.receive(Number.MAX_SAFE_INTEGER) > 0);
        }
        this.incoming = arg === null ? null : new RingReader(arg as RingDescriptor);
        return undefined;
      case 'setOut': {
        const wire = arg as OutgoingWire | null;
        this.outgoing = wire ? new RingWriter(wire.ring) : null;
        this.peer = wire ? new DeviceShared(wire.peerShared) : null;
        return undefined;
      }
      case 'inject': {
        const limit = frameLimit(this.context.shared.mtu);
        for (const frame of arg as Uint8Array[]) this.deliver(null, frame, 0, frame.length, limit);
        return undefined;
      }
      default:
        throw netdevError('EOPNOTSUPP', `dummy I/O has no control '${op}'`);
    }
  }

  close(): void {
    this.incoming = null;
    this.outgoing = null;
  }
}

export const createIo: CreateIo = (context) => new DummyIo(context);
