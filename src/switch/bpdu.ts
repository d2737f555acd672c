/**
 * 802.1D spanning tree BPDUs as bytes: configuration BPDUs and topology change notifications
 * (TCNs), in 802.3 frames with the LLC header 42 42 03, to the bridge group address
 * 01:80:c2:00:00:00 (IEEE 802.1D-1998 clause 9).  Times are in seconds (1/256 s resolution on
 * the wire); bridge IDs are 8 bytes (priority, then the MAC) kept as bigints so that they compare
 * as 802.1D compares them.
 */

/** The bridge group address, where BPDUs go. */
export const BRIDGE_GROUP_ADDRESS = Uint8Array.of(0x01, 0x80, 0xc2, 0, 0, 0);

const LLC_AT = 14;
const BPDU_AT = 17;
const CONFIG_LENGTH = 35;
const TCN_LENGTH = 4;
const TYPE_CONFIG = 0x00;
const TYPE_TCN = 0x80;
const FLAG_TC = 0x01;
const FLAG_TCA = 0x80;

export interface ConfigBpdu {
  type: 'config';
  rootId: bigint;
  rootPathCost: number;
  bridgeId: bigint;
  portId: number;
  /** Seconds. */
  messageAge: number;
  maxAge: number;
  helloTime: number;
  forwardDelay: number;
  topologyChange: boolean;
  topologyChangeAck: boolean;
}

export type Bpdu = ConfigBpdu | { type: 'tcn' };

/** A bridge ID: `priority` (0-65535) and a MAC. */
export function bridgeId(priority: number, mac: Uint8Array): bigint {
  let id = BigInt(priority);
  for (let i = 0; i < 6; i++) id = (id << 8n) | BigInt(mac[i]!);
  return id;
}

/** A bridge ID as Linux's `ip -d link` writes it: 8000.2:0:0:0:0:1 (priority in hex, MAC bytes without leading zeros). */
export function bridgeIdText(id: bigint): string {
  const bytes = Array.from({ length: 6 }, (_, i) => Number((id >> BigInt(8 * (5 - i))) & 0xffn).toString(16));
  return `${Number(id >> 48n).toString(16).padStart(4, '0')}.${bytes.join(':')}`;
}

/** A BPDU frame from MAC `source` (60 bytes: padded). */
export function encodeBpdu(bpdu: Bpdu, source: Uint8Array): Uint8Array {
  const frame = new Uint8Array(60);
  const view = new DataView(frame.buffer);
  frame.set(BRIDGE_GROUP_ADDRESS, 0);
  frame.set(source.subarray(0, 6), 6);
  const length = bpdu.type === 'tcn' ? TCN_LENGTH : CONFIG_LENGTH;
  view.setUint16(12, 3 + length); // 802.3 length: the LLC header and the BPDU
  frame.set([0x42, 0x42, 0x03], LLC_AT);
  // protocol identifier 0, version 0
  if (bpdu.type === 'tcn') {
    frame[BPDU_AT + 3] = TYPE_TCN;
    return frame;
  }
  frame[BPDU_AT + 3] = TYPE_CONFIG;
  frame[BPDU_AT + 4] = (bpdu.topologyChange ? FLAG_TC : 0) | (bpdu.topologyChangeAck ? FLAG_TCA : 0);
  view.setBigUint64(BPDU_AT + 5, bpdu.rootId);
  view.setUint32(BPDU_AT + 13, bpdu.rootPathCost);
  view.setBigUint64(BPDU_AT + 17, bpdu.bridgeId);
  view.setUint16(BPDU_AT + 25, bpdu.portId);
  const time = (at: number, seconds: number) => view.setUint16(BPDU_AT + at, Math.min(0xffff, Math.round(seconds * 256)));
  time(27, bpdu.messageAge);
  time(29, bpdu.maxAge);
  time(31, bpdu.helloTime);
  time(33, bpdu.forwardDelay);
  return frame;
}

/** The BPDU of the Ethernet frame `frame`, or null if it is none (not LLC 42 42 03 to the group address, an unknown type, too short). */
export function decodeBpdu(frame: Uint8Array): Bpdu | null {
  if (frame.length < BPDU_AT + TCN_LENGTH) return null;
  for (let i = 0; i < 6; i++) if (frame[i] !== BRIDGE_GROUP_ADDRESS[i]) return null;
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  const length = view.getUint16(12);
  if (length > 1500 || frame[LLC_AT] !== 0x42 || frame[LLC_AT + 1] !== 0x42 || frame[LLC_AT + 2] !== 0x03) return null;
  // Protocol identifier 0 and version 0 only, as Linux's br_stp_rcv: an RST or MST BPDU (version 2, 3)
  // is ignored, so that an RSTP neighbour sees a legacy bridge and falls back to STP on the link.
  if (view.getUint16(BPDU_AT) !== 0 || frame[BPDU_AT + 2] !== 0) return null;
  const type = frame[BPDU_AT + 3];
  if (type === TYPE_TCN) return { type: 'tcn' };
  if (type !== TYPE_CONFIG || frame.length < BPDU_AT + CONFIG_LENGTH || length < 3 + CONFIG_LENGTH) return null;
  const flags = frame[BPDU_AT + 4]!;
  const time = (at: number) => view.getUint16(BPDU_AT + at) / 256;
  return {
    type: 'config',
    rootId: view.getBigUint64(BPDU_AT + 5),
    rootPathCost: view.getUint32(BPDU_AT + 13),
    bridgeId: view.getBigUint64(BPDU_AT + 17),
    portId: view.getUint16(BPDU_AT + 25),
    messageAge: time(27),
    maxAge: time(29),
    helloTime: time(31),
    forwardDelay: time(33),
    topologyChange: (flags & FLAG_TC) !== 0,
    topologyChangeAck: (flags & FLAG_TCA) !== 0,
  };
}
