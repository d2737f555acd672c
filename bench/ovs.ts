/**
 * Open vSwitch for `npm run bench`: an ovsdb-server and an ovs-vswitchd of the bench's own, with
 * their database, sockets and logs in a temporary folder (never the system service), running in
 * a namespace, with one bridge on the userspace datapath (datapath_type=netdev) over AF_PACKET ports.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const exec = promisify(execFile);
const SCHEMA = '/usr/share/openvswitch/vswitch.ovsschema';

/** Starts OVS in `netns` with bridge ovsbr0 over `ports`; resolves with a function that stops it and removes its folder. */
export async function startOvs(netns: string, ports: string[]): Promise<() => Promise<void>> {
  const dir = mkdtempSync(join(tmpdir(), 'netdev-bench-ovs-'));
  const env = { ...process.env, OVS_RUNDIR: dir, OVS_LOGDIR: dir, OVS_DBDIR: dir, OVS_SYSCONFDIR: dir };
  const inNetns = (program: string, ...args: string[]) => exec('ip', ['netns', 'exec', netns, program, ...args], { env, timeout: 30_000 });
  const vsctl = (...args: string[]) => exec('ovs-vsctl', [`--db=unix:${dir}/db.sock`, '--timeout=20', ...args], { env });
  const daemon = (name: string) => [`--pidfile=${dir}/${name}.pid`, `--unixctl=${dir}/${name}.ctl`, `--log-file=${dir}/${name}.log`, '--detach', '--no-chdir'];
  const stop = async (): Promise<void> => {
    for (const name of ['ovs-vswitchd', 'ovsdb-server']) {
      await exec('ovs-appctl', [`--target=${dir}/${name}.ctl`, 'exit', '--cleanup'], { env }).catch(() => {});
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
