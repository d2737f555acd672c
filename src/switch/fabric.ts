/**
 * What the Switch on the main thread and its forwarding agents in the port workers share: the
 * spec an agent is given, the layout of the forwarding counters in shared memory, and the masks
 * that say where each frame an agent passes up must go.
 */
import type { MacTableDescriptor } from './mac-table.js';

/** Ports a Switch can have (port indices 0 .. MAX_PORTS-1). */
export const MAX_PORTS = 64;

/** Counters each agent keeps for its input port, then three per output port. */
export const RX_FRAMES = 0;
export const RX_BYTES = 1;
export const FLOODS = 2;
export const FILTERED = 3;
/** Frames to a reserved group address 01:80:c2:00:00:0X that the Switch does not forward (IEEE 802.1D 7.12.6). */
export const RESERVED = 4;
/** Frames with an invalid source address (a group address, or all zeros), dropped. */
export const INVALID_SOURCE = 5;
/** Frames received on a port the spanning tree does not let forward (blocking, listening, learning), dropped. */
export const BLOCKED = 6;
const INPUT_COUNTERS = 7;
export const TX_FRAMES = 0;
export const TX_BYTES = 1;
export const TX_DROPS = 2;
/** Super-frames segmented in software to go out of the port (it does not take offloads). */
export const TX_SEGMENTED = 3;
export const OUTPUT_COUNTERS = 4;
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

/**
 * What the main thread tells both paths while they forward, in shared memory (Int32): the aging
 * time in use (MAC-table ticks; shortened during a spanning tree topology change), then each
 * port's spanning tree state (spanning-tree.ts: FORWARDING while no spanning tree runs).
 */
export const CONTROL_MAX_AGE = 0;
export const CONTROL_STATES = 1;

export function switchControl(): Int32Array {
  return new Int32Array(new SharedArrayBuffer((CONTROL_STATES + MAX_PORTS) * 4));
}

/** A port as an agent sees it: where to send frames for it. */
export interface OutputSpec {
  index: number;
  /** Access VLAN, or null for a trunk. */
  vlan: number | null;
  /** A packet socket of the port's device that any thread may send on (with vnet headers), or -1 (frames go up to the main thread). */
  fd: number;
  /** The port's device takes offload metadata (Netdev.offloads): a super-frame passed up for it goes whole. */
  offloads: boolean;
}

/** Everything a port worker's forwarding agent is given. */
export interface AgentSpec {
  table: MacTableDescriptor;
  counters: Float64Array;
  /** This port. */
  index: number;
  vlan: number | null;
  /** The aging time in use and the ports' states (see switchControl). */
  control: Int32Array;
  /** Bit N set: frames to 01:80:c2:00:00:0N are forwarded (see reservedForwardMask). */
  reservedForward: number;
  /** Bit N set: frames to 01:80:c2:00:00:0N are the Switch's own (BPDUs while it runs a spanning tree): passed up with no output. */
  local: number;
  /** Every other port. */
  outputs: OutputSpec[];
  /** An eventfd the Switch owns: the worker's bell signals it while the worker waits in poll(2). */
  kickFd: number;
}

/** What the forwarding agent says when it starts in a port's worker (its WorkerAgent.started). */
export interface AgentStart {
  /** Frames the worker put in the RX ring before its agent started: every later one was passed up. */
  from: number;
  /** The pass-up masks: see PassUpMasks. */
  masks: SharedArrayBuffer;
}

/**
 * For each frame an agent passes up to the main thread through the RX ring, in order, the set of
 * output ports the main thread must send it to (64 bits as two 32-bit words), so that the main
 * thread never has to guess what the agent sent itself; an empty set: the frame is for the Switch
 * itself (a BPDU).  Entry i belongs to the i-th frame passed
 * up; the agent writes it before it commits the frame, so it is visible once the frame is.  An RX
 * ring of C bytes holds at most C / MIN_RECORD frames, so C / MIN_RECORD entries are never reused
 * before they are read.
 */
export class PassUpMasks {
  private readonly words: Uint32Array;
  private readonly entries: number;

  constructor(readonly buffer: SharedArrayBuffer) {
    this.words = new Uint32Array(buffer);
    this.entries = this.words.length / 2;
  }

  /** Masks for an RX ring of `ringCapacity` record bytes. */
  static forRing(ringCapacity: number): PassUpMasks {
    return new PassUpMasks(new SharedArrayBuffer((ringCapacity / MIN_RECORD) * 8));
  }

  /** Agent side: the set of the `seq`-th frame passed up is the ports of `ports`. */
  set(seq: number, ports: PortSet): void {
    const at = (seq % this.entries) * 2;
    this.words[at] = ports.low;
    this.words[at + 1] = ports.high;
  }

  /** Main-thread side: the set of the `seq`-th frame passed up. */
  get(seq: number, into: PortSet): PortSet {
    const at = (seq % this.entries) * 2;
    into.low = this.words[at]!;
    into.high = this.words[at + 1]!;
    return into;
  }
}

/** A set of port indices 0-63, as two 32-bit words. */
export class PortSet {
  low = 0;
  high = 0;

  add(index: number): void {
    if (index < 32) this.low |= 1 << index;
    else this.high |= 1 << (index - 32);
  }

  clear(): void {
    this.low = 0;
    this.high = 0;
  }

  get empty(): boolean {
    return this.low === 0 && this.high === 0;
  }

  /** Takes the lowest index out of the set and returns it; -1 if the set is empty. */
  take(): number {
    if (this.low !== 0) {
      const bit = this.low & -this.low;
      this.low ^= bit;
      return 31 - Math.clz32(bit);
    }
    if (this.high !== 0) {
      const bit = this.high & -this.high;
      this.high ^= bit;
      return 63 - Math.clz32(bit);
    }
    return -1;
  }
}

/** The smallest RX ring record: a 60-byte frame and its 4-byte length. */
const MIN_RECORD = 64;
