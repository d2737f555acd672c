/** Worker agents (Netdev.attachAgent): a third-party module in a device's worker, through the public API. */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { NetdevManager, type Netdev, type NetdevError } from '../dist/index.js';
import { ethFrame, eventually, rejection, seqOf } from './helpers.js';

const COUNTER = new URL('./fixtures/counter-agent.mjs', import.meta.url);
let mgr: NetdevManager;
beforeEach(() => {
  mgr = new NetdevManager();
});
afterEach(async () => {
  await mgr.close();
});

async function wire(): Promise<[Netdev, Netdev]> {
  const a = await mgr.open('dummy:a', { config: { peer: 'dummy:b' } });
  const b = await mgr.open('dummy:b');
  for (const dev of [a, b]) await dev.turnFlagsOn({ up: true });
  return [a, b];
}

describe('worker agents', () => {
  it('runs a third-party agent in the device worker, which takes over receiving until detached', async () => {
    const [a, b] = await wire();
    const agent = await b.attachAgent(COUNTER, { hello: 'there' });
    expect(agent.started).toEqual({ hello: 'there', ringBytes: 512 * 1024 });
    const got: number[] = [];
    const reading = (async () => {
      for await (const frame of b.frames()) {
        got.push(seqOf(frame));
        if (got.length === 300) break;
      }
    })();
    for (let seq = 0; seq < 200; seq++) await a.send(ethFrame(100, seq));
    expect(await eventually(async () => (await agent.call('count')) === 200)).toBe(true);
    expect(await agent.call('rounds')).toBeGreaterThan(0);
    await expect(agent.call('nothing')).rejects.toThrow(/no control nothing/);
    expect(await agent.detach()).toEqual({ frames: 200 });
    for (let seq = 200; seq < 300; seq++) await a.send(ethFrame(100, seq)); // received as before
    await reading;
    expect(got).toEqual(Array.from({ length: 300 }, (_, i) => i));
    expect((await rejection(agent.call('count'))).code).toBe('EBADF'); // detached
  });

  it('refuses a second agent, a module without createAgent, and a control-only handle, naming device and call', async () => {
    const [, b] = await wire();
    const first = await b.attachAgent(COUNTER, { hello: 1 });
    expect(await rejection(b.attachAgent(COUNTER, {}))).toMatchObject({ name: 'NetdevError', code: 'EBUSY', device: 'dummy:b', call: 'attachAgent' });
    await first.detach();
    const notAgent = new URL('./fixtures/not-io.mjs', import.meta.url);
    expect(await rejection(b.attachAgent(notAgent))).toMatchObject({ code: 'EINVAL', device: 'dummy:b', call: 'attachAgent' });
    const control = await mgr.open('dummy:b', { ethertype: 'none' });
    expect(((await rejection(control.attachAgent(COUNTER))) as NetdevError).code).toBe('EPIPE');
    const again = await b.attachAgent(COUNTER, { hello: 2 }); // the worker takes one again once detached
    expect(again.started).toMatchObject({ hello: 2 });
    // A handle of the agent detached before does not reach the one attached now.
    expect((await rejection(first.call('count'))).code).toBe('EBADF');
    expect((await rejection(first.detach())).code).toBe('EBADF');
    expect(await again.call('count')).toBe(0);
  });

  it('lets only one of two attaches made at once succeed', async () => {
    const [, b] = await wire();
    const results = await Promise.allSettled([b.attachAgent(COUNTER, { hello: 1 }), b.attachAgent(COUNTER, { hello: 2 })]);
    expect(results.map((r) => r.status).sort()).toEqual(['fulfilled', 'rejected']);
    expect(((results.find((r) => r.status === 'rejected') as PromiseRejectedResult).reason as NetdevError).code).toBe('EBUSY');
  });
});
