/**
 * Open vSwitch for `npm run bench`: an ovsdb-server and an ovs-vswitchd of the bench's own, with
 * their database, sockets and logs in a temporary folder (never the system service), running in
 * a namespace, with one bridge on the userspace datapath (datapath_type=netdev) over AF_PACKET ports;
 * optionally with userspace TSO (other_config:userspace-tso-enable=true, which ovs-vswitchd reads
 * only when it starts: the ports then carry virtio-net headers and TCP super-frames).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const exec = promisify(execFile);

/** The pid in a daemon's pidfile, or null. */
function pidOf(path: string): number | null {
  try {
    return Number(readFileSync(path, 'utf8').trim()) || null;
  } catch {
    return null;
  }
}

/** Resolves once process `pid` has exited; kills it if it has not within 5 s. */
async function ended(pid: number): Promise<void> {
  for (let waited = 0; waited < 5000; waited += 20) {
    try {
      process.kill(pid, 0);
    } catch {
      return; // gone
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  process.kill(pid, 'SIGKILL');
}
const SCHEMA = '/usr/share/openvswitch/vswitch.ovsschema';
/** What ovs-vswitchd logs once it has turned userspace TSO on (lib/userspace-tso.c). */
const TSO_ENABLED = 'Userspace TCP Segmentation Offloading support enabled';

export interface OvsOptions {
  /** Set other_config:userspace-tso-enable=true before ovs-vswitchd starts, and check that it took it. */
  userspaceTso: boolean;
}

/** The installed OVS does not take an option asked for (the message says which, and what it logged). */
export class OvsOptionRefused extends Error {}

/** Resolves true once `path` holds `text`, false if it does not within `ms`. */
async function logSays(path: string, text: string, ms: number): Promise<boolean> {
  for (let waited = 0; waited <= ms; waited += 50) {
    if (readFileSync(path, 'utf8').includes(text)) return true;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return false;
}

/**
 * Starts OVS in `netns` with bridge ovsbr0 over `ports`; resolves with a function that stops it and
 * removes its folder.  Rejects with OvsOptionRefused (after stopping it) if ovs-vswitchd did not
 * turn on userspace TSO when asked.
 */
export async function startOvs(netns: string, ports: string[], options: OvsOptions = { userspaceTso: false }): Promise<() => Promise<void>> {
  const dir = mkdtempSync(join(tmpdir(), 'netdev-bench-ovs-'));
  const env = { ...process.env, OVS_RUNDIR: dir, OVS_LOGDIR: dir, OVS_DBDIR: dir, OVS_SYSCONFDIR: dir };
  const inNetns = (program: string, ...args: string[]) => exec('ip', ['netns', 'exec', netns, program, ...args], { env, timeout: 30_000 });
  const vsctl = (...args: string[]) => exec('ovs-vsctl', [`--db=unix:${dir}/db.sock`, '--timeout=20', ...args], { env });
  const daemon = (name: string) => [`--pidfile=${dir}/${name}.pid`, `--unixctl=${dir}/${name}.ctl`, `--log-file=${dir}/${name}.log`, '--detach', '--no-chdir'];
  const stop = async (): Promise<void> => {
    // ovs-vswitchd removes its datapath and ports on the way out (--cleanup); ovsdb-server takes a plain exit.
    for (const [name, ...command] of [['ovs-vswitchd', 'exit', '--cleanup'], ['ovsdb-server', 'exit']] as const) {
      const pid = pidOf(`${dir}/${name}.pid`);
      await exec('ovs-appctl', [`--target=${dir}/${name}.ctl`, ...command], { env }).catch(() => {});
      if (pid) await ended(pid);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await exec('ovsdb-tool', ['create', `${dir}/conf.db`, SCHEMA]);
    await inNetns('ovsdb-server', `${dir}/conf.db`, `--remote=punix:${dir}/db.sock`, ...daemon('ovsdb-server'));
    await vsctl('--no-wait', 'init');
    if (options.userspaceTso) await vsctl('--no-wait', 'set', 'Open_vSwitch', '.', 'other_config:userspace-tso-enable=true');
    await inNetns('ovs-vswitchd', `unix:${dir}/db.sock`, ...daemon('ovs-vswitchd'));
    await vsctl('add-br', 'ovsbr0', '--', 'set', 'bridge', 'ovsbr0', 'datapath_type=netdev', ...ports.flatMap((port) => ['--', 'add-port', 'ovsbr0', port]));
    // ovs-vswitchd has read its configuration once add-br returns; its log is written by a thread of its own.
    if (options.userspaceTso && !(await logSays(`${dir}/ovs-vswitchd.log`, TSO_ENABLED, 2000))) {
      const said = readFileSync(`${dir}/ovs-vswitchd.log`, 'utf8').split('\n').filter((line) => /tso|segmentation/i.test(line));
      throw new OvsOptionRefused(`ovs-vswitchd did not take other_config:userspace-tso-enable=true (its log does not say "${TSO_ENABLED}"${said.length ? `; it says: ${said.join(' / ')}` : ''})`);
    }
    return stop;
  } catch (error) {
    await stop();
    throw error;
  }
}
