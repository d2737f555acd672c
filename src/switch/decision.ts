/**
 * The forwarding decision, one for both of the Switch's paths (the main thread and the port
 * workers' agents): count a received frame, learn its source, and say where it goes.
 */
import { vidAt } from '../common/ethernet.js';
import { BLOCKED, CONTROL_MAX_AGE, CONTROL_STATES, FILTERED, INVALID_SOURCE, RESERVED, RX_BYTES, RX_FRAMES } from './fabric.js';
import type { MacTable } from './mac-table.js';
import { FORWARDING, LEARNING } from './spanning-tree.js';

/**
 * Not forwarded: its destination is behind its input port, or it is tagged on an access port
 * (counted FILTERED); it is for a reserved group address not forwarded (RESERVED); its source
 * address is a group address or all zeros (INVALID_SOURCE); its input port's spanning tree state
 * is not forwarding (BLOCKED).
 */
export const FILTER = -2;
/** For the Switch itself: a BPDU for its spanning tree (not forwarded). */
export const LOCAL = -3;
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
  /** The aging time in use for this batch (MAC-table ticks). */
  private maxAge = 0;

  /**
   * @param control the aging time in use and the ports' spanning tree states (fabric.ts switchControl)
   * @param reservedForward bit N set: frames to 01:80:c2:00:00:0N are forwarded (flooded); the
   *   others of the 16 reserved group addresses are not (see reservedForwardMask)
   * @param local bit N set: frames to 01:80:c2:00:00:0N are for the Switch itself (LOCAL): STP BPDUs while its spanning tree runs
   */
  constructor(
    private readonly table: MacTable,
    private readonly control: Int32Array,
    private readonly reservedForward: number,
    private readonly local: number,
  ) {}

  /** Starts a batch: forgets the source learned and the destination looked up last, and reads the aging time in use. */
  beginBatch(): void {
    this.learnedVlan = this.foundVlan = -1;
    this.maxAge = this.control[CONTROL_MAX_AGE]!;
  }

  /** True if port `index` may send frames: its spanning tree state is forwarding. */
  forwards(index: number): boolean {
    return this.control[CONTROL_STATES + index] === FORWARDING;
  }

  /**
   * Counts the frame of `length` bytes at `bytes[at ..]`, received on port `input` (access VLAN
   * `access`, null for a trunk), in that port's row of `counters` (starting at `row`); learns its
   * source (if the port's state is learning or forwarding); returns FILTER (counted in the row,
   * see FILTER), LOCAL, FLOOD (broadcast, multicast, a reserved group address that is forwarded,
   * unknown or aged destination) or the index of the port its destination was learned on.
   * The caller sends only to ports that forward (see forwards).
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
    const sourceHigh = (bytes[at + 6]! << 8) | bytes[at + 7]!;
    const sourceLow = ((bytes[at + 8]! << 24) | (bytes[at + 9]! << 16) | (bytes[at + 10]! << 8) | bytes[at + 11]!) >>> 0;
    if ((sourceHigh & 0x100) !== 0 || (sourceHigh === 0 && sourceLow === 0)) {
      counters[row + INVALID_SOURCE]++;
      return FILTER;
    }
    const group = (bytes[at]! & 1) !== 0;
    if (group && bytes[at] === 0x01 && bytes[at + 1] === 0x80 && bytes[at + 2] === 0xc2 && bytes[at + 3] === 0 && bytes[at + 4] === 0 && bytes[at + 5]! < 16) {
      const bit = 1 << bytes[at + 5]!;
      if ((this.local & bit) !== 0) return LOCAL;
      if ((this.reservedForward & bit) === 0) {
        counters[row + RESERVED]++;
        return FILTER;
      }
    }
    const state = this.control[CONTROL_STATES + input];
    if (state !== FORWARDING) {
      if (state === LEARNING) this.learn(vlan, sourceHigh, sourceLow, bytes, at, input, now);
      counters[row + BLOCKED]++;
      return FILTER;
    }
    this.learn(vlan, sourceHigh, sourceLow, bytes, at, input, now);
    if (group) return FLOOD;
    const high = (bytes[at]! << 8) | bytes[at + 1]!;
    const low = ((bytes[at + 2]! << 24) | (bytes[at + 3]! << 16) | (bytes[at + 4]! << 8) | bytes[at + 5]!) >>> 0;
    if (vlan !== this.foundVlan || high !== this.foundHigh || low !== this.foundLow) {
      this.foundPort = this.table.lookup(vlan, bytes, at, now, this.maxAge);
      this.foundVlan = vlan;
      this.foundHigh = high;
      this.foundLow = low;
    }
    const port = this.foundPort;
    if (port === input) {
      counters[row + FILTERED]++;
      return FILTER;
    }
    return port < 0 ? FLOOD : port;
  }

  /** Learns the source (`high`, `low`: its first 2 and last 4 bytes) of the frame at `bytes[at ..]` on `input`, unless this batch just did. */
  private learn(vlan: number, high: number, low: number, bytes: Uint8Array, at: number, input: number, now: number): void {
    if (vlan === this.learnedVlan && high === this.learnedHigh && low === this.learnedLow) return;
    this.table.learn(vlan, bytes, at + 6, input, now);
    this.learnedVlan = vlan;
    this.learnedHigh = high;
    this.learnedLow = low;
    if (vlan === this.foundVlan && high === this.foundHigh && low === this.foundLow) this.foundVlan = -1; // it may have moved here
  }
}

/** Reserved group addresses whose forwarding a user may not ask for, as Linux's BR_GROUPFWD_RESTRICTED: STP (bit 0), MAC control/pause (1), LACP (2). */
export const GROUP_FWD_RESTRICTED = 0x0007;

/**
 * The reserved group addresses a Switch forwards: those of `groupFwdMask` (checked by the
 * caller: 16 bits, none of GROUP_FWD_RESTRICTED), and STP BPDUs (bit 0) while the Switch runs
 * no spanning tree of its own, as Linux's bridge with stp_state 0 floods them; with one, they are
 * its own (ForwardingDecision's `local`).
 */
export function reservedForwardMask(groupFwdMask: number, stp: boolean): number {
  return groupFwdMask | (stp ? 0 : 1);
}
