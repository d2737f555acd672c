/**
 * `node resident.js devices|workers N [idle-cpu]`, for `npm run bench`: in a fresh process, opens N
 * dummy devices (each with its worker and rings) or starts N bare worker threads (each doing
 * nothing, waiting), lets it settle for SETTLE_MS, and prints a JSON line: its resident memory in
 * MiB, and with `idle-cpu` the CPU time in ms (utime + stime of /proc/self/stat, every thread) it
 * then spends left idle: over the next TAIL_MS (the start-up tail: each new isolate's V8 runs its
 * garbage collector a few seconds after it starts, bare workers too), and over the IDLE_MS after
 * that.  N 0 is the bare process (the library imported, nothing open).
 */
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { NetdevManager } from '../dist/index.js';

const SETTLE_MS = 500;
const TAIL_MS = 15_000;
const IDLE_MS = 2000;
const [kind, countText, idle] = process.argv.slice(2);
const count = Number(countText);
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** utime + stime of this process (all its threads), in ms. */
function cpuMs(): number {
  const fields = readFileSync('/proc/self/stat', 'utf8').split(') ')[1]!.split(' ');
  const ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }));
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / ticksPerSecond;
}

if (kind === 'devices') {
  const mgr = new NetdevManager();
  for (let i = 0; i < count; i++) await mgr.open(`dummy:rss${i}`);
} else if (kind === 'workers') {
  for (let i = 0; i < count; i++) await once(new Worker('setInterval(() => {}, 2 ** 30);', { eval: true }), 'online');
} else {
  throw new Error(`resident.js: devices or workers, not ${kind}`);
}
await sleep(SETTLE_MS);
const rssMiB = process.memoryUsage().rss / 2 ** 20;
let tailCpuMs: number | null = null;
let idleCpuMs: number | null = null;
if (idle === 'idle-cpu') {
  const settled = cpuMs();
  await sleep(TAIL_MS);
  const tailEnd = cpuMs();
  await sleep(IDLE_MS);
  tailCpuMs = tailEnd - settled;
  idleCpuMs = cpuMs() - tailEnd;
}
console.log(JSON.stringify({ rssMiB, tailCpuMs, idleCpuMs }));
process.exit(0);
