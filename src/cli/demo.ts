/**
 * `netdev demo`: two simulated hosts and a forwarder between them, built from dummy devices
 * (in-process, no root needed):
 *
 *   host1 [dummy:h1] ==wire== [dummy:fw1] forwarder [dummy:fw2] ==wire== [dummy:h2] host2
 *
 * host1 sends a burst of frames, the forwarder (the forwarding loop of traffic.ts) moves them
 * between its two ports through the worker/ring machinery, host2 receives and checks them.
 * Prints what a monitor saw, each device's counters, and the rate.  As root, `netdev demo` runs
 * the kernel demo instead (kernel-demo.ts: veth pairs in network namespaces, the learning switch).
 */
import { NetdevManager } from '../main/manager.js';
import type { Netdev } from '../main/netdev.js';
import { countedDrops, forward } from './traffic.js';

export interface DemoOptions {
  frames: number;
  size: number;
  out: (line: string) => void;
}

function frameFor(seq: number, size: number, source: Uint8Array): Uint8Array {
  const frame = new Uint8Array(size);
  frame.fill(0xff, 0, 6);
  frame.set(source, 6);
  frame[12] = 0x88;
  frame[13] = 0xb5; // IEEE local experimental ethertype
  new DataView(frame.buffer).setUint32(14, seq);
  return frame;
}

/**
 * Sends `count` frames from `host`, a batch at a time.  host1 shares this thread with the
 * forwarder and host2, so it yields to the event loop after each batch, as a separate host would
 * leave the forwarder its own CPU time.
 */
async function sendBurst(host: Netdev, count: number, size: number, mac: Uint8Array): Promise<void> {
  const batch: Uint8Array[] = [];
  for (let seq = 0; seq < count; ) {
    batch.length = 0;
    for (let i = 0; i < 256 && seq < count; i++, seq++) batch.push(frameFor(seq, size, mac));
    await host.sendBatch(batch);
    await new Promise((resolve) => setImmediate(resolve));
  }
}

interface Tally {
  received: number;
  outOfOrder: number;
}

/** Counts into `tally` the frames `host` receives, and those out of order, until it closes. */
async function receiveAll(host: Netdev, tally: Tally): Promise<void> {
  let last = -1;
  for await (const batch of host.batches()) {
    for (const frame of batch) {
      const seq = new DataView(frame.buffer, frame.byteOffset, frame.byteLength).getUint32(14);
      if (seq <= last) tally.outOfOrder++;
      last = seq;
      tally.received++;
    }
  }
}

/** Runs the demo; resolves with the process exit status (0 if every frame arrived in order). */
export async function runDemo(options: DemoOptions): Promise<number> {
  const { out } = options;
  const mgr = new NetdevManager();
  try {
    out('netdev demo: in-process dummy devices (no root or kernel devices needed)');
    out('  host1 [dummy:h1] ==wire== [dummy:fw1] forwarder [dummy:fw2] ==wire== [dummy:h2] host2');
    const h1 = await mgr.open('dummy:h1', { config: { peer: 'dummy:fw1' } });
    const fw1 = await mgr.open('dummy:fw1');
    const fw2 = await mgr.open('dummy:fw2', { config: { peer: 'dummy:h2' } });
    const h2 = await mgr.open('dummy:h2');
    const monitor = mgr.monitor();
    for (const dev of [h1, fw1, fw2, h2]) monitor.add(dev);
    for (const dev of [h1, fw1, fw2, h2]) await dev.turnFlagsOn({ up: true });
    const noticed: string[] = [];
    for (let name = monitor.poll(); name; name = monitor.poll()) noticed.push(name);
    out(`monitor: change notices from ${noticed.join(', ')} (flags up, carrier on)`);
    await fw1.turnFlagsOn({ promisc: true });
    out(`forwarder ports: fw1 promisc on (restored when the demo closes), carrier ${await fw1.getCarrier()}`);

    const mac = Uint8Array.from((await h1.getEtheraddr()).split(':'), (x) => parseInt(x, 16));
    const devices = [h1, fw1, fw2, h2];
    const forwarding = forward(fw1, fw2);
    const result: Tally = { received: 0, outOfOrder: 0 };
    const receiving = receiveAll(h2, result);
    const start = performance.now();
    await sendBurst(h1, options.frames, options.size, mac);
    // Done when host2 has read every frame it did not drop, and every frame sent has arrived or
    // been counted as dropped somewhere (or 30 s pass).
    const deadline = Date.now() + 30_000;
    let accounted = false;
    let seconds = 0;
    while (!accounted && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 1));
      const at = await h2.getStats();
      seconds = (performance.now() - start) / 1000;
      accounted = at.rxPackets! - at.rxRingDropped! === result.received && result.received + (await countedDrops(devices)) === options.frames;
    }

    out('');
    out('device      rx frames    rx bytes   tx frames    tx bytes  dropped');
    for (const dev of devices) {
      const s = await dev.getStats();
      const dropped = (s.rxDropped ?? 0) + (s.txDropped ?? 0) + (s.rxRingDropped ?? 0);
      out(`${dev.name.padEnd(10)} ${String(s.rxPackets).padStart(10)} ${String(s.rxBytes).padStart(11)} ${String(s.txPackets).padStart(11)} ${String(s.txBytes).padStart(11)} ${String(dropped).padStart(8)}`);
    }
    await h2.close();
    await fw1.close();
    await receiving;
    const forwarded = await forwarding;
    out('');
    const dropped = options.frames - result.received;
    const rate = result.received / seconds;
    out(`the forwarder moved ${forwarded} frames; host2 received ${result.received} of ${options.frames} frames of ${options.size} bytes ` +
      `in ${seconds.toFixed(2)} s: ${(rate / 1e6).toFixed(2)} M frames/s, ${((rate * options.size * 8) / 1e9).toFixed(2)} Gbit/s, ` +
      `${result.outOfOrder} out of order, ${dropped} dropped`);
    if (!accounted) out('not every frame sent was received or counted as dropped within 30 s');
    return accounted && result.outOfOrder === 0 ? 0 : 1;
  } finally {
    await mgr.close();
  }
}
