import { describe, expect, it } from 'vitest';
import { parseRouteMessages, RTM_DELLINK, RTM_NEWLINK } from '../dist/sys/netlink.js';

/** An rtattr of `type` holding `payload`, padded to 4 bytes. */
function attr(type: number, payload: Uint8Array): Buffer {
  const length = 4 + payload.length;
  const out = Buffer.alloc((length + 3) & ~3);
  out.writeUInt16LE(length, 0);
  out.writeUInt16LE(type, 2);
  out.set(payload, 4);
  return out;
}

const u32 = (value: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(value);
  return b;
};

/** An RTM_NEWLINK/DELLINK message for a VLAN link with name, MTU, carrier, MAC, VID and stats. */
function linkMessage(type: number, ifindex: number, name: string): Buffer {
  const ifinfo = Buffer.alloc(16);
  ifinfo.writeInt32LE(ifindex, 4);
  ifinfo.writeUInt32LE(0x1 | 0x100, 8);
  const stats = Buffer.alloc(24 * 8);
  for (let i = 0; i < 24; i++) stats.writeBigUInt64LE(BigInt(1000 + i), i * 8);
  const vid = Buffer.alloc(2);
  vid.writeUInt16LE(42);
  const linkinfo = attr(18 | 0x8000, Buffer.concat([attr(1, Buffer.from('vlan\0')), attr(2 | 0x8000, attr(1, vid))]));
  const body = Buffer.concat([
    ifinfo,
    attr(3, Buffer.from(`${name}\0`)),
    attr(4, u32(1400)),
    attr(33, Uint8Array.of(1)),
    attr(1, Uint8Array.of(2, 0, 0, 0, 0, 9)),
    attr(23, stats),
    linkinfo,
  ]);
  const header = Buffer.alloc(16);
  header.writeUInt32LE(16 + body.length, 0);
  header.writeUInt16LE(type, 4);
  return Buffer.concat([header, body]);
}

/** A deterministic pseudo-random generator (xorshift), so a failure can be replayed. */
function random(seed: number): () => number {
  let x = seed || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

describe('rtnetlink parser', () => {
  it('parses link messages with their attributes', () => {
    const bytes = Buffer.concat([linkMessage(RTM_NEWLINK, 7, 'v.42'), linkMessage(RTM_DELLINK, 8, 'gone')]);
    const [added, deleted] = parseRouteMessages(bytes, bytes.length);
    expect(added).toMatchObject({ kind: 'link', deleted: false, ifindex: 7, name: 'v.42', mtu: 1400, carrier: true, linkKind: 'vlan', vlanId: 42, flags: 0x101 });
    expect(Array.from((added as { mac: Uint8Array }).mac)).toEqual([2, 0, 0, 0, 0, 9]);
    expect((added as { stats: number[] }).stats.slice(0, 3)).toEqual([1000, 1001, 1002]);
    expect(deleted).toMatchObject({ kind: 'link', deleted: true, ifindex: 8, name: 'gone' });
  });

  it("parses an error's extended acknowledgement: the kernel's message, the request capped or whole", () => {
    const error = (flags: number, request: Buffer, tlvs: Buffer) => {
      const body = Buffer.concat([Buffer.alloc(4), request, tlvs]);
      body.writeInt32LE(-22, 0);
      const header = Buffer.alloc(16);
      header.writeUInt32LE(16 + body.length, 0);
      header.writeUInt16LE(2, 4); // NLMSG_ERROR
      header.writeUInt16LE(flags, 6);
      header.writeUInt32LE(5, 8);
      return Buffer.concat([header, body]);
    };
    const message = attr(1, Buffer.from('Invalid combination\0'));
    const requestHeader = (length: number) => {
      const h = Buffer.alloc(length);
      h.writeUInt32LE(length, 0);
      return h;
    };
    const capped = error(0x100 | 0x200, requestHeader(16), message);
    expect(parseRouteMessages(capped, capped.length)).toEqual([{ kind: 'error', errno: 22, seq: 5, message: 'Invalid combination' }]);
    const whole = error(0x200, requestHeader(40), message);
    expect(parseRouteMessages(whole, whole.length)).toEqual([{ kind: 'error', errno: 22, seq: 5, message: 'Invalid combination' }]);
    const plain = error(0, requestHeader(16), Buffer.alloc(0));
    expect(parseRouteMessages(plain, plain.length)).toEqual([{ kind: 'error', errno: 22, seq: 5 }]);
  });

  it('reports truncated and malformed input as unparsable and never throws (fuzz)', () => {
    const valid = Buffer.concat([linkMessage(RTM_NEWLINK, 7, 'eth0'), linkMessage(RTM_DELLINK, 8, 'x')]);
    for (let cut = 0; cut < valid.length; cut++) {
      const messages = parseRouteMessages(valid, cut);
      if (cut !== 0 && cut !== linkMessage(RTM_NEWLINK, 7, 'eth0').length) {
        expect(messages.some((m) => m.kind === 'unparsable')).toBe(true);
      }
    }
    const next = random(12345);
    let unparsable = 0;
    for (let round = 0; round < 20_000; round++) {
      const bytes = round % 2 === 0 ? Buffer.from(valid) : Buffer.alloc(1 + Math.floor(next() * 300));
      if (round % 2 === 0) {
        for (let flips = 1 + Math.floor(next() * 8); flips > 0; flips--) bytes[Math.floor(next() * bytes.length)] = Math.floor(next() * 256);
      } else {
        for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(next() * 256);
      }
      const messages = parseRouteMessages(bytes, bytes.length);
      for (const message of messages) expect(['link', 'address', 'error', 'done', 'unparsable']).toContain(message.kind);
      if (messages.some((m) => m.kind === 'unparsable')) unparsable++;
    }
    expect(unparsable).toBeGreaterThan(1000);
  });
});
