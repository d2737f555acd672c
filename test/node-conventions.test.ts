/**
 * Node conventions: an AbortSignal cancels the waits a caller may want to give up (frames() and
 * batches() steps, send, sendBatch, open) with a NetdevError ECANCELED whose cause is the
 * signal's reason; `await using` closes managers, handles and Switches (Symbol.asyncDispose); and
 * the package refuses, saying why, to load anywhere but Linux.
 */
import { execFile } from 'node:child_process';
import { getEventListeners } from 'node:events';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { NetdevManager, Switch, type IoControl, type Netdev, type NetdevError, type Provider, type ProviderDevice } from '../dist/index.js';
import { ethFrame, eventually, rejection, seqOf, thrown } from './helpers.js';
import { bareProvider } from './bare-provider.js';

let mgr: NetdevManager;

beforeEach(() => {
  mgr = new NetdevManager();
});
afterEach(async () => {
  await mgr.close();
});

/** A provider of devices with only the required members (and `extra`); `created`/`destroyed` count its devices' lifetimes. */
function countingProvider(prefix: string, extra: Partial<ProviderDevice> = {}, more: Partial<Provider> = {}) {
  const counts = { created: 0, destroyed: 0 };
  const base = bareProvider(prefix, { destroy: () => void counts.destroyed++, ...extra }, more);
  const provider: Provider = {
    ...base,
    create: (context, options) => {
      counts.created++;
      return base.create(context, options);
    },
  };
  return { provider, counts };
}

/**
 * A device of the test provider 'gate:' (test/fixtures/gate-io.mjs): its worker takes frames from
 * the TX ring only as the test allows ('allow'), keeping copies, so the ring stays full until then.
 */
async function gateDevice(ringSize: number): Promise<{ dev: Netdev; allow: (count: number) => Promise<unknown>; taken: () => Promise<Uint8Array[]> }> {
  let io: IoControl | null = null;
  const { provider } = countingProvider('gate:', { ioStarted: (control) => void (io = control) }, { ioModule: new URL('./fixtures/gate-io.mjs', import.meta.url) });
  mgr.register(provider);
  const dev = await mgr.open('gate:x', { ringSize });
  const kept: Uint8Array[] = [];
  const taken = async () => {
    kept.push(...((await io!.call('taken')) as Uint8Array[]));
    return kept;
  };
  return { dev, allow: (count) => io!.call('allow', count), taken };
}

/** Waits until the gate device's worker has taken `count` frames, and returns them. */
async function takenFrames(taken: () => Promise<Uint8Array[]>, count: number): Promise<Uint8Array[]> {
  expect(await eventually(async () => (await taken()).length >= count)).toBe(true);
  const frames = await taken();
  expect(frames.length).toBe(count);
  return frames;
}

/** Asserts `error` is the ECANCELED of an aborted `call` on `device`, caused by `reason`. */
function expectCancelled(error: NetdevError, device: string, call: string, reason: unknown): void {
  expect([error.name, error.code, error.errno, error.device, error.call]).toEqual(['NetdevError', 'ECANCELED', 125, device, call]);
  expect(error.cause).toBe(reason);
}

// A 4096-byte TX ring holds 39 frames of 100 bytes (104-byte records) from empty.
const FILL = 39;

describe('AbortSignal on frames() and batches()', () => {
  it('a step waiting for frames rejects with ECANCELED at the abort, the iterator ends and the device can be read again', async () => {
    const dev = await mgr.open('dummy:x');
    const controller = new AbortController();
    const iterator = dev.frames({ signal: controller.signal });
    const step = iterator.next();
    const reason = new Error('stop reading');
    controller.abort(reason);
    expectCancelled(await rejection(step), 'dummy:x', 'frames', reason);
    expect(await iterator.next()).toEqual({ value: undefined, done: true });
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
    // The iterator gave the queue up: a new one reads it (no EBUSY) and gets every byte of a new frame.
    await dev.inject(ethFrame(100, 7));
    const frame = (await dev.frames().next()).value as Uint8Array;
    expect(frame).toEqual(ethFrame(100, 7));
  });

  it('an abort between steps rejects the next step; the frames not yet handed out stay for the next reader, in order', async () => {
    const dev = await mgr.open('dummy:x');
    for (let seq = 0; seq < 5; seq++) await dev.inject(ethFrame(100, seq));
    const controller = new AbortController();
    const iterator = dev.batches({ signal: controller.signal, max: 2, copy: true });
    const first = await iterator.next();
    expect((first.value as Uint8Array[]).map(seqOf)).toEqual([0, 1]);
    controller.abort();
    const error = await rejection(iterator.next());
    expectCancelled(error, 'dummy:x', 'batches', controller.signal.reason);
    expect((error.cause as Error).name).toBe('AbortError'); // abort() without a reason: the signal's own AbortError
    const rest: Uint8Array[] = [];
    for await (const frame of dev.frames({ copy: true })) {
      rest.push(frame);
      if (rest.length === 3) break;
    }
    expect(rest).toEqual([2, 3, 4].map((seq) => ethFrame(100, seq)));
  });

  it('an already aborted signal throws ECANCELED at once; a signal that is not an AbortSignal is EINVAL', async () => {
    const dev = await mgr.open('dummy:x');
    const reason = new Error('too late');
    const signal = AbortSignal.abort(reason);
    expectCancelled(thrown(() => dev.frames({ signal })), 'dummy:x', 'frames', reason);
    expectCancelled(thrown(() => dev.batches({ signal })), 'dummy:x', 'batches', reason);
    const bad = thrown(() => dev.frames({ signal: 'soon' as never }));
    expect([bad.code, bad.call]).toEqual(['EINVAL', 'frames']);
    expect(() => dev.frames().return!()).not.toThrow(); // neither left the queue claimed
  });

  it('a signal that never aborts changes nothing: the loop reads every frame and leaves no listener behind', async () => {
    const dev = await mgr.open('dummy:x');
    const controller = new AbortController();
    const reading = (async () => {
      const seqs: number[] = [];
      for await (const frame of dev.frames({ signal: controller.signal })) {
        expect(frame).toEqual(ethFrame(100, seqOf(frame)));
        seqs.push(seqOf(frame));
        if (seqs.length === 20) break;
      }
      return seqs;
    })();
    for (let seq = 0; seq < 20; seq++) await dev.inject(ethFrame(100, seq));
    expect(await reading).toEqual(Array.from({ length: 20 }, (_, seq) => seq));
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
  });
});

describe('AbortSignal on send() and sendBatch()', () => {
  it('withdraws a send waiting for room at the head of the queue: the sender behind it goes next, nothing reordered', async () => {
    const { dev, allow, taken } = await gateDevice(4096);
    let queued = 0;
    while (dev.trySend(ethFrame(100, queued))) queued++;
    expect(queued).toBe(FILL);
    const controller = new AbortController();
    const head = dev.send(ethFrame(100, 1000), { signal: controller.signal });
    const behind = dev.send(ethFrame(100, 1001));
    const reason = new Error('give up');
    controller.abort(reason);
    expectCancelled(await rejection(head), 'gate:x', 'send', reason);
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
    await allow(Infinity);
    await behind;
    const frames = await takenFrames(taken, FILL + 1);
    expect(frames).toEqual([...Array.from({ length: FILL }, (_, seq) => ethFrame(100, seq)), ethFrame(100, 1001)]);
    expect(dev.trySend(ethFrame(60, 2000))).toBe(true); // nobody waits now
  });

  it('withdraws a send waiting in the middle of the queue, leaving no hole: the others are sent in their order', async () => {
    const { dev, allow, taken } = await gateDevice(4096);
    while (dev.trySend(ethFrame(100, 0)));
    const controller = new AbortController();
    const sends = [dev.send(ethFrame(100, 1000)), dev.send(ethFrame(100, 1001), { signal: controller.signal }), dev.send(ethFrame(100, 1002))];
    controller.abort();
    expect((await rejection(sends[1]!)).code).toBe('ECANCELED');
    await allow(Infinity);
    await sends[0];
    await sends[2];
    const frames = await takenFrames(taken, FILL + 2);
    expect(frames.slice(FILL)).toEqual([ethFrame(100, 1000), ethFrame(100, 1002)]);
  });

  it('an abort after the frame is queued changes nothing, and an already aborted signal queues nothing', async () => {
    const { dev, allow, taken } = await gateDevice(4096);
    while (dev.trySend(ethFrame(100, 0)));
    const controller = new AbortController();
    const sent = dev.send(ethFrame(100, 1000), { signal: controller.signal });
    await allow(1);
    await sent;
    controller.abort();
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
    const reason = new Error('already');
    expectCancelled(await rejection(dev.send(ethFrame(100, 1001), { signal: AbortSignal.abort(reason) })), 'gate:x', 'send', reason);
    expectCancelled(await rejection(dev.sendBatch([ethFrame(100, 1002)], { signal: AbortSignal.abort(reason) })), 'gate:x', 'sendBatch', reason);
    expect((await rejection(dev.send(ethFrame(100, 1003), { signal: {} as never }))).code).toBe('EINVAL');
    await allow(Infinity);
    const frames = await takenFrames(taken, FILL + 1);
    expect(frames.at(-1)).toEqual(ethFrame(100, 1000));
    // Nothing else reached the ring: a marker sent now is the next frame taken.
    await dev.send(ethFrame(100, 5000));
    expect((await takenFrames(taken, FILL + 2)).at(-1)).toEqual(ethFrame(100, 5000));
  });

  it('sendBatch rejects at the abort saying how many frames it queued; those, the first ones in order, are sent, no other', async () => {
    const { dev, allow, taken } = await gateDevice(4096);
    const batch = Array.from({ length: 50 }, (_, seq) => ethFrame(100, seq));
    const controller = new AbortController();
    const sending = dev.sendBatch(batch, { signal: controller.signal });
    const reason = new Error('enough');
    controller.abort(reason);
    const error = await rejection(sending);
    expectCancelled(error, 'gate:x', 'sendBatch', reason);
    expect(error.message).toContain(`aborted with ${FILL} of 50 frames queued`);
    await allow(Infinity);
    await dev.send(ethFrame(100, 5000)); // the marker: the next frame the worker takes
    const frames = await takenFrames(taken, FILL + 1);
    expect(frames).toEqual([...batch.slice(0, FILL), ethFrame(100, 5000)]);
  });
});

describe('AbortSignal on open()', () => {
  it('an already aborted signal rejects with ECANCELED before any device is created', async () => {
    const { provider, counts } = countingProvider('count:');
    mgr.register(provider);
    const reason = new Error('never mind');
    expectCancelled(await rejection(mgr.open('count:a', { signal: AbortSignal.abort(reason) })), 'count:a', 'open', reason);
    expect(counts.created).toBe(0);
  });

  it('an abort while the open waits behind another call on the name rejects at once, and the open does nothing', async () => {
    let release = (): void => {};
    const gate = new Promise<void>((resolve) => (release = resolve));
    const { provider, counts } = countingProvider('slow:', {}, {});
    const create = provider.create.bind(provider);
    provider.create = async (context, options) => {
      await gate;
      return create(context, options);
    };
    mgr.register(provider);
    const first = mgr.open('slow:a', { ethertype: 'none' });
    const controller = new AbortController();
    const second = mgr.open('slow:a', { ethertype: 'none', signal: controller.signal });
    controller.abort();
    expect((await rejection(second)).code).toBe('ECANCELED'); // while the first open still waits in create()
    expect(counts.created).toBe(0);
    release();
    const handle = await first;
    expect(counts.created).toBe(1);
    await handle.close();
    expect(counts.destroyed).toBe(1);
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
  });

  it('an abort while the device is being created closes the device it created: a later open creates a new one', async () => {
    const controller = new AbortController();
    const reason = new Error('cancelled during create');
    const { provider, counts } = countingProvider('slow:');
    const create = provider.create.bind(provider);
    provider.create = async (context, options) => {
      const device = await create(context, options);
      controller.abort(reason); // the provider's create() has done its work when the abort comes
      return device;
    };
    mgr.register(provider);
    expectCancelled(await rejection(mgr.open('slow:a', { ethertype: 'none', signal: controller.signal })), 'slow:a', 'open', reason);
    expect(counts).toEqual({ created: 1, destroyed: 1 });
    const handle = await mgr.open('slow:a', { ethertype: 'none' });
    expect(counts).toEqual({ created: 2, destroyed: 1 });
    await handle.close();
    expect(counts).toEqual({ created: 2, destroyed: 2 });
  });

  it('an abort while the worker starts closes the device and its worker; frames flow on a device opened after', async () => {
    const controller = new AbortController();
    const { provider, counts } = countingProvider('gate:', { ioStarted: () => controller.abort() }, { ioModule: new URL('./fixtures/gate-io.mjs', import.meta.url) });
    mgr.register(provider);
    expect((await rejection(mgr.open('gate:x', { signal: controller.signal }))).code).toBe('ECANCELED');
    expect(counts).toEqual({ created: 1, destroyed: 1 });
    // A dummy pair opened now works as ever: the aborted open left nothing half-made in the manager.
    const a = await mgr.open('dummy:a', { config: { peer: 'dummy:b' } });
    const b = await mgr.open('dummy:b');
    await a.turnFlagsOn({ up: true });
    await b.turnFlagsOn({ up: true });
    await a.send(ethFrame(200, 9));
    expect((await b.frames().next()).value).toEqual(ethFrame(200, 9));
  });
});

describe('await using', () => {
  it('closes a handle at the end of its block, restoring its flags', async () => {
    const watcher = await mgr.open('dummy:x', { ethertype: 'none' });
    let inner: Netdev;
    {
      await using dev = await mgr.open('dummy:x');
      inner = dev;
      await dev.turnFlagsOn({ up: true });
      expect((await watcher.getFlags()).up).toBe(true);
    }
    expect(inner.isOpen).toBe(false);
    expect((await watcher.getFlags()).up).toBe(false);
  });

  it('closes a manager at the end of its block, with its devices', async () => {
    let handle: Netdev;
    let closed: NetdevManager;
    {
      await using own = new NetdevManager();
      closed = own;
      handle = await own.open('dummy:y');
    }
    expect(handle.isOpen).toBe(false);
    expect((await rejection(closed.open('dummy:y'))).code).toBe('EBADF');
  });

  it('closes a Switch at the end of its block: its ports are removed and their devices free to read', async () => {
    const a = await mgr.open('dummy:a', { config: { peer: 'dummy:b' } });
    const c = await mgr.open('dummy:c', { config: { peer: 'dummy:d' } });
    {
      await using sw = new Switch();
      sw.addPort(a);
      sw.addPort(c);
      await sw.ready();
      expect(sw.counters().map((port) => port.name)).toEqual(['dummy:a', 'dummy:c']);
      expect(thrown(() => a.frames()).code).toBe('EBUSY'); // the port's forwarding loop reads it
    }
    expect(() => a.frames().return!()).not.toThrow();
    expect(() => c.frames().return!()).not.toThrow();
  });

  it('is the Symbol.asyncDispose that Node defines, on all three', async () => {
    expect(typeof Symbol.asyncDispose).toBe('symbol');
    const sw = new Switch();
    const dev = await mgr.open('dummy:x', { ethertype: 'none' });
    for (const disposable of [mgr, dev, sw]) expect(typeof disposable[Symbol.asyncDispose]).toBe('function');
    await sw[Symbol.asyncDispose]();
    await dev[Symbol.asyncDispose]();
    expect(dev.isOpen).toBe(false);
  });
});

describe('platforms', () => {
  const ROOT = fileURLToPath(new URL('..', import.meta.url));
  const PRELOAD = fileURLToPath(new URL('./fixtures/fake-platform.mjs', import.meta.url));

  /** Runs node with process.platform faked to `platform`, then `args`; resolves with status and output. */
  function nodeOn(platform: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    return new Promise((resolve) => {
      execFile(process.execPath, ['--import', PRELOAD, ...args], { cwd: ROOT, env: { ...process.env, FAKE_PLATFORM: platform }, timeout: 20_000 }, (error, stdout, stderr) => {
        resolve({ code: error ? (typeof error.code === 'number' ? error.code : -1) : 0, stdout, stderr });
      });
    });
  }

  const IMPORT = [
    '--input-type=module',
    '-e',
    "import('./dist/index.js').then((m) => console.log('loaded', typeof m.NetdevManager), (e) => console.log(JSON.stringify({ name: e.name, code: e.code, message: e.message })))",
  ];

  it('importing the package anywhere but Linux throws a NetdevError saying it needs Linux, before loading libc', async () => {
    const darwin = await nodeOn('darwin', IMPORT);
    expect(darwin.stderr).toBe('');
    expect(JSON.parse(darwin.stdout)).toEqual({
      name: 'NetdevError',
      code: 'EOPNOTSUPP',
      message: 'import: EOPNOTSUPP: netdev needs Linux (AF_PACKET, /dev/net/tun, rtnetlink); this is darwin',
    });
    // The same program with the same preload on 'linux' loads it: the check, not the preload, refused darwin.
    const linux = await nodeOn('linux', IMPORT);
    expect(linux.stdout.trim()).toBe('loaded function');
  });

  it('the netdev command anywhere but Linux says so in one line and exits with status 1', async () => {
    const run = await nodeOn('win32', ['dist/cli/index.js', 'list']);
    expect(run).toEqual({ code: 1, stdout: '', stderr: 'netdev: import: EOPNOTSUPP: netdev needs Linux (AF_PACKET, /dev/net/tun, rtnetlink); this is win32\n' });
  });
});
