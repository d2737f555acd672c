/**
 * The ethtool link settings (struct ethtool_cmd) as OpenFlow port-feature bits (enum
 * ofp_port_features), mapped as OVS's netdev_linux_get_features maps them.
 */
import { ECMD_ADVERTISING, ECMD_AUTONEG, ECMD_DUPLEX, ECMD_PORT, ECMD_SPEED, ECMD_SPEED_HI, ECMD_SUPPORTED, PORT_FIBRE, PORT_TP } from '../../sys/libc.js';
import type { Features } from '../contract.js';

/** OpenFlow port-feature bits (enum ofp_port_features). */
const OFPPF = {
  '10MB_HD': 1 << 0, '10MB_FD': 1 << 1, '100MB_HD': 1 << 2, '100MB_FD': 1 << 3, '1GB_HD': 1 << 4, '1GB_FD': 1 << 5,
  '10GB_FD': 1 << 6, COPPER: 1 << 7, FIBER: 1 << 8, AUTONEG: 1 << 9, PAUSE: 1 << 10, PAUSE_ASYM: 1 << 11,
} as const;

/** ethtool SUPPORTED_/ADVERTISED_ bit -> OpenFlow bit, as OVS's netdev_linux_get_features maps them. */
const ETHTOOL_TO_OFPPF: readonly [number, number][] = [
  [1 << 0, OFPPF['10MB_HD']], [1 << 1, OFPPF['10MB_FD']], [1 << 2, OFPPF['100MB_HD']], [1 << 3, OFPPF['100MB_FD']],
  [1 << 4, OFPPF['1GB_HD']], [1 << 5, OFPPF['1GB_FD']], [1 << 12, OFPPF['10GB_FD']], [1 << 7, OFPPF.COPPER],
  [1 << 10, OFPPF.FIBER], [1 << 6, OFPPF.AUTONEG], [1 << 13, OFPPF.PAUSE], [1 << 14, OFPPF.PAUSE_ASYM],
];

/** OVS's current-speed bit: speed (Mbit/s) and duplex (1 full). */
function currentSpeedBit(speed: number, fullDuplex: boolean): number {
  switch (speed) {
    case 10: return fullDuplex ? OFPPF['10MB_FD'] : OFPPF['10MB_HD'];
    case 100: return fullDuplex ? OFPPF['100MB_FD'] : OFPPF['100MB_HD'];
    case 1000: return fullDuplex ? OFPPF['1GB_FD'] : OFPPF['1GB_HD'];
    case 10000: return OFPPF['10GB_FD'];
    default: return 0;
  }
}

function ethtoolToOfppf(bits: number): number {
  return ETHTOOL_TO_OFPPF.reduce((acc, [ethtool, ofppf]) => (bits & ethtool ? acc | ofppf : acc), 0);
}

/** The ethtool ADVERTISED_ bits of OpenFlow bits `bits` (the bits ethtool has no counterpart of are left out). */
export function ofppfToEthtool(bits: number): number {
  return ETHTOOL_TO_OFPPF.reduce((acc, [ethtool, ofppf]) => (bits & ofppf ? acc | ethtool : acc), 0);
}

/** The OpenFlow features of the struct ethtool_cmd `ecmd` (an ETHTOOL_GSET answer); peer is 0, as OVS. */
export function featuresOf(ecmd: DataView): Features {
  const speed = ecmd.getUint16(ECMD_SPEED, true) | (ecmd.getUint16(ECMD_SPEED_HI, true) << 16);
  const port = ecmd.getUint8(ECMD_PORT);
  const current =
    currentSpeedBit(speed, ecmd.getUint8(ECMD_DUPLEX) === 1) |
    (port === PORT_TP ? OFPPF.COPPER : port === PORT_FIBRE ? OFPPF.FIBER : 0) |
    (ecmd.getUint8(ECMD_AUTONEG) ? OFPPF.AUTONEG : 0);
  return {
    current,
    advertised: ethtoolToOfppf(ecmd.getUint32(ECMD_ADVERTISING, true)),
    supported: ethtoolToOfppf(ecmd.getUint32(ECMD_SUPPORTED, true)),
    peer: 0,
  };
}
