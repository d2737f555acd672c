/**
 * The CLI with tunnels: `netdev switch` making a vxlan port from --config, `netdev show` of a
 * tunnel's parameters (as the kernel reports them), and `netdev demo --hosts 2`.
 */
import { execFileSync, spawn, spawnSync, type ChildProcessByStdio } from 'node:child_process';
import type { Readable } from 'node:stream';
import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { eventually, onPath, requireTool } from './helpers.js';
import { ip, privileged, requirePrivilege } from './netns-harness.js';
import { guestAddress, Machines, ping, underlayAddress } from './tunnel-rig.js';

requirePrivilege('tunnel CLI');

const CLI = new URL('../dist/cli/index.js', import.meta.url).pathname;
const cli = (...args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });

describe.skipIf(!privileged)('netdev CLI with tunnels', () => {
  let machines: Machines | null = null;
  afterEach(async () => {
    await machines?.destroy();
    machines = null;
  });

  it('runs a switch with a vxlan port made from --config, guest to guest across two machines; the tunnel goes when it stops', async (test) => {
    requireTool(test, 'ping', 'iputils-ping');
    machines = new Machines(2);
    const [h1] = machines.hosts as [string];
    await machines.startHost(1);
    const child = spawn(process.execPath, [CLI, 'switch', 'g0', 'vxlan:vx0', '--config', `vx0=key=42,remote_ip=${underlayAddress(2)},local_ip=${underlayAddress(1)}`, '--netns', h1, '--json', '--interval', '100'], { stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      await switchesAcross(child, h1);
    } finally {
      child.kill('SIGKILL'); // nothing if it exited already
    }
  });

  /** The checks of the test above, on the running `netdev switch` child. */
  async function switchesAcross(child: ChildProcessByStdio<null, Readable, Readable>, h1: string): Promise<void> {
    const exited = once(child, 'exit');
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk));
    expect(await eventually(() => output.includes('"switching"'), 10_000), output).toBe(true);
    expect(JSON.parse(output.split('\n')[0]!)).toMatchObject({ switching: ['g0', 'vxlan:vx0'], offloads: ['g0', 'vxlan:vx0'] });
    const link = (JSON.parse(ip('-j', '-d', '-n', h1, 'link', 'show', 'vx0')) as { linkinfo: { info_data: Record<string, unknown> } }[])[0]!;
    expect(link.linkinfo.info_data).toMatchObject({ id: 42, remote: underlayAddress(2), local: underlayAddress(1), port: 4789 });
    expect(await ping(machines!.guests[0]!, guestAddress(2))).toBe(3);
    type Row = { port: string; txFps: number; rxFps: number; drops: number };
    const tunnelRows = () => output.split('\n').filter((line) => line.startsWith('{"time"')).map((line) => (JSON.parse(line) as { ports: Row[] }).ports.find((row) => row.port === 'vxlan:vx0')!);
    expect(await eventually(() => tunnelRows().some((row) => row.txFps > 0 && row.rxFps > 0), 5_000), output).toBe(true);
    expect(tunnelRows().every((row) => row.drops === 0)).toBe(true);
    child.kill('SIGTERM');
    const [code] = await exited;
    expect(code).toBe(0);
    expect(JSON.parse(ip('-j', '-n', h1, 'link', 'show')).map((l: { ifname: string }) => l.ifname)).not.toContain('vx0');
  }

  it('refuses a --config for a device that is not a port, or one that is not KEY=VALUE, before touching any device', () => {
    machines = new Machines(2);
    const h1 = machines.hosts[0]!;
    for (const [config, why] of [['vx9=key=42', /vx9 is not a port of this switch/], ['vx0=key', /"key" is not KEY=VALUE/], ['vx0', /takes DEV=KEY=VALUE/], ['vx0=key=1,key=2', /key is given twice/]] as const) {
      const run = cli('switch', 'g0', 'vxlan:vx0', '--config', config, '--netns', h1);
      expect(run.status).toBe(1);
      expect(run.stderr).toMatch(why);
    }
    const bad = cli('switch', 'g0', 'vxlan:vx0', '--config', 'vx0=key=16777216,remote_ip=10.200.0.2', '--netns', h1);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/EINVAL.*config key 'key'/);
    expect(JSON.parse(ip('-j', '-n', h1, 'link', 'show')).map((l: { ifname: string }) => l.ifname)).not.toContain('vx0');
  });

  it("shows a tunnel's parameters as the kernel has them, and a vxlan device's config keys", () => {
    machines = new Machines(2);
    const h1 = machines.hosts[0]!;
    ip('-n', h1, 'link', 'add', 'vx5', 'type', 'vxlan', 'id', '5005', 'remote', underlayAddress(2), 'local', underlayAddress(1), 'dstport', '4790', 'ttl', '9', 'nolearning');
    const shown = JSON.parse(execFileSync(process.execPath, [CLI, 'show', 'vx5', '--netns', h1, '--json'], { encoding: 'utf8' })) as Record<string, unknown>;
    expect(shown).toMatchObject({ type: 'system', tunnel: { kind: 'vxlan', key: '5005', remote_ip: underlayAddress(2), local_ip: underlayAddress(1), dst_port: '4790', ttl: '9', learning: 'false' } });
    const text = execFileSync(process.execPath, [CLI, 'show', 'vx5', '--netns', h1], { encoding: 'utf8' }).split('\n');
    expect(text).toContain(`tunnel    vxlan key=5005 remote_ip=${underlayAddress(2)} local_ip=${underlayAddress(1)} dst_port=4790 ttl=9 learning=false`);
    // The underlay by its name, under the dev key.
    ip('-n', h1, 'link', 'add', 'vx6', 'type', 'vxlan', 'id', '6006', 'remote', underlayAddress(2), 'dev', 'u0', 'dstport', '4791');
    const underlaid = JSON.parse(execFileSync(process.execPath, [CLI, 'show', 'vx6', '--netns', h1, '--json'], { encoding: 'utf8' })) as { tunnel: Record<string, string> };
    expect(underlaid.tunnel).toMatchObject({ key: '6006', dev: 'u0' });
    expect(underlaid.tunnel.dev_ifindex).toBeUndefined();
    const plain = JSON.parse(execFileSync(process.execPath, [CLI, 'show', 'u0', '--netns', h1, '--json'], { encoding: 'utf8' })) as Record<string, unknown>;
    expect(plain.tunnel).toBe('none');
    expect(cli('switch', '--help').stdout).toMatch(/--config DEV=KEY=VALUE/);
  });

  // A demo's namespaces are named nddemo<its pid>...; another demo (test/cli.test.ts) may run meanwhile.
  const demoNamespaces = (prefix: string): string[] => execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).split('\n').filter((line) => line.startsWith(prefix));

  it('runs the two-machine demo: guest to guest over vxlan, ping and TCP with SHA-256, both tables, nothing left behind', () => {
    const demo = spawnSync(process.execPath, [CLI, 'demo', '--hosts', '2'], { encoding: 'utf8', timeout: 60_000 });
    const output = demo.stdout;
    expect(demo.status, `${output}${demo.stderr}`).toBe(0);
    expect(output).toMatch(/^nddemo\d+m1: vxlan:vx0 key 42, remote 10\.200\.0\.2, UDP port 4789, MTU 1450 /m);
    expect(output).toMatch(/^nddemo\d+m2: vxlan:vx0 key 42, remote 10\.200\.0\.1, UDP port 4789, MTU 1450 /m);
    if (onPath('ping')) expect(output).toMatch(/ping h1 -> h2 through the switch: .* 0% packet loss/);
    const tcp = /^TCP h1 -> h2 through the switch: (\d+) of (\d+) bytes in [\d.]+ s, [\d.]+ Gbit\/s, SHA-256 match/m.exec(output);
    expect(tcp, output).not.toBeNull();
    expect([Number(tcp![1]), Number(tcp![2])]).toEqual([64 * 1024 * 1024, 64 * 1024 * 1024]);
    for (const machine of ['m1', 'm2']) {
      expect(output).toMatch(new RegExp(`^nddemo\\d+${machine}: port +rx frames`, 'm'));
    }
    expect(output.match(/^ +vxlan:vx0 +\d+/gm)).toHaveLength(2);
    expect(output.match(/^ +g0 +\d+/gm)).toHaveLength(2);
    expect(output).toMatch(/^removed nddemo\d+m1, nddemo\d+m2, nddemo\d+g1, nddemo\d+g2$/m);
    expect(demoNamespaces(/^removed (nddemo\d+)m1, /m.exec(output)![1]!)).toEqual([]);
  });
});
