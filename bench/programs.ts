/**
 * The C reference programs of `npm run bench` (bench/c/*.c, built with gcc into dist-bench/) and
 * how the benchmarks run them inside a network namespace.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';

const SOURCES = fileURLToPath(new URL('../bench/c/', import.meta.url));
const BINARIES = fileURLToPath(new URL('./', import.meta.url));
const PROGRAMS = ['sender', 'receiver', 'tuned', 'l2fwd'];

let built: boolean | undefined;

/** Builds the C programs once; returns false (saying why) if there is no compiler. */
export function buildPrograms(): boolean {
  if (built !== undefined) return built;
  try {
    for (const program of PROGRAMS) execFileSync('gcc', ['-O2', '-Wall', '-o', `${BINARIES}${program}`, `${SOURCES}${program}.c`]);
    built = true;
  } catch (error) {
    console.log(`kernel benchmarks skipped: cannot build the C reference programs (${(error as Error).message.split('\n')[0]})`);
    built = false;
  }
  return built;
}

/** A program running in a namespace: `output` resolves with all it printed once it exits with status 0. */
export interface Running {
  child: ChildProcess;
  output: Promise<string>;
  printed: () => string;
}

/** Runs `command` (a C program's name, or an absolute path) with `args` in namespace `netns`; its stderr is shown. */
export function runIn(netns: string, command: string, ...args: string[]): Running {
  return run(netns, 'inherit', command, args);
}

/** Like runIn, with stderr discarded (a library's chatter). */
export function runQuietIn(netns: string, command: string, ...args: string[]): Running {
  return run(netns, 'ignore', command, args);
}

function run(netns: string, stderr: 'inherit' | 'ignore', command: string, args: string[]): Running {
  const path = command.startsWith('/') ? command : `${BINARIES}${command}`;
  const child = spawn('ip', ['netns', 'exec', netns, path, ...args], { stdio: ['ignore', 'pipe', stderr] });
  let text = '';
  child.stdout!.on('data', (chunk: Buffer) => (text += chunk));
  const output = once(child, 'exit').then(([code, signal]) => {
    if (code !== 0) throw new Error(`${command} exited with ${signal ?? `status ${code}`}`);
    return text;
  });
  return { child, output, printed: () => text };
}

/** Resolves once `running` has printed `text`; rejects if it exits first. */
export async function waitFor(running: Running, text: string): Promise<Running> {
  let exited = false;
  void running.output.finally(() => (exited = true)).catch(() => {});
  while (!running.printed().includes(text)) {
    if (exited) {
      await running.output; // throws the program's failure
      throw new Error(`program exited without saying ${JSON.stringify(text)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  return running;
}

/** The path of taskset(1), or null if it is not installed. */
function taskset(): string | null {
  try {
    return execFileSync('sh', ['-c', 'command -v taskset'], { encoding: 'utf8' }).trim() || null;
  } catch {
    return null;
  }
}

/** True if runPinnedIn can pin (taskset is installed). */
export const canPin = taskset() !== null;

/** Like runIn for one of the C programs, pinned to CPU 0 with taskset (not pinned if taskset is missing). */
export function runPinnedIn(netns: string, program: string, ...args: string[]): Running {
  const path = taskset();
  return path ? runIn(netns, path, '-c', '0', `${BINARIES}${program}`, ...args) : runIn(netns, program, ...args);
}

/** Runs `command` in `netns` and resolves once it has printed 'ready' (or rejects if it exits first). */
export function startIn(netns: string, command: string, ...args: string[]): Promise<Running> {
  return waitFor(runIn(netns, command, ...args), 'ready');
}

/** What the C sender printed: [frames sent, seconds it took]. */
export function senderResult(output: string): [number, number] {
  const [sent, seconds] = output.trim().split(/\s+/).map(Number);
  return [sent!, seconds!];
}

/** The last line a program printed, as a number (the receiver's and forwarders' counts). */
export function lastNumber(output: string): number {
  return Number(output.trim().split('\n').pop());
}
