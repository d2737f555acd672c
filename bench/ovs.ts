/**
 * Open vSwitch for `npm run bench`: an ovsdb-server and an ovs-vswitchd of the bench's own, with
 * their database, sockets and logs in a temporary folder (never the system service), running in
 * a namespace, with one bridge on the userspace datapath (datapath_type=netdev) over AF_PACKET ports.
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

/** Starts OVS in `netns` with bridge ovsbr0 over `ports`; resolves with a function that stops it and removes its folder. */
export async function startOvs(netns: string, ports: string[]): Promise<() => Promise<void>> {
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
    await inNetns('ovs-vswitchd', `unix:${dir}/db.sock`, ...daemon('ovs-vswitchd'));
    await vsctl('add-br', 'ovsbr0', '--', 'set', 'bridge', 'ovsbr0', 'datapath_type=netdev', ...ports.flatMap((port) => ['--', 'add-port', 'ovsbr0', port]));
    return stop;
  } catch (error) {
    await stop();
    throw error;
  }
}
