/**
 * The wires between dummy devices.  A link (a peer config) is kept while at least one of its two
 * ends is open; it is plugged (two rings between the two workers) while both ends run an I/O
 * half.  Plugging and unplugging are control calls to both workers, made in an order that loses
 * nothing already on a wire.  A worker that fails to take its end, or dies, leaves the link
 * unplugged: frames sent to it are dropped and counted, the other device goes on working.
 */
import { Bell } from '../../ring/bell.js';
import { createRing } from '../../ring/ring.js';
import type { DummyDevice } from './provider.js';
import type { OutgoingWire } from './io.js';

/** Each direction of a wire holds this much; it must carry the largest dummy frame (MTU 65535). */
const WIRE_BYTES = 256 * 1024;

function pairKey(a: string, b: string): string {
  return a < b ? `${a}\n${b}` : `${b}\n${a}`;
}

export class DummyLinks {
  private readonly devices = new Map<string, DummyDevice>();
  private readonly peers = new Map<string, string>();
  private readonly plugged = new Set<string>();

  /** A dummy device was created. */
  opened(device: DummyDevice): void {
    this.devices.set(device.name, device);
    this.peerChanged(device.name);
  }

  /** A dummy device was destroyed: its link is forgotten if its peer is not open either. */
  closed(name: string): void {
    this.devices.delete(name);
    this.peerChanged(name);
    const peer = this.peers.get(name);
    if (peer && !this.devices.has(peer)) {
      this.peers.delete(name);
      this.peers.delete(peer);
    }
  }

  /** Names of the open dummy devices. */
  openNames(): string[] {
    return [...this.devices.keys()];
  }

  /** The full name of the peer of `name`, or null. */
  peerOf(name: string): string | null {
    return this.peers.get(name) ?? null;
  }

  /** Carrier of `name`: it and its peer are open and up. */
  carrier(name: string): boolean {
    const peer = this.peers.get(name);
    return Boolean(this.devices.get(name)?.up && peer && this.devices.get(peer)?.up);
  }

  /** Tells the peer of `name` (if open) that its carrier may have changed. */
  peerChanged(name: string): void {
    const peer = this.peers.get(name);
    if (peer) this.devices.get(peer)?.context.changed();
  }

  /** Links `name` to `peer` ('' unlinks), undoing the links either had before. */
  async setPeer(name: string, peer: string): Promise<void> {
    const old = this.peers.get(name) ?? '';
    if (old === peer) return;
    if (old) await this.unlink(name, old);
    if (peer) {
      const theirs = this.peers.get(peer);
      if (theirs) await this.unlink(peer, theirs);
      this.peers.set(name, peer);
      this.peers.set(peer, name);
      await this.connect(name, peer);
      this.devices.get(peer)?.context.changed();
    }
    this.devices.get(name)?.context.changed();
  }

  /** The I/O half of `name` started: plug its link if the peer runs one too. */
  async plug(name: string): Promise<void> {
    const peer = this.peers.get(name);
    if (peer) await this.connect(name, peer);
  }

  /** The I/O half of `name` is stopping or has died: unplug its link (nothing on the wire is lost). */
  async unplug(name: string): Promise<void> {
    const peer = this.peers.get(name);
    if (peer) await this.disconnect(name, peer);
  }

  private async unlink(a: string, b: string): Promise<void> {
    await this.disconnect(a, b);
    this.peers.delete(a);
    this.peers.delete(b);
    this.devices.get(b)?.context.changed();
  }

  private async connect(a: string, b: string): Promise<void> {
    const left = this.devices.get(a);
    const right = this.devices.get(b);
    const key = pairKey(a, b);
    if (!left?.io || !right?.io || !left.bell || !right.bell || this.plugged.has(key)) return;
    this.plugged.add(key);
    const leftToRight = createRing(WIRE_BYTES, new Bell(right.bell), new Bell(left.bell));
    const rightToLeft = createRing(WIRE_BYTES, new Bell(left.bell), new Bell(right.bell));
    const toRight: OutgoingWire = { ring: leftToRight, peerShared: right.context.shared.buffer };
    const toLeft: OutgoingWire = { ring: rightToLeft, peerShared: left.context.shared.buffer };
    try {
      await right.io.call('setIn', leftToRight);
      await left.io.call('setIn', rightToLeft);
      await left.io.call('setOut', toRight);
      await right.io.call('setOut', toLeft);
    } catch {
      await this.disconnect(a, b);
    }
  }

  /** Senders stop first, then each receiver takes what is left on its wire; failures of a dead worker are ignored. */
  private async disconnect(a: string, b: string): Promise<void> {
    if (!this.plugged.delete(pairKey(a, b))) return;
    const left = this.devices.get(a)?.io;
    const right = this.devices.get(b)?.io;
    const ignore = () => undefined;
    await left?.call('setOut', null).catch(ignore);
    await right?.call('setIn', null).catch(ignore);
    await right?.call('setOut', null).catch(ignore);
    await left?.call('setIn', null).catch(ignore);
  }
}
