/**
 * Switch: a multi-port learning switch over netdevs of any provider (system, tap, pltap, unix,
 * dummy; in any namespace).  Frames are forwarded to the port that owns their destination MAC,
 * or flooded (broadcast, multicast, unknown or aged unicast) to every other port of their VLAN;
 * never back out their input port, and in order from one port to another.  The MAC table is in
 * shared memory (MacTable).
 *
 * Two paths.  A port whose I/O half can stage frames and share its packet socket (the system
 * provider) forwards in its own worker: a ForwardingAgent learns, looks up, and sends each batch
 * straight out of the other ports' sockets, with no hop through the main thread.  Every other
 * port, and any frame an agent cannot send as it is (an output without a socket, a VLAN tag to
 * add or remove), goes through the main thread: a loop per port takes a batch from batches(),
 * and each output gets its frames with one trySendBatch.  The main thread also keeps the ports,
 * aging and counters.
 *
 * Congestion: every output has one egress queue, and a frame that finds it full is dropped and
 * counted against that output (txDropped), on both paths: on the main thread the queue is the
 * output device's TX ring, in a worker it is the kernel's queue of the output's device (sendmmsg
 * says ENOBUFS or EAGAIN).  No input ever waits for an output, so one slow port never slows
 * traffic between two others, and no frame is held after its input's RX ring space is released.
 *
 * VLANs: a port with an access VLAN (1-4094) carries untagged frames of that VLAN; a port without
 * one is a trunk: its frames keep their 802.1Q tag (untagged ones are VLAN 0).  A frame going
 * from an access port to a trunk is tagged; from a trunk to an access port, untagged.  Only then
 * is a new frame made; otherwise frames are forwarded as they are, with no allocation per frame.
 *
 * Offloads: a port opened with offloads (Netdev.offloads) carries vnet frames, GSO super-frames
 * among them, and gets them whole, from either path, as does any system port from a worker
 * (its socket carries vnet headers whatever the mode); a port reached through the main thread
 * without offloads gets plain frames, a super-frame segmented in software (by the input's worker
 * on the worker path, on the main thread for a main-path input such as a tap) and counted in its
 * txSegmented.  Between the two
 * kinds the header is added or taken away (a copy), and a VLAN tag added or removed moves the
 * header's offsets with it.
 *
 * As a standard bridge: frames to reserved group addresses 01:80:c2:00:00:0X are not forwarded
 * (groupFwdMask excepted), nor frames with an invalid source; a MAC moving between ports again and
 * again is reported ('macFlap'); with the stp option the 802.1D spanning tree (spanning-tree.ts)
 * runs on the main thread, and both paths honour its port states (fabric.ts switchControl).
 */
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { parseMac } from '../common/addresses.js';
import { NetdevError } from '../common/errors.js';
import type { AgentHandle, Netdev } from '../main/netdev.js';
import { sys } from '../sys/libc.js';
import { vidAt, withoutVlanTag, withVlanTag } from '../common/ethernet.js';
import { SoftwareOffload, type FrameSink } from '../common/software-offload.js';
import { needsSoftwareOffload, shiftVnetHeader, VNET_HDR_LEN } from '../common/vnet-header.js';
import {
  BLOCKED, CONTROL_MAX_AGE, CONTROL_STATES, FILTERED, FLOODS, forwardingCounters, inputCounter, INVALID_SOURCE, MAX_PORTS, OUTPUT_COUNTERS, outputCounter, PassUpMasks, PortSet, RESERVED, RX_BYTES, RX_FRAMES, TX_BYTES, TX_DROPS,
  TX_FRAMES, TX_SEGMENTED, switchControl, type AgentStart, type OutputSpec,
} from './fabric.js';
import { bridgeIdText } from './bpdu.js';
import { BLOCKING, DISABLED, FORWARDING, LEARNING, SpanningTree, STATE_NAMES, type PortRole, type PortState } from './spanning-tree.js';
import { FILTER, ForwardingDecision, GROUP_FWD_RESTRICTED, LOCAL, reservedForwardMask } from './decision.js';
import { FlapDetector } from './flap-detector.js';
import { MacTable } from './mac-table.js';

/** Options of a Switch. */
export interface SwitchOptions {
  /** How long a learned MAC stays valid without being seen again (default 300 s). */
  agingSeconds?: number;
  /** Called with a line of text when something happens that an operator should know (a port removed). */
  onNotice?: (message: string) => void;
  /**
   * Which reserved group addresses 01:80:c2:00:00:00-0f are forwarded, as Linux's bridge option
   * `group_fwd_mask`: bit N lets 01:80:c2:00:00:0N through (flooded); the others are never
   * forwarded (IEEE 802.1D 7.12.6).  16 bits; bits 0 (STP), 1 (MAC control, pause) and 2 (LACP)
   * cannot be set (EINVAL), as in Linux.  STP BPDUs are flooded anyway while the Switch runs no
   * spanning tree, as Linux does with stp_state 0.  Default 0.
   */
  groupFwdMask?: number;
  /**
   * When a MAC counts as flapping: it moved between ports more than `moves` times (default 3)
   * within `seconds` (default 10).  The Switch then emits 'macFlap', at most once per MAC and
   * VLAN per `seconds`.
   */
  macFlap?: { moves?: number; seconds?: number };
  /**
   * Runs the 802.1D spanning tree protocol on the ports (true: with the defaults); off by
   * default, as in Linux.  See StpOptions.
   */
  stp?: boolean | StpOptions;
}

/** The Switch's spanning tree (802.1D-1998 STP), with 802.1D's defaults and ranges. */
export interface StpOptions {
  /** Bridge priority 0-65535 (default 32768); the lowest bridge ID (priority, then MAC) is the root. */
  priority?: number;
  /** Seconds: hello time 1-10 (default 2), max age 6-40 (20), forward delay 4-30 (15); the root's are used by every bridge. */
  helloTime?: number;
  maxAge?: number;
  forwardDelay?: number;
  /** The bridge's MAC (its ID's low bytes, and its BPDUs' source), as 02:00:00:00:00:01; default a random locally administered one. */
  mac?: string;
}

/** A port's part in the spanning tree (counters()' `stp`). */
export interface PortStp {
  role: PortRole;
  state: (typeof STATE_NAMES)[number];
}

/** The spanning tree as the Switch sees it (Switch.spanningTree()); IDs as Linux writes them (8000.2:0:0:0:0:1). */
export interface SpanningTreeStatus {
  bridgeId: string;
  rootId: string;
  rootPathCost: number;
  /** The port towards the root; null: this Switch is the root. */
  rootPort: string | null;
  /** A topology change is under way: MACs age out after the forward delay. */
  topologyChange: boolean;
}

/** A MAC that moves between ports again and again (the Switch's 'macFlap' event). */
export interface MacFlap {
  /** The MAC, as 02:00:00:00:00:01. */
  mac: string;
  /** Its VLAN (0: untagged on trunks). */
  vlan: number;
  /** The ports it moved between (names, in the order it first reached each). */
  ports: string[];
  /** How many times it moved within `seconds`. */
  moves: number;
  seconds: number;
}

/** The events of a Switch. */
export interface SwitchEvents {
  macFlap: [MacFlap];
}

/** Options of a port. */
export interface PortOptions {
  /** Access VLAN 1-4094 (untagged frames of that VLAN); none: a trunk. */
  vlan?: number;
  /** With the spanning tree on: port priority 0-240, a multiple of 16 (default 128), and path cost 1-200000000 (default 100). */
  stpPriority?: number;
  stpPathCost?: number;
}

/** Per-port counters. */
export interface PortCounters {
  /** Frames (and their bytes) the Switch received on this port. */
  rxFrames: number;
  rxBytes: number;
  /** Frames (and their bytes) the Switch sent out of this port. */
  txFrames: number;
  txBytes: number;
  /** Frames received on this port that were flooded. */
  floods: number;
  /** Frames received on this port and not forwarded, by rule: their destination is behind this port, or they are tagged on an access port. */
  filtered: number;
  /** Frames received on this port for a reserved group address 01:80:c2:00:00:0X that is not forwarded (not in groupFwdMask), dropped. */
  reserved: number;
  /** Frames received on this port with an invalid source address (a group address, or 00:00:00:00:00:00), dropped. */
  invalidSource: number;
  /** Frames received on this port not forwarded because of spanning tree states: this port does not forward (blocking, listening, learning), or the port of their destination does not. */
  blocked: number;
  /**
   * Frames this port's device received that never reached the Switch: its RX ring was full, or
   * (system devices) the kernel's queue in front of its worker (the socket's receive ring).
   */
  rxDropped: number;
  /** Frames for this port that were dropped: its egress queue was full, or its device refused them. */
  txDropped: number;
  /** GSO super-frames for this port that were segmented in software: it is reached through the main thread and its device was opened without offloads (each segment is counted in txFrames). */
  txSegmented: number;
}

interface Port {
  readonly dev: Netdev;
  /** Index in the MAC table and the shared counters. */
  readonly index: number;
  readonly vlan: number | null;
  /** A packet socket of the device that agents send on, or -1. */
  fd: number;
  /** The eventfd that wakes the port's worker while it waits in poll(2), or -1 (this thread owns it). */
  kickFd: number;
  /** The port's worker agent while its worker forwards its frames itself, or null. */
  agentHandle: AgentHandle | null;
  /** Set while the port's worker is being made to forward; its loop waits for it before forwarding a batch. */
  attaching: Promise<void> | null;
  /**
   * How many frames the worker had put in the device's RX ring when its agent started (null: no
   * agent): every later frame is one the agent passed up, already counted, learned and sent
   * wherever the agent could, and its pass-up mask says where the main thread must send it.
   */
  agentFrom: number | null;
  masks: PassUpMasks | null;
  /** The device's receive drops when the port was added (its rxDropped counts from there). */
  readonly dropsBefore: number;
  /** Frames queued for this port by the batch being forwarded (filled and sent in one synchronous step). */
  readonly pending: Uint8Array[];
  loop: Promise<void> | null;
  iterator: AsyncIterableIterator<Uint8Array[]> | null;
  removed: boolean;
}

/** The worker agent module that forwards in a system port's worker. */
const FORWARDING_AGENT = new URL('./forwarding-agent.js', import.meta.url);
/** Entries of the MAC table (a power of two). */
const TABLE_SIZE = 8192;
/** A port's loop that forwards without a pause gives the event loop a turn this often. */
const YIELD_AFTER_MS = 2;

const yieldToEventLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** How often the spanning tree's timers run (802.1D's timers count whole seconds; this is well within one). */
const STP_TICK_MS = 100;
/** How often the main thread reads the MAC table's move log. */
const MOVE_CHECK_MS = 500;

export class Switch extends EventEmitter<SwitchEvents> {
  private readonly ports = new Map<Netdev, Port>();
  /** Ports by index; an index is free again once its port is fully removed. */
  private readonly slots: (Port | undefined)[] = new Array<Port | undefined>(MAX_PORTS);
  /** Indices of removed ports that cannot be given out yet (see release). */
  private readonly reserved = new Set<number>();
  /** Ports whose worker forwards (removed ones too, until their agent has stopped). */
  private readonly agents = new Set<Port>();
  /** Indices waiting until every agent port's loop has read past the frames that may name them. */
  private readonly releases: { index: number; until: Map<Port, number> }[] = [];
  /** Per output port: what ports that are gone sent it, dropped or segmented for it (its output counters: TX_FRAMES ...). */
  private readonly retired = new Float64Array(MAX_PORTS * OUTPUT_COUNTERS);
  private readonly table = new MacTable(TABLE_SIZE);
  /** Counters of the agents (each row written by one port's worker) and of the main thread (same layout). */
  private readonly shared = forwardingCounters();
  private readonly mainCounters = forwardingCounters();
  /** The pass-up mask of the frame being forwarded (reused). */
  private readonly passedUp = new PortSet();
  private readonly maxAge: number;
  /** The reserved group addresses forwarded (ForwardingDecision's reservedForward). */
  private readonly reservedForward: number;
  private readonly decision: ForwardingDecision;
  private readonly notice: (message: string) => void;
  private readonly ager: NodeJS.Timeout;
  /** Port changes reach the workers one at a time, in order. */
  private reconfiguring: Promise<void> = Promise.resolve();
  private readonly flaps: FlapDetector;
  private readonly flapSeconds: number;
  private readonly moveChecker: NodeJS.Timeout;
  /** The aging time in use and each port's spanning tree state, read by both paths (fabric.ts switchControl). */
  private readonly control = switchControl();
  private readonly stp: SpanningTree | null;
  private readonly stpTimer: NodeJS.Timeout | null = null;
  /** Ports whose MACs the next spanning tree tick forgets again (see stpTick), and when the last short-aging purge ran. */
  private readonly forgetAgain = new Set<number>();
  private lastShortPurge = 0;

  constructor(options: SwitchOptions = {}) {
    super();
    const aging = options.agingSeconds ?? 300;
    if (typeof aging !== 'number' || !(aging > 0)) throw new NetdevError({ code: 'EINVAL', call: 'Switch', detail: `agingSeconds must be a positive number, not ${String(aging)}` });
    const groupFwdMask = options.groupFwdMask ?? 0;
    if (!(Number.isInteger(groupFwdMask) && groupFwdMask >= 0 && groupFwdMask <= 0xffff)) {
      throw new NetdevError({ code: 'EINVAL', call: 'Switch', detail: `groupFwdMask must be a 16-bit mask (0-0xffff), not ${String(groupFwdMask)}` });
    }
    if ((groupFwdMask & GROUP_FWD_RESTRICTED) !== 0) {
      throw new NetdevError({ code: 'EINVAL', call: 'Switch', detail: `groupFwdMask 0x${groupFwdMask.toString(16)}: bits 0-2 (STP, MAC control/pause, LACP: 01:80:c2:00:00:00-02) cannot be forwarded, as in Linux` });
    }
    this.maxAge = MacTable.ticks(aging * 1000);
    this.control[CONTROL_MAX_AGE] = this.maxAge;
    this.stp = options.stp ? this.startSpanningTree(options.stp === true ? {} : options.stp) : null;
    if (this.stp) {
      this.stpTimer = setInterval(() => this.stpTick(), STP_TICK_MS);
      this.stpTimer.unref();
    }
    this.reservedForward = reservedForwardMask(groupFwdMask, this.stp !== null);
    this.decision = new ForwardingDecision(this.table, this.control, this.reservedForward, this.local);
    this.notice = options.onNotice ?? (() => {});
    // Forget aged entries now and then (lookups ignore them anyway); the timer never keeps the process alive.
    this.ager = setInterval(() => this.table.purge(this.table.now(), this.maxAge), Math.max(1000, aging * 500));
    this.ager.unref();
    const { moves = 3, seconds = 10 } = options.macFlap ?? {};
    if (!(Number.isInteger(moves) && moves >= 1)) throw new NetdevError({ code: 'EINVAL', call: 'Switch', detail: `macFlap.moves must be a positive integer, not ${String(moves)}` });
    if (typeof seconds !== 'number' || !(seconds > 0)) throw new NetdevError({ code: 'EINVAL', call: 'Switch', detail: `macFlap.seconds must be a positive number, not ${String(seconds)}` });
    this.flaps = new FlapDetector(this.table, moves, seconds);
    this.flapSeconds = seconds;
    this.moveChecker = setInterval(() => this.checkMoves(), MOVE_CHECK_MS);
    this.moveChecker.unref();
  }

  /** Reserved group addresses that are the Switch's own (ForwardingDecision's `local`): STP BPDUs while its spanning tree runs. */
  private get local(): number {
    return this.stp ? 1 : 0;
  }

  private startSpanningTree(options: StpOptions): SpanningTree {
    const { priority = 32768, helloTime = 2, maxAge = 20, forwardDelay = 15 } = options;
    const check = (name: string, value: number, min: number, max: number) => {
      if (typeof value !== 'number' || !(Number.isInteger(value) && value >= min && value <= max)) {
        throw new NetdevError({ code: 'EINVAL', call: 'Switch', detail: `stp.${name} must be an integer from ${min} to ${max}, not ${String(value)}` });
      }
    };
    check('priority', priority, 0, 65535);
    check('helloTime', helloTime, 1, 10);
    check('maxAge', maxAge, 6, 40);
    check('forwardDelay', forwardDelay, 4, 30);
    let mac: Uint8Array;
    if (options.mac === undefined) {
      mac = randomBytes(6);
      mac[0] = (mac[0]! & 0xfe) | 0x02; // unicast, locally administered
    } else {
      mac = /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i.test(options.mac) ? parseMac(options.mac) : new Uint8Array(0);
      if (mac.length !== 6 || (mac[0]! & 1) !== 0 || mac.every((b) => b === 0)) throw new NetdevError({ code: 'EINVAL', call: 'Switch', detail: `stp.mac must be a unicast MAC such as 02:00:00:00:00:01, not ${options.mac}` });
    }
    const host = {
      send: (index: number, frame: Uint8Array) => this.sendOwn(index, frame),
      setState: (index: number, state: PortState) => this.setPortState(index, state),
    };
    return new SpanningTree(host, priority, mac, { helloTime, maxAge, forwardDelay }, performance.now());
  }

  /**
   * Runs the spanning tree's timers; while a topology change lasts, shortens MAC aging to the
   * forward delay (802.1D 8.3.5): lookups ignore older entries, and they are removed once a
   * second, so that they do not come back when it ends.  Forgets again the MACs of ports that
   * stopped learning at the last tick: a worker that read the old state may have learned one since.
   */
  private stpTick(): void {
    const stp = this.stp!;
    const now = performance.now();
    for (const index of this.forgetAgain) this.table.forgetPort(index);
    this.forgetAgain.clear();
    stp.tick(now);
    const shortAge = Math.min(this.maxAge, MacTable.ticks(stp.forwardDelay * 1000));
    this.control[CONTROL_MAX_AGE] = stp.topologyChange ? shortAge : this.maxAge;
    if (stp.topologyChange && now - this.lastShortPurge >= 1000) {
      this.table.purge(this.table.now(), shortAge);
      this.lastShortPurge = now;
    }
  }

  /** Sends a frame of the Switch's own (a BPDU) out of port `index`; a full TX ring drops it (the protocol sends again). */
  private sendOwn(index: number, frame: Uint8Array): void {
    const port = this.slots[index];
    if (!port) return;
    const out = port.dev.offloads ? withHeader(new Uint8Array(VNET_HDR_LEN), frame, 0) : frame;
    const at = outputCounter(index, index, 0); // a port's row of its own sends: no frame is ever forwarded back out of its input
    if (trySendOrRefuse(port.dev, out)) {
      this.mainCounters[at + TX_FRAMES]++;
      this.mainCounters[at + TX_BYTES] += frame.length;
    } else {
      this.mainCounters[at + TX_DROPS]++;
    }
  }

  /** Applies a spanning tree state to port `index` on both paths; a port that stops learning forgets its MACs. */
  private setPortState(index: number, state: PortState): void {
    const before = this.control[CONTROL_STATES + index];
    this.control[CONTROL_STATES + index] = state;
    if ((before === LEARNING || before === FORWARDING) && state !== LEARNING && state !== FORWARDING) {
      this.table.forgetPort(index);
      this.forgetAgain.add(index);
    }
  }

  /** The spanning tree's view, or null when it does not run. */
  spanningTree(): SpanningTreeStatus | null {
    if (!this.stp) return null;
    const { bridgeId, rootId, rootPathCost, rootPort, topologyChange } = this.stp.status;
    return { bridgeId: bridgeIdText(bridgeId), rootId: bridgeIdText(rootId), rootPathCost, rootPort: rootPort === null ? null : (this.slots[rootPort]?.dev.name ?? null), topologyChange };
  }

  /** Emits 'macFlap' for each MAC the flap detector finds flapping in the moves logged since the last check. */
  private checkMoves(): void {
    for (const { mac, vlan, ports, moves } of this.flaps.check()) {
      this.emit('macFlap', { mac, vlan, ports: ports.map((index) => this.slots[index]?.dev.name ?? `#${index}`), moves, seconds: this.flapSeconds });
    }
  }

  /**
   * Adds `dev` as a port and starts forwarding its frames; a port that can forward in its
   * worker starts doing so a moment later.  NetdevError EINVAL for a bad VLAN, EEXIST for a port
   * added twice, ENOSPC beyond 64 ports.
   */
  addPort(dev: Netdev, options: PortOptions = {}): void {
    const { vlan, stpPriority = 128, stpPathCost = 100 } = options;
    const refuse = (code: string, detail: string) => new NetdevError({ code, device: dev.name, call: 'addPort', detail });
    if (vlan !== undefined && !(Number.isInteger(vlan) && vlan >= 1 && vlan <= 4094)) throw refuse('EINVAL', `vlan must be 1-4094, not ${String(vlan)}`);
    if (!(Number.isInteger(stpPriority) && stpPriority >= 0 && stpPriority <= 240 && stpPriority % 16 === 0)) throw refuse('EINVAL', `stpPriority must be 0-240, a multiple of 16, not ${String(stpPriority)}`);
    if (!(Number.isInteger(stpPathCost) && stpPathCost >= 1 && stpPathCost <= 200_000_000)) throw refuse('EINVAL', `stpPathCost must be 1-200000000, not ${String(stpPathCost)}`);
    if (this.ports.has(dev)) throw refuse('EEXIST', 'already a port of this Switch');
    if ([...this.agents].some((p) => p.dev === dev)) throw refuse('EBUSY', 'still being removed from this Switch: await removePort() first');
    let index = 0;
    while (index < MAX_PORTS && (this.slots[index] || this.reserved.has(index))) index++;
    if (index === MAX_PORTS) throw refuse('ENOSPC', `a Switch has at most ${MAX_PORTS} ports`);
    this.clearCounters(index);
    const port: Port = {
      dev,
      index,
      vlan: vlan ?? null,
      fd: -1,
      kickFd: -1,
      agentHandle: null,
      attaching: null,
      agentFrom: null,
      masks: null,
      dropsBefore: dev.receiveDrops,
      pending: [],
      loop: null,
      iterator: null,
      removed: false,
    };
    this.ports.set(dev, port);
    this.slots[index] = port;
    this.control[CONTROL_STATES + index] = this.stp ? BLOCKING : FORWARDING;
    this.stp?.addPort(index, stpPriority, stpPathCost, performance.now());
    port.loop = this.forward(port);
    this.reconfigure(() => this.startAgent(port));
  }

  /**
   * Resolves once every port change made so far has reached the ports' workers: from then on, a
   * port added earlier gets its share of what worker ports forward (until then, frames that
   * workers forward may miss it), and a port removed earlier gets nothing more.
   */
  async ready(): Promise<void> {
    await this.reconfiguring;
  }

  /** Stops forwarding from `dev`, forgets what was learned on it, and resolves once its loop has ended. */
  async removePort(dev: Netdev): Promise<void> {
    const port = this.ports.get(dev);
    if (!port) return;
    this.detach(port);
    await Promise.all([port.loop, this.reconfiguring]);
  }

  /**
   * The ports: name, VLAN, counters (both paths added up), where the port's received frames are
   * forwarded: 'worker' (its own worker) or 'main' (the main thread), and whether its device was
   * opened with offloads (it takes super-frames whole).
   */
  counters(): { name: string; vlan: number | null; path: 'worker' | 'main'; offloads: boolean; stp: PortStp | null; counters: PortCounters }[] {
    return [...this.ports.values()].map((p) => ({ name: p.dev.name, vlan: p.vlan, path: p.agentHandle ? 'worker' : 'main', offloads: p.dev.offloads, stp: this.stpOf(p), counters: this.countersOf(p) }));
  }

  private stpOf(port: Port): PortStp | null {
    const status = this.stp?.portStatus(port.index);
    return status ? { role: status.role, state: STATE_NAMES[status.state] } : null;
  }

  /** Number of MACs learned (all VLANs). */
  get learned(): number {
    return this.table.size;
  }

  /** Removes every port and stops. */
  async close(): Promise<void> {
    clearInterval(this.ager);
    clearInterval(this.moveChecker);
    if (this.stpTimer) clearInterval(this.stpTimer);
    await Promise.all([...this.ports.keys()].map((dev) => this.removePort(dev)));
  }

  /** close(), for `await using sw = new Switch()`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  private countersOf(port: Port): PortCounters {
    const r = this.retired;
    const retired = port.index * OUTPUT_COUNTERS;
    const c: PortCounters = {
      rxFrames: 0, rxBytes: 0, txFrames: r[retired + TX_FRAMES]!, txBytes: r[retired + TX_BYTES]!, floods: 0, filtered: 0, reserved: 0, invalidSource: 0, blocked: 0,
      rxDropped: port.dev.receiveDrops - port.dropsBefore, txDropped: r[retired + TX_DROPS]!, txSegmented: r[retired + TX_SEGMENTED]!,
    };
    for (const s of [this.shared, this.mainCounters]) {
      const row = inputCounter(port.index, 0);
      c.rxFrames += s[row + RX_FRAMES]!;
      c.rxBytes += s[row + RX_BYTES]!;
      c.floods += s[row + FLOODS]!;
      c.filtered += s[row + FILTERED]!;
      c.reserved += s[row + RESERVED]!;
      c.invalidSource += s[row + INVALID_SOURCE]!;
      c.blocked += s[row + BLOCKED]!;
      for (let input = 0; input < MAX_PORTS; input++) {
        const at = outputCounter(input, port.index, 0);
        c.txFrames += s[at + TX_FRAMES]!;
        c.txBytes += s[at + TX_BYTES]!;
        c.txDropped += s[at + TX_DROPS]!;
        c.txSegmented += s[at + TX_SEGMENTED]!;
      }
    }
    return c;
  }

  /**
   * Zeroes the counters of port index `index` before the index is given to a new port; what the
   * port that had it sent to the others stays in their counts.
   */
  private clearCounters(index: number): void {
    this.retired.fill(0, index * OUTPUT_COUNTERS, (index + 1) * OUTPUT_COUNTERS);
    for (const s of [this.shared, this.mainCounters]) {
      const row = inputCounter(index, 0);
      for (let output = 0; output < MAX_PORTS; output++) {
        const at = outputCounter(index, output, 0);
        for (let k = 0; k < OUTPUT_COUNTERS; k++) this.retired[output * OUTPUT_COUNTERS + k] += s[at + k]!;
      }
      s.fill(0, row, inputCounter(index + 1, 0));
      for (let input = 0; input < MAX_PORTS; input++) {
        const at = outputCounter(input, index, 0);
        s.fill(0, at, at + OUTPUT_COUNTERS);
      }
    }
  }

  private reconfigure(change: () => Promise<void>): void {
    this.reconfiguring = this.reconfiguring.then(change, change);
  }

  /** The other ports as `port`'s agent sees them. */
  private outputsOf(port: Port): OutputSpec[] {
    return [...this.ports.values()].filter((p) => p !== port).map((p) => ({ index: p.index, vlan: p.vlan, fd: p.fd, offloads: p.dev.offloads }));
  }

  /**
   * Tells every port's agent the current set of ports (errors: the device is going away, and its
   * loop says so).  Resolves with, per agent port, how many frames its worker had put in its RX
   * ring by then: frames passed up later name only ports of the new set.
   */
  private async updateAgents(): Promise<Map<Port, number>> {
    const told = new Map<Port, number>();
    await Promise.all(
      [...this.agents].map(async (p) => {
        try {
          told.set(p, (await p.agentHandle!.call('outputs', p.removed ? [] : this.outputsOf(p))) as number);
        } catch {
          // its worker has ended: it passes nothing up any more
        }
      }),
    );
    return told;
  }

  /** Shares the port's packet socket with the other agents and starts its own agent, where the provider can. */
  private async startAgent(port: Port): Promise<void> {
    if (port.removed) return;
    // Without a packet socket to share, the port is reached through the main thread.
    port.fd = await port.dev.sendingSocket().catch(() => -1);
    await this.updateAgents(); // either way the other agents must know of it
    if (port.removed || port.fd < 0) return;
    port.kickFd = sys.eventfd();
    const spec = { table: this.table.descriptor, counters: this.shared, index: port.index, vlan: port.vlan, control: this.control, reservedForward: this.reservedForward, local: this.local, outputs: this.outputsOf(port), kickFd: port.kickFd };
    const attach = port.dev.attachAgent(FORWARDING_AGENT, spec);
    port.attaching = attach.then(
      (handle) => {
        const start = handle.started as AgentStart;
        port.agentHandle = handle;
        port.agentFrom = start.from;
        port.masks = new PassUpMasks(start.masks);
        this.agents.add(port); // it forwards: every change of the ports must reach it
      },
      (error: unknown) => {
        if (!port.removed) this.notice(`port ${port.dev.name} forwards on the main thread: its worker cannot: ${(error as Error).message}`);
      },
    );
    await port.attaching;
    port.attaching = null;
  }

  /**
   * After a port is detached: its own agent stops (even if its handle has closed while its device
   * runs on), and the frames it had passed up that were not forwarded yet are dropped and counted;
   * then no other agent sends to it any more, its socket and eventfd close, and its index is
   * released once no frame left in a ring can name it.  If a worker cannot be reached it has
   * ended, and nothing rings its bell any more.
   */
  private async stopAgent(port: Port): Promise<void> {
    if (this.agents.delete(port)) {
      try {
        const until = (await port.agentHandle!.detach()) as number;
        this.dropPassedUp(port, until);
      } catch {
        // the worker has ended
      }
    }
    port.agentHandle = null;
    this.table.forgetPort(port.index); // again: its agent may have learned until it stopped
    const told = await this.updateAgents();
    for (const fd of [port.fd, port.kickFd]) if (fd >= 0) sys.close(fd);
    port.fd = -1;
    port.kickFd = -1;
    this.releases.push({ index: port.index, until: told });
    this.release();
  }

  /** Counts as dropped, for the ports they were for, the frames `port`'s agent passed up (up to record `until`) that its loop did not forward. */
  private dropPassedUp(port: Port, until: number): void {
    if (port.agentFrom === null) return;
    const counters = this.mainCounters;
    port.dev.discardReceived(until, (record) => {
      if (record < port.agentFrom!) return;
      const outputs = port.masks!.get(record - port.agentFrom!, this.passedUp);
      for (let index = outputs.take(); index >= 0; index = outputs.take()) counters[outputCounter(port.index, index, TX_DROPS)]++;
    });
  }

  /** Gives back the indices no frame in an agent port's RX ring can name any more. */
  private release(): void {
    for (let i = this.releases.length - 1; i >= 0; i--) {
      const { index, until } = this.releases[i]!;
      for (const [p, record] of until) if (p.removed || p.dev.recordsRead >= record) until.delete(p);
      if (until.size > 0) continue;
      this.releases.splice(i, 1);
      this.reserved.delete(index);
    }
  }

  private detach(port: Port): void {
    if (port.removed) return;
    port.removed = true;
    this.ports.delete(port.dev);
    this.slots[port.index] = undefined;
    this.reserved.add(port.index);
    this.stp?.removePort(port.index, performance.now());
    this.control[CONTROL_STATES + port.index] = DISABLED;
    this.table.forgetPort(port.index);
    void port.iterator?.return?.(); // ends the loop, also while it waits for frames
    this.reconfigure(() => this.stopAgent(port));
  }

  /** The forwarding loop of one port: until its device ends or fails, or the port is removed. */
  private async forward(port: Port): Promise<void> {
    try {
      port.iterator = port.dev.batches();
      let lastYield = performance.now();
      for await (const batch of port.iterator) {
        // A batch taken while the worker starts forwarding may hold frames its agent passed up:
        // which ones is known once the worker has said where its agent started.
        if (port.attaching) await port.attaching;
        if (port.removed) break;
        this.forwardBatch(port, batch);
        if (this.releases.length > 0) this.release();
        if (performance.now() - lastYield > YIELD_AFTER_MS) {
          await yieldToEventLoop(); // the batch is sent: holding its views over the pause is harmless
          lastYield = performance.now();
        }
      }
      if (!port.removed) this.notice(`port ${port.dev.name} removed: its device closed`);
    } catch (error) {
      if (!port.removed) this.notice(`port ${port.dev.name} removed: ${(error as Error).message}`);
    } finally {
      this.detach(port);
    }
  }

  /**
   * Learns and queues every frame of `batch` to its output ports' pending lists, then copies each
   * output's frames into its TX ring, in the same synchronous step: no frame of the batch (a view
   * into the input's RX ring) is referenced once this returns.  A frame that an agent passed up
   * was counted and learned by it, and goes only where its pass-up mask says.
   */
  private forwardBatch(input: Port, batch: Uint8Array[]): void {
    const { table } = this;
    const now = table.now();
    this.decision.beginBatch();
    const row = inputCounter(input.index, 0);
    const counters = this.mainCounters;
    // The RX ring record of each frame: the batch is the last batch.length records read.
    let record = input.dev.recordsRead - batch.length;
    const header = input.dev.offloads ? VNET_HDR_LEN : 0; // frames are vnet frames: the Ethernet frame comes after
    for (const frame of batch) {
      const seq = record++ - (input.agentFrom ?? Infinity);
      if (seq >= 0) {
        const vid = vidAt(frame, header, frame.length - header);
        const vlan = input.vlan ?? vid;
        const outputs = input.masks!.get(seq, this.passedUp);
        if (outputs.empty) this.stp?.receive(input.index, frame.subarray(header), performance.now()); // a BPDU
        for (let index = outputs.take(); index >= 0; index = outputs.take()) {
          const output = this.slots[index];
          if (!output) counters[outputCounter(input.index, index, TX_DROPS)]++; // that port is gone
          else if (!this.decision.forwards(index)) counters[row + BLOCKED]++; // it stopped forwarding since the agent decided
          else this.queue(input, output, frame, vlan, vid);
        }
        continue;
      }
      const to = this.decision.decide(counters, row, input.index, input.vlan, frame, header, frame.length - header, now);
      if (to === FILTER) continue;
      if (to === LOCAL) {
        this.stp?.receive(input.index, frame.subarray(header), performance.now());
        continue;
      }
      const { vid, vlan } = this.decision;
      const owner = to >= 0 ? this.slots[to] : undefined; // a port gone meanwhile: flooded
      if (owner) {
        if (this.decision.forwards(to)) this.queue(input, owner, frame, vlan, vid);
        else counters[row + BLOCKED]++;
      } else {
        counters[row + FLOODS]++;
        for (const output of this.ports.values()) {
          if (output !== input && (output.vlan === null || output.vlan === vlan) && this.decision.forwards(output.index)) this.queue(input, output, frame, vlan, vid);
        }
      }
    }
    for (const output of this.ports.values()) if (output.pending.length > 0) this.flush(input, output);
    this.variantsOf = null;
    this.variants.fill(null);
  }

  /**
   * Queues `frame` (of `vlan`, carrying tag `vid`) from `input` to `output`: as it is, or as the
   * variant the output needs (tagged from an access port to a trunk, untagged from a trunk to an
   * access port; with or without a vnet header; segmented), made once per frame whatever the
   * number of outputs.
   */
  private queue(input: Port, output: Port, frame: Uint8Array, vlan: number, vid: number): void {
    const retag = input.vlan !== null && output.vlan === null ? TAG : input.vlan === null && output.vlan !== null && vid !== 0 ? UNTAG : AS_IS;
    const fromVnet = input.dev.offloads;
    const toVnet = output.dev.offloads;
    if (retag === AS_IS && fromVnet === toVnet) {
      output.pending.push(frame);
      return;
    }
    if (this.variantsOf !== frame) {
      this.variantsOf = frame;
      this.variants.fill(null);
    }
    const which = retag * 2 + (toVnet ? 1 : 0);
    const variant = (this.variants[which] ??= this.makeVariant(frame, fromVnet, toVnet, retag, vlan));
    if (variant.segmented) this.mainCounters[outputCounter(input.index, output.index, TX_SEGMENTED)]++;
    if (variant.frames.length === 0) this.mainCounters[outputCounter(input.index, output.index, TX_DROPS)]++; // headers it cannot segment
    for (const made of variant.frames) output.pending.push(made);
  }

  /** The frame whose variants are in `variants` (by retag * 2 + toVnet). */
  private variantsOf: Uint8Array | null = null;
  private readonly variants: (Variant | null)[] = [null, null, null, null, null, null];
  private readonly software = new SoftwareOffload();

  /** `frame` as an output with (toVnet) or without offloads takes it, retagged. */
  private makeVariant(frame: Uint8Array, fromVnet: boolean, toVnet: boolean, retag: number, vlan: number): Variant {
    const tagged = (plain: Uint8Array): Uint8Array => (retag === TAG ? withVlanTag(plain, vlan) : retag === UNTAG ? withoutVlanTag(plain) : plain);
    if (!fromVnet) return { frames: [toVnet ? withHeader(new Uint8Array(VNET_HDR_LEN), tagged(frame), 0) : tagged(frame)], segmented: false };
    if (toVnet) return { frames: [withHeader(frame.subarray(0, VNET_HDR_LEN), tagged(frame.subarray(VNET_HDR_LEN)), retag === TAG ? 4 : retag === UNTAG ? -4 : 0)], segmented: false };
    if (!needsSoftwareOffload(frame, 0)) return { frames: [tagged(frame.subarray(VNET_HDR_LEN))], segmented: false };
    const sink = new FrameList();
    const segmented = this.software.segmented;
    if (!this.software.toPlain(frame, 0, frame.length, sink, false)) return { frames: [], segmented: false }; // counted as dropped by queue()
    this.software.dropped = 0; // the list never fills up
    return { frames: sink.frames.map(tagged), segmented: this.software.segmented !== segmented };
  }

  /**
   * Copies `output`'s pending frames from `input` into its TX ring (its egress queue), in order;
   * those that do not fit, and any the device refuses, are dropped and counted.
   */
  private flush(input: Port, output: Port): void {
    const frames = output.pending;
    const at = outputCounter(input.index, output.index, 0);
    const header = output.dev.offloads ? VNET_HDR_LEN : 0;
    const counters = this.mainCounters;
    let queued = -1;
    try {
      queued = output.dev.trySendBatch(frames);
    } catch {
      // A frame is longer than the output takes, or its device has failed: frame by frame.
    }
    for (let i = 0; i < frames.length; i++) {
      const frame = frames[i]!;
      if (queued >= 0 ? i < queued : trySendOrRefuse(output.dev, frame)) {
        counters[at + TX_FRAMES]++;
        counters[at + TX_BYTES] += frame.length - header;
      } else {
        counters[at + TX_DROPS]++;
      }
    }
    frames.length = 0;
  }
}

/** How a frame's VLAN tag changes from its input to an output. */
const AS_IS = 0;
const TAG = 1;
const UNTAG = 2;

/** A frame as one kind of output takes it: one frame, or its segments (none: it could not be segmented). */
interface Variant {
  frames: Uint8Array[];
  /** It was a super-frame, segmented in software. */
  segmented: boolean;
}

/** A new vnet frame: a copy of `header` (moved by `shift` for a tag added or removed) and then `frame`. */
function withHeader(header: Uint8Array, frame: Uint8Array, shift: number): Uint8Array {
  const made = new Uint8Array(VNET_HDR_LEN + frame.length);
  made.set(header);
  if (shift !== 0) shiftVnetHeader(made, 0, shift as 4 | -4);
  made.set(frame, VNET_HDR_LEN);
  return made;
}

/** A FrameSink that gives each frame its own new array. */
class FrameList implements FrameSink {
  bytes = new Uint8Array(0);
  readonly frames: Uint8Array[] = [];

  reserve(length: number): number {
    this.bytes = new Uint8Array(length);
    return 0;
  }

  commit(length: number): void {
    this.frames.push(this.bytes.subarray(0, length));
  }
}

/** dev.trySend(frame), with false for a frame the device refuses. */
function trySendOrRefuse(dev: Netdev, frame: Uint8Array): boolean {
  try {
    return dev.trySend(frame);
  } catch {
    return false;
  }
}
