/**
 * The tunnel kinds' wire format without a kernel: an RTM_NEWLINK request the vxlan provider
 * would send, parsed back as the kernel's answer is, gives the parameters it was made from; the
 * flood entry request's layout; IP address bytes both ways.
 */
import { describe, expect, it } from 'vitest';
import { formatIp, ipBytes, isMulticastIp } from '../dist/common/addresses.js';
import { floodEntryRequest, newLinkRequest, parseRouteMessages, payload } from '../dist/sys/netlink.js';
import { tunnelParameters, VXLAN } from '../dist/providers/tunnel/kinds.js';

describe('tunnel wire format', () => {
  it('reads back the parameters an RTM_NEWLINK request for a vxlan device carries', () => {
    const a = VXLAN.attributes;
    const request = newLinkRequest({
      name: 'vx0',
      mtu: 1450,
      kind: 'vxlan',
      data: [
        { type: a.id, payload: payload.u32(4242) },
        { type: a.remote6, payload: ipBytes('fd00::2') },
        { type: a.local6!, payload: ipBytes('fd00::1') },
        { type: a.port, payload: payload.be16(4790) },
        { type: a.ttl, payload: payload.u8(9) },
        { type: a.learning!, payload: payload.u8(0) },
        { type: a.link!, payload: payload.u32(7) },
      ],
    }, 5);
    expect(request.readUInt32LE(0)).toBe(request.length);
    expect(request.readUInt16LE(6)).toBe(0x1 | 0x4 | 0x400 | 0x200); // REQUEST | ACK | CREATE | EXCL
    const [link] = parseRouteMessages(request, request.length);
    expect(link).toMatchObject({ kind: 'link', name: 'vx0', mtu: 1450, linkKind: 'vxlan', flags: 1 });
    const { linkKind, infoData } = link as { linkKind: string; infoData: Map<number, Uint8Array> };
    expect(tunnelParameters(linkKind, infoData)).toEqual({ key: '4242', remote_ip: 'fd00::2', local_ip: 'fd00::1', dst_port: '4790', ttl: '9', learning: 'false', dev_ifindex: '7' });
    expect(tunnelParameters('veth', infoData)).toBeNull();
  });

  it('lays out a flood entry (00:00:00:00:00:00 -> remote) as bridge fdb append does', () => {
    const request = floodEntryRequest(true, 9, ipBytes('10.200.0.3'), 1);
    expect(request.readUInt16LE(4)).toBe(28); // RTM_NEWNEIGH
    expect(request.readUInt16LE(6)).toBe(0x1 | 0x4 | 0x400 | 0x800); // REQUEST | ACK | CREATE | APPEND
    expect([request[16], request.readInt32LE(20), request.readUInt16LE(24), request[26]]).toEqual([7, 9, 0x80, 0x02]); // AF_BRIDGE, ifindex, NUD_PERMANENT, NTF_SELF
    expect([...request.subarray(28)]).toEqual([10, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 1, 0, 10, 200, 0, 3]); // NDA_LLADDR zeros (padded), NDA_DST
    expect(floodEntryRequest(false, 9, ipBytes('10.200.0.3'), 1).readUInt16LE(4)).toBe(29); // RTM_DELNEIGH
  });

  it('turns IP addresses into bytes and back, and knows multicast', () => {
    expect([...ipBytes('10.200.0.2')]).toEqual([10, 200, 0, 2]);
    expect(formatIp(ipBytes('fd00:0:0::2'))).toBe('fd00::2');
    expect(formatIp(ipBytes('::'))).toBe('::');
    expect(formatIp(ipBytes('1:2:3:4:5:6:7:8'))).toBe('1:2:3:4:5:6:7:8');
    expect(isMulticastIp(ipBytes('239.1.1.1'))).toBe(true);
    expect(isMulticastIp(ipBytes('ff02::1'))).toBe(true);
    expect(isMulticastIp(ipBytes('10.0.0.1'))).toBe(false);
    expect(() => ipBytes('10.0.0.256')).toThrow(/invalid IP address/);
    expect([...ipBytes('::ffff:1.2.3.4')]).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 1, 2, 3, 4]);
  });
});
