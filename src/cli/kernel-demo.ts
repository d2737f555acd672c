/**
 * `netdev demo` as root: two hosts in network namespaces of the demo's own, each on a veth pair
 * to a port of the learning switch, which runs in this process with its ports in a third namespace:
 *
 *   [h1: eth0 10.99.0.1] ==veth== [sw: p1] Switch [sw: p2] ==veth== [h2: eth0 10.99.0.2]
 *
 * Offloads are turned off on all four veth ends, as an AF_PACKET forwarder needs.  It proves
 * connectivity with ping (h1 -> h2, through the switch; a UDP echo of its own where ping is not
 * installed), sends a burst of frames from
 * h1 through the library, prints the switch's table and the figures, and removes everything it
 * made (also on Ctrl-C or failure).  Nothing outside its namespaces is touched.
 */
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { NetdevManager } from '../main/manager.js';
import { Switch } from '../switch/switch.js';
import type { Netdev } from '../main/netdev.js';

const run = promisify(execFile);

export interface KernelDemoOptions {
  frames: number;
  size: number;
  out: (line: string) => void;
}

/** A UDP echo from h1 to h2 with Node (for machines without ping): 3 round trips, in separate processes. */
const ECHO_SERVER = `const s = require('dgram').createSocket('udp4'); s.on('message', (m, r) => s.send(m, r.port, r.address)); s.bind(7777, '10.99.0.2', () => console.log('ready'));`;
const ECHO_CLIENT = `const s = require('dgram').createSocket('udp4'); const rtts = []; let t;
const ask = () => { t = process.hrtime.bigint(); s.send('x', 7777, '10.99.0.2'); };
const retry = setInterval(ask, 200); // a lost datagram (ARP still resolving) is asked again
s.on('message', () => { rtts.push(Number(process.hrtime.bigint() - t) / 1e6); if (rtts.length === 3) { console.log(rtts.map((r) => r.toFixed(3)).join(' ')); process.exit(0); } ask(); });
setTimeout(() => process.exit(1), 5000); ask();`;

/** Proves h1 reaches h2 through the switch: ping where it is installed, otherwise a UDP echo. */
async function proveConnectivity(h1: string, h2: string, out: (line: string) => void): Promise<boolean> {
  try {
    execFileSync('ping', ['-V'], { stdio: 'ignore' });
  } catch {
    const server = execFile('ip', ['netns', 'exec', h2, process.execPath, '-e', ECHO_SERVER]);
    try {
      await new Promise<void>((resolve) => server.stdout!.on('data', (chunk: Buffer) => chunk.toString().includes('ready') && resolve()));
      const { stdout } = await run('ip', ['netns', 'exec', h1, process.execPath, '-e', ECHO_CLIENT], { timeout: 10_000 });
      out(`UDP echo h1 -> h2 through the switch (ping is not installed): 3 of 3 answered, rtt ms ${stdout.trim()}`);
      return true;
    } catch {
      out('UDP echo h1 -> h2 through the switch (ping is not installed): no answer');
      return false;
    } finally {
      server.kill();
    }
  }
  const ping = await run('ip', ['netns', 'exec', h1, 'ping', '-c', '3', '-i', '0.2', '-W', '2', '10.99.0.2']).then(
    (result) => result.stdout,
    (error: { stdout?: string }) => error.stdout ?? '',
  );
  const summary = ping.split('\n').find((line) => line.includes('packet loss')) ?? 'no answer';
  out(`ping h1 -> h2 through the switch: ${summary}`);
  const rtt = ping.split('\n').find((line) => line.startsWith('rtt'));
  if (rtt) out(`  ${rtt}`);
  return / 0% packet loss/.test(summary);
}

/** Runs the demo; resolves with the exit status (0 if ping got through and the burst arrived). */
export async function runKernelDemo(options: KernelDemoOptions): Promise<number> {
  const { out } = options;
  const prefix = `nddemo${process.pid}`;
  const [h1, h2, fw] = [`${prefix}h1`, `${prefix}h2`, `${prefix}sw`];
  const made: string[] = [];
  const ip = (...args: string[]) => execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const teardown = () => {
    for (const ns of made.splice(0)) {
      try {
        ip('netns', 'del', ns);
      } catch {
        // already gone
      }
    }
  };
  const interrupted = () => {
    teardown();
    process.exit(130);
  };
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);
  process.once('SIGPIPE', interrupted);
  const mgr = new NetdevManager();
  const sw = new Switch({ onNotice: (line) => out(`notice: ${line}`) });
  const ports: Netdev[] = [];
  try {
    out('netdev demo: kernel devices in network namespaces of its own (root)');
    out(`  [${h1}: eth0 10.99.0.1] ==veth== [${fw}: p1] Switch [${fw}: p2] ==veth== [${h2}: eth0 10.99.0.2]`);
    for (const ns of [h1, h2, fw]) {
      ip('netns', 'add', ns);
      made.push(ns);
    }
    for (const [host, port, address] of [[h1, 'p1', '10.99.0.1/24'], [h2, 'p2', '10.99.0.2/24']] as const) {
      ip('-n', fw, 'link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', host);
      ip('-n', host, 'addr', 'add', address, 'dev', 'eth0');
      ip('-n', host, 'link', 'set', 'eth0', 'up');
      // Offloads off on both ends: the switch forwards whole, checksummed frames (see README).
      const hostEnd = await mgr.open('eth0', { netns: host, ethertype: 'none' });
      await hostEnd.disableOffloads();
      const dev = await mgr.open(port, { netns: fw });
      await dev.disableOffloads();
      await dev.turnFlagsOn({ up: true, promisc: true });
      sw.addPort(dev);
      ports.push(dev);
    }
    await sw.ready();
    // The kernel drops frames until a veth's carrier is up.
    for (let i = 0; i < 300 && !(await Promise.all(ports.map((p) => p.getCarrier()))).every(Boolean); i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    const connected = await proveConnectivity(h1, h2, out);

    // A burst from h1's eth0 through the library; h2's eth0 counts what arrives.
    const sender = await mgr.open('eth0', { netns: h1, ethertype: 0x88b5 });
    const receiver = await mgr.open('eth0', { netns: h2, ethertype: 0x88b5 });
    let received = 0;
    const counting = (async () => {
      for await (const batch of receiver.batches()) received += batch.length;
    })();
    const frame = new Uint8Array(options.size);
    frame.fill(0xff, 0, 6);
    frame.set([2, 0, 0, 0, 0, 1], 6);
    frame[12] = 0x88;
    frame[13] = 0xb5;
    const batch = Array.from({ length: 256 }, () => frame);
    const start = performance.now();
    for (let sent = 0; sent < options.frames; sent += batch.length) {
      await sender.sendBatch(batch.slice(0, Math.min(batch.length, options.frames - sent)));
      await new Promise((resolve) => setImmediate(resolve));
    }
    for (let idle = 0, last = -1; idle < 30; idle = received === last ? idle + 1 : 0, last = received) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    const seconds = (performance.now() - start) / 1000;
    await receiver.close();
    await counting;
    out('');
    out('port   rx frames   rx bytes   tx frames   tx bytes   drops   floods');
    for (const { name, counters: c } of sw.counters()) {
      out(`${name.padEnd(6)} ${String(c.rxFrames).padStart(9)} ${String(c.rxBytes).padStart(10)} ${String(c.txFrames).padStart(11)} ${String(c.txBytes).padStart(10)} ${String(c.rxDropped + c.txDropped).padStart(7)} ${String(c.floods).padStart(8)}`);
    }
    out('');
    out(`burst: ${options.frames} frames of ${options.size} bytes sent from h1, ${received} arrived at h2 ` +
      `(${((received / seconds) / 1e6).toFixed(2)} M frames/s over ${seconds.toFixed(2)} s${received < options.frames ? `; ${options.frames - received} dropped on the way` : ''})`);
    return connected && received > 0 ? 0 : 1;
  } finally {
    await sw.close();
    await mgr.close();
    teardown();
    process.off('SIGINT', interrupted);
    process.off('SIGTERM', interrupted);
    process.off('SIGPIPE', interrupted);
    out(`removed ${[h1, h2, fw].join(', ')}`);
  }
}
