/**
 * The Switch's limits, as README states them: 64 ports per Switch (a 65th is ENOSPC) and 8192
 * MACs (a source MAC beyond that is not learned, and frames to it are flooded, not lost).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { NetdevManager, Switch, type Netdev, type PortCounters } from '../dist/index.js';
import { eventually, thrown } from './helpers.js';

const MAX_PORTS = 64;
const MAX_MACS = 8192;

let mgr: NetdevManager;
let sw: Switch | undefined;
const notices: string[] = [];

beforeEach(() => {
  mgr = new NetdevManager();
  sw = undefined;
  notices.length = 0;
});
afterEach(async () => {
  await sw?.close();
  await mgr.close();
});

/** Unicast MAC number `n` (0-65535): 02:4d:00:00:HI:LO. */
const mac = (n: number): number[] => [0x02, 0x4d, 0, 0, n >> 8, n & 255];
const BROADCAST = [255, 255, 255, 255, 255, 255];

/** A 64-byte frame `src` -> `dst`, ethertype 0x88b5, with `seq` at offset 14 and every later byte derived from it. */
function frame(src: number[], dst: number[], seq: number): Uint8Array {
  const bytes = new Uint8Array(64);
  bytes.set(dst, 0);
  bytes.set(src, 6);
  bytes.set([0x88, 0xb5], 12);
  new DataView(bytes.buffer).setUint32(14, seq);
  for (let i = 18; i < bytes.length; i++) bytes[i] = (seq * 7 + i) & 255;
  return bytes;
}

/** The seq of a frame made by frame(), after checking every one of its bytes against what frame() made. */
function checkedSeq(got: Uint8Array): number {
  const seq = new DataView(got.buffer, got.byteOffset, got.byteLength).getUint32(14);
  expect(got).toEqual(frame([...got.subarray(6, 12)], [...got.subarray(0, 6)], seq));
  return seq;
}

function countersOf(port: Netdev): PortCounters {
  const entry = sw!.counters().find((c) => c.name === port.name);
  if (!entry) throw new Error(`${port.name} is not a port`);
  return entry.counters;
}

describe('Switch limits', () => {
  it('takes 64 ports, all forwarding, refuses a 65th with ENOSPC, and takes one again once a port is removed', async () => {
    const started = performance.now();
    // The smallest rings, opened at once: 64 workers start in parallel.
    const ports = await Promise.all(Array.from({ length: MAX_PORTS }, (_, i) => mgr.open(`dummy:lim${i}`, { ringSize: 4096 })));
    const opened = performance.now();
    sw = new Switch({ onNotice: (line) => notices.push(line) });
    for (const port of ports) sw.addPort(port);
    const extra = await mgr.open('dummy:lim64', { ethertype: 'none' });
    const refused = thrown(() => sw!.addPort(extra));
    expect(refused).toMatchObject({ code: 'ENOSPC', device: 'dummy:lim64', call: 'addPort' });
    expect(sw.counters()).toHaveLength(MAX_PORTS);

    // Every one of the 64 is a working port: a broadcast into the first goes out of the 63 others.
    await sw.ready();
    await ports[0]!.inject(frame(mac(1), BROADCAST, 1));
    expect(await eventually(() => countersOf(ports[0]!).floods === 1 && ports.slice(1).every((p) => countersOf(p).txFrames === 1))).toBe(true);
    expect(sw.counters().map((c) => c.counters.txFrames)).toEqual([0, ...new Array<number>(MAX_PORTS - 1).fill(1)]);

    // A removed port's place is free again, and only that one.
    await sw.removePort(ports[5]!);
    sw.addPort(ports[5]!);
    expect(thrown(() => sw!.addPort(extra))).toMatchObject({ code: 'ENOSPC' });
    expect(sw.counters()).toHaveLength(MAX_PORTS);
    expect(notices).toEqual([]);
    console.log(`64 dummy ports: opened in ${(opened - started).toFixed(0)} ms, test body ${(performance.now() - started).toFixed(0)} ms`);
  });

  it('learns 8192 MACs and no more: frames to a MAC it could not learn are flooded, known MACs still move, a removed port frees its entries', async () => {
    sw = new Switch({ onNotice: (line) => notices.push(line) });
    const hosts: Netdev[] = [];
    const ports: Netdev[] = [];
    const got: Uint8Array[][] = [];
    for (let i = 1; i <= 3; i++) {
      const host = await mgr.open(`dummy:mh${i}`, { config: { peer: `dummy:ms${i}` } });
      // RX rings that hold all of h1's burst below: the main thread reads them, and may lag behind a worker (drops would be counted, not learned).
      const port = await mgr.open(`dummy:ms${i}`, { ringSize: 2 << 20 });
      await host.turnFlagsOn({ up: true });
      await port.turnFlagsOn({ up: true });
      sw.addPort(port);
      hosts.push(host);
      ports.push(port);
      const frames: Uint8Array[] = [];
      got.push(frames);
      void (async () => {
        for await (const f of host.frames({ copy: true })) frames.push(f);
      })();
    }
    await sw.ready();
    const [h1, h2, h3] = hosts as [Netdev, Netdev, Netdev];
    const [s1, s2] = ports as [Netdev, Netdev, Netdev];
    const seqsAt = (host: number) => got[host]!.map(checkedSeq);
    const H2 = mac(60_000); // h2's MAC: none of h1's

    // h1 sends from 8192 + 100 distinct MACs, every frame to the first of them: each is learned
    // (while there is room) before its destination is looked up, so every frame is filtered.
    const sources = MAX_MACS + 100;
    await h1.sendBatch(Array.from({ length: sources }, (_, n) => frame(mac(n), mac(0), 100_000 + n)));
    expect(await eventually(() => countersOf(s1).rxFrames + countersOf(s1).rxDropped === sources, 10_000)).toBe(true);
    expect(countersOf(s1)).toMatchObject({ rxFrames: sources, filtered: sources, floods: 0, rxDropped: 0 });
    expect(sw.learned).toBe(MAX_MACS);

    // To MAC 8250 (not learned: the table was full): flooded to h1 and h3.  To MAC 10 (learned on
    // s1): h1 only.  Then a broadcast, which h3 gets right after the flooded frame if nothing else came.
    await h2.send(frame(H2, mac(MAX_MACS + 58), 1));
    await h2.send(frame(H2, mac(10), 2));
    await h2.send(frame(H2, BROADCAST, 3));
    expect(await eventually(() => got[0]!.length === 3 && got[2]!.length === 2)).toBe(true);
    expect(seqsAt(0)).toEqual([1, 2, 3]);
    expect(seqsAt(2)).toEqual([1, 3]);
    expect(countersOf(s2)).toMatchObject({ rxFrames: 3, floods: 2 });
    expect(sw.learned).toBe(MAX_MACS); // h2's own MAC found no room either

    // A MAC already in the full table still moves: MAC 10 speaks from h3, and frames to it go to h3 only.
    await h3.send(frame(mac(10), BROADCAST, 4));
    expect(await eventually(() => got[0]!.length === 4 && got[1]!.length === 1)).toBe(true); // the Switch has seen it
    await h2.send(frame(H2, mac(10), 5));
    await h2.send(frame(H2, BROADCAST, 6));
    expect(await eventually(() => got[0]!.length === 5 && got[1]!.length === 1 && got[2]!.length === 4)).toBe(true);
    expect(seqsAt(0)).toEqual([1, 2, 3, 4, 6]);
    expect(seqsAt(1)).toEqual([4]);
    expect(seqsAt(2)).toEqual([1, 3, 5, 6]);
    expect(sw.learned).toBe(MAX_MACS);

    // Removing s1 forgets the 8191 MACs still learned there; the table learns again.
    await sw.removePort(s1);
    expect(sw.learned).toBe(1); // MAC 10, on s3
    await h2.send(frame(H2, BROADCAST, 7));
    expect(await eventually(() => got[2]!.length === 5)).toBe(true);
    expect(seqsAt(2)).toEqual([1, 3, 5, 6, 7]);
    expect(sw.learned).toBe(2);
    expect(notices).toEqual([]);
  });
});
