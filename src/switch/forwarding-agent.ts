/**
 * The Switch's forwarding agent, a worker agent (src/workers/agent-contract.ts) in a port's
 * worker: it takes the frames the port's I/O half staged (its staging capability: vnet frames,
 * each with its virtio_net_hdr), learns their sources and looks up their destinations in the
 * shared MAC table, and sends each frame straight out of the output ports' packet sockets with
 * one sendmmsg per output per batch: no thread hand-off, no copy.  Every such socket carries vnet
 * headers, so a GSO super-frame goes out whole and the kernel segments it only if the output's
 * device cannot.  Frames it cannot send as they are (an output without a socket, or a VLAN tag to
 * add or remove) are copied to the RX ring, where the Switch on the main thread forwards them to
 * those outputs only; a super-frame for an output that does not take offloads is segmented here
 * first (in the worker, not on the main thread).  Frames keep their order per output.  Spanning
 * tree states (in shared memory, set by the main thread) are honoured as on the main thread, and a
 * BPDU for the Switch's spanning tree is passed up with no output.
 *
 * Congestion: an output whose device queue is full (sendmmsg says ENOBUFS or EAGAIN) drops the
 * rest of the batch meant for it, counted as its drops; the agent never waits for an output, so
 * the others go on at their own pace.  A frame the RX ring has no room for is counted as dropped
 * for each output that needed the main thread.
 */
import { netdevError } from '../common/errors.js';
import { boundedSink, SoftwareOffload, type FrameSink } from '../common/software-offload.js';
import { needsSoftwareOffload, VNET_HDR_LEN } from '../common/vnet-header.js';
import type { FrameStaging, IoContext } from '../providers/contract.js';
import { HOT_BELL, HOT_FRAMES, type CreateAgent, type WorkerAgent } from '../workers/agent-contract.js';
import { addressHalves, MessageVector, setIovec } from '../sys/fd-io.js';
import { errnoName, lastErrno, MMSGHDR_SIZE, MSG_DONTWAIT, sys } from '../sys/libc.js';
import {
  BLOCKED, FLOODS, inputCounter, MAX_PORTS, outputCounter, PassUpMasks, PortSet, TX_BYTES, TX_DROPS, TX_FRAMES, TX_SEGMENTED,
  type AgentSpec, type AgentStart, type OutputSpec,
} from './fabric.js';
import { FILTER, ForwardingDecision, LOCAL } from './decision.js';
import { MacTable } from './mac-table.js';

const BATCH = 64;

/**
 * True if a frame of VLAN id `vid` (0: untagged) from a port with access VLAN `from` can go out
 * of `to` as it is, through `to`'s socket: no tag to add or remove, and a socket to send on.
 */
function sentByAgent(from: number | null, to: OutputSpec, vid: number): boolean {
  if (to.fd < 0) return false;
  if (from !== null) return to.vlan !== null; // access -> access of the same VLAN; access -> trunk needs a tag
  return to.vlan === null || vid === 0; // trunk -> trunk as is; trunk -> access needs an untag if tagged
}

interface Output {
  spec: OutputSpec;
  vector: MessageVector;
  queued: number;
}

/** The Switch's worker agent module: attached with an AgentSpec; EOPNOTSUPP for an I/O half without staging. */
export const createAgent: CreateAgent = ({ io, device, options }) => {
  if (!io.staging) throw netdevError('EOPNOTSUPP', 'the I/O half cannot stage frames for forwarding in its worker');
  return new ForwardingAgent(options as AgentSpec, io.staging, device);
};

class ForwardingAgent implements WorkerAgent {
  private readonly table: MacTable;
  private readonly decision: ForwardingDecision;
  private readonly counters: Float64Array;
  private readonly index: number;
  private readonly vlan: number | null;
  private outputs: Output[] = [];
  /** Outputs by port index (sparse). */
  private byIndex: (Output | undefined)[] = [];
  private readonly stagingAddress: [number, number];
  private readonly kickFd: number;
  /** The outputs the frame being forwarded needs the main thread for: those that take it as it is, and those that need it segmented (no offloads). */
  private readonly viaMain = new PortSet();
  private readonly viaMainPlain = new PortSet();
  private readonly software = new SoftwareOffload();
  private readonly scratch = new PortSet();
  /** The pass-up mask of a frame for the Switch itself (a BPDU): no output. */
  private readonly none = new PortSet();
  /** The RX ring as the sink of plain frames passed up: each record committed gets the pass-up mask of `maskedFor`. */
  private maskedFor = this.viaMainPlain;
  private readonly maskedSink: FrameSink;
  /** For each frame passed up, the outputs it is for; and how many frames were passed up. */
  private readonly masks: PassUpMasks;
  private passed = 0;

  constructor(
    spec: AgentSpec,
    private readonly io: FrameStaging,
    private readonly context: IoContext,
  ) {
    this.table = new MacTable(spec.table);
    this.decision = new ForwardingDecision(this.table, spec.control, spec.reservedForward, spec.local);
    this.counters = spec.counters;
    this.index = spec.index;
    this.vlan = spec.vlan;
    this.stagingAddress = addressHalves(io.bytes);
    this.kickFd = spec.kickFd;
    this.masks = PassUpMasks.forRing(context.rx.capacity);
    this.maskedSink = boundedSink(context.rx, () => this.masks.set(this.passed++, this.maskedFor));
    this.setOutputs(spec.outputs);
    context.bell.setKickFd(spec.kickFd); // a ring of the worker's bell reaches waitHot's poll(2)
  }

  /** Read by the worker in the step it installs this agent: every frame it committed before is published, every later one is passed up. */
  get started(): AgentStart {
    return { from: this.context.rx.committed, masks: this.masks.buffer };
  }

  /** 'outputs': a new set of other ports; answers the frames put in the RX ring so far (frames passed up later see the new set). */
  control(op: string, arg: unknown): unknown {
    if (op !== 'outputs') throw netdevError('EOPNOTSUPP', `the Switch's agent has no control '${op}'`);
    this.setOutputs(arg as OutputSpec[]);
    return this.context.rx.committed;
  }

  /** Detached: the bell no longer reaches the eventfd; answers the frames put in the RX ring so far. */
  close(): number {
    this.context.bell.setKickFd(-1);
    return this.context.rx.committed;
  }

  /** Replaces the set of other ports (a port added or removed); takes effect for the next batch. */
  private setOutputs(outputs: OutputSpec[]): void {
    this.outputs = outputs.map((spec) => ({ spec, vector: new MessageVector(BATCH), queued: 0 }));
    this.byIndex = new Array<Output | undefined>(MAX_PORTS);
    for (const output of this.outputs) this.byIndex[output.spec.index] = output;
  }

  /**
   * Blocks this thread in poll(2) until the port's socket is readable, the bell's eventfd is
   * signalled (cleared here), or `timeoutMs` passes.  Returns HOT_FRAMES and/or HOT_BELL, or 0.
   * Waking from a poll(2) costs far less than a wake through the event loop.
   */
  waitHot(timeoutMs: number): number {
    const ready = sys.pollTwo(this.io.fd, this.kickFd, timeoutMs);
    if ((ready & 2) !== 0) sys.clearEventfd(this.kickFd);
    return ((ready & 1) !== 0 ? HOT_FRAMES : 0) | ((ready & 2) !== 0 ? HOT_BELL : 0);
  }

  /** Receives and forwards up to `budget` frames; returns how many it took from the device. */
  round(budget: number): number {
    const { io, table, counters, decision } = this;
    const count = io.receive(budget);
    if (count === 0) return 0;
    const bytes = io.bytes;
    const now = table.now();
    decision.beginBatch();
    const row = inputCounter(this.index, 0);
    let up = 0;
    for (let i = 0; i < count; i++) {
      const length = io.length(i);
      if (length < 0) continue;
      const at = io.offset(i); // a vnet frame: the Ethernet frame starts VNET_HDR_LEN later
      const to = decision.decide(counters, row, this.index, this.vlan, bytes, at + VNET_HDR_LEN, length - VNET_HDR_LEN, now);
      if (to === FILTER) continue;
      if (to === LOCAL) {
        up += this.passUpAs(this.none, bytes, at, length, this.context.offloads); // for the spanning tree on the main thread
        continue;
      }
      const { vid, vlan } = decision;
      const known = to >= 0 ? this.byIndex[to] : undefined; // a port it does not know yet: flooded
      if (known !== undefined) {
        if (!decision.forwards(to)) counters[row + BLOCKED]++;
        else if (!this.queue(known, at, length, vid)) this.needsMain(known.spec, bytes, at);
      } else {
        counters[row + FLOODS]++;
        for (const output of this.outputs) {
          const { spec } = output;
          if ((spec.vlan === null || spec.vlan === vlan) && decision.forwards(spec.index) && !this.queue(output, at, length, vid)) this.needsMain(spec, bytes, at);
        }
      }
      if (!this.viaMain.empty || !this.viaMainPlain.empty) up += this.passUp(bytes, at, length);
    }
    for (const output of this.outputs) if (output.queued > 0) this.flush(output);
    if (up > 0) this.context.rx.publish();
    return count;
  }

  /** Notes that the vnet frame at `at` goes to `output` through the main thread: as it is, or made plain first. */
  private needsMain(output: OutputSpec, bytes: Uint8Array, at: number): void {
    const whole = this.context.offloads && (output.offloads || !needsSoftwareOffload(bytes, at));
    (whole ? this.viaMain : this.viaMainPlain).add(output.index);
  }

  /** Queues the frame to `output` if this agent sends it there; false if the main thread must. */
  private queue(output: Output, at: number, length: number, vid: number): boolean {
    if (!sentByAgent(this.vlan, output.spec, vid)) return false;
    setIovec(output.vector.iovecWords, output.queued, this.stagingAddress, at, length);
    if (++output.queued === BATCH) this.flush(output);
    return true;
  }

  /**
   * Sends what is queued for `output`.  When its device queue is full (ENOBUFS, EAGAIN) the rest
   * is dropped; a frame refused for good (EMSGSIZE, ENETDOWN ...) is dropped alone.  Both counted.
   */
  private flush(output: Output): void {
    const { vector, spec } = output;
    const { counters } = this;
    const base = outputCounter(this.index, spec.index, 0);
    let done = 0;
    while (done < output.queued) {
      const headers = done === 0 ? vector.headers : vector.headers.subarray(done * MMSGHDR_SIZE);
      const sent = sys.sendmmsg(spec.fd, headers, output.queued - done, MSG_DONTWAIT);
      const code = sent > 0 ? '' : sent === 0 ? 'EAGAIN' : errnoName(lastErrno());
      if (sent > 0) {
        for (let i = done; i < done + sent; i++) {
          counters[base + TX_FRAMES]++;
          counters[base + TX_BYTES] += vector.iovecLength(i) - VNET_HDR_LEN;
        }
        done += sent;
        continue;
      }
      if (code === 'EINTR') continue;
      const dropped = code === 'ENOBUFS' || code === 'EAGAIN' ? output.queued - done : 1;
      counters[base + TX_DROPS] += dropped;
      done += dropped;
    }
    output.queued = 0;
  }

  /**
   * Puts the vnet frame at `at` in the RX ring for the main thread, which sends it where the
   * frame's pass-up mask says: whole (a device with offloads) to the ports in viaMain, and made
   * plain, segmented here if it is a super-frame, to those in viaMainPlain (each segment a record
   * with the same mask; on a device with offloads each has a zero vnet header).  Returns the records
   * it wrote; a record the ring has no room for is counted as dropped for each of its ports.
   */
  private passUp(bytes: Uint8Array, at: number, length: number): number {
    let written = 0;
    if (!this.viaMain.empty) {
      written += this.passUpAs(this.viaMain, bytes, at, length, true);
      this.viaMain.clear();
    }
    if (!this.viaMainPlain.empty) {
      written += this.passUpAs(this.viaMainPlain, bytes, at, length, false);
      this.viaMainPlain.clear();
    }
    return written;
  }

  private passUpAs(outputs: PortSet, bytes: Uint8Array, at: number, length: number, whole: boolean): number {
    const { rx } = this.context;
    const { software } = this;
    if (whole) {
      // The vnet frame as it is (only a device with offloads has such records).
      const to = length <= rx.maxRecord ? rx.reserve(length) : -1;
      if (to < 0) {
        this.countDropped(outputs, 1);
        return 0;
      }
      rx.bytes.set(bytes.subarray(at, at + length), to);
      this.masks.set(this.passed++, outputs);
      rx.commit(length);
      return 1;
    }
    const emitted = software.emitted;
    const segmented = software.segmented;
    this.maskedFor = outputs;
    if (!software.toPlain(bytes, at, length, this.maskedSink, this.context.offloads)) {
      this.countDropped(outputs, 1); // headers it cannot segment (the I/O half checked the vnet header)
      return 0;
    }
    if (software.dropped + software.tooLarge !== 0) {
      this.countDropped(outputs, software.dropped + software.tooLarge);
      software.dropped = software.tooLarge = 0;
    }
    if (software.segmented !== segmented) this.countFor(outputs, TX_SEGMENTED, 1);
    return software.emitted - emitted;
  }

  /** Counts `frames` passed up for `outputs` and lost (no room in the RX ring) as their drops; for no output (a BPDU for the Switch itself), as the port's receive drops. */
  private countDropped(outputs: PortSet, frames: number): void {
    if (outputs.empty) this.context.rx.countDrops(frames);
    else this.countFor(outputs, TX_DROPS, frames);
  }

  /** Adds `amount` to output counter `which` of every port of `outputs` (which stays as it is). */
  private countFor(outputs: PortSet, which: number, amount: number): void {
    const each = this.scratch;
    each.low = outputs.low;
    each.high = outputs.high;
    for (let output = each.take(); output >= 0; output = each.take()) this.counters[outputCounter(this.index, output, which)] += amount;
  }
}
