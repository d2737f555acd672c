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

  constructor(
    private readonly table: MacTable,
    private readonly maxAge: number,
  ) {}

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
    if ((bytes[at + 6]! & 1) === 0) this.table.learn(vlan, bytes, at + 6, input, now);
    const port = (bytes[at]! & 1) === 0 ? this.table.lookup(vlan, bytes, at, now, this.maxAge) : FLOOD;
    if (port === input) {
      counters[row + FILTERED]++;
      return FILTER;
    }
    return port < 0 ? FLOOD : port;
  }
}
