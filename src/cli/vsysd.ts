/**
 * `netdev vsysd --dir DIR`: a vsys backend, so that pltap devices work off PlanetLab.  It creates
 * the FIFOs DIR/{vif_up,vif_down,promisc}.{in,out} and serves each script in turn: read the
 * request from SCRIPT.in until the client closes it, check it, apply it with `ip` (an argument
 * vector, never a shell), and write the reply to SCRIPT.out: nothing on success, the reason on
 * failure.  Requests (as sliver-openvswitch's netdev-pltap sends them):
 *   vif_up    NAME\nIP\nPREFIX\n   address IP/PREFIX on NAME, and NAME up
 *   vif_down  NAME\n               NAME down
 *   promisc   NAME\n  or  NAME\n-\n  promiscuous mode on, or off
 * A name is 1-15 of letters, digits, '_', '.', '-'; anything else (a ';', a space, an extra line)
 * is refused with an error reply before any program runs.
 */
import { execFile } from 'node:child_process';
import { closeSync, constants as fsConstants, openSync, readSync, writeSync } from 'node:fs';
import { mkdir, rm, stat } from 'node:fs/promises';
import { isIPv4 } from 'node:net';
import { promisify } from 'node:util';
import { check, sys, watchReadable } from '../sys/libc.js';

const run = promisify(execFile);

export const VSYS_SCRIPTS = ['vif_up', 'vif_down', 'promisc'] as const;
type Script = (typeof VSYS_SCRIPTS)[number];

const NAME = /^[A-Za-z0-9_.-]{1,15}$/;

/** The `ip` argument vectors a request asks for, or the reason it is refused. */
export function planRequest(script: Script, request: string): string[][] | string {
  if (!request.endsWith('\n')) return 'request must end with a newline';
  const fields = request.slice(0, -1).split('\n');
  const name = fields[0] ?? '';
  if (!NAME.test(name)) return `invalid interface name ${JSON.stringify(name)}`;
  switch (script) {
    case 'vif_up': {
      const [, address, prefix] = fields;
      if (fields.length !== 3) return 'vif_up takes NAME, IP and PREFIX, one per line';
      if (!isIPv4(address ?? '')) return `invalid IPv4 address ${JSON.stringify(address)}`;
      if (!/^\d{1,2}$/.test(prefix ?? '') || Number(prefix) > 32) return `invalid prefix length ${JSON.stringify(prefix)}`;
      return [
        ['addr', 'replace', `${address}/${prefix}`, 'dev', name],
        ['link', 'set', 'dev', name, 'up'],
      ];
    }
    case 'vif_down':
      if (fields.length !== 1) return 'vif_down takes NAME alone';
      return [['link', 'set', 'dev', name, 'down']];
    case 'promisc':
      if (fields.length === 1) return [['link', 'set', 'dev', name, 'promisc', 'on']];
      if (fields.length === 2 && fields[1] === '-') return [['link', 'set', 'dev', name, 'promisc', 'off']];
      return 'promisc takes NAME, and - on a second line to turn it off';
  }
}

/** Checks and applies one request; returns the reply ('' on success). */
async function serveRequest(script: Script, request: string): Promise<string> {
  const plan = planRequest(script, request);
  if (typeof plan === 'string') return `error: ${plan}\n`;
  for (const argv of plan) {
    try {
      await run('ip', argv);
    } catch (error) {
      const stderr = (error as { stderr?: string }).stderr?.trim();
      return `error: ip ${argv.join(' ')}: ${stderr || (error as Error).message}\n`;
    }
  }
  return '';
}

async function ensureFifo(path: string): Promise<void> {
  try {
    if ((await stat(path)).isFIFO()) return;
    throw new Error(`${path} exists and is not a FIFO`);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  check(sys.mkfifo(path, 0o600), 'mkfifo', `cannot create ${path}`);
}

/** Writes `reply` to SCRIPT.out, which the client opened before sending; false if it has gone. */
function deliver(outPath: string, reply: string): boolean {
  let fd: number;
  try {
    fd = openSync(outPath, fsConstants.O_WRONLY | fsConstants.O_NONBLOCK);
  } catch {
    return false; // ENXIO: no reader any more
  }
  try {
    if (reply) writeSync(fd, reply);
    return true;
  } finally {
    closeSync(fd);
  }
}

/**
 * Serves `script`: SCRIPT.in is opened without blocking and watched by a libuv poll handle (no
 * thread sits in open()); a read of 0 bytes after a client came means it closed its end, so the
 * request is complete, and the FIFO is opened afresh for the next client.  One client at a time.
 */
function serveScript(dir: string, script: Script, log: (line: string) => void): void {
  const inPath = `${dir}/${script}.in`;
  const outPath = `${dir}/${script}.out`;
  const buffer = Buffer.alloc(4096);
  const listen = () => {
    const fd = openSync(inPath, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
    const chunks: Buffer[] = [];
    const watch = watchReadable(fd, () => {
      for (;;) {
        let length: number;
        try {
          length = readSync(fd, buffer);
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code === 'EAGAIN') return;
          throw error;
        }
        if (length > 0) {
          chunks.push(Buffer.from(buffer.subarray(0, length)));
          continue;
        }
        watch.close();
        closeSync(fd);
        const request = Buffer.concat(chunks).toString('utf8');
        listen();
        void serveRequest(script, request).then((reply) => {
          const delivered = deliver(outPath, reply);
          log(`${script} ${JSON.stringify(request)} -> ${reply ? JSON.stringify(reply) : 'ok'}${delivered ? '' : ' (client gone)'}`);
        });
        return;
      }
    });
  };
  listen();
}

/** Creates the FIFOs in `dir` and serves them until SIGINT/SIGTERM, which removes them and ends the process. */
export async function runVsysd(dir: string, log: (line: string) => void): Promise<void> {
  await mkdir(dir, { recursive: true });
  const fifos = VSYS_SCRIPTS.flatMap((script) => [`${dir}/${script}.in`, `${dir}/${script}.out`]);
  for (const fifo of fifos) await ensureFifo(fifo);
  const stop = async () => {
    await Promise.all(fifos.map((fifo) => rm(fifo, { force: true })));
    process.exit(0);
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  for (const script of VSYS_SCRIPTS) serveScript(dir, script, log);
  log(`vsysd: serving ${VSYS_SCRIPTS.join(', ')} in ${dir}`);
}
