import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NetdevManager } from '../dist/index.js';
import { ethFrame, eventually, rejection, seqOf } from './helpers.js';

const PEER = new URL('./fixtures/unix-peer.mjs', import.meta.url).pathname;

let mgr: NetdevManager;
let dir: string;
const children: ChildProcess[] = [];

beforeEach(() => {
  mgr = new NetdevManager();
  dir = mkdtempSync(join(tmpdir(), 'netdev-unix-'));
});
afterEach(async () => {
  for (const child of children.splice(0)) child.kill('SIGKILL');
  await mgr.close();
  rmSync(dir, { recursive: true, force: true });
});

function peer(...args: string[]): ChildProcess {
  const child = spawn(process.execPath, [PEER, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  return child;
}

async function ready(child: ChildProcess): Promise<void> {
  await new Promise<void>((resolve) => child.stdout!.on('data', (chunk: Buffer) => chunk.toString().includes('ready') && resolve()));
}

describe('unix devices', () => {
  it('receive 100k frames from another process, in order and intact', async () => {
    const path = join(dir, 'sock');
    const dev = await mgr.open(`unix:${path}`, { config: { mode: 'listen' } });
    const total = 100_000;
    let received = 0;
    let bad = '';
    const reading = (async () => {
      for await (const batch of dev.batches()) {
        for (const frame of batch) {
          const length = 64 + (received % 100);
          const expected = ethFrame(length, received, 0x88b5);
          expected.fill(0xff, 0, 6);
          expected.fill(0, 6, 12);
          if (frame.length !== length || seqOf(frame) !== received) bad ||= `frame ${received}: seq ${seqOf(frame)}, ${frame.length} bytes`;
          else if (!Buffer.from(frame).equals(Buffer.from(expected))) bad ||= `frame ${received} damaged`;
          received++;
        }
        if (received >= total) break;
      }
    })();
    const sender = peer('send', path, String(total));
    const [code] = await once(sender, 'exit');
    expect(code).toBe(0); // every frame left, none dropped
    expect(await eventually(() => received === total, 10_000)).toBe(true);
    await reading;
    expect(bad).toBe('');
    const stats = await dev.getStats();
    expect([stats.rxPackets, stats.rxRingDropped]).toEqual([total, 0]);
  });

  it('reconnects when the peer is killed and restarted, with carrier changes a monitor sees', async () => {
    const path = join(dir, 'sock');
    let listener = peer('listen', path);
    await ready(listener);
    const dev = await mgr.open(`unix:${path}`);
    const monitor = mgr.monitor();
    monitor.add(dev);
    expect(await eventually(() => dev.getCarrier())).toBe(true);
    listener.kill('SIGKILL');
    await once(listener, 'exit');
    expect(await eventually(async () => !(await dev.getCarrier()))).toBe(true);
    expect(monitor.poll()).toBe(`unix:${path}`);
    // Sent while disconnected: dropped and counted, not queued.
    for (let seq = 0; seq < 5; seq++) await dev.send(ethFrame(60, seq));
    expect(await eventually(async () => (await dev.getStats()).txDropped === 5)).toBe(true);
    listener = peer('listen', path); // replaces the stale socket file the killed one left
    await ready(listener);
    expect(await eventually(() => dev.getCarrier(), 5000)).toBe(true);
    expect(monitor.poll()).toBe(`unix:${path}`);
  });

  it('sends to every connected peer and receives from all of them', async () => {
    const path = join(dir, 'sock');
    const hub = await mgr.open(`unix:${path}`, { config: { mode: 'listen' } });
    const others = [new NetdevManager(), new NetdevManager()];
    try {
      const spokes = await Promise.all(others.map((m) => m.open(`unix:${path}`)));
      for (const spoke of spokes) expect(await eventually(() => spoke.getCarrier())).toBe(true);
      await hub.send(ethFrame(80, 7));
      for (const spoke of spokes) expect(seqOf((await spoke.frames().next()).value as Uint8Array)).toBe(7);
      await spokes[0]!.send(ethFrame(80, 1));
      await spokes[1]!.send(ethFrame(80, 2));
      const frames = hub.frames();
      const got = [seqOf((await frames.next()).value as Uint8Array), seqOf((await frames.next()).value as Uint8Array)];
      expect(got.sort()).toEqual([1, 2]);
    } finally {
      await Promise.all(others.map((m) => m.close()));
    }
  });

  it('refuses to replace a file that is not a socket, and checks its config', async () => {
    const path = join(dir, 'plain');
    writeFileSync(path, 'keep me');
    const error = await rejection(mgr.open(`unix:${path}`, { config: { mode: 'listen' } }));
    expect(error.code).toBe('EEXIST');
    expect(error.message).toContain(path);
    expect(existsSync(path)).toBe(true);
    const dev = await mgr.open(`unix:${join(dir, 'x')}`, { ethertype: 'none' });
    expect(await dev.getEtheraddr()).toMatch(/^02:55(:[0-9a-f]{2}){4}$/);
    expect(await dev.getConfig()).toEqual({ mode: 'connect', mtu: '1500' });
    await dev.setConfig({ mtu: 9000, mac: '02:00:00:00:00:05' });
    expect([await dev.getMtu(), await dev.getEtheraddr()]).toEqual([9000, '02:00:00:00:00:05']);
    const bads: Record<string, string | number>[] = [{ mode: 'both' }, { mtu: 10 }, { mac: '01:00:00:00:00:01' }, { colour: 'red' }];
    for (const bad of bads) {
      expect((await rejection(dev.setConfig(bad))).code).toBe('EINVAL');
    }
    expect((await rejection(dev.getIfindex())).code).toBe('EOPNOTSUPP');
    expect(await dev.getCarrier()).toBe(false);
  });
});
