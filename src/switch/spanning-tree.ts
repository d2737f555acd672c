/**
 * The 802.1D spanning tree protocol (IEEE 802.1D-1998 clause 8, as Linux's bridge runs it with
 * stp_state 1), as a pure state machine: BPDUs come in as bytes (receive), time comes in as a
 * number of milliseconds (tick, and every call's `now`), and what it does goes out through its
 * host: BPDU frames to send on a port, and port states to apply.  No timers, threads or devices
 * of its own, so that it can be tested by wiring bridges together in memory.
 */
import { bridgeId, decodeBpdu, encodeBpdu, type ConfigBpdu } from './bpdu.js';

/** Port states (802.1D 8.4); the numbers are what the forwarding paths read in shared memory. */
/** The largest root path cost a BPDU carries (32 bits): costs add up to it and stop there. */
const MAX_COST = 0xffffffff;

export const DISABLED = 0;
export const BLOCKING = 1;
export const LISTENING = 2;
export const LEARNING = 3;
export const FORWARDING = 4;
export type PortState = typeof DISABLED | typeof BLOCKING | typeof LISTENING | typeof LEARNING | typeof FORWARDING;
export const STATE_NAMES = ['disabled', 'blocking', 'listening', 'learning', 'forwarding'] as const;

/** A port's role in the tree, as the CLI shows it: the root port, a designated port, an alternate (blocked) one, or disabled. */
export type PortRole = 'root' | 'designated' | 'alternate' | 'disabled';

/** Bridge parameters (seconds), with 802.1D's ranges: hello 1-10, max age 6-40, forward delay 4-30. */
export interface BridgeTimes {
  helloTime: number;
  maxAge: number;
  forwardDelay: number;
}

/** What the state machine does to the world. */
export interface SpanningTreeHost {
  /** Sends the BPDU frame `frame` (a whole Ethernet frame) out of port `port`. */
  send(port: number, frame: Uint8Array): void;
  /** Port `port` is now in `state`. */
  setState(port: number, state: PortState): void;
}

/** 802.1D's hold time: at most one configuration BPDU per port per second. */
const HOLD_TIME = 1;

interface Port {
  readonly index: number;
  readonly portId: number;
  pathCost: number;
  state: PortState;
  designatedRoot: bigint;
  designatedCost: number;
  designatedBridge: bigint;
  designatedPort: number;
  topologyChangeAck: boolean;
  configPending: boolean;
  /** When the designated information's message age was 0 (ms), while the message age timer runs; else null. */
  messageAgeZero: number | null;
  /** Deadlines (ms) of the timers that run, else null. */
  messageAgeExpires: number | null;
  forwardDelayExpires: number | null;
  holdExpires: number | null;
}

export class SpanningTree {
  readonly bridgeId: bigint;
  private readonly ports = new Map<number, Port>();
  private designatedRoot: bigint;
  private rootPathCost = 0;
  private rootPort: Port | null = null;
  /** The times in use: the root's (from its BPDUs), or the bridge's own while it is root. */
  private times: BridgeTimes;
  private topologyChangeDetected = false;
  private topologyChangeFlag = false;
  private helloExpires: number | null = null;
  private tcnExpires: number | null = null;
  private topologyChangeExpires: number | null = null;

  /**
   * @param priority bridge priority 0-65535 (802.1D-2004: a multiple of 4096)
   * @param mac the bridge's MAC: the source of its BPDUs and the low bytes of its ID
   */
  constructor(
    private readonly host: SpanningTreeHost,
    priority: number,
    private readonly mac: Uint8Array,
    private readonly own: BridgeTimes,
    now: number,
  ) {
    this.bridgeId = bridgeId(priority, mac);
    this.designatedRoot = this.bridgeId;
    this.times = { ...own };
    this.helloExpires = now; // the first BPDUs go out at the first tick
  }

  /** True while a topology change is under way: MACs then age out after the forward delay (802.1D 8.3.5). */
  get topologyChange(): boolean {
    return this.topologyChangeFlag;
  }

  /** The forward delay in use (seconds): the root's. */
  get forwardDelay(): number {
    return this.times.forwardDelay;
  }

  /** The bridge as 802.1D sees it: its ID, the root's, its cost to the root and its root port (null: it is the root). */
  get status(): { bridgeId: bigint; rootId: bigint; rootPathCost: number; rootPort: number | null; topologyChange: boolean } {
    return { bridgeId: this.bridgeId, rootId: this.designatedRoot, rootPathCost: this.rootPathCost, rootPort: this.rootPort?.index ?? null, topologyChange: this.topologyChangeFlag };
  }

  /** Port `index`'s role and state. */
  portStatus(index: number): { role: PortRole; state: PortState } | null {
    const port = this.ports.get(index);
    if (!port) return null;
    const role: PortRole = port.state === DISABLED ? 'disabled' : port === this.rootPort ? 'root' : this.isDesignated(port) ? 'designated' : 'alternate';
    return { role, state: port.state };
  }

  /**
   * Enables port `index` (802.1D 8.8.1) with port priority `priority` (0-240, a multiple of 16) and
   * path cost `pathCost`; it starts blocking and goes through listening and learning to forwarding.
   */
  addPort(index: number, priority: number, pathCost: number, now: number): void {
    const port: Port = {
      index,
      portId: ((priority >> 4) << 12) | ((index + 1) & 0xfff),
      pathCost,
      state: BLOCKING,
      designatedRoot: 0n,
      designatedCost: 0,
      designatedBridge: 0n,
      designatedPort: 0,
      topologyChangeAck: false,
      configPending: false,
      messageAgeZero: null,
      messageAgeExpires: null,
      forwardDelayExpires: null,
      holdExpires: null,
    };
    this.ports.set(index, port);
    this.becomeDesignated(port);
    this.host.setState(index, BLOCKING);
    this.portStateSelection(now);
  }

  /** Disables and forgets port `index` (802.1D 8.8.2). */
  removePort(index: number, now: number): void {
    const port = this.ports.get(index);
    if (!port) return;
    const wasRoot = this.isRootBridge();
    this.becomeDesignated(port);
    this.setState(port, DISABLED);
    this.ports.delete(index);
    if (this.rootPort === port) this.rootPort = null;
    this.configurationUpdate();
    this.portStateSelection(now);
    if (this.isRootBridge() && !wasRoot) this.becameRoot(now);
  }

  /** Takes the Ethernet frame `frame` received on port `index`, if it is a BPDU (anything else is ignored). */
  receive(index: number, frame: Uint8Array, now: number): void {
    const port = this.ports.get(index);
    const bpdu = decodeBpdu(frame);
    if (!port || port.state === DISABLED || !bpdu) return;
    if (bpdu.type === 'tcn') {
      if (this.isDesignated(port)) {
        this.topologyChangeDetection(now);
        port.topologyChangeAck = true; // acknowledge_topology_change
        this.transmitConfig(port, now);
      }
      return;
    }
    if (bpdu.messageAge >= bpdu.maxAge) return; // aged out on its way
    if (this.supersedes(port, bpdu)) {
      const wasRoot = this.isRootBridge();
      port.designatedRoot = bpdu.rootId; // record_config_information
      port.designatedCost = bpdu.rootPathCost;
      port.designatedBridge = bpdu.bridgeId;
      port.designatedPort = bpdu.portId;
      port.messageAgeZero = now - bpdu.messageAge * 1000;
      port.messageAgeExpires = now + (bpdu.maxAge - bpdu.messageAge) * 1000;
      this.configurationUpdate();
      this.portStateSelection(now);
      if (wasRoot && !this.isRootBridge()) {
        this.helloExpires = null;
        if (this.topologyChangeDetected) {
          this.topologyChangeExpires = null;
          this.transmitTcn();
          this.tcnExpires = now + this.own.helloTime * 1000;
        }
      }
      if (port === this.rootPort) {
        this.times = { helloTime: bpdu.helloTime, maxAge: bpdu.maxAge, forwardDelay: bpdu.forwardDelay }; // record_config_timeout_values
        this.topologyChangeFlag = bpdu.topologyChange;
        this.configBpduGeneration(now);
        if (bpdu.topologyChangeAck) {
          this.topologyChangeDetected = false; // topology_change_acknowledged
          this.tcnExpires = null;
        }
      }
    } else if (this.isDesignated(port)) {
      this.transmitConfig(port, now); // reply with better information
    }
  }

  /** Runs the timers that have expired by `now` (call it often: every 100 ms does). */
  tick(now: number): void {
    if (this.helloExpires !== null && now >= this.helloExpires) {
      this.configBpduGeneration(now);
      this.helloExpires = now + this.own.helloTime * 1000;
    }
    if (this.tcnExpires !== null && now >= this.tcnExpires) {
      this.transmitTcn();
      this.tcnExpires = now + this.own.helloTime * 1000;
    }
    if (this.topologyChangeExpires !== null && now >= this.topologyChangeExpires) {
      this.topologyChangeDetected = false;
      this.topologyChangeFlag = false;
      this.topologyChangeExpires = null;
    }
    for (const port of [...this.ports.values()]) {
      if (port.messageAgeExpires !== null && now >= port.messageAgeExpires) this.messageAgeExpiry(port, now);
      if (port.forwardDelayExpires !== null && now >= port.forwardDelayExpires) {
        port.forwardDelayExpires = null;
        if (port.state === LISTENING) {
          this.setState(port, LEARNING);
          port.forwardDelayExpires = now + this.times.forwardDelay * 1000;
        } else if (port.state === LEARNING) {
          this.setState(port, FORWARDING);
          if (this.isDesignatedForSomePort()) this.topologyChangeDetection(now);
        }
      }
      if (port.holdExpires !== null && now >= port.holdExpires) {
        port.holdExpires = null;
        if (port.configPending) this.transmitConfig(port, now);
      }
    }
  }

  private messageAgeExpiry(port: Port, now: number): void {
    port.messageAgeExpires = null;
    port.messageAgeZero = null;
    const wasRoot = this.isRootBridge();
    this.becomeDesignated(port);
    this.configurationUpdate();
    this.portStateSelection(now);
    if (this.isRootBridge() && !wasRoot) this.becameRoot(now);
  }

  /** This bridge has just become the root: its own times, a topology change, BPDUs at once. */
  private becameRoot(now: number): void {
    this.times = { ...this.own };
    this.topologyChangeDetection(now);
    this.tcnExpires = null;
    this.configBpduGeneration(now);
    this.helloExpires = now + this.own.helloTime * 1000;
  }

  private isRootBridge(): boolean {
    return this.designatedRoot === this.bridgeId;
  }

  private isDesignated(port: Port): boolean {
    return port.designatedBridge === this.bridgeId && port.designatedPort === port.portId;
  }

  private isDesignatedForSomePort(): boolean {
    for (const port of this.ports.values()) if (port.designatedBridge === this.bridgeId) return true;
    return false;
  }

  /** 802.1D 8.6.2.2: the BPDU's information is better than what the port holds. */
  private supersedes(port: Port, bpdu: ConfigBpdu): boolean {
    if (bpdu.rootId !== port.designatedRoot) return bpdu.rootId < port.designatedRoot;
    if (bpdu.rootPathCost !== port.designatedCost) return bpdu.rootPathCost < port.designatedCost;
    if (bpdu.bridgeId !== port.designatedBridge) return bpdu.bridgeId < port.designatedBridge;
    return bpdu.bridgeId !== this.bridgeId || bpdu.portId <= port.designatedPort;
  }

  private becomeDesignated(port: Port): void {
    port.designatedRoot = this.designatedRoot;
    port.designatedCost = this.rootPathCost;
    port.designatedBridge = this.bridgeId;
    port.designatedPort = port.portId;
  }

  private configurationUpdate(): void {
    this.rootSelection();
    this.designatedPortSelection();
  }

  /** 802.1D 8.6.8. */
  private rootSelection(): void {
    let best: Port | null = null;
    for (const port of this.ports.values()) {
      if (this.isDesignated(port) || port.state === DISABLED || !(port.designatedRoot < this.bridgeId)) continue;
      if (best === null || better(port, best)) best = port;
    }
    this.rootPort = best;
    if (best === null) {
      this.designatedRoot = this.bridgeId;
      this.rootPathCost = 0;
    } else {
      this.designatedRoot = best.designatedRoot;
      this.rootPathCost = Math.min(MAX_COST, best.designatedCost + best.pathCost);
    }
  }

  /** 802.1D 8.6.9. */
  private designatedPortSelection(): void {
    for (const port of this.ports.values()) {
      if (
        this.isDesignated(port) ||
        port.designatedRoot !== this.designatedRoot ||
        this.rootPathCost < port.designatedCost ||
        (this.rootPathCost === port.designatedCost &&
          (this.bridgeId < port.designatedBridge || (this.bridgeId === port.designatedBridge && port.portId <= port.designatedPort)))
      ) {
        this.becomeDesignated(port);
      }
    }
  }

  /** 802.1D 8.6.11. */
  private portStateSelection(now: number): void {
    for (const port of this.ports.values()) {
      if (port.state === DISABLED) continue;
      if (port === this.rootPort || this.isDesignated(port)) {
        if (port !== this.rootPort) {
          port.messageAgeExpires = null;
          port.messageAgeZero = null;
        } else {
          port.configPending = false;
          port.topologyChangeAck = false;
        }
        if (port.state === BLOCKING) {
          this.setState(port, LISTENING);
          port.forwardDelayExpires = now + this.times.forwardDelay * 1000;
        }
      } else {
        port.configPending = false;
        port.topologyChangeAck = false;
        if (port.state !== BLOCKING) {
          if (port.state === FORWARDING || port.state === LEARNING) this.topologyChangeDetection(now);
          this.setState(port, BLOCKING);
          port.forwardDelayExpires = null;
        }
      }
    }
  }

  private topologyChangeDetection(now: number): void {
    if (this.isRootBridge()) {
      this.topologyChangeFlag = true;
      this.topologyChangeExpires = now + (this.own.maxAge + this.own.forwardDelay) * 1000;
    } else if (!this.topologyChangeDetected) {
      this.transmitTcn();
      this.tcnExpires = now + this.own.helloTime * 1000;
    }
    this.topologyChangeDetected = true;
  }

  private configBpduGeneration(now: number): void {
    for (const port of this.ports.values()) if (this.isDesignated(port) && port.state !== DISABLED) this.transmitConfig(port, now);
  }

  /** 802.1D 8.6.1. */
  private transmitConfig(port: Port, now: number): void {
    if (port.holdExpires !== null) {
      port.configPending = true;
      return;
    }
    const root = this.rootPort;
    const messageAge = root === null ? 0 : (now - (root.messageAgeZero ?? now)) / 1000 + 1 / 256;
    if (messageAge >= this.times.maxAge) return;
    const bpdu: ConfigBpdu = {
      type: 'config',
      rootId: this.designatedRoot,
      rootPathCost: this.rootPathCost,
      bridgeId: this.bridgeId,
      portId: port.portId,
      messageAge,
      ...this.times,
      topologyChange: this.topologyChangeFlag,
      topologyChangeAck: port.topologyChangeAck,
    };
    port.topologyChangeAck = false;
    port.configPending = false;
    port.holdExpires = now + HOLD_TIME * 1000;
    this.host.send(port.index, encodeBpdu(bpdu, this.mac));
  }

  private transmitTcn(): void {
    if (this.rootPort) this.host.send(this.rootPort.index, encodeBpdu({ type: 'tcn' }, this.mac));
  }

  private setState(port: Port, state: PortState): void {
    port.state = state;
    this.host.setState(port.index, state);
  }
}

/** 802.1D 8.6.8: port `a` is a better root port than `b`. */
function better(a: Port, b: Port): boolean {
  if (a.designatedRoot !== b.designatedRoot) return a.designatedRoot < b.designatedRoot;
  const [costA, costB] = [Math.min(MAX_COST, a.designatedCost + a.pathCost), Math.min(MAX_COST, b.designatedCost + b.pathCost)];
  if (costA !== costB) return costA < costB;
  if (a.designatedBridge !== b.designatedBridge) return a.designatedBridge < b.designatedBridge;
  if (a.designatedPort !== b.designatedPort) return a.designatedPort < b.designatedPort;
  return a.portId < b.portId;
}
