/**
 * What the providers whose devices live in the process (dummy, unix) share: a MAC derived from a
 * name, flags kept in the process, and statistics counted by the I/O half from real traffic (the
 * physical-layer counters such devices cannot have are null).
 */
import type { DeviceShared } from '../ring/device-shared.js';
import type { DeviceContext, ProviderStats } from './contract.js';

/** A locally administered unicast MAC 02:SECOND:hash, the hash an FNV-1a of `text`. */
export function localMac(text: string, second: number): Uint8Array {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) hash = Math.imul(hash ^ text.charCodeAt(i), 0x01000193) >>> 0;
  return Uint8Array.of(0x02, second, hash >>> 24, (hash >>> 16) & 255, (hash >>> 8) & 255, hash & 255);
}

/** The counters of `shared`, with the physical-layer fields an in-process device cannot count (and the kernel queue it has not) as null. */
export function countedStats(shared: DeviceShared): ProviderStats {
  return {
    ...shared.read(),
    collisions: null,
    rxLengthErrors: null,
    rxOverErrors: null,
    rxCrcErrors: null,
    rxFrameErrors: null,
    rxFifoErrors: null,
    rxMissedErrors: null,
    txAbortedErrors: null,
    txCarrierErrors: null,
    txFifoErrors: null,
    txHeartbeatErrors: null,
    txWindowErrors: null,
    rxQueueDropped: null,
  };
}

/**
 * The flags `old` become when `off` then `on` apply (OVS's update_flags for a device whose
 * flags live in the process): a change is written to the shared block, for the I/O half, and
 * bumps the change sequence.
 */
export function nextFlags(context: DeviceContext, old: number, off: number, on: number): number {
  const flags = (old & ~off) | on;
  if (flags !== old) {
    context.shared.flags = flags;
    context.changed();
  }
  return flags;
}
