import { execFileSync } from 'node:child_process';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { badValue, ConfigSchema, mustBe, NetdevManager, oneOf, type Provider } from '../dist/index.js';
import { rejection, tempDir } from './helpers.js';

const CLI = new URL('../dist/cli/index.js', import.meta.url).pathname;

let mgr: NetdevManager;

beforeEach(() => {
  mgr = new NetdevManager();
});
afterEach(async () => {
  await mgr.close();
});

/** A third-party provider whose devices keep two keys, declared in one schema. */
function colourProvider(): Provider {
  interface Device {
    colour: string;
    size: number | null;
  }
  const schema = new ConfigSchema<Device, { colour: string; size: number }>('colour', {
    colour: { doc: 'the colour', default: 'red', parse: oneOf('red', 'green', 'blue'), current: (d) => d.colour },
    size: {
      doc: 'the size, 1-9',
      parse(value) {
        if (value === '5') badValue('cannot be 5 today', 'EBUSY');
        return /^[1-9]$/.test(value) ? Number(value) : mustBe('from 1 to 9', value);
      },
      current: (d) => (d.size === null ? undefined : String(d.size)),
    },
  });
  return {
    type: 'colour',
    prefix: 'colour:',
    configKeys: schema.describe(),
    validateName() {},
    create() {
      const device: Device = { colour: 'red', size: null };
      return {
        getConfig: () => schema.values(device),
        async setConfig(changes) {
          const { colour, size } = await schema.parse(changes, device);
          if (colour !== undefined) device.colour = colour;
          if (size !== undefined) device.size = size;
        },
        updateFlags: () => 0,
        destroy() {},
      };
    },
  };
}

describe('a provider config schema', () => {
  it('reports every key with a value or a default, and lists the keys with their defaults and doc lines', async () => {
    const provider = colourProvider();
    expect(provider.configKeys).toEqual([
      { name: 'colour', default: 'red', doc: 'the colour' },
      { name: 'size', default: undefined, doc: 'the size, 1-9' },
    ]);
    mgr.register(provider);
    const dev = await mgr.open('colour:x', { ethertype: 'none' });
    expect(await dev.getConfig()).toEqual({ colour: 'red' });
    await dev.setConfig({ colour: 'blue', size: 3 });
    expect(await dev.getConfig()).toEqual({ colour: 'blue', size: '3' });
  });

  it('checks every key before any applies: an unknown key lists the known ones, a bad value names its key', async () => {
    mgr.register(colourProvider());
    const dev = await mgr.open('colour:x', { ethertype: 'none' });
    const unknown = await rejection(dev.setConfig({ colour: 'green', shape: 'round' }));
    expect(unknown).toMatchObject({ code: 'EINVAL', device: 'colour:x', call: 'setConfig' });
    expect(unknown.detail).toBe("unknown config key 'shape' (colour devices know: colour, size)");
    const bad = await rejection(dev.setConfig({ colour: 'green', size: 'ten' }));
    expect(bad.code).toBe('EINVAL');
    expect(bad.detail).toBe(`config key 'size' must be from 1 to 9, not "ten"`);
    expect((await rejection(dev.setConfig({ colour: 'pink' }))).detail).toBe(`config key 'colour' must be red, green or blue, not "pink"`);
    expect(await dev.getConfig()).toEqual({ colour: 'red' });
  });

  it("keeps the code a key's check gives, with the key's name", async () => {
    mgr.register(colourProvider());
    const dev = await mgr.open('colour:x', { ethertype: 'none' });
    const refused = await rejection(dev.setConfig({ size: 5 }));
    expect(refused.code).toBe('EBUSY');
    expect(refused.detail).toBe("config key 'size' cannot be 5 today");
  });

  it('drives the built-in providers: unix checks mode before mtu applies, and names its keys', async () => {
    const dev = await mgr.open(`unix:${tempDir('config')}/s.sock`, { ethertype: 'none' });
    const error = await rejection(dev.setConfig({ mtu: 9000, mode: 'bogus' }));
    expect(error.detail).toBe(`config key 'mode' must be listen or connect, not "bogus"`);
    expect(await dev.getConfig()).toEqual({ mode: 'connect', mtu: '1500', overflow: 'wait' });
    expect((await rejection(dev.setConfig({ colour: 'red' }))).detail).toBe("unknown config key 'colour' (unix devices know: mode, overflow, mtu, mac)");
  });
});

describe('netdev show', () => {
  it("prints each of the device's config keys with its value, doc line and default", () => {
    const lines = execFileSync(process.execPath, [CLI, 'show', 'dummy:a'], { encoding: 'utf8' }).split('\n');
    expect(lines).toContain('config    {}');
    expect(lines.some((l) => /^ {2}peer +\= unset  the dummy at the other end/.test(l))).toBe(true);
    const unix = execFileSync(process.execPath, [CLI, 'show', `unix:${tempDir('config')}/s.sock`], { encoding: 'utf8' }).split('\n');
    expect(unix.some((l) => /^ {2}mode +\= connect  .*\(default connect\)$/.test(l))).toBe(true);
    expect(unix.some((l) => /^ {2}mac +\= unset  the MAC address/.test(l))).toBe(true);
  });
});
