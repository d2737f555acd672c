/**
 * What the kernel demo runs as processes in its hosts' namespaces (h1 10.99.0.1, h2 10.99.0.2):
 * ping, or a UDP echo in Node where ping is not installed, and a TCP transfer in Node checked
 * end to end with SHA-256.  Node and ip only: nothing to install.  Every child is tracked, so the
 * demo's cleanup can kill whichever still runs (on failure or Ctrl-C too).
 */
import { execFile, execFileSync, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

const H2_ADDRESS = '10.99.0.2';
const ECHO_PORT = 7777;
const TCP_PORT = 5001;
/** Longest a TCP transfer may take before it is called failed (256 MiB take about a second here). */
const TCP_TIMEOUT_MS = 30_000;

/** A UDP echo from h1 to h2 with Node (for machines without ping): 3 round trips, in separate processes. */
const ECHO_SERVER = `const s = require('dgram').createSocket('udp4'); s.on('message', (m, r) => s.send(m, r.port, r.address)); s.bind(${ECHO_PORT}, '${H2_ADDRESS}', () => console.log('ready'));`;
const ECHO_CLIENT = `const s = require('dgram').createSocket('udp4'); const rtts = []; let t;
const ask = () => { t = process.hrtime.bigint(); s.send('x', ${ECHO_PORT}, '${H2_ADDRESS}'); };
const retry = setInterval(ask, 200); // a lost datagram (ARP still resolving) is asked again
s.on('message', () => { rtts.push(Number(process.hrtime.bigint() - t) / 1e6); if (rtts.length === 3) { console.log(rtts.map((r) => r.toFixed(3)).join(' ')); process.exit(0); } ask(); });
setTimeout(() => process.exit(1), 5000); ask();`;

/**
 * The TCP receiver in h2: takes one connection, hashes every byte it reads with SHA-256, prints
 * `{"bytes":N,"sha256":"..."}` once the sender has closed its side, then closes its own and exits.
 */
const TCP_SERVER = `const { createHash } = require('crypto');
const fail = (e) => { console.error(e.message); process.exit(1); };
const server = require('net').createServer((socket) => {
  server.close();
  const hash = createHash('sha256'); let bytes = 0;
  socket.on('data', (chunk) => { hash.update(chunk); bytes += chunk.length; });
  socket.on('end', () => { console.log(JSON.stringify({ bytes, sha256: hash.digest('hex') })); socket.end(); });
  socket.on('error', fail);
});
server.on('error', fail);
server.listen(${TCP_PORT}, '${H2_ADDRESS}', () => console.log('ready'));`;

/**
 * The TCP sender in h1: makes argv[1] bytes of random data (nothing repeats) and hashes them
 * before the clock starts, so neither is in the measured time; sends them and closes its side;
 * stops the clock when the receiver closes its own, after hashing the last byte.  Prints
 * `{"bytes":N,"sha256":"...","seconds":S,"prepareSeconds":P}`.
 */
const TCP_CLIENT = `const { createHash, randomFillSync } = require('crypto');
const size = Number(process.argv[1]);
const prepared = process.hrtime.bigint();
const data = randomFillSync(Buffer.allocUnsafe(size));
const sha256 = createHash('sha256').update(data).digest('hex');
const start = process.hrtime.bigint();
const prepareSeconds = Number(start - prepared) / 1e9;
const socket = require('net').connect(${TCP_PORT}, '${H2_ADDRESS}', () => socket.end(data));
socket.resume();
socket.on('end', () => console.log(JSON.stringify({ bytes: size, sha256, seconds: Number(process.hrtime.bigint() - start) / 1e9, prepareSeconds })));
socket.on('error', (e) => { console.error(e.message); process.exit(1); });`;

/** Node child processes in the demo's namespaces, killed by killAll (the demo's cleanup calls it). */
export class Children {
  private readonly running = new Set<ChildProcess>();

  /**
   * Runs `script` with `node -e` in namespace `ns` (argv[1..] = `args`, then `ns`, so that ps
   * says which namespace it runs in); resolves with its stdout once it exits with status 0,
   * rejects if it fails or outlives `timeoutMs`.  `onStdout` sees its output as it comes.
   */
  run(ns: string, script: string, args: string[], timeoutMs: number, onStdout?: (text: string) => void): Promise<string> {
    return new Promise((resolve, reject) => {
      // ip netns exec execs node in its own place: the child's pid is node's, so kill() reaches it.
      const argv = ['netns', 'exec', ns, process.execPath, '-e', script, ...args, ns];
      const child = execFile('ip', argv, { timeout: timeoutMs, killSignal: 'SIGKILL' }, (error, stdout, stderr) => {
        this.running.delete(child);
        if (error) reject(new Error(`node in ${ns}: ${stderr.trim() || error.message}`));
        else resolve(stdout);
      });
      this.running.add(child);
      if (onStdout) child.stdout!.on('data', (chunk: Buffer) => onStdout(chunk.toString()));
    });
  }

  /** Kills every child still running. */
  killAll(): void {
    for (const child of this.running) child.kill('SIGKILL');
    this.running.clear();
  }
}

/** Runs `script` in `ns`; resolves once it has printed `ready`, with its run (rejects if it ends first). */
async function startServer(children: Children, ns: string, script: string, timeoutMs: number): Promise<{ exited: Promise<string> }> {
  let ready!: () => void;
  const isReady = new Promise<void>((resolve) => (ready = resolve));
  const exited = children.run(ns, script, [], timeoutMs, (text) => text.includes('ready') && ready());
  const endedFirst = exited.then(() => {
    throw new Error(`node in ${ns} ended before it was ready`);
  });
  // Whoever awaits `exited` sees its failure; a server killed once it has served is none.
  for (const settled of [exited, endedFirst]) settled.catch(() => undefined);
  await Promise.race([isReady, endedFirst]);
  return { exited };
}

/** Proves h1 reaches h2 through the switch: ping where it is installed, otherwise a UDP echo; prints the result. */
export async function proveConnectivity(h1: string, h2: string, children: Children, out: (line: string) => void): Promise<boolean> {
  try {
    execFileSync('ping', ['-V'], { stdio: 'ignore' });
  } catch {
    try {
      await startServer(children, h2, ECHO_SERVER, 15_000);
      const rtts = await children.run(h1, ECHO_CLIENT, [], 10_000);
      out(`UDP echo h1 -> h2 through the switch (ping is not installed): 3 of 3 answered, rtt ms ${rtts.trim()}`);
      return true;
    } catch {
      out('UDP echo h1 -> h2 through the switch (ping is not installed): no answer');
      return false;
    } finally {
      children.killAll();
    }
  }
  const ping = await run('ip', ['netns', 'exec', h1, 'ping', '-c', '3', '-i', '0.2', '-W', '2', H2_ADDRESS]).then(
    (result) => result.stdout,
    (error: { stdout?: string }) => error.stdout ?? '',
  );
  const summary = ping.split('\n').find((line) => line.includes('packet loss')) ?? 'no answer';
  out(`ping h1 -> h2 through the switch: ${summary}`);
  const rtt = ping.split('\n').find((line) => line.startsWith('rtt'));
  if (rtt) out(`  ${rtt}`);
  return / 0% packet loss/.test(summary);
}

/**
 * Moves `bytes` random bytes over TCP from h1 to h2 through the switch and prints the bytes,
 * the time, the throughput and whether h2's SHA-256 of what it read is h1's of what it sent
 * (loudly if not); true if it is.
 */
export async function transferTcp(h1: string, h2: string, bytes: number, children: Children, out: (line: string) => void): Promise<boolean> {
  const label = 'TCP h1 -> h2 through the switch';
  try {
    const server = await startServer(children, h2, TCP_SERVER, TCP_TIMEOUT_MS);
    const [sent, read] = await Promise.all([children.run(h1, TCP_CLIENT, [String(bytes)], TCP_TIMEOUT_MS), server.exited]);
    const client = JSON.parse(sent) as { bytes: number; sha256: string; seconds: number; prepareSeconds: number };
    const received = JSON.parse(read.slice(read.indexOf('{'))) as { bytes: number; sha256: string };
    const match = received.bytes === client.bytes && received.sha256 === client.sha256;
    out(`${label}: ${received.bytes} of ${client.bytes} bytes in ${client.seconds.toFixed(2)} s, ${((client.bytes * 8) / client.seconds / 1e9).toFixed(2)} Gbit/s, ` +
      (match ? `SHA-256 match (${client.sha256.slice(0, 16)}...)` : `SHA-256 MISMATCH: h1 sent ${client.sha256}, h2 read ${received.sha256}`));
    out(`  random data, made and hashed in h1 before the clock started (${client.prepareSeconds.toFixed(2)} s); h2 hashes it as it reads`);
    return match;
  } catch (error) {
    out(`${label}: FAILED: ${(error as Error).message}`);
    return false;
  } finally {
    children.killAll();
  }
}
