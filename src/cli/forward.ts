/**
 * A two-port forwarding loop over the public API: every frame received on `from` is sent on `to`,
 * in order, batch by batch (one wake-up of the sending worker per batch when the TX ring has
 * room; send() waits when it has not).  Ends when `from` closes.
 */
import type { Netdev } from '../main/netdev.js';

/** Forwards frames from `from` to `to` until `from` closes; returns the number forwarded. */
export async function forward(from: Netdev, to: Netdev): Promise<number> {
  let forwarded = 0;
  for await (const batch of from.batches()) {
    const queued = to.trySendBatch(batch);
    for (let i = queued; i < batch.length; i++) await to.send(batch[i]!);
    forwarded += batch.length;
  }
  return forwarded;
}
