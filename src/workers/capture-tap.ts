/**
 * A device worker's pcap capture tap, loaded by the worker only when a capture starts (see
 * device-worker.ts): most devices are never captured, and their workers need not load it.
 */
import { RingFollower, RingWriter, type RingDescriptor } from '../ring/ring.js';
import { CAPTURE_RECORD_HEADER, CAPTURE_RX, CAPTURE_TX, type CaptureSpec } from '../ring/capture-format.js';
import { VNET_HDR_LEN } from '../common/vnet-header.js';

/**
 * Copies what a round moved into a capture ring, off the device's rings: frames transmitted
 * (read before the TX ring releases them) and frames received (read right after the RX ring
 * publishes them).  A full capture ring drops the record and counts it; the device never waits.
 * On a device with offloads the records are vnet frames: the capture keeps the Ethernet frame
 * after the header (a GSO super-frame is kept whole, as tcpdump on the interface sees it).
 */
export class CaptureTap {
  private readonly out: RingWriter;
  private readonly rx: RingFollower | null;
  private readonly tx: RingFollower | null;
  /** Bytes of vnet header before each frame (0 without offloads). */
  private readonly header: number;

  constructor(
    spec: CaptureSpec,
    rx: RingDescriptor,
    tx: RingDescriptor,
    /** The device's frames are vnet frames (IoContext.offloads). */
    offloads: boolean,
  ) {
    this.header = offloads ? VNET_HDR_LEN : 0;
    this.out = new RingWriter(spec.ring);
    this.rx = spec.rx ? new RingFollower(rx, 'head') : null;
    this.tx = spec.tx ? new RingFollower(tx, 'tail') : null;
  }

  /** Copies the `count` frames the round just transmitted. */
  transmitted(count: number): void {
    if (!this.tx || count === 0) return;
    const [seconds, nanos] = wallClock();
    for (let i = 0; i < count; i++) this.copy(this.tx, this.tx.next(), seconds, nanos, CAPTURE_TX);
  }

  /** Copies every frame the round just published to the RX ring, then publishes the capture. */
  received(): void {
    if (this.rx) {
      const [seconds, nanos] = wallClock();
      for (let length = this.rx.next(); length >= 0; length = this.rx.next()) this.copy(this.rx, length, seconds, nanos, CAPTURE_RX);
    }
    this.out.publish();
  }

  private copy(from: RingFollower, record: number, seconds: number, nanos: number, direction: number): void {
    if (record < 0) return;
    const length = record - this.header;
    const at = this.out.reserve(CAPTURE_RECORD_HEADER + length);
    if (at < 0) {
      this.out.countDrops(1);
      return;
    }
    const words = this.out.words;
    words[at >> 2] = seconds;
    words[(at >> 2) + 1] = nanos;
    words[(at >> 2) + 2] = direction;
    const start = from.offset + this.header;
    this.out.bytes.set(from.bytes.subarray(start, start + length), at + CAPTURE_RECORD_HEADER);
    this.out.commit(CAPTURE_RECORD_HEADER + length);
  }
}

/** Wall-clock time as [seconds, nanoseconds] (one reading per round, not per frame). */
function wallClock(): [number, number] {
  const ms = performance.timeOrigin + performance.now();
  const seconds = Math.floor(ms / 1000);
  return [seconds, Math.floor((ms - seconds * 1000) * 1e6)];
}
