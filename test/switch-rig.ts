/**
 * A test rig for the Switch under load: hosts wired to switch ports (dummy pairs, or veth pairs in
 * a namespace of the test run), self-checking frames, a checker at every host, and an exact
 * account per output port:
 *
 *   frames sent towards it - frames dropped before the Switch (at each sender's port)
 *     = frames it received + frames dropped on its way out (the Switch's egress, the devices after it)
 *
 * Each phase of traffic has senders whose frames all go to one set of outputs (a flood, or one
 * learned host), so that a drop before the Switch is known to be a drop for each of them.
 */
import { expect } from 'vitest';
import { Switch, type Netdev, type NetdevManager, type PortCounters } from '../dist/index.js';
import { eventually, sleep } from './helpers.js';
import { FrameChecker, hostMac, TEST_ETHERTYPE, testFrame, UNKNOWN_MAC, lengthFor } from './integrity.js';
import type { TestNetns } from './netns-harness.js';

export type PortKind = 'dummy' | 'veth' | 'unix';

export interface HostSpec {
  kind: PortKind;
  /** Access VLAN of the host's switch port; none: a trunk, whose host sends frames tagged `hostVid`. */
  vlan?: number;
  hostVid?: number;
  /** MTU of both ends (default 1500). */
  mtu?: number;
  /** Ring size of both ends. */
  ringSize?: number;
  /** A pause after each batch the host reads (a slow receiver). */
  slowMs?: number;
}

export interface Host {
  readonly n: number;
  readonly spec: HostSpec;
  /** The host's end (sends and receives) and the switch's end of its wire. */
  readonly dev: Netdev;
  readonly port: Netdev;
  readonly checker: FrameChecker;
  /** Frames sent so far. */
  sent: number;
  /** Frames received that were not test frames of this rig, or not from a host of it. */
  strays: number;
  readonly reading: Promise<void>;
  /** The VLAN the host's frames belong to. */
  readonly vlan: number;
  /** While set, the host's reader waits for it before it reads on (a stopped receiver). */
  hold: Promise<void> | null;
}

type Stats = Awaited<ReturnType<Netdev['getStats']>>;

interface Snapshot {
  sent: Map<number, number>;
  received: Map<number, Map<number, number>>;
  pre: Map<number, number>;
  post: Map<number, number>;
}

/** Where frames from each sender of a phase go: 'flood' (unknown unicast) or the number of a host. */
export type Destination = 'flood' | number;

export class SwitchRig {
  readonly sw: Switch;
  readonly hosts = new Map<number, Host>();
  readonly notices: string[] = [];
  /** Per phase: the outputs each sender's frames go to. */
  private targets = new Map<number, number[]>();
  private base: Snapshot | null = null;
  /** Counters of ports no longer on the Switch, kept from their last reading. */
  private readonly gone = new Map<number, PortCounters>();

  /**
   * @param ns the namespace of veth hosts
   * @param dir a folder for the sockets of unix hosts
   */
  constructor(
    private readonly mgr: NetdevManager,
    private readonly ns: TestNetns | null = null,
    private readonly dir: string | null = null,
  ) {
    this.sw = new Switch({ onNotice: (line) => this.notices.push(line) });
  }

  /** Wires host `n` to a new switch port and starts its reader. */
  async add(n: number, spec: HostSpec): Promise<Host> {
    const pairs = { dummy: () => this.dummyPair(n, spec), veth: () => this.vethPair(n, spec), unix: () => this.unixPair(n, spec) };
    const { dev, port } = await pairs[spec.kind]();
    this.sw.addPort(port, spec.vlan === undefined ? {} : { vlan: spec.vlan });
    const vlan = spec.vlan ?? spec.hostVid ?? 0;
    const checker = new FrameChecker((sender) => this.tagAt(spec, this.hosts.get(sender)?.vlan ?? -1));
    const host: Host = { n, spec, dev, port, checker, sent: 0, strays: 0, vlan, reading: Promise.resolve(), hold: null };
    (host as { reading: Promise<void> }).reading = this.read(host);
    this.hosts.set(n, host);
    return host;
  }

  /** The tag a frame of `vlan` carries when it reaches a host whose port is `spec`. */
  private tagAt(spec: HostSpec, vlan: number): number | null {
    if (spec.vlan !== undefined) return null;
    return vlan === 0 ? null : vlan;
  }

  private async dummyPair(n: number, spec: HostSpec): Promise<{ dev: Netdev; port: Netdev }> {
    const options = spec.ringSize === undefined ? {} : { ringSize: spec.ringSize };
    const dev = await this.mgr.open(`dummy:h${n}`, { ...options, config: { peer: `dummy:s${n}` } });
    const port = await this.mgr.open(`dummy:s${n}`, options);
    for (const d of [dev, port]) {
      if (spec.mtu !== undefined) await d.setMtu(spec.mtu);
      await d.turnFlagsOn({ up: true });
    }
    return { dev, port };
  }

  private async vethPair(n: number, spec: HostSpec): Promise<{ dev: Netdev; port: Netdev }> {
    const ns = this.ns!;
    ns.ip('link', 'add', `h${n}`, 'type', 'veth', 'peer', 'name', `s${n}`);
    for (const name of [`h${n}`, `s${n}`]) {
      ns.ip('link', 'set', name, 'addrgenmode', 'none');
      if (spec.mtu !== undefined) ns.ip('link', 'set', name, 'mtu', String(spec.mtu));
    }
    const options = { netns: ns.name, ...(spec.ringSize === undefined ? {} : { ringSize: spec.ringSize }) };
    const dev = await this.mgr.open(`h${n}`, { ...options, ethertype: 'any' });
    const port = await this.mgr.open(`s${n}`, { ...options, ethertype: 'any' });
    for (const d of [dev, port]) await d.turnFlagsOn({ up: true });
    expect(await eventually(async () => (await dev.getCarrier()) && (await port.getCarrier()))).toBe(true);
    return { dev, port };
  }

  /**
   * A host that listens on a unix socket, and a switch port that connects to it (the same
   * socket named two ways, so that the two ends are two devices of this process).
   */
  private async unixPair(n: number, spec: HostSpec): Promise<{ dev: Netdev; port: Netdev }> {
    const options = spec.ringSize === undefined ? {} : { ringSize: spec.ringSize };
    const dev = await this.mgr.open(`unix:${this.dir!}/h${n}.sock`, { ...options, config: { mode: 'listen' } });
    const port = await this.mgr.open(`unix:${this.dir!}/./h${n}.sock`, { ...options, config: { mode: 'connect' } });
    for (const d of [dev, port]) await d.turnFlagsOn({ up: true });
    expect(await eventually(async () => (await dev.getCarrier()) && (await port.getCarrier()))).toBe(true);
    return { dev, port };
  }

  /** Stops host `n`'s reader (frames wait behind it) until resume(n). */
  pause(n: number): void {
    const host = this.hosts.get(n)!;
    host.hold = new Promise((resolve) => (this.resumes.set(n, resolve)));
  }

  /** Lets host `n`'s reader go on. */
  resume(n: number): void {
    this.hosts.get(n)!.hold = null;
    this.resumes.get(n)?.();
  }

  private readonly resumes = new Map<number, () => void>();

  private async read(host: Host): Promise<void> {
    try {
      for await (const batch of host.dev.batches()) {
        for (const frame of batch) {
          if (frame.length < 14 || ((frame[12]! << 8) | frame[13]!) !== TEST_ETHERTYPE && ((frame[16]! << 8) | frame[17]!) !== TEST_ETHERTYPE) {
            host.strays++;
            continue;
          }
          host.checker.check(frame);
        }
        if (host.spec.slowMs) await sleep(host.spec.slowMs);
        if (host.hold) await host.hold;
      }
    } catch {
      // the host's device went away (a test deleting it); its checker keeps what it got
    }
  }

  /** Waits until every port works as the kind of port it is (system ports forward in their workers). */
  async ready(): Promise<void> {
    const kinds = new Map([...this.hosts.values()].map((h) => [h.port.name, h.spec.kind]));
    await this.sw.ready();
    expect(this.sw.counters().map((p) => p.path)).toEqual(this.sw.counters().map((p) => (kinds.get(p.name) === 'veth' ? 'worker' : 'main')));
  }

  /**
   * Starts a phase: every host of `senders` sends to `to` ('flood', or a host that the Switch
   * has learned), or to what `to(n)` says for sender n.
   */
  async phase(senders: number[], to: Destination | ((n: number) => Destination)): Promise<void> {
    this.targets = new Map();
    this.destinations = new Map();
    for (const n of senders) {
      const sender = this.hosts.get(n)!;
      const where = typeof to === 'function' ? to(n) : to;
      const sameVlan = [...this.hosts.values()].filter((h) => h !== sender && (h.spec.vlan === undefined || h.spec.vlan === sender.vlan));
      this.targets.set(n, where === 'flood' ? sameVlan.map((h) => h.n) : [where]);
      this.destinations.set(n, where === 'flood' ? UNKNOWN_MAC : hostMac(where));
    }
    this.base = await this.snapshot();
  }

  /** Per phase: the destination MAC of each sender's frames. */
  private destinations = new Map<number, Uint8Array>();

  /** The frame host `n` sends next in this phase, of `length` (untagged) bytes. */
  frameFrom(n: number, length: number): Uint8Array {
    const host = this.hosts.get(n)!;
    const vid = host.spec.vlan === undefined && host.spec.hostVid ? { vid: host.spec.hostVid } : {};
    const frame = testFrame({ dst: this.destinations.get(n)!, sender: n, seq: host.sent, length, ...vid });
    host.sent++;
    return frame;
  }

  /**
   * Sends `count` frames from host `n`, sizes from `min` to `max` (untagged), waiting while its
   * ring is full; with `perMs`, no more than that many frames a millisecond.
   */
  async send(n: number, count: number, min = 60, max = 1514, perMs = Infinity): Promise<void> {
    const host = this.hosts.get(n)!;
    const start = performance.now();
    for (let i = 0; i < count; i++) {
      if (i >= perMs * (performance.now() - start)) await sleep(1);
      await host.dev.send(this.frameFrom(n, lengthFor(host.sent * 7 + n, min, max)));
    }
  }

  private async statsOf(dev: Netdev): Promise<Stats | null> {
    try {
      return await dev.getStats();
    } catch {
      return null; // the device was deleted: what it counted is gone with it
    }
  }

  private portCounters(host: Host): PortCounters | undefined {
    const live = this.sw.counters().find((p) => p.name === host.port.name)?.counters;
    if (live) this.gone.set(host.n, live);
    return live ?? this.gone.get(host.n);
  }

  /** Frames from `host` dropped before the Switch decided where they go. */
  private async preDrops(host: Host): Promise<number> {
    const [h, s] = [await this.statsOf(host.dev), await this.statsOf(host.port)];
    let drops = this.portCounters(host)?.rxDropped ?? 0; // the port's RX ring and kernel queue
    drops += h?.txErrors ?? 0;
    // A veth's tx drops are frames its peer could not take: the sender heard ENOBUFS and sent
    // them again (a host) or counted them (the Switch), so they are not counted here.
    if (host.spec.kind !== 'veth') drops += h?.txDropped ?? 0;
    if (host.spec.kind === 'dummy') drops += s?.rxDropped ?? 0; // longer than the port's MTU takes
    return drops;
  }

  /** Frames for `host` dropped on the way out: the Switch's egress, the port's device, the host's device. */
  private async postDrops(host: Host): Promise<number> {
    const [h, s] = [await this.statsOf(host.dev), await this.statsOf(host.port)];
    let drops = this.portCounters(host)?.txDropped ?? 0;
    drops += (s?.txErrors ?? 0) + (h?.rxRingDropped ?? 0) + (h?.rxErrors ?? 0) + (h?.rxQueueDropped ?? 0);
    if (host.spec.kind !== 'veth') drops += s?.txDropped ?? 0; // see preDrops
    if (host.spec.kind === 'dummy') drops += h?.rxDropped ?? 0;
    return drops;
  }

  private async snapshot(): Promise<Snapshot> {
    const snap: Snapshot = { sent: new Map(), received: new Map(), pre: new Map(), post: new Map() };
    for (const host of this.hosts.values()) {
      snap.sent.set(host.n, host.sent);
      snap.received.set(host.n, new Map(host.checker.received));
      snap.pre.set(host.n, await this.preDrops(host));
      snap.post.set(host.n, await this.postDrops(host));
    }
    return snap;
  }

  /**
   * The account of the phase so far, per output host: [expected, received + dropped after the
   * Switch], and per pair what arrived.
   */
  async account(): Promise<{ output: number; expected: number; accounted: number; received: number; dropped: number }[]> {
    const now = await this.snapshot();
    const base = this.base!;
    const rows = [];
    for (const host of this.hosts.values()) {
      if (!base.received.has(host.n)) continue; // added during the phase: checked, not accounted
      let expected = 0;
      for (const [sender, outputs] of this.targets) {
        if (!outputs.includes(host.n)) continue;
        expected += now.sent.get(sender)! - base.sent.get(sender)! - (now.pre.get(sender)! - base.pre.get(sender)!);
      }
      let received = 0;
      for (const [sender, count] of now.received.get(host.n)!) received += count - (base.received.get(host.n)!.get(sender) ?? 0);
      const dropped = now.post.get(host.n)! - base.post.get(host.n)!;
      rows.push({ output: host.n, expected, accounted: received + dropped, received, dropped });
    }
    return rows;
  }

  /**
   * Ends a phase: waits until every frame sent is received or counted as dropped (the account
   * balances), then sends one more frame from each sender, which must arrive, after every other,
   * at each of its outputs; then the account must still balance.  Returns the final account.
   */
  async settle(ms = 20_000): Promise<Awaited<ReturnType<SwitchRig['account']>>> {
    const balanced = async () => (await this.account()).every((row) => row.expected === row.accounted);
    if (!(await eventually(balanced, ms))) {
      const stats = await Promise.all([...this.hosts.values()].map(async (h) => [h.n, await this.statsOf(h.dev), await this.statsOf(h.port)]));
      expect({ account: await this.account(), switch: this.sw.counters(), stats, perSender: [...this.hosts.values()].map((h) => [h.n, [...h.checker.received]]) }).toEqual('a balanced account');
    }
    const last = new Map<number, number>();
    for (const n of this.targets.keys()) {
      last.set(n, this.hosts.get(n)!.sent);
      await this.hosts.get(n)!.dev.send(this.frameFrom(n, 60));
    }
    const arrived = () => [...this.targets].every(([n, outputs]) => outputs.every((o) => this.hosts.get(o)!.checker.lastFrom(n) === last.get(n)));
    expect(await eventually(arrived, ms)).toBe(true);
    const account = await this.account();
    for (const row of account) expect(row, `output h${row.output}`).toMatchObject({ expected: row.accounted });
    return account;
  }

  /**
   * Takes host `n`'s port off the Switch (or, with `deleted`, notes that its device is gone):
   * from then on it is out of the account, but what it received is still checked.
   */
  async retire(n: number, how: 'remove' | 'deleted'): Promise<void> {
    const host = this.hosts.get(n)!;
    if (how === 'remove') await this.sw.removePort(host.port);
    this.hosts.delete(n);
    this.retired.push(host);
    for (const outputs of this.targets.values()) if (outputs.includes(n)) outputs.splice(outputs.indexOf(n), 1);
  }

  private readonly retired: Host[] = [];

  /** Frames found corrupted, reordered or stray at every host so far. */
  damaged(): number {
    let n = 0;
    for (const host of [...this.hosts.values(), ...this.retired]) n += host.checker.corrupted.length + host.checker.reordered + host.strays;
    return n;
  }

  /** Every host's integrity: no corrupted, reordered or stray frame. */
  expectIntact(): void {
    for (const host of [...this.hosts.values(), ...this.retired]) {
      expect({ host: host.n, corrupted: host.checker.corrupted, reordered: host.checker.samples, strays: host.strays }).toEqual({ host: host.n, corrupted: [], reordered: [], strays: 0 });
    }
  }

  async close(): Promise<void> {
    await this.sw.close();
  }
}
