/**
 * `npm run bench`: throughput of the rings alone (a producer thread -> the main thread's
 * iterators) and of dummy devices through the public API, each against a reference measured in
 * the same run: the same frames moved between the same threads with postMessage.  Each figure is
 * the median of 3 runs (min and max shown).  Not a test: it asserts nothing, it measures.
 * `npm run bench -- SECTION` runs one section only: rings, kernel, memory, topology, offloads
 * (TCP with offloads on) or tunnels (guest to guest over vxlan: Switches beside bridges).  NETDEV_BENCH_FORWARDERS=switch,c (any of switch, bridge, c, l2fwd, cap,
 * ovs) runs only those forwarders in the topology section; the ratios need c and bridge.
 */
import { once } from 'node:events';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { Bell } from '../dist/ring/bell.js';
import { createRing } from '../dist/ring/ring.js';
import { BatchIterator, FrameIterator, RxQueue } from '../dist/main/rx-queue.js';
import { countedDrops, forward } from '../dist/cli/traffic.js';
import { NetdevManager, type Netdev } from '../dist/index.js';
import { kernelBenchmarks, type KernelFigure } from './kernel.js';
import { PINGS, TCP_STREAMS, tcpOffloadBenchmarks, topologyBenchmarks, type Forwarder, type PathFigure, type TcpFigures, type TcpRow } from './topology.js';
import { execFileSync } from 'node:child_process';
import { cpus } from 'node:os';
import { tunnelBenchmarks } from './tunnel.js';

const PRODUCER = new URL('./producer.js', import.meta.url);
const RUNS = 3;

interface Figure {
  framesPerSecond: number;
  /** Frames that were counted as dropped, if the path can drop. */
  dropped?: number;
}

async function startProducer(job: object): Promise<Worker> {
  const worker = new Worker(PRODUCER, { workerData: job });
  await once(worker, 'online');
  return worker;
}

/** Frames from a producer thread through a ring into the main thread's frames() or batches() iterator. */
async function ringRun(size: number, count: number, style: 'batches' | 'frames'): Promise<Figure> {
  const descriptor = createRing(1 << 20, new Bell(), new Bell());
  const queue = new RxQueue(descriptor);
  const worker = await startProducer({ mode: 'ring', descriptor, count, size });
  let received = 0;
  let checksum = 0;
  const start = performance.now();
  worker.postMessage('go');
  if (style === 'batches') {
    for await (const batch of new BatchIterator(queue, () => false, false, 256)) {
      for (let i = 0; i < batch.length; i++) checksum += batch[i]![0]!;
      received += batch.length;
      if (received >= count) break;
    }
  } else {
    for await (const frame of new FrameIterator(queue, () => false, false)) {
      checksum += frame[0]!;
      if (++received >= count) break;
    }
  }
  const seconds = (performance.now() - start) / 1000;
  await worker.terminate();
  if (checksum !== 0xab * count) throw new Error('ring benchmark read wrong bytes');
  return { framesPerSecond: count / seconds };
}

/** The reference: the same frames posted by the producer thread, one message per frame or per batch of 256. */
async function postRun(size: number, count: number, batched: boolean): Promise<Figure> {
  const worker = await startProducer({ mode: batched ? 'post-batch' : 'post', count, size });
  let received = 0;
  let checksum = 0;
  const done = new Promise<void>((resolve) => {
    worker.on('message', (message: Uint8Array | Uint8Array[] | string) => {
      if (message === 'done') resolve();
      else if (Array.isArray(message)) {
        for (const frame of message) checksum += frame[0]!;
        received += message.length;
      } else {
        checksum += (message as Uint8Array)[0]!;
        received++;
      }
    });
  });
  const start = performance.now();
  worker.postMessage('go');
  await done;
  const seconds = (performance.now() - start) / 1000;
  await worker.terminate();
  if (received !== count || checksum !== 0xab * count) throw new Error('postMessage benchmark lost frames');
  return { framesPerSecond: count / seconds };
}

function frameOf(size: number): Uint8Array {
  const frame = new Uint8Array(size).fill(0xab);
  frame.fill(0xff, 0, 6);
  frame[12] = 0x88;
  frame[13] = 0xb5;
  return frame;
}

/** Sends `count` frames from `host`, 256 per batch, yielding to the event loop after each batch. */
async function sendAll(host: Netdev, frame: Uint8Array, count: number): Promise<void> {
  const batch = Array.from({ length: 256 }, () => frame);
  for (let sent = 0; sent < count; sent += batch.length) {
    if (count - sent < batch.length) batch.length = count - sent;
    await host.sendBatch(batch);
    await new Promise((resolve) => setImmediate(resolve));
  }
}

/**
 * Dummy devices through the public API: `hops` 1 is a pair a -> b; `hops` 2 puts a two-port
 * forwarder (the CLI's forward loop) between two pairs.  Sender, forwarder and receiver share the
 * main thread; each device has its worker.  Counts frames delivered until every frame sent is
 * delivered or counted as dropped.
 */
async function dummyRun(size: number, count: number, hops: 1 | 2): Promise<Figure> {
  const mgr = new NetdevManager();
  try {
    const devices: Netdev[] = [];
    const names = hops === 1 ? ['a', 'b'] : ['a', 'f1', 'f2', 'b'];
    for (let i = 0; i < names.length; i += 2) {
      devices.push(await mgr.open(`dummy:${names[i]}`, { config: { peer: `dummy:${names[i + 1]}` } }));
      devices.push(await mgr.open(`dummy:${names[i + 1]}`));
    }
    for (const dev of devices) await dev.turnFlagsOn({ up: true });
    const sender = devices[0]!;
    const receiver = devices[devices.length - 1]!;
    const forwarding = hops === 2 ? forward(devices[1]!, devices[2]!) : null;
    let received = 0;
    const receiving = (async () => {
      for await (const batch of receiver.batches()) received += batch.length;
    })();
    const start = performance.now();
    await sendAll(sender, frameOf(size), count);
    let lost = 0;
    for (;;) {
      lost = await countedDrops(devices);
      if (received + lost >= count) break;
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    const seconds = (performance.now() - start) / 1000;
    await receiver.close();
    await receiving;
    if (forwarding) {
      await devices[1]!.close();
      await forwarding;
    }
    return { framesPerSecond: received / seconds, dropped: lost };
  } finally {
    await mgr.close();
  }
}

interface Summary {
  median: number;
  min: number;
  max: number;
  dropped: number;
}

/** Median, min and max of `rates`. */
function summarize(rates: number[]): Omit<Summary, 'dropped'> {
  const sorted = [...rates].sort((x, y) => x - y);
  return { median: sorted[Math.floor(sorted.length / 2)]!, min: sorted[0]!, max: sorted[sorted.length - 1]! };
}

async function measure(run: () => Promise<Figure>): Promise<Summary> {
  const figures: Figure[] = [];
  for (let i = 0; i < RUNS; i++) figures.push(await run());
  return { ...summarize(figures.map((f) => f.framesPerSecond)), dropped: Math.max(...figures.map((f) => f.dropped ?? 0)) };
}

const mfps = (rate: number): string => `${(rate / 1e6).toFixed(2)} M/s`;
const gbps = (rate: number, size: number): string => `${((rate * size * 8) / 1e9).toFixed(2)}`;

function row(name: string, size: number, result: Summary, referenceName: string, reference: Summary): string {
  const range = ` (${mfps(result.min)} - ${mfps(result.max)})`;
  const dropped = result.dropped ? `, up to ${result.dropped} dropped` : '';
  return [
    name.padEnd(44),
    mfps(result.median).padStart(11),
    range.padEnd(26),
    gbps(result.median, size).padStart(7),
    `   ${referenceName}: ${mfps(reference.median)}`.padEnd(46),
    `${(result.median / reference.median).toFixed(2)}x${dropped}`,
  ].join('');
}

async function rings(): Promise<void> {
  console.log(`${'figure'.padEnd(44)}${'frames/s'.padStart(11)}${''.padEnd(26)}${'Gbit/s'.padStart(7)}   ${'reference, same run'.padEnd(43)}ratio`);
  for (const size of [64, 1500]) {
    const big = size > 64;
    const postBatch = await measure(() => postRun(size, big ? 1_000_000 : 4_000_000, true));
    const postFrame = await measure(() => postRun(size, big ? 300_000 : 1_000_000, false));
    const ringBatches = await measure(() => ringRun(size, big ? 2_000_000 : 20_000_000, 'batches'));
    const ringFrames = await measure(() => ringRun(size, big ? 2_000_000 : 6_000_000, 'frames'));
    console.log(row(`ring alone, ${size} B, batches()`, size, ringBatches, 'postMessage x256', postBatch));
    console.log(row(`ring alone, ${size} B, frames() one per step`, size, ringFrames, 'postMessage x1', postFrame));
    const pair = await measure(() => dummyRun(size, big ? 300_000 : 1_000_000, 1));
    console.log(row(`dummy pair a->b, ${size} B, public API`, size, pair, 'postMessage x256', postBatch));
    const forwarded = await measure(() => dummyRun(size, big ? 300_000 : 1_000_000, 2));
    console.log(row(`dummy a->[forwarder]->b, ${size} B`, size, forwarded, 'postMessage x256', postBatch));
  }
  console.log('dummy runs: sender, forwarder and receiver share the main thread; every device has a worker thread.');
}

/** The kernel rows: one namespace, two veth pairs, against C programs. */
async function kernel(): Promise<void> {
  console.log('\nkernel: 64-byte frames offered by a C sender (sendmmsg x64) on a veth pair, as fast as it can, 1M per run');
  const kernel = await kernelBenchmarks(1_000_000, async (run) => {
    const figures: KernelFigure[] = [];
    for (let i = 0; i < RUNS; i++) figures.push(await run());
    return figures;
  });
  if (kernel) {
    const summary = (figures: KernelFigure[]): Summary => ({ ...summarize(figures.map((f) => f.framesPerSecond)), dropped: Math.max(...figures.map((f) => f.dropped)) });
    console.log(row('received into JavaScript (system device)', 64, summary(kernel['receive-js']), 'C recvmmsg x64', summary(kernel['receive-c'])));
    console.log(row('forwarded veth -> veth by JavaScript', 64, summary(kernel['forward-js']), 'tuned C forwarder', summary(kernel['forward-c'])));
    console.log(row('forwarded veth -> veth by the Switch', 64, summary(kernel['forward-switch']), 'tuned C forwarder', summary(kernel['forward-c'])));
    console.log(`  C reference drops: receive up to ${summary(kernel['receive-c']).dropped}, forward up to ${summary(kernel['forward-c']).dropped}`);
  }
}

const FORWARDER_NAMES: Record<Forwarder, string> = {
  switch: 'netdev Switch (this library)',
  bridge: 'Linux bridge',
  c: 'tuned C forwarder (bench/c/tuned.c)',
  l2fwd: 'untuned C fwd (l2fwd: spins on ENOBUFS)',
  cap: 'Node + cap (libpcap), per frame',
  ovs: 'Open vSwitch, userspace datapath',
};

/** "median (min-max)" of `values` scaled by `scale`, with `digits` decimals. */
function spread(values: number[], scale: number, digits: number): string {
  const { median, min, max } = summarize(values.map((v) => v / scale));
  return `${median.toFixed(digits)} (${min.toFixed(digits)}-${max.toFixed(digits)})`;
}

const medianOf = (values: number[]): number => summarize(values).median;

/** For `paths`: the median over a forwarder's runs of what `pick` gives (null where it has no figure). */
function medianOfForwarder(paths: Partial<Record<Forwarder, PathFigure[]>>) {
  return (forwarder: Forwarder, pick: (f: PathFigure) => number | null): number | null => {
    const values = paths[forwarder]?.map(pick).filter((v): v is number => v !== null) ?? [];
    return values.length ? medianOf(values) : null;
  };
}

/** The forwarding table: every forwarder on one topology, ratios to the C forwarder and the Linux bridge. */
async function topology(): Promise<void> {
  console.log(
    `\ntopology h1 -- fw -- h2 (network namespaces, veth pairs; TX checksum, TSO, GSO and GRO turned off on all four veth ends,` +
      ` as an AF_PACKET forwarder needs); one forwarder at a time in fw; median (min-max) of ${RUNS} runs`,
  );
  console.log('  frames: 64-byte unicast frames h1 -> h2 from a C sendmmsg sender at its maximum, 1M per run, counted by a C receiver in h2');
  console.log('    (sender and receiver pinned to CPU 0 with taskset, the forwarder not pinned)');
  console.log(`  tcp: iperf3 h1 -> h2, 5 s; rtt: ping -i 0.002 -c ${PINGS} h1 -> h2, avg, p99 and p99.9 of the ${PINGS} replies' time=`);
  console.log('  tuned C forwarder, the reference: AF_PACKET per port, PACKET_IGNORE_OUTGOING, 32 MiB SO_RCVBUFFORCE/SO_SNDBUFFORCE, recvmmsg/sendmmsg x64,');
  console.log('    up to 8 batches per wake, on ENOBUFS/EAGAIN at most 4 polls of 1 ms for POLLOUT then the rest of the batch dropped and counted; poll(2), both ways');
  console.log('  untuned C fwd: l2fwd, the reference before issue 15: same batches, 4 MiB SO_RCVBUF, default send buffer, spins on ENOBUFS');
  const results = await topologyBenchmarks(1_000_000, RUNS);
  if (!results) return;
  const { paths } = results;
  const reference = medianOfForwarder(paths);
  const ratio = (value: number | null, of: number | null): string => (value !== null && of ? `${(value / of).toFixed(2)}x` : '-');
  const header = ['forwarder in fw'.padEnd(44), 'M frames/s'.padEnd(20), 'x C  ', 'x bridge', 'TCP Gbit/s'.padEnd(20), 'x C  ', 'retransmits', 'rtt avg ms'.padEnd(20), 'rtt p99 ms'.padEnd(20), 'rtt p99.9 ms'];
  console.log(header.join('  '));
  for (const forwarder of Object.keys(paths) as Forwarder[]) {
    const figures = paths[forwarder]!;
    const rate = medianOf(figures.map((f) => f.framesPerSecond));
    const tcp = figures.every((f) => f.tcpBitsPerSecond !== null) ? figures.map((f) => f.tcpBitsPerSecond!) : null;
    console.log(
      [
        FORWARDER_NAMES[forwarder].padEnd(44),
        spread(figures.map((f) => f.framesPerSecond), 1e6, 3).padEnd(20),
        ratio(rate, reference('c', (f) => f.framesPerSecond)).padEnd(5),
        ratio(rate, reference('bridge', (f) => f.framesPerSecond)).padEnd(8),
        (tcp ? spread(tcp, 1e9, 2) : 'no iperf3').padEnd(20),
        ratio(tcp && medianOf(tcp), reference('c', (f) => f.tcpBitsPerSecond)).padEnd(5),
        String(medianOf(figures.map((f) => f.tcpRetransmits ?? 0))).padEnd(11),
        spread(figures.map((f) => f.rttAvgMs), 1, 3).padEnd(20),
        spread(figures.map((f) => f.rttP99Ms), 1, 3).padEnd(20),
        spread(figures.map((f) => f.rttP999Ms), 1, 3),
      ].join('  '),
    );
  }
  if (paths.switch && paths.c && paths.bridge) targets(paths);
  console.log('  frames lost h1 -> h2 (sent - delivered, median): ' + (Object.keys(paths) as Forwarder[]).map((f) => `${f} ${medianOf(paths[f]!.map((x) => x.dropped))}`).join(', '));
  if (!results.ports.switch[2] || !results.ports.bridge[2]) return;
  console.log('\nports: k ports on the forwarder, k/2 unicast 64-byte flows at once (h1->h2, h3->h4, ...), delivered frames/s in all');
  for (const ports of [2, 4, 8]) {
    const sw = results.ports.switch[ports]!.map((f) => f.framesPerSecond);
    const br = results.ports.bridge[ports]!.map((f) => f.framesPerSecond);
    console.log(`  ${ports} ports: Switch ${spread(sw, 1e6, 3)} M/s, Linux bridge ${spread(br, 1e6, 3)} M/s, ${ratio(medianOf(sw), medianOf(br))} the bridge`);
  }
}

/** The Switch's figures against issue 15's targets (the tuned C forwarder and the bridge ran in the same run). */
function targets(paths: Partial<Record<Forwarder, PathFigure[]>>): void {
  const reference = medianOfForwarder(paths);
  const sw = paths.switch!;
  const rateOf = (f: PathFigure): number => f.framesPerSecond;
  const swRate = medianOf(sw.map(rateOf));
  const toC = swRate / reference('c', rateOf)!;
  const lowestToC = Math.min(...sw.map((f, i) => f.framesPerSecond / paths.c![i]!.framesPerSecond));
  const toBridge = swRate / reference('bridge', rateOf)!;
  console.log(
    `  Switch frames/s: ${toC.toFixed(3)}x the tuned C forwarder (target 1.0x: ${verdict(toC, 1.0)}; lowest run ${lowestToC.toFixed(3)}x, floor 0.9x: ${verdict(lowestToC, 0.9)}),` +
      ` ${toBridge.toFixed(3)}x the bridge (target 0.9x: ${verdict(toBridge, 0.9)})`,
  );
  if (sw.every((f) => f.tcpBitsPerSecond !== null)) {
    const tcpToC = medianOf(sw.map((f) => f.tcpBitsPerSecond!)) / reference('c', (f) => f.tcpBitsPerSecond)!;
    console.log(`  Switch TCP: ${tcpToC.toFixed(3)}x the tuned C forwarder (target 1.0x: ${verdict(tcpToC, 1.0)})`);
  }
  const swP99 = medianOf(sw.map((f) => f.rttP99Ms));
  const cP99 = reference('c', (f) => f.rttP99Ms)!;
  console.log(
    `  Switch ping p99: ${swP99.toFixed(3)} ms (target <= 0.25 ms: ${swP99 <= 0.25 ? 'met' : 'missed'}),` +
      ` ${(swP99 / cP99).toFixed(3)}x the tuned C forwarder's ${cP99.toFixed(3)} ms (target <= 2x: ${swP99 / cP99 <= 2 ? 'met' : 'missed'})`,
  );
}

/** What bench/resident.js printed for one fresh process. */
interface Resident {
  rssMiB: number;
  tailCpuMs: number | null;
  idleCpuMs: number | null;
}

function resident(kind: 'devices' | 'workers', count: number, idleCpu = false): Resident {
  const script = new URL('./resident.js', import.meta.url).pathname;
  const args = [script, kind, String(count), ...(idleCpu ? ['idle-cpu'] : [])];
  return JSON.parse(execFileSync(process.execPath, args, { encoding: 'utf8' })) as Resident;
}

/**
 * Resident memory of fresh processes with 2, 16, 64 and 256 open dummy devices, beside the same
 * number of bare worker threads measured in the same run, each above a bare process; and the idle
 * CPU of the process with 64 devices.
 */
function memory(): void {
  console.log(
    '\nmemory: resident set of a fresh process 500 ms after it opened N dummy devices (a worker and two rings each), or started N bare worker threads' +
      " (new Worker of 'setInterval(() => {}, 2 ** 30)', waiting), above a bare process (the library imported, nothing open), in MiB",
  );
  const bare = medianOf([0, 1, 2].map(() => resident('devices', 0).rssMiB));
  console.log(`  bare process: ${bare.toFixed(1)} MiB (median of 3)`);
  console.log(['  N'.padEnd(6), 'devices above bare'.padEnd(20), 'per device'.padEnd(12), 'workers above bare'.padEnd(20), 'per worker'.padEnd(12), 'per device - per worker (target <= 1 MiB)'].join(''));
  const idle: Partial<Record<'devices' | 'workers', Resident>> = {};
  for (const count of [2, 16, 64, 256]) {
    const devices = resident('devices', count, count === 64);
    const workers = resident('workers', count, count === 64);
    if (count === 64) Object.assign(idle, { devices, workers });
    const perDevice = (devices.rssMiB - bare) / count;
    const perWorker = (workers.rssMiB - bare) / count;
    const above = perDevice - perWorker;
    console.log(
      [
        `  ${count}`.padEnd(6),
        (devices.rssMiB - bare).toFixed(1).padEnd(20),
        perDevice.toFixed(2).padEnd(12),
        (workers.rssMiB - bare).toFixed(1).padEnd(20),
        perWorker.toFixed(2).padEnd(12),
        `${above.toFixed(2)} (${above <= 1 ? 'met' : 'missed'})`,
      ].join(''),
    );
  }
  const cpu = (r: Resident): string => `${r.tailCpuMs} ms over the 15 s after the settle (start-up tail), then ${r.idleCpuMs} ms over 2 s`;
  console.log(`  idle CPU (utime + stime, every thread), 64 devices: ${cpu(idle.devices!)}; 64 bare workers: ${cpu(idle.workers!)}`);
}

const TCP_ROW_NAMES: Record<TcpRow, string> = {
  'switch-on': 'netdev Switch, ports opened with offloads',
  'bridge-on': 'Linux bridge',
  'ovs-tso': 'Open vSwitch userspace, userspace-tso-enable',
  'switch-off': 'netdev Switch, no offloads (veth offloads off)',
};

/** "met" or "missed": whether `ratio` is at least `target`. */
const verdict = (ratio: number, target: number): string => (ratio >= target ? 'met' : 'missed');

/**
 * The TCP-with-offloads table: iperf3 with 1 and 4 streams through each forwarder, and the Switch's
 * ratios to the bridge and to OVS userspace-tso against issue 14's targets (the median ratio, and
 * for the bridge's floor the lowest ratio of one run to the run of the bridge taken just after it).
 */
async function tcpOffloads(): Promise<void> {
  console.log(
    `\nTCP with offloads on: h1 -- fw -- h2 with the veth offloads as the kernel set them (TX checksum, TSO, GSO, GRO on);` +
      ` iperf3 h1 -> h2, 5 s, ${TCP_STREAMS.map((n) => `-P ${n}`).join(' and ')}; median (min-max) of ${RUNS} runs, the forwarders taken in turn in each run;` +
      ' the last row turns the veth offloads off after the others, as the topology rows above',
  );
  const results = await tcpOffloadBenchmarks(RUNS);
  if (!results) return;
  const header = ['forwarder in fw'.padEnd(48)];
  for (const streams of TCP_STREAMS) header.push(`-P ${streams} Gbit/s`.padEnd(22), 'retransmits'.padEnd(26));
  console.log(header.join(''));
  for (const row of Object.keys(results) as TcpRow[]) {
    const figures = results[row]!;
    const cells = [TCP_ROW_NAMES[row].padEnd(48)];
    for (const streams of TCP_STREAMS) {
      cells.push(spread(figures[streams].map((f) => f.bitsPerSecond), 1e9, 2).padEnd(22), spread(figures[streams].map((f) => f.retransmits), 1, 0).padEnd(26));
    }
    console.log(cells.join(''));
  }
  const ratios = (of: TcpFigures, to: TcpFigures, streams: (typeof TCP_STREAMS)[number]): number[] => of[streams].map((f, i) => f.bitsPerSecond / to[streams][i]!.bitsPerSecond);
  const on = results['switch-on']!;
  for (const [row, target, floor] of [['bridge-on', 0.5, 0.35], ['ovs-tso', 1.0, null]] as const) {
    const to = results[row];
    if (!to) continue;
    const parts = TCP_STREAMS.map((streams) => {
      const perRun = ratios(on, to, streams);
      const median = medianOf(on[streams].map((f) => f.bitsPerSecond)) / medianOf(to[streams].map((f) => f.bitsPerSecond));
      const lowest = Math.min(...perRun);
      const floorSaid = floor === null ? '' : `; lowest run ${lowest.toFixed(2)}x, floor ${floor}x: ${verdict(lowest, floor)}`;
      return `-P ${streams} ${median.toFixed(2)}x (target ${target.toFixed(1)}x: ${verdict(median, target)}${floorSaid})`;
    });
    console.log(`  Switch with offloads / ${TCP_ROW_NAMES[row]}: ${parts.join('; ')}`);
  }
  const off = results['switch-off']!;
  console.log(`  Switch with offloads / Switch without: ${TCP_STREAMS.map((streams) => `-P ${streams} ${(medianOf(on[streams].map((f) => f.bitsPerSecond)) / medianOf(off[streams].map((f) => f.bitsPerSecond))).toFixed(2)}x`).join(', ')}`);
}

/** Guest to guest across two machines joined by vxlan: two Switches with vxlan ports beside two Linux bridges with vxlan ports, in one run. */
async function tunnels(): Promise<void> {
  console.log(
    '\ntunnels: g1 -- m1 [forwarder, vxlan] == underlay veth == [vxlan, forwarder] m2 -- g2 (network namespaces; veth offloads as the kernel set them; guests at MTU 1450);' +
      ` the Switch (ports opened with offloads, vxlan:vx0 from the provider) or a Linux bridge with a vxlan port on each machine, taken in turn; median (min-max) of ${RUNS} runs`,
  );
  console.log('  tcp: iperf3 g1 -> g2, 5 s; frames: 64-byte unicast frames g1 -> g2 from the C sender at its maximum, 1M per run, counted by the C receiver in g2 (both pinned to CPU 0)');
  const results = await tunnelBenchmarks(1_000_000, RUNS);
  if (!results) return;
  const names = { switch: 'two Switches, vxlan ports', bridge: 'two Linux bridges, vxlan ports' } as const;
  console.log(['forwarder on each machine'.padEnd(32), 'TCP Gbit/s'.padEnd(20), 'M frames/s'.padEnd(20), 'frames lost (median)'].join('  '));
  for (const forwarder of ['switch', 'bridge'] as const) {
    const figures = results[forwarder];
    console.log([names[forwarder].padEnd(32), spread(figures.map((f) => f.tcpBitsPerSecond), 1e9, 2).padEnd(20), spread(figures.map((f) => f.framesPerSecond), 1e6, 3).padEnd(20), String(medianOf(figures.map((f) => f.dropped)))].join('  '));
  }
  const ratio = (pick: (f: { tcpBitsPerSecond: number; framesPerSecond: number }) => number) => (medianOf(results.switch.map(pick)) / medianOf(results.bridge.map(pick))).toFixed(2);
  console.log(`  Switches / bridges: TCP ${ratio((f) => f.tcpBitsPerSecond)}x, 64-byte frames ${ratio((f) => f.framesPerSecond)}x`);
}

console.log(`machine: ${cpus().length} x ${cpus()[0]?.model ?? 'unknown CPU'}, Linux ${execFileSync('uname', ['-r'], { encoding: 'utf8' }).trim()}`);
const SECTIONS: Record<string, () => unknown> = { rings, kernel, memory, topology, offloads: tcpOffloads, tunnels };
const chosen = process.argv[2];
if (chosen !== undefined && !(chosen in SECTIONS)) throw new Error(`no bench section ${chosen}: one of ${Object.keys(SECTIONS).join(', ')}`);
const started = performance.now();
console.log(`netdev benchmark: node ${process.version}, ${availableParallelism()} CPUs, median of ${RUNS} runs (min-max)`);
for (const [name, section] of Object.entries(SECTIONS)) if (chosen === undefined || chosen === name) await section();
console.log(`\nbench took ${((performance.now() - started) / 60_000).toFixed(1)} min`);
