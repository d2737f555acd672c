/**
 * Traffic helpers shared by the demo and the benchmark: a two-port forwarding loop over the
 * public API, and the sum of the drops a set of devices counted.
 */
import type { Netdev } from '../main/netdev.js';

/**
 * Forwards every frame received on `from` to `to`, in order, batch by batch, until `from`
 * closes; returns the number forwarded, which `tally.forwarded` also follows as it goes.
 */
export async function forward(from: Netdev, to: Netdev, tally = { forwarded: 0 }): Promise<number> {
  for await (const batch of from.batches()) {
    await to.sendBatch(batch);
    tally.forwarded += batch.length;
  }
  return tally.forwarded;
}

/** Frames lost anywhere on a path, as its devices counted them (device drops, RX ring drops, packet socket queue drops). */
export async function countedDrops(devices: readonly Netdev[]): Promise<number> {
  let drops = 0;
  for (const dev of devices) {
    const s = await dev.getStats();
    drops += (s.rxDropped ?? 0) + (s.txDropped ?? 0) + (s.rxRingDropped ?? 0) + (s.rxQueueDropped ?? 0);
  }
  return drops;
}
