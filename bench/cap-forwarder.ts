/**
 * `node cap-forwarder.js MODULES A B`: the forwarder a Node user would write today, for comparison
 * in `npm run bench`: every frame both ways between devices A and B with the `cap` npm package
 * (libpcap; one callback and one pcap_sendpacket per frame), loaded from the folder MODULES where
 * the bench installed it.  Prints "ready" once both captures are open; on SIGTERM prints
 * "<frames A->B> <frames B->A>" and exits.
 */
import { createRequire } from 'node:module';
import { join } from 'node:path';

interface CapHandle {
  open(device: string, filter: string, bufferSize: number, buffer: Buffer): string;
  on(event: 'packet', listener: (bytes: number) => void): void;
  send(buffer: Buffer, length: number): void;
  close(): void;
}

const [modules, a, b] = process.argv.slice(2) as [string, string, string];
const { Cap } = createRequire(join(modules, 'package.json'))('cap') as { Cap: new () => CapHandle };

const moved = [0, 0];
const ports = [a, b].map((device) => {
  const cap = new Cap();
  const buffer = Buffer.alloc(65536);
  // 'inbound': not the frames this forwarder itself sends out of the device.
  cap.open(device, 'inbound', 16 << 20, buffer);
  return { cap, buffer };
});
ports.forEach(({ cap, buffer }, i) => {
  const out = ports[1 - i]!.cap;
  cap.on('packet', (bytes) => {
    try {
      out.send(buffer, bytes);
      moved[i]!++;
    } catch {
      // a full send queue drops the frame, as a switch would
    }
  });
});
console.log('ready');
process.on('SIGTERM', () => {
  for (const { cap } of ports) cap.close();
  console.log(`${moved[0]} ${moved[1]}`);
  process.exit(0);
});
