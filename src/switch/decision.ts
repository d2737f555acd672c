/**
 * The forwarding decision, one for both of the Switch's paths (the main thread and the port
 * workers' agents): count a received frame, learn its source, and say where it goes.
 */
import { vidAt } from '../common/ethernet.js';
import { FILTERED, RX_BYTES, RX_FRAMES } from './fabric.js';
import type { MacTable } from './mac-table.js';

/** Not forwarded: its destination is behind its input port, or it is tagged on an access port (counted FILTERED). */
export const FILTER = -2;
/** To every other port of its VLAN (the caller counts FLOODS). */
export const FLOOD = -1;

export class ForwardingDecision {
  /** The VLAN tag the frame decided last carries (0: none), and the VLAN it belongs to. */
  vid = 0;
  vlan = 0;
  /**
   * Within one batch (see beginBatch), the source last learned and the destination last looked
   * up, so that a run of frames of one flow costs one table search each way, not one per frame.
   * A MAC is kept as its first 2 and last 4 bytes (-1: none); what the table says can change only
   * between batches as far as this batch is concerned.
   */
  private learnedVlan = -1;
  private learnedHigh = -1;
  private learnedLow = -1;
  private foundVlan = -1;
  private foundHigh = -1;
  private foundLow = -1;
  private foundPort = -1;

  constructor(
    private readonly table: MacTable,
    private readonly maxAge: number,
  ) {}

  /** Starts a batch: forgets the source learned and the destination looked up last. */
  beginBatch(): void {
    this.learnedVlan = this.foundVlan = -1;
  }

  /**
   * Counts the frame of `length` bytes at `bytes[at ..]`, received on port `input` (access VLAN
   * `access`, null for a trunk), in that port's row of `counters` (starting at `row`); learns its
   * source; returns FILTER, FLOOD (broadcast, multicast, unknown or aged destination) or the
   * index of the port its destination was learned on.
   */
  decide(counters: Float64Array, row: number, input: number, access: number | null, bytes: Uint8Array, at: number, length: number, now: number): number {
    counters[row + RX_FRAMES]++;
    counters[row + RX_BYTES] += length;
    const vid = vidAt(bytes, at, length);
    if (access !== null && vid !== 0) {
      counters[row + FILTERED]++;
      return FILTER;
    }
    const vlan = access ?? vid;
    this.vid = vid;
    this.vlan = vlan;
    if ((bytes[at + 6]! & 1) === 0) {
      const high = (bytes[at + 6]! << 8) | bytes[at + 7]!;
      const low = ((bytes[at + 8]! << 24) | (bytes[at + 9]! << 16) | (bytes[at + 10]! << 8) | bytes[at + 11]!) >>> 0;
      if (vlan !== this.learnedVlan || high !== this.learnedHigh || low !== this.learnedLow) {
        this.table.learn(vlan, bytes, at + 6, input, now);
        this.learnedVlan = vlan;
        this.learnedHigh = high;
        this.learnedLow = low;
        if (vlan === this.foundVlan && high === this.foundHigh && low === this.foundLow) this.foundVlan = -1; // it may have moved here
      }
    }
    let port = FLOOD;
    if ((bytes[at]! & 1) === 0) {
      const high = (bytes[at]! << 8) | bytes[at + 1]!;
      const low = ((bytes[at + 2]! << 24) | (bytes[at + 3]! << 16) | (bytes[at + 4]! << 8) | bytes[at + 5]!) >>> 0;
      if (vlan !== this.foundVlan || high !== this.foundHigh || low !== this.foundLow) {
        this.foundPort = this.table.lookup(vlan, bytes, at, now, this.maxAge);
        this.foundVlan = vlan;
        this.foundHigh = high;
        this.foundLow = low;
      }
      port = this.foundPort;
    }
    if (port === input) {
      counters[row + FILTERED]++;
      return FILTER;
    }
    return port < 0 ? FLOOD : port;
  }
}
