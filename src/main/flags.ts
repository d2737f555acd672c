/**
 * Flags: conversion between the API's { up, promisc } objects and OVS's bits, and the
 * per-handle bookkeeping of OVS's do_update_flags()/restore_flags(): a handle's first
 * non-permanent change records the flags as they were; later ones add to the set of changed bits;
 * restoring puts back, for the changed bits only, the recorded values.
 */
import { netdevError } from '../common/errors.js';
import { NETDEV_PROMISC, NETDEV_UP } from '../ring/device-shared.js';
import type { Flags } from '../providers/contract.js';

export const ALL_FLAGS = NETDEV_UP | NETDEV_PROMISC;

const BITS: Record<keyof Flags, number> = { up: NETDEV_UP, promisc: NETDEV_PROMISC };

/** Bits of the keys of `flags` that are true; EINVAL for an unknown key or a non-boolean value. */
export function flagBits(flags: unknown): number {
  if (typeof flags !== 'object' || flags === null) throw netdevError('EINVAL', 'flags must be an object like { up: true }');
  let bits = 0;
  for (const [key, value] of Object.entries(flags)) {
    if (!(key in BITS)) throw netdevError('EINVAL', `unknown flag '${key}' (known: up, promisc)`);
    if (typeof value !== 'boolean') throw netdevError('EINVAL', `flag '${key}' must be true or false`);
    if (value) bits |= BITS[key as keyof Flags];
  }
  return bits;
}

/** The { up, promisc } object of `bits`. */
export function flagsOf(bits: number): Flags {
  return { up: (bits & NETDEV_UP) !== 0, promisc: (bits & NETDEV_PROMISC) !== 0 };
}

/** One handle's record of the flags it changed non-permanently. */
export class FlagBook {
  private saved = 0;
  private changed = 0;

  /** Notes a change from `old` made by turning off `off` then on `on`. */
  record(old: number, off: number, on: number): void {
    const changed = old ^ ((old & ~off) | on);
    if (changed === 0) return;
    if (this.changed === 0) this.saved = old;
    this.changed |= changed;
  }

  /** Puts back the recorded flags through `update(off, on)` and forgets them; no call if nothing changed. */
  restore(update: (off: number, on: number) => unknown): void {
    if (this.changed === 0) return;
    const restore = this.saved & this.changed;
    const off = this.changed & ~restore;
    this.changed = 0;
    update(off, restore);
  }
}
