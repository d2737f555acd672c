/**
 * Switch: a multi-port learning switch over netdevs of any provider (system, tap, pltap, unix,
 * dummy; in any namespace).  Each port has a forwarding loop on the main thread that takes its
 * received frames a batch at a time, learns source MACs, and queues each frame to the port that
 * owns its destination, or floods it (broadcast, multicast, unknown or aged unicast) to every
 * other port of its VLAN; each output port then gets its frames with one sendBatch, in order.
 * A frame never goes back out its input port.
 *
 * VLANs: a port with an access VLAN (1-4094) carries untagged frames of that VLAN; a port without
 * one is a trunk: its frames keep their 802.1Q tag (untagged ones are VLAN 0).  A frame going
 * from an access port to a trunk is tagged; from a trunk to an access port, untagged.  Only then
 * is a new frame made; otherwise frames are forwarded as they are, with no allocation per frame.
 */
import type { Netdev } from '../main/netdev.js';

/** Options of a Switch. */
export interface SwitchOptions {
  /** How long a learned MAC stays valid without being seen again (default 300 s). */
  agingSeconds?: number;
  /** Called with a line of text when something happens that an operator should know (a port removed). */
  onNotice?: (message: string) => void;
}

/** Options of a port. */
export interface PortOptions {
  /** Access VLAN 1-4094 (untagged frames of that VLAN); none: a trunk. */
  vlan?: number;
}

/** Per-port counters. */
export interface PortCounters {
  rxFrames: number;
  rxBytes: number;
  txFrames: number;
  txBytes: number;
  /** Frames dropped: filtered (destination behind the input port), or refused by the output device. */
  drops: number;
  /** Frames received on this port that were flooded. */
  floods: number;
}

interface Port {
  readonly dev: Netdev;
  readonly vlan: number | null;
  readonly counters: PortCounters;
  /** Frames queued for this port by the batch being forwarded. */
  readonly pending: Uint8Array[];
  loop: Promise<void> | null;
  iterator: AsyncIterableIterator<Uint8Array[]> | null;
  removed: boolean;
}

interface Entry {
  port: Port;
  seen: number;
}

const TPID = 0x8100;

/** The 48-bit MAC at `offset` as a number (exact: below 2^53). */
function macAt(frame: Uint8Array, offset: number): number {
  return frame[offset]! * 2 ** 40 + frame[offset + 1]! * 2 ** 32 + ((frame[offset + 2]! << 24) >>> 0) + (frame[offset + 3]! << 16) + (frame[offset + 4]! << 8) + frame[offset + 5]!;
}

/** The VID of an 802.1Q-tagged frame, or 0. */
function vidOf(frame: Uint8Array): number {
  return frame.length >= 18 && ((frame[12]! << 8) | frame[13]!) === TPID ? ((frame[14]! << 8) | frame[15]!) & 0x0fff : 0;
}

/** `frame` with an 802.1Q tag for `vid` inserted after the MAC addresses. */
function tagged(frame: Uint8Array, vid: number): Uint8Array {
  const out = new Uint8Array(frame.length + 4);
  out.set(frame.subarray(0, 12), 0);
  out[12] = TPID >> 8;
  out[13] = TPID & 0xff;
  out[14] = (vid >> 8) & 0x0f;
  out[15] = vid & 0xff;
  out.set(frame.subarray(12), 16);
  return out;
}

/** `frame` without its 802.1Q tag. */
function untagged(frame: Uint8Array): Uint8Array {
  const out = new Uint8Array(frame.length - 4);
  out.set(frame.subarray(0, 12), 0);
  out.set(frame.subarray(16), 12);
  return out;
}

export class Switch {
  private readonly ports = new Map<Netdev, Port>();
  /** MAC tables, one per VLAN (0: untagged frames of trunks). */
  private readonly tables = new Map<number, Map<number, Entry>>();
  private readonly agingMs: number;
  private readonly notice: (message: string) => void;
  private readonly ager: NodeJS.Timeout;

  constructor(options: SwitchOptions = {}) {
    const aging = options.agingSeconds ?? 300;
    if (!(aging > 0)) throw new RangeError(`agingSeconds must be positive, not ${aging}`);
    this.agingMs = aging * 1000;
    this.notice = options.onNotice ?? (() => {});
    // Forget aged entries now and then (lookups ignore them anyway); the timer never keeps the process alive.
    this.ager = setInterval(() => this.purge(), Math.max(1000, this.agingMs / 2));
    this.ager.unref();
  }

  /** Adds `dev` as a port and starts forwarding its frames.  RangeError for a bad VLAN or a port added twice. */
  addPort(dev: Netdev, options: PortOptions = {}): void {
    const { vlan } = options;
    if (vlan !== undefined && !(Number.isInteger(vlan) && vlan >= 1 && vlan <= 4094)) throw new RangeError(`vlan must be 1-4094, not ${vlan}`);
    if (this.ports.has(dev)) throw new RangeError(`${dev.name} is already a port`);
    const port: Port = {
      dev,
      vlan: vlan ?? null,
      counters: { rxFrames: 0, rxBytes: 0, txFrames: 0, txBytes: 0, drops: 0, floods: 0 },
      pending: [],
      loop: null,
      iterator: null,
      removed: false,
    };
    this.ports.set(dev, port);
    port.loop = this.forward(port);
  }

  /** Stops forwarding from `dev`, forgets what was learned on it, and resolves once its loop has ended. */
  async removePort(dev: Netdev): Promise<void> {
    const port = this.ports.get(dev);
    if (!port) return;
    this.detach(port);
    await port.loop;
  }

  /** The ports' names and counters. */
  counters(): { name: string; vlan: number | null; counters: PortCounters }[] {
    return [...this.ports.values()].map((p) => ({ name: p.dev.name, vlan: p.vlan, counters: { ...p.counters } }));
  }

  /** Number of MACs learned (all VLANs). */
  get learned(): number {
    let n = 0;
    for (const table of this.tables.values()) n += table.size;
    return n;
  }

  /** Removes every port and stops. */
  async close(): Promise<void> {
    clearInterval(this.ager);
    await Promise.all([...this.ports.keys()].map((dev) => this.removePort(dev)));
  }

  private detach(port: Port): void {
    if (port.removed) return;
    port.removed = true;
    this.ports.delete(port.dev);
    for (const table of this.tables.values()) {
      for (const [mac, entry] of table) if (entry.port === port) table.delete(mac);
    }
    void port.iterator?.return?.(); // ends the loop, also while it waits for frames
  }

  private purge(): void {
    const oldest = Date.now() - this.agingMs;
    for (const table of this.tables.values()) {
      for (const [mac, entry] of table) if (entry.seen < oldest) table.delete(mac);
    }
  }

  private table(vlan: number): Map<number, Entry> {
    let table = this.tables.get(vlan);
    if (!table) {
      table = new Map();
      this.tables.set(vlan, table);
    }
    return table;
  }

  /** The forwarding loop of one port: until its device ends or fails, or the port is removed. */
  private async forward(port: Port): Promise<void> {
    try {
      port.iterator = port.dev.batches();
      for await (const batch of port.iterator) {
        if (port.removed) break;
        this.switchBatch(port, batch);
        await this.flush(port);
      }
      if (!port.removed) this.notice(`port ${port.dev.name} removed: its device closed`);
    } catch (error) {
      if (!port.removed) this.notice(`port ${port.dev.name} removed: ${(error as Error).message}`);
    } finally {
      this.detach(port);
    }
  }

  /** Learns and queues every frame of `batch` to its output ports' pending lists. */
  private switchBatch(input: Port, batch: Uint8Array[]): void {
    const now = Date.now();
    const counters = input.counters;
    for (const frame of batch) {
      counters.rxFrames++;
      counters.rxBytes += frame.length;
      const vlan = input.vlan ?? vidOf(frame);
      const table = this.table(vlan);
      if ((frame[6]! & 1) === 0) {
        const source = macAt(frame, 6);
        const entry = table.get(source);
        if (entry) {
          entry.port = input;
          entry.seen = now;
        } else {
          table.set(source, { port: input, seen: now });
        }
      }
      if ((frame[0]! & 1) === 0) {
        const entry = table.get(macAt(frame, 0));
        if (entry && now - entry.seen <= this.agingMs && !entry.port.removed) {
          if (entry.port === input) counters.drops++;
          else this.queue(input, entry.port, frame, vlan);
          continue;
        }
      }
      counters.floods++;
      for (const output of this.ports.values()) {
        if (output !== input && (output.vlan === null || output.vlan === vlan)) this.queue(input, output, frame, vlan);
      }
    }
  }

  /** Queues `frame` (of `vlan`) from `input` to `output`, tagging or untagging between access ports and trunks. */
  private queue(input: Port, output: Port, frame: Uint8Array, vlan: number): void {
    let out = frame;
    if (input.vlan !== null && output.vlan === null) out = tagged(frame, vlan);
    else if (input.vlan === null && output.vlan !== null && vidOf(frame) !== 0) out = untagged(frame);
    output.pending.push(out);
  }

  /** Sends every output port its pending frames (one sendBatch each, in order). */
  private async flush(input: Port): Promise<void> {
    for (const output of this.ports.values()) {
      if (output === input || output.pending.length === 0) continue;
      const frames = output.pending.splice(0);
      try {
        await output.dev.sendBatch(frames);
        output.counters.txFrames += frames.length;
        for (const frame of frames) output.counters.txBytes += frame.length;
      } catch {
        output.counters.drops += frames.length;
      }
    }
  }
}
