/**
 * Kernel part of `npm run bench` (root only): in a network namespace of its own, with two veth
 * pairs s0<->f0 and f1<->r1, a C sender of the project's own (sendmmsg x64) offers 64-byte frames
 * on s0 as fast as it can, and we count what arrives:
 *   - received into JavaScript from f0 (the library's system device, batches()) vs a C receiver (recvmmsg x64);
 *   - forwarded f0 -> f1 by the library (the CLI's forward loop, and the Switch) vs the tuned C
 *     forwarder (bench/c/tuned.c: 32 MiB buffers, recvmmsg/sendmmsg x64, bounded wait then
 *     drop-and-count on ENOBUFS), counted by the C receiver on r1.
 * Rate = frames delivered / the sender's time; drops = frames sent - delivered.  The frames are raw
 * Ethernet, so veth offloads (which matter for TCP) play no part here.
 */
import { execFileSync } from 'node:child_process';
import { NetdevManager, Switch, type Netdev } from '../dist/index.js';
import { forward } from '../dist/cli/traffic.js';
import { buildPrograms, lastNumber, runIn, senderResult, startIn } from './programs.js';

const NETNS = `ndbench${process.pid}`;
const TYPE = 0x88b5;
const IDLE_MS = 300;

export interface KernelFigure {
  framesPerSecond: number;
  dropped: number;
}

function ip(...args: string[]): void {
  execFileSync('ip', args);
}

function setUp(): void {
  ip('netns', 'add', NETNS);
  for (const [a, b] of [['s0', 'f0'], ['f1', 'r1']] as const) {
    ip('-n', NETNS, 'link', 'add', a, 'type', 'veth', 'peer', 'name', b);
    for (const dev of [a, b]) {
      ip('-n', NETNS, 'link', 'set', dev, 'addrgenmode', 'none');
      ip('-n', NETNS, 'link', 'set', dev, 'up');
    }
  }
}

function tearDown(): void {
  try {
    ip('netns', 'del', NETNS);
  } catch {
    // already gone
  }
}

/** Runs the C sender for `count` frames; resolves with [sent, seconds]. */
async function send(count: number): Promise<[number, number]> {
  return senderResult(await runIn(NETNS, 'sender', 's0', String(count), '64').output);
}

/** Waits until `counted()` has been still for IDLE_MS after the first frame; then closes `device` (unless told not to). */
async function countInJs(device: Netdev, counted: () => number, close = true): Promise<void> {
  let last = -1;
  let lastChange = performance.now();
  await new Promise<void>((resolve) => {
    const watchdog = setInterval(() => {
      const now = counted();
      if (now !== last) {
        last = now;
        lastChange = performance.now();
      } else if (now > 0 && performance.now() - lastChange > IDLE_MS) {
        clearInterval(watchdog);
        resolve();
      }
    }, 20);
  });
  if (close) await device.close();
}

async function receiveC(count: number): Promise<KernelFigure> {
  const receiver = await startIn(NETNS, 'receiver', 'f0');
  const [sent, seconds] = await send(count);
  const received = lastNumber(await receiver.output);
  return { framesPerSecond: received / seconds, dropped: sent - received };
}

async function receiveJs(count: number): Promise<KernelFigure> {
  const mgr = new NetdevManager();
  try {
    const device = await mgr.open('f0', { netns: NETNS, ethertype: TYPE });
    let received = 0;
    const reading = (async () => {
      for await (const batch of device.batches()) received += batch.length;
    })();
    await new Promise((resolve) => setTimeout(resolve, 100));
    const sending = send(count);
    await countInJs(device, () => received);
    await reading;
    const [sent, seconds] = await sending;
    return { framesPerSecond: received / seconds, dropped: sent - received };
  } finally {
    await mgr.close();
  }
}

async function forwardC(count: number): Promise<KernelFigure> {
  const receiver = await startIn(NETNS, 'receiver', 'r1');
  const forwarder = await startIn(NETNS, 'tuned', 'f0', 'f1');
  const [sent, seconds] = await send(count);
  const received = lastNumber(await receiver.output);
  forwarder.child.kill('SIGTERM');
  await forwarder.output;
  return { framesPerSecond: received / seconds, dropped: sent - received };
}

async function forwardJs(count: number): Promise<KernelFigure> {
  const mgr = new NetdevManager();
  try {
    const receiver = await startIn(NETNS, 'receiver', 'r1');
    const input = await mgr.open('f0', { netns: NETNS, ethertype: TYPE });
    const output = await mgr.open('f1', { netns: NETNS, ethertype: TYPE });
    const tally = { forwarded: 0 };
    const forwarding = forward(input, output, tally);
    await new Promise((resolve) => setTimeout(resolve, 100));
    const sending = send(count);
    await countInJs(input, () => tally.forwarded);
    await forwarding;
    const [sent, seconds] = await sending;
    const received = lastNumber(await receiver.output);
    return { framesPerSecond: received / seconds, dropped: sent - received };
  } finally {
    await mgr.close();
  }
}

/** Forwarding f0 -> f1 through the learning Switch (learning, flooding the unknown destination). */
async function forwardSwitch(count: number): Promise<KernelFigure> {
  const mgr = new NetdevManager();
  const sw = new Switch();
  try {
    const receiver = await startIn(NETNS, 'receiver', 'r1');
    const input = await mgr.open('f0', { netns: NETNS, ethertype: TYPE });
    const output = await mgr.open('f1', { netns: NETNS, ethertype: TYPE });
    sw.addPort(input);
    sw.addPort(output);
    await sw.ready();
    const sending = send(count);
    await countInJs(input, () => sw.counters()[0]?.counters.rxFrames ?? 0, false);
    const [sent, seconds] = await sending;
    const received = lastNumber(await receiver.output);
    return { framesPerSecond: received / seconds, dropped: sent - received };
  } finally {
    await sw.close();
    await mgr.close();
  }
}

export type KernelRun = 'receive-c' | 'receive-js' | 'forward-c' | 'forward-js' | 'forward-switch';

/** Runs `measure` for every kernel figure, in one namespace set up for the whole run; null if it cannot run here. */
export async function kernelBenchmarks(count: number, measure: (run: () => Promise<KernelFigure>) => Promise<KernelFigure[]>): Promise<Record<KernelRun, KernelFigure[]> | null> {
  if (process.getuid?.() !== 0) {
    console.log('kernel benchmarks skipped: they need root to create a network namespace and veth pairs');
    return null;
  }
  if (!buildPrograms()) return null;
  setUp();
  try {
    return {
      'receive-c': await measure(() => receiveC(count)),
      'receive-js': await measure(() => receiveJs(count)),
      'forward-c': await measure(() => forwardC(count)),
      'forward-js': await measure(() => forwardJs(count)),
      'forward-switch': await measure(() => forwardSwitch(count)),
    };
  } finally {
    tearDown();
  }
}
