/**
 * What the Switch on the main thread and its forwarding agents in the port workers share: the
 * spec an agent is given, the layout of the forwarding counters in shared memory, and the rule
 * for which frames an agent sends itself.
 */
import type { MacTableDescriptor } from './mac-table.js';

/** Ports a Switch can have (port indices 0 .. MAX_PORTS-1). */
export const MAX_PORTS = 64;

/** Counters each agent keeps for its input port, then three per output port. */
export const RX_FRAMES = 0;
export const RX_BYTES = 1;
export const FLOODS = 2;
export const FILTERED = 3;
const INPUT_COUNTERS = 4;
export const TX_FRAMES = 0;
export const TX_BYTES = 1;
export const TX_DROPS = 2;
const OUTPUT_COUNTERS = 3;
const ROW = INPUT_COUNTERS + OUTPUT_COUNTERS * MAX_PORTS;

/** Shared counters: one row per input port, written only by that port's agent (Float64). */
export function forwardingCounters(): Float64Array {
  return new Float64Array(new SharedArrayBuffer(MAX_PORTS * ROW * 8));
}

/** Index of input counter `which` of port `input`. */
export function inputCounter(input: number, which: number): number {
  return input * ROW + which;
}

/** Index of counter `which` of the frames port `input` sent to port `output`. */
export function outputCounter(input: number, output: number, which: number): number {
  return input * ROW + INPUT_COUNTERS + output * OUTPUT_COUNTERS + which;
}

/** A port as an agent sees it: where to send frames for it. */
export interface OutputSpec {
  index: number;
  /** Access VLAN, or null for a trunk. */
  vlan: number | null;
  /** A packet socket of the port's device that any thread may send on, or -1 (frames go up to the main thread). */
  fd: number;
}

/** Everything a port worker's forwarding agent is given. */
export interface AgentSpec {
  table: MacTableDescriptor;
  counters: Float64Array;
  /** This port. */
  index: number;
  vlan: number | null;
  /** How long a learned MAC is valid, in MAC-table ticks. */
  maxAge: number;
  /** Every other port. */
  outputs: OutputSpec[];
  /** An eventfd the Switch owns: the worker's bell signals it while the worker waits in poll(2). */
  kickFd: number;
}

/**
 * True if a frame of VLAN id `vid` (0: untagged) from a port with access VLAN `from` can go out
 * of `to` as it is, through `to`'s socket: no tag to add or remove, and a socket to send on.
 */
export function sentByAgent(from: number | null, to: OutputSpec, vid: number): boolean {
  if (to.fd < 0) return false;
  if (from !== null) return to.vlan !== null; // access -> access of the same VLAN; access -> trunk needs a tag
  return to.vlan === null || vid === 0; // trunk -> trunk as is; trunk -> access needs an untag if tagged
}

/** The VID of the 802.1Q-tagged frame at `bytes[at ..]` of `length` bytes, or 0. */
export function vidAt(bytes: Uint8Array, at: number, length: number): number {
  return length >= 18 && bytes[at + 12] === 0x81 && bytes[at + 13] === 0x00 ? ((bytes[at + 14]! << 8) | bytes[at + 15]!) & 0x0fff : 0;
}
