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
import { constants as fsConstants } from 'node:fs';
import { mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { isIPv4 } from 'node:net';
import { promisify } from 'node:util';
import { check, sys } from '../sys/libc.js';

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

/** Serves `script` forever: one request, one reply. */
async function serveScript(dir: string, script: Script, log: (line: string) => void): Promise<never> {
  for (;;) {
    const request = await readFile(`${dir}/${script}.in`, 'utf8'); // blocks until a client writes and closes
    const reply = await serveRequest(script, request);
    log(`${script} ${JSON.stringify(request)} -> ${reply ? JSON.stringify(reply) : 'ok'}`);
    try {
      // The client opened SCRIPT.out before writing; if it has given up, the reply has no reader.
      await writeFile(`${dir}/${script}.out`, reply, { flag: fsConstants.O_WRONLY | fsConstants.O_NONBLOCK });
    } catch (error) {
      log(`${script}: reply not delivered: ${(error as Error).message}`);
    }
  }
}

/** Creates the FIFOs in `dir` and serves them until the process ends (removing them on SIGINT/SIGTERM). */
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
  log(`vsysd: serving ${VSYS_SCRIPTS.join(', ')} in ${dir}`);
  await Promise.all(VSYS_SCRIPTS.map((script) => serveScript(dir, script, log)));
}
