import { describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import { workerExecArgv } from '../dist/main/worker-exec-argv.js';

const DIST = new URL('../dist/index.js', import.meta.url).href;
const FRAMES = new URL('./fixtures/checked-frame.mjs', import.meta.url).href;
const PRELOAD = new URL('./fixtures/thread-preload.cjs', import.meta.url).pathname;

// What a user types to try the library from a shell: a device worker (dummy:a, dummy:b) and a job
// pool thread (a provider whose init runs a program) each have to start.
const SCRIPT = `
const { NetdevManager } = await import(${JSON.stringify(DIST)});
const { checkedFrame, checkFrame } = await import(${JSON.stringify(FRAMES)});
const mgr = new NetdevManager();
let ran = '';
mgr.register({
  type: 'job', prefix: 'job:', validateName() {},
  async init(context) { ran = (await context.runProgram([process.execPath, '-e', 'process.stdout.write("ran")'])).stdout; },
  create: () => ({ getConfig: () => ({}), setConfig() {}, updateFlags: () => 0, destroy() {} }),
});
await mgr.open('job:x', { ethertype: 'none' });
const a = await mgr.open('dummy:a', { config: { peer: 'dummy:b' } });
const b = await mgr.open('dummy:b');
await a.turnFlagsOn({ up: true });
await b.turnFlagsOn({ up: true });
await a.send(checkedFrame(7, 100));
const seq = checkFrame((await b.frames().next()).value, 100);
await mgr.close();
console.log(seq === 7 && ran === 'ran' ? 'ok' : 'bad: ' + seq + ', pool job said ' + JSON.stringify(ran));
`;

async function node(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let [stdout, stderr] = ['', ''];
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const [code] = (await once(child, 'exit')) as [number | null];
  return { code, stdout, stderr };
}

describe('worker threads', () => {
  it('start under node --input-type=module -e, as a user tries the library from a shell', async () => {
    const { code, stdout, stderr } = await node('--input-type=module', '-e', SCRIPT);
    expect(stderr).toBe('');
    expect([code, stdout]).toEqual([0, 'ok\n']);
  });

  it('keep the options a worker takes (a --require preload) and leave out those it refuses (V8 options)', async () => {
    const { code, stdout, stderr } = await node('--expose-gc', '--max-old-space-size=256', '--enable-source-maps', '-r', PRELOAD, '--input-type=module', '-e', SCRIPT);
    expect(stderr).toBe('');
    expect(code).toBe(0);
    expect(stdout.match(/^preload ran in worker \d+$/gm)?.length).toBeGreaterThanOrEqual(3); // two device workers and a pool thread
    expect(stdout.endsWith('ok\n')).toBe(true);
  });

  it('get an execArgv without the entry point options, with every value kept beside its option', async () => {
    expect(workerExecArgv(['--input-type=module', '-e', '-1 + 1'])).toEqual([]);
    expect(workerExecArgv(['-pe', 'process.pid', '--eval=1', '-i', '--check', '--test', '--watch'])).toEqual([]);
    const given = [
      '--expose-gc', '--max-old-space-size=300', '--title', 'x', '--enable-source-maps', '-r', PRELOAD, '--inspect-port', '9999',
      '--import=data:text/javascript,', '--conditions', 'development', '--no-warnings', '--unhandled-rejections=strict', '-p', '--print-me',
    ];
    const kept = workerExecArgv(given);
    expect(kept).toEqual(['--enable-source-maps', '-r', PRELOAD, '--import=data:text/javascript,', '--conditions', 'development', '--no-warnings', '--unhandled-rejections=strict']);
    // Node accepts them in a worker (it throws ERR_WORKER_INVALID_EXEC_ARGV for what it does not).
    const worker = new Worker('process.exitCode = 0', { eval: true, execArgv: kept, stdout: true });
    const [code] = await once(worker, 'exit');
    expect(code).toBe(0);
  });
});
