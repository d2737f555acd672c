import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer, type Socket } from 'node:net';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { NetdevError, NetdevManager, netdevError, type IoControl, type Netdev, type Provider } from '../dist/index.js';
import { JobPool } from '../dist/main/job-pool.js';
import { bareProvider } from './bare-provider.js';
import { ethFrame, eventually, expectWarning, prefixed, rejection, seqOf, sleep, tempDir, thrown } from './helpers.js';

let mgr: NetdevManager;

beforeEach(() => {
  mgr = new NetdevManager();
});
afterEach(async () => {
  await mgr.close();
});


describe('registering providers', () => {
  it('opens devices of a third-party provider through the public API', async () => {
    mgr.register(bareProvider('bare:', { getMtu: () => 4242 }));
    const dev = await mgr.open('bare:one', { ethertype: 'none' });
    expect(dev.type).toBe('bare');
    expect(await dev.getMtu()).toBe(4242);
    expect((await rejection(mgr.open('bare:a-b'))).code).toBe('EINVAL');
    expect(mgr.providerTypes).toMatchObject({ 'dummy:': 'dummy', 'bare:': 'bare' });
  });

  it('refuses a taken prefix (EEXIST) and malformed providers (EINVAL)', () => {
    expect(thrown(() => mgr.register(bareProvider('dummy:'))).code).toBe('EEXIST');
    expect(thrown(() => mgr.register(bareProvider('nocolon'))).code).toBe('EINVAL');
    expect(thrown(() => mgr.register(bareProvider('a:b:'))).code).toBe('EINVAL');
    expect(thrown(() => mgr.register({ type: 'x', prefix: 'x:' } as unknown as Provider)).code).toBe('EINVAL');
  });

  it('answers EOPNOTSUPP for every missing member, with the OVS fallbacks', async () => {
    mgr.register(bareProvider('bare:'));
    const dev = await mgr.open('bare:one', { ethertype: 'none' });
    const calls: [string, Promise<unknown>, unknown][] = [
      ['getEtheraddr', dev.getEtheraddr(), undefined],
      ['setEtheraddr', dev.setEtheraddr('02:00:00:00:00:01'), undefined],
      ['getMtu', dev.getMtu(), 1500],
      ['setMtu', dev.setMtu(1000), undefined],
      ['getIfindex', dev.getIfindex(), undefined],
      ['getCarrier', dev.getCarrier(), false],
      ['getFeatures', dev.getFeatures(), undefined],
      ['getIn4', dev.getIn4(), { address: '0.0.0.0', netmask: '0.0.0.0', prefixLength: 0 }],
      ['setIn4', dev.setIn4('10.0.0.1', 24), undefined],
      ['getIn6', dev.getIn6(), '::'],
      ['setIn6', dev.setIn6('fd00::1'), undefined],
      ['inject', dev.inject(ethFrame(60)), undefined],
    ];
    for (const [call, promise, fallback] of calls) {
      const error = await rejection(promise);
      expect(error).toBeInstanceOf(NetdevError);
      expect([call, error.code]).toEqual([call, 'EOPNOTSUPP']);
      expect(error.device).toBe('bare:one');
      expect(error.fallback).toEqual(fallback);
    }
    const stats = await rejection(dev.getStats());
    expect(stats.code).toBe('EOPNOTSUPP');
    expect(Object.values(stats.fallback as object).every((v) => v === null)).toBe(true);
    expect((await rejection(dev.getVlanVid())).code).toBe('ENOENT');
  });

  it('turns provider failures into NetdevErrors naming device, call and errno', async () => {
    mgr.register(
      bareProvider('bad:', {
        getMtu: () => {
          throw netdevError('ENODEV', 'gone');
        },
        getCarrier: () => {
          throw new Error('plain failure');
        },
        getIfindex: () => {
          throw Object.assign(new Error('no such file'), { code: 'ENOENT' });
        },
      }),
    );
    const dev = await mgr.open('bad:one', { ethertype: 'none' });
    const mtu = await rejection(dev.getMtu());
    expect([mtu.code, mtu.errno, mtu.device, mtu.call, mtu.fallback]).toEqual(['ENODEV', 19, 'bad:one', 'getMtu', 1500]);
    expect(mtu.message).toBe('bad:one: getMtu: ENODEV: gone');
    const carrier = await rejection(dev.getCarrier());
    expect([carrier.code, carrier.fallback]).toEqual(['EIO', false]);
    expect(carrier.message).toContain('plain failure');
    expect((await rejection(dev.getIfindex())).code).toBe('ENOENT');
  });

  it('reports a failing init clearly, once, without breaking other providers', async () => {
    expectWarning(/failed to initialize the broken provider/); // once, from the first open
    expectWarning(/cannot enumerate broken devices/); // enumerate skips a provider that fails, with a warning
    let inits = 0;
    mgr.register(
      bareProvider('broken:', {}, {
        init() {
          inits++;
          throw netdevError('EACCES', 'no rights');
        },
        enumerate: () => ['broken:x'],
      }),
    );
    const warnings: string[] = [];
    const onWarning = (warning: Error) => warnings.push(warning.message);
    process.on('warning', onWarning);
    try {
      for (let i = 0; i < 2; i++) {
        const error = await rejection(mgr.open('broken:x', { ethertype: 'none' }));
        expect(error.code).toBe('EACCES');
        expect(error.call).toBe('init');
        expect(error.device).toBe('broken:x');
      }
      expect(inits).toBe(1);
      const dummy = await mgr.open('dummy:ok');
      expect(await prefixed(mgr)).toEqual(['dummy:ok']);
      await dummy.inject(ethFrame(60, 1));
      expect(seqOf(dummy.tryRecv() ?? (await dummy.frames().next()).value)).toBe(1);
      await sleep(10);
      expect(warnings.some((w) => w.includes('failed to initialize the broken provider'))).toBe(true);
    } finally {
      process.off('warning', onWarning);
    }
  });

  it('passes ENODEV from create and tells exists() the device is missing', async () => {
    mgr.register(
      bareProvider('maybe:', {}, {
        create(context) {
          if (context.suffix !== 'here') throw netdevError('ENODEV', 'no such device');
          return bareProvider('x:').create(context, { ethertype: 'none', maxFrame: 0, netns: undefined });
        },
      }),
    );
    expect((await rejection(mgr.open('maybe:gone'))).code).toBe('ENODEV');
    expect(await mgr.exists('maybe:gone')).toBe(false);
    expect(await mgr.exists('maybe:here')).toBe(true);
  });

  it('fails an open clearly when the I/O module is missing or exports no createIo, leaving nothing open', async () => {
    mgr.register(bareProvider('lost:', {}, { ioModule: new URL('./fixtures/no-such-module.mjs', import.meta.url) }));
    mgr.register(bareProvider('empty:', {}, { ioModule: new URL('./fixtures/not-io.mjs', import.meta.url) }));
    const missing = await rejection(mgr.open('lost:x'));
    expect(missing).toBeInstanceOf(NetdevError);
    expect(missing.device).toBe('lost:x');
    expect(missing.message).toContain('no-such-module.mjs');
    const empty = await rejection(mgr.open('empty:x'));
    expect(empty.code).toBe('EINVAL');
    expect(empty.message).toContain('does not export createIo');
    expect(await prefixed(mgr)).toEqual([]);
    expect(await mgr.exists('lost:x')).toBe(true); // control-only opens need no I/O module
  });

  it('lets a provider run programs in the pool through its context', async () => {
    let stdout = '';
    mgr.register(
      bareProvider('prog:', {}, {
        async init(context) {
          stdout = (await context.runProgram(['/bin/echo', 'from', 'the pool'])).stdout;
        },
      }),
    );
    await mgr.open('prog:x', { ethertype: 'none' });
    expect(stdout).toBe('from the pool\n');
  });
});

describe('a crashed worker', () => {
  const crashy = (failures: string[]): Provider =>
    bareProvider('crashy:', { ioFailed: (error: Error) => void failures.push(error.message) }, {
      ioModule: new URL('./fixtures/crash-io.mjs', import.meta.url),
    });

  for (const [order, cause] of [
    [1, 'injected crash in transmit'],
    [2, 'exited with code 3'],
  ] as const) {
    it(`puts only its own device in an error state (${cause})`, async () => {
      const failures: string[] = [];
      mgr.register(crashy(failures));
      const dev = await mgr.open('crashy:x');
      const a = await mgr.open('dummy:a', { config: { peer: 'dummy:b' } });
      const b = await mgr.open('dummy:b');
      await a.turnFlagsOn({ up: true });
      await b.turnFlagsOn({ up: true });

      const reading = dev.frames().next();
      await dev.send(ethFrame(60, 0));
      const fatal = ethFrame(60, 1);
      fatal[14] = order;
      await dev.send(fatal);

      const error = await rejection(reading);
      expect(error).toBeInstanceOf(NetdevError);
      expect(error.code).toBe('EIO');
      expect(error.device).toBe('crashy:x');
      expect(error.message).toContain(cause);
      expect((await rejection(dev.send(ethFrame(60)))).code).toBe('EIO');
      expect(thrown(() => dev.frames()).code).toBe('EIO');
      expect(await eventually(() => failures.length === 1)).toBe(true);
      // Control calls that do not need the worker still answer; other devices keep working.
      expect(await dev.getConfig()).toEqual({});
      await a.send(ethFrame(60, 77));
      expect(seqOf((await b.frames().next()).value as Uint8Array)).toBe(77);
      await dev.close();
      expect(await prefixed(mgr)).toEqual(['dummy:a', 'dummy:b']);
    });
  }
});

describe('an I/O half with asynchronous input', () => {
  async function streamDevice() {
    const path = join(tempDir('stream'), 'sock');
    const server = createServer();
    server.listen(path);
    await once(server, 'listening');
    const accepted = once(server, 'connection') as Promise<[Socket]>;
    let io: { call(op: string, arg?: unknown): Promise<unknown> } | null = null;
    mgr.register(
      bareProvider('stream:', {
        ioOptions: () => ({ path }),
        ioStarted: (control) => void (io = control),
        inject: () => io!.call('hang') as Promise<void>,
      }, { ioModule: new URL('./fixtures/stream-io.mjs', import.meta.url) }),
    );
    const dev = await mgr.open('stream:x');
    const [peer] = await accepted;
    return { dev, peer, server };
  }

  it('wakes its sleeping worker from the I/O callback and moves frames both ways', async () => {
    const { dev, peer, server } = await streamDevice();
    const frames = dev.frames({ copy: true });
    await sleep(50); // the worker is asleep on its bell now
    const sent = ethFrame(100, 7);
    peer.write(Buffer.concat([Buffer.from([0, 100]), sent, Buffer.from([0, 20]), ethFrame(20, 8)]));
    expect((await frames.next()).value).toEqual(sent);
    const short = (await frames.next()).value as Uint8Array;
    expect(short.length).toBe(60);
    expect(seqOf(short)).toBe(8);
    const echoed = once(peer, 'data');
    await dev.send(ethFrame(64, 9));
    const [chunk] = (await echoed) as [Buffer];
    expect(chunk.readUInt16BE(0)).toBe(64);
    expect(seqOf(chunk.subarray(2))).toBe(9);
    await dev.close();
    server.close();
  });

  it('settles a call still pending in the worker when the device closes', async () => {
    const { dev, server } = await streamDevice();
    const pending = dev.inject(ethFrame(60));
    await sleep(20);
    await dev.close();
    const error = await rejection(pending);
    expect(error).toBeInstanceOf(NetdevError);
    expect(error.code).toBe('EBADF');
    expect(error.message).toContain('device is closed');
    server.close();
  });
});

describe('monitor', () => {
  it('coalesces changes per device and reports only watched devices', async () => {
    const a = await mgr.open('dummy:a');
    const b = await mgr.open('dummy:b');
    const monitor = mgr.monitor();
    monitor.add(a);
    monitor.add(a);
    for (let mtu = 1000; mtu < 1005; mtu++) await a.setMtu(mtu);
    await b.setMtu(1000);
    expect(monitor.poll()).toBe('dummy:a');
    expect(monitor.poll()).toBeNull();
    monitor.add(b);
    await b.turnFlagsOn({ promisc: true });
    await a.setEtheraddr('02:00:00:00:00:0a');
    expect([monitor.poll(), monitor.poll(), monitor.poll()]).toEqual(['dummy:b', 'dummy:a', null]);
    monitor.remove(a);
    await a.setMtu(1400);
    expect(monitor.poll()).toBeNull();
  });

  it('wakes an iterating reader on a change, including a peer carrier change, and ends on close', async () => {
    const a = await mgr.open('dummy:a', { config: { peer: 'dummy:b' } });
    const b = await mgr.open('dummy:b');
    await a.turnFlagsOn({ up: true });
    const monitor = mgr.monitor();
    monitor.add(a);
    const iterator = monitor[Symbol.asyncIterator]();
    const first = iterator.next();
    await b.turnFlagsOn({ up: true }); // a's carrier comes on
    expect(await first).toEqual({ value: 'dummy:a', done: false });
    expect(await a.getCarrier()).toBe(true);
    const second = iterator.next();
    monitor.close();
    expect(await second).toEqual({ value: undefined, done: true });
  });

  it('ends every monitor when the manager closes', async () => {
    const monitor = mgr.monitor();
    monitor.add(await mgr.open('dummy:a'));
    const pending = monitor[Symbol.asyncIterator]().next();
    await mgr.close();
    expect((await pending).done).toBe(true);
  });
});

describe('flags at exit (child processes)', () => {
  function runChild(mode: 'wait' | 'throw', signal?: NodeJS.Signals) {
    const file = join(tempDir('flags'), 'flags');
    const child = spawn(process.execPath, [new URL('./fixtures/flag-child.mjs', import.meta.url).pathname, file, mode], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (chunk) => (stderr += chunk));
    return new Promise<{ code: number | null; signal: string | null; before: string; after: string; stderr: string }>((resolve, reject) => {
      let before = '';
      child.stdout.on('data', (chunk: Buffer) => {
        if (chunk.toString().includes('ready')) {
          before = readFileSync(file, 'utf8');
          if (signal) child.kill(signal);
        }
      });
      child.on('error', reject);
      child.on('exit', (code, sig) => resolve({ code, signal: sig, before, after: readFileSync(file, 'utf8'), stderr }));
    });
  }

  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
    it(`restores non-permanent flags on ${signal} and still dies of the signal`, async () => {
      const result = await runChild('wait', signal);
      expect(result.before).toBe('3'); // up | promisc
      expect(result.after).toBe('1'); // promisc restored, up permanent
      expect(result.signal).toBe(signal);
    });
  }

  it('restores non-permanent flags after an uncaught exception', async () => {
    const result = await runChild('throw');
    expect(result.before).toBe('3');
    expect(result.after).toBe('1');
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('deliberate');
  });
});

describe('job pool', () => {
  const pool = new JobPool();
  afterEach(async () => {
    await pool.close();
  });

  it('runs a program with an argument vector, never a shell', async () => {
    const result = await pool.runProgram(['/bin/echo', 'a;b', '$(id)']);
    expect(result).toEqual({ status: 0, signal: null, stdout: 'a;b $(id)\n', stderr: '' });
    const failing = await pool.runProgram(['/bin/sh', '-c', 'echo oops >&2; exit 3']);
    expect([failing.status, failing.stderr]).toEqual([3, 'oops\n']);
  });

  it('reports a missing program (ENOENT), a timeout (ETIMEDOUT) and a bad argv (EINVAL)', async () => {
    expect((await rejection(pool.runProgram(['/nonexistent/program']))).code).toBe('ENOENT');
    expect((await rejection(pool.runProgram(['/bin/sleep', '5'], { timeoutMs: 200 }))).code).toBe('ETIMEDOUT');
    expect((await rejection(pool.runProgram([]))).code).toBe('EINVAL');
    expect((await rejection(pool.runProgram(['/bin/echo', 'a\0b']))).code).toBe('EINVAL');
  });

  it('keeps the main thread free while a job blocks its pool thread', async () => {
    let ticks = 0;
    const timer = setInterval(() => ticks++, 10);
    await pool.runProgram(['/bin/sleep', '0.4']);
    clearInterval(timer);
    expect(ticks).toBeGreaterThan(10);
  });
});

/** The threads of this process (Linux: /proc/self/task). */
const threads = (): string[] => readdirSync('/proc/self/task');

/** Per thread of `tids` still running: the times the kernel has switched it off a CPU (voluntary or not); each wake-up of a sleeping thread adds one. */
function contextSwitches(tids: readonly string[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const tid of tids) {
    let status: string;
    try {
      status = readFileSync(`/proc/self/task/${tid}/status`, 'utf8');
    } catch {
      continue; // the thread has ended
    }
    let total = 0;
    for (const match of status.matchAll(/^(?:non)?voluntary_ctxt_switches:\s*(\d+)$/gm)) total += Number(match[1]);
    counts.set(tid, total);
  }
  return counts;
}

describe('idle and wake-up', () => {
  it('uses almost no CPU while open devices are idle, and a frame sent then leaves at once', async () => {
    const before = new Set(threads());
    const a = await mgr.open('dummy:a', { config: { peer: 'dummy:b' } });
    const b = await mgr.open('dummy:b');
    await a.turnFlagsOn({ up: true });
    await b.turnFlagsOn({ up: true });
    const frames = b.frames();
    const arrival = frames.next();
    // The threads started since: the two device workers (and nothing else that runs while idle).
    const workers = threads().filter((tid) => !before.has(tid));
    expect(workers.length).toBeGreaterThanOrEqual(2);
    await sleep(100);
    const cpu = process.cpuUsage();
    const switches = contextSwitches(workers);
    await sleep(1000);
    const used = process.cpuUsage(cpu);
    // Nobody polls: a sleeping worker is not woken at all (one waking every 10 ms would be ~100 times a second).
    const after = contextSwitches(workers);
    const woken = [...switches].map(([tid, count]) => [tid, (after.get(tid) ?? count) - count]);
    expect(woken.length).toBeGreaterThanOrEqual(2);
    expect(woken.filter(([, wakes]) => wakes !== 0)).toEqual([]);
    // Every thread of this process together: the two device workers and the main thread.
    expect((used.user + used.system) / 1000).toBeLessThan(50);
    const sent = performance.now();
    await a.send(ethFrame(60, 5));
    const frame = (await arrival).value as Uint8Array;
    expect(seqOf(frame)).toBe(5);
    expect(performance.now() - sent).toBeLessThan(100);
  });
});

/**
 * A device of the test provider 'gate:' (test/fixtures/gate-io.mjs): its worker transmits only the
 * frames the test allows ('allow'), keeping copies ('taken'), and floods its RX ring on demand.
 * getMtu and setConfig are answered by its worker (an 'echo' control call).
 */
async function gateDevice(ringSize: number): Promise<{ dev: Netdev; call: (op: string, arg?: unknown) => Promise<unknown>; taken: () => Promise<Uint8Array[]> }> {
  let io: IoControl | null = null;
  mgr.register(
    bareProvider('gate:', {
      ioStarted: (control) => void (io = control),
      getMtu: () => io!.call('echo', 1500) as Promise<number>,
      setConfig: async () => void (await io!.call('echo')),
    }, { ioModule: new URL('./fixtures/gate-io.mjs', import.meta.url) }),
  );
  const dev = await mgr.open('gate:x', { ringSize });
  const call = (op: string, arg?: unknown) => io!.call(op, arg);
  const kept: Uint8Array[] = [];
  /** Every frame the worker has taken so far, in order. */
  const taken = async () => {
    kept.push(...((await call('taken')) as Uint8Array[]));
    return kept;
  };
  return { dev, call, taken };
}

/** Waits until the gate device's worker has taken `count` frames, and returns them. */
async function takenFrames(taken: () => Promise<Uint8Array[]>, count: number): Promise<Uint8Array[]> {
  expect(await eventually(async () => (await taken()).length >= count)).toBe(true);
  const frames = await taken();
  expect(frames.length).toBe(count);
  return frames;
}

/** `promise`, or a failure naming `what` if it takes more than `ms` (so that a hang fails the test instead of stalling it). */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took more than ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// A 4096-byte TX ring holds 39 frames of 100 bytes (104-byte records) from empty.
const FILL = 39;

describe('sending while the TX ring is full', () => {
  it('refuses trySend while a send() waits, even with room for the frame, so frames never overtake', async () => {
    const { dev, call, taken } = await gateDevice(4096);
    let queued = 0;
    while (dev.trySend(ethFrame(100, queued))) queued++;
    expect(queued).toBe(FILL);
    let resolved = false;
    const big = dev.send(ethFrame(1000, 1000)).then(() => void (resolved = true));
    await call('allow', 1); // the worker takes frame 0: room for a 60-byte frame, not for the waiting 1000-byte one
    expect(resolved).toBe(false);
    expect(dev.trySend(ethFrame(60, 2000))).toBe(false);
    expect(dev.trySendBatch([ethFrame(60, 2001)])).toBe(0);
    const after = dev.send(ethFrame(60, 3000));
    await call('allow', Infinity);
    await big;
    await after;
    const frames = await takenFrames(taken, FILL + 2);
    expect(frames.map(seqOf)).toEqual([...Array.from({ length: FILL }, (_, seq) => seq), 1000, 3000]);
    expect(frames.at(-2)).toEqual(ethFrame(1000, 1000));
    expect(dev.trySend(ethFrame(60, 4000))).toBe(true); // nobody waits now
  });

  it("trySendBatch queues what fits and says how many, in order", async () => {
    const { dev, call, taken } = await gateDevice(4096);
    const first = Array.from({ length: 50 }, (_, seq) => ethFrame(100, seq));
    expect(dev.trySendBatch(first)).toBe(FILL);
    expect(dev.trySendBatch([ethFrame(100, 99)])).toBe(0);
    await call('allow', 5); // 520 bytes free again; the next record wraps (skipping the last 40 bytes): 5 fit
    const second = Array.from({ length: 10 }, (_, i) => ethFrame(100, 100 + i));
    expect(dev.trySendBatch(second)).toBe(5);
    await call('allow', Infinity);
    const frames = await takenFrames(taken, FILL + 5);
    expect(frames).toEqual([...first.slice(0, FILL), ...second.slice(0, 5)]);
  });

  it('send() resolves only once the frame is in the ring, copied: changing it afterwards changes nothing sent', async () => {
    const { dev, call, taken } = await gateDevice(4096);
    while (dev.trySend(ethFrame(100, 0)));
    const frame = ethFrame(200, 500);
    const original = frame.slice();
    let resolved = false;
    const sent = dev.send(frame).then(() => void (resolved = true));
    await call('echo'); // a round trip to the worker: the ring is still full
    expect(resolved).toBe(false);
    await call('allow', FILL);
    await sent;
    frame.fill(0xee);
    await call('allow', Infinity);
    const frames = await takenFrames(taken, FILL + 1);
    expect(frames.at(-1)).toEqual(original);
  });

  it('refuses frames over half the ring (maxRecord) with EMSGSIZE, tagged or not, and takes one of exactly that size', async () => {
    const { dev, call, taken } = await gateDevice(4096);
    expect(dev.maxFrame).toBe(2044); // no MTU: the ring's limit, 4096 / 2 - 4
    for (const frame of [ethFrame(2045), ethFrame(2045, 0, 0x8100)]) {
      const error = thrown(() => dev.trySend(frame));
      expect([error.code, error.device, error.call]).toEqual(['EMSGSIZE', 'gate:x', 'trySend']);
      expect(error.message).toContain('2045 bytes');
    }
    expect((await rejection(dev.send(ethFrame(2045)))).code).toBe('EMSGSIZE');
    expect(dev.trySend(ethFrame(2044, 1))).toBe(true);
    await call('allow', Infinity);
    expect(await takenFrames(taken, 1)).toEqual([ethFrame(2044, 1)]);
  });
});

describe('a busy worker', () => {
  it('answers control calls while it moves frames all the time', async () => {
    const { dev, call } = await gateDevice(64 * 1024);
    await within(call('flood', true), 2000, 'starting the flood');
    const generatedNow = async () => (await within(call('generated'), 2000, 'a control call to a busy worker')) as number;
    let generated = await generatedNow();
    const latencies: number[] = [];
    for (let i = 0; i < 20; i++) {
      const started = performance.now();
      expect(await within(dev.getMtu(), 2000, 'getMtu on a busy worker')).toBe(1500);
      await within(dev.setConfig({ x: i }), 2000, 'setConfig on a busy worker');
      latencies.push(performance.now() - started);
      // The worker kept working between the calls: it is busy, not idle between them.
      const now = await generatedNow();
      expect(now).toBeGreaterThan(generated);
      generated = now;
    }
    await call('flood', false);
    expect(Math.max(...latencies)).toBeLessThan(250);
  });
});
