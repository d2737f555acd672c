/**
 * The 802.1D state machine alone: bridges wired together in memory, BPDUs as bytes, time moved
 * by hand.
 */
import { describe, expect, it } from 'vitest';
import { bridgeId, bridgeIdText, decodeBpdu, encodeBpdu } from '../dist/switch/bpdu.js';
import { BLOCKING, DISABLED, FORWARDING, SpanningTree, type PortState } from '../dist/switch/spanning-tree.js';

const TIMES = { helloTime: 1, maxAge: 6, forwardDelay: 4 };
const mac = (n: number) => Uint8Array.of(0x02, 0, 0, 0, 0, n);

/** Bridges and the cables between their ports; BPDUs cross a cable at the next delivery. */
class Lab {
  now = 0;
  readonly bridges: SpanningTree[] = [];
  readonly states = new Map<string, PortState>();
  readonly sent: { bridge: number; port: number; type: string }[] = [];
  private readonly cables: { a: [number, number]; b: [number, number]; up: boolean }[] = [];
  private queue: { bridge: number; port: number; frame: Uint8Array }[] = [];

  bridge(priority: number): number {
    const n = this.bridges.length;
    this.bridges.push(
      new SpanningTree(
        {
          send: (port, frame) => {
            this.sent.push({ bridge: n, port, type: decodeBpdu(frame)!.type });
            for (const cable of this.cables) {
              if (!cable.up) continue;
              if (cable.a[0] === n && cable.a[1] === port) this.queue.push({ bridge: cable.b[0], port: cable.b[1], frame });
              if (cable.b[0] === n && cable.b[1] === port) this.queue.push({ bridge: cable.a[0], port: cable.a[1], frame });
            }
          },
          setState: (port, state) => this.states.set(`${n}/${port}`, state),
        },
        priority,
        mac(n + 1),
        TIMES,
        this.now,
      ),
    );
    return n;
  }

  /** Cables port `pa` of bridge `a` to port `pb` of bridge `b` (adding the ports). */
  cable(a: number, pa: number, b: number, pb: number): number {
    for (const [bridge, port] of [[a, pa], [b, pb]] as const) if (!this.bridges[bridge]!.portStatus(port)) this.bridges[bridge]!.addPort(port, 128, 100, this.now);
    return this.cables.push({ a: [a, pa], b: [b, pb], up: true }) - 1;
  }

  cut(cable: number): void {
    this.cables[cable]!.up = false;
  }

  /** Moves time on by `ms`, 100 ms at a time, delivering every BPDU sent. */
  run(ms: number): void {
    for (const end = this.now + ms; this.now < end; ) {
      this.now += 100;
      for (const bridge of this.bridges) bridge.tick(this.now);
      for (let rounds = 0; this.queue.length > 0 && rounds < 100; rounds++) {
        const queue = this.queue;
        this.queue = [];
        for (const { bridge, port, frame } of queue) this.bridges[bridge]!.receive(port, frame, this.now);
      }
    }
  }

  roles(n: number, ports: number[]): string[] {
    return ports.map((port) => {
      const status = this.bridges[n]!.portStatus(port)!;
      return `${status.role}/${['disabled', 'blocking', 'listening', 'learning', 'forwarding'][status.state]}`;
    });
  }
}

describe('BPDUs as bytes', () => {
  it('encodes a configuration BPDU in an 802.3 frame with LLC 42 42 03 to 01:80:c2:00:00:00, and decodes it back', () => {
    const bpdu = {
      type: 'config' as const, rootId: bridgeId(0x1000, mac(1)), rootPathCost: 19, bridgeId: bridgeId(0x8000, mac(2)), portId: 0x8002,
      messageAge: 1, maxAge: 20, helloTime: 2, forwardDelay: 15, topologyChange: true, topologyChangeAck: false,
    };
    const frame = encodeBpdu(bpdu, mac(2));
    expect(frame.length).toBe(60);
    expect([...frame.subarray(0, 22)]).toEqual([0x01, 0x80, 0xc2, 0, 0, 0, 0x02, 0, 0, 0, 0, 2, 0x00, 0x26, 0x42, 0x42, 0x03, 0, 0, 0, 0x00, 0x01]);
    expect([...frame.subarray(22, 52)]).toEqual([
      0x10, 0x00, 0x02, 0, 0, 0, 0, 1, // root id
      0, 0, 0, 19, // root path cost
      0x80, 0x00, 0x02, 0, 0, 0, 0, 2, // bridge id
      0x80, 0x02, // port id
      0x01, 0x00, 0x14, 0x00, 0x02, 0x00, 0x0f, 0x00, // message age, max age, hello, forward delay (1/256 s)
    ]);
    expect(decodeBpdu(frame)).toEqual(bpdu);
    const tcn = encodeBpdu({ type: 'tcn' }, mac(2));
    expect([...tcn.subarray(12, 21)]).toEqual([0x00, 0x07, 0x42, 0x42, 0x03, 0, 0, 0, 0x80]);
    expect(decodeBpdu(tcn)).toEqual({ type: 'tcn' });
    const notLlc = frame.slice();
    notLlc[15] = 0xaa;
    expect(decodeBpdu(notLlc)).toBeNull();
    // An RST BPDU (version 2, type 2) and an MST one (version 3) are not this protocol's: ignored, as Linux does.
    for (const [version, type] of [[2, 2], [3, 2], [2, 0]] as const) {
      const rst = frame.slice();
      rst[19] = version;
      rst[20] = type;
      expect(decodeBpdu(rst)).toBeNull();
    }
    expect(bridgeIdText(bridgeId(0x8000, Uint8Array.of(0x02, 0, 0, 0, 0x0a, 1)))).toBe('8000.2:0:0:0:a:1');
  });
});

describe('SpanningTree (802.1D)', () => {
  it('elects the lowest bridge ID root and blocks one port of two cables between two bridges', () => {
    const lab = new Lab();
    const [a, b] = [lab.bridge(0x8000), lab.bridge(0x1000)];
    lab.cable(a, 0, b, 0);
    lab.cable(a, 1, b, 1);
    lab.run(1000);
    expect(lab.roles(a, [0, 1])).toEqual(['root/listening', 'alternate/blocking']);
    lab.run(4000);
    expect(lab.roles(a, [0, 1]).map((r) => r.split('/')[1])).toEqual(['learning', 'blocking']);
    lab.run(4000); // two forward delays after the start
    expect(lab.roles(b, [0, 1])).toEqual(['designated/forwarding', 'designated/forwarding']);
    expect(lab.roles(a, [0, 1])).toEqual(['root/forwarding', 'alternate/blocking']);
    expect(lab.bridges[a]!.status).toMatchObject({ rootId: lab.bridges[b]!.bridgeId, rootPathCost: 100, rootPort: 0 });
    expect(lab.bridges[b]!.status).toMatchObject({ rootId: lab.bridges[b]!.bridgeId, rootPathCost: 0, rootPort: null });
  });

  it('blocks one of two of its own ports cabled together (its own BPDU comes back)', () => {
    const lab = new Lab();
    const a = lab.bridge(0x8000);
    lab.cable(a, 0, a, 1);
    lab.run(9000);
    expect(lab.roles(a, [0, 1])).toEqual(['designated/forwarding', 'alternate/blocking']);
    expect([...lab.states]).toEqual([['0/0', FORWARDING], ['0/1', BLOCKING]]);
  });

  it('takes the other cable after the root port\'s cable is cut (max age, then two forward delays), with a topology change noticed by the root', () => {
    const lab = new Lab();
    const [a, b] = [lab.bridge(0x8000), lab.bridge(0x1000)];
    const first = lab.cable(a, 0, b, 0);
    lab.cable(a, 1, b, 1);
    lab.run(9000);
    expect(lab.bridges[b]!.topologyChange).toBe(true); // ports of the root went forwarding
    lab.run(10_000); // max age + forward delay
    expect([lab.bridges[a]!.topologyChange, lab.bridges[b]!.topologyChange]).toEqual([false, false]);
    lab.sent.length = 0;
    lab.cut(first);
    lab.run(5000);
    expect(lab.roles(a, [1])).toEqual(['alternate/blocking']); // the root's information on port 0 is not yet aged (6 s)
    lab.run(1500);
    expect(lab.roles(a, [0, 1])).toEqual(['designated/forwarding', 'root/listening']); // port 0 forwarded as root port, and goes on as designated
    lab.run(8000);
    expect(lab.roles(a, [1])).toEqual(['root/forwarding']);
    expect(lab.sent.some((s) => s.bridge === a && s.port === 1 && s.type === 'tcn')).toBe(true);
    expect(lab.bridges[b]!.topologyChange).toBe(true); // heard the TCN: MACs age out after the forward delay
    expect(lab.bridges[a]!.topologyChange).toBe(true); // from the root's BPDUs
    lab.run(10_000); // max age + forward delay after the root heard of it
    expect([lab.bridges[a]!.topologyChange, lab.bridges[b]!.topologyChange]).toEqual([false, false]);
  });

  it('disables a removed port, and gives up its root role', () => {
    const lab = new Lab();
    const [a, b] = [lab.bridge(0x8000), lab.bridge(0x1000)];
    lab.cable(a, 0, b, 0);
    lab.run(9000);
    lab.bridges[a]!.removePort(0, lab.now);
    expect(lab.states.get('0/0')).toBe(DISABLED);
    expect(lab.bridges[a]!.status.rootId).toBe(lab.bridges[a]!.bridgeId);
    expect(lab.states.get('1/0')).toBe(FORWARDING); // b, the root, keeps its designated port forwarding
  });
});
