/**
 * The kernel's tunnel kinds, as a table: what the tunnel provider needs to know of each kind to
 * create its devices through rtnetlink (IFLA_INFO_KIND and the IFLA_<KIND>_* attribute numbers
 * of linux/if_link.h), its defaults and the bytes its encapsulation adds.  A kind is one entry;
 * a parameter a kind lacks has no attribute, and its config key is then unknown for that kind.
 * Only vxlan is here: the development machine's kernel has no geneve module to test another
 * against (geneve would be { kind: 'geneve', defaultPort: 6081, attributes: { id: 1, remote4: 2,
 * ttl: 3, port: 5, remote6: 7 }, same overheads }).
 */
import { formatIp } from '../../common/addresses.js';

/** The tunnel parameters a kind may have, each an IFLA_<KIND>_* attribute. */
export interface TunnelAttributes {
  /** The virtual network identifier (u32). */
  readonly id: number;
  /** The remote (or multicast group) address, IPv4 (4 bytes) and IPv6 (16 bytes). */
  readonly remote4: number;
  readonly remote6: number;
  readonly local4?: number;
  readonly local6?: number;
  /** The underlay device's ifindex (u32). */
  readonly link?: number;
  readonly ttl: number;
  /** Learning of inner source MACs into the device's forwarding table (u8). */
  readonly learning?: number;
  /** The destination UDP port (big-endian u16). */
  readonly port: number;
}

export interface TunnelKind {
  /** IFLA_INFO_KIND, the provider's type and its prefix (before the colon). */
  readonly kind: string;
  readonly defaultPort: number;
  /** The largest VNI. */
  readonly maxId: number;
  /** Bytes the encapsulation adds to an inner frame's payload, over an IPv4 and an IPv6 underlay (outer IP, UDP, tunnel header, inner Ethernet header). */
  readonly overhead: { readonly ipv4: number; readonly ipv6: number };
  readonly attributes: TunnelAttributes;
}

/** VXLAN (RFC 7348): IFLA_VXLAN_* of linux/if_link.h; 50 = 20 IPv4 + 8 UDP + 8 VXLAN + 14 Ethernet. */
export const VXLAN: TunnelKind = {
  kind: 'vxlan',
  defaultPort: 4789,
  maxId: 0xffffff,
  overhead: { ipv4: 50, ipv6: 70 },
  attributes: { id: 1, remote4: 2, link: 3, local4: 4, ttl: 5, learning: 7, port: 15, remote6: 16, local6: 17 },
};

/** Every kind the tunnel provider knows. */
export const TUNNEL_KINDS: readonly TunnelKind[] = [VXLAN];

/**
 * A tunnel device's parameters as the kernel reports them (its IFLA_INFO_DATA), under Open
 * vSwitch's option names: key, remote_ip, local_ip, dst_port, ttl, learning, and dev_ifindex for
 * the underlay device.  Null if `linkKind` is not a known tunnel kind.
 */
export function tunnelParameters(linkKind: string | undefined, data: ReadonlyMap<number, Uint8Array> | undefined): Record<string, string> | null {
  const kind = TUNNEL_KINDS.find((k) => k.kind === linkKind);
  if (!kind || !data) return null;
  const { attributes: a } = kind;
  const view = (type: number | undefined) => {
    const bytes = type === undefined ? undefined : data.get(type);
    return bytes && new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  };
  const address = (type4: number | undefined, type6: number | undefined) => {
    for (const type of [type4, type6]) {
      const bytes = type === undefined ? undefined : data.get(type);
      if (bytes && (bytes.length === 4 || bytes.length === 16) && bytes.some((b) => b !== 0)) return formatIp(bytes);
    }
    return undefined;
  };
  const parameters: Record<string, string | undefined> = {
    key: view(a.id)?.getUint32(0, true).toString(),
    remote_ip: address(a.remote4, a.remote6),
    local_ip: address(a.local4, a.local6),
    dst_port: view(a.port)?.getUint16(0, false).toString(),
    ttl: view(a.ttl)?.getUint8(0).toString(),
    learning: view(a.learning) && (view(a.learning)!.getUint8(0) ? 'true' : 'false'),
    dev_ifindex: view(a.link)?.getUint32(0, true) ? view(a.link)!.getUint32(0, true).toString() : undefined,
  };
  return Object.fromEntries(Object.entries(parameters).filter((entry): entry is [string, string] => entry[1] !== undefined));
}
