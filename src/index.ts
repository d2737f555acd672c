/**
 * netdev: one abstract interface to network devices for Node.js (after Open vSwitch's netdev
 * layer), with a worker thread per device and shared-memory frame rings.  Linux only: on another
 * platform importing it throws a NetdevError (EOPNOTSUPP) saying so.
 */
import './require-linux.js'; // first: it must run before any module below loads libc
export { NetdevManager, type ManagerOptions, type OpenOptions } from './main/manager.js';
export { Netdev, type AgentHandle, type FlagOptions, type SendOptions } from './main/netdev.js';
export { NetdevMonitor } from './main/monitor.js';
export { Capture, type CaptureOptions } from './main/capture.js';
export { Switch, type MacFlap, type PortCounters, type PortOptions, type PortStp, type SpanningTreeStatus, type StpOptions, type SwitchEvents, type SwitchOptions } from './switch/switch.js';
export { readPcap, pcapFileHeader, type PcapRecord } from './common/pcap.js';
export { readVnetHeader, shiftVnetHeader, vnetHeaderProblem, writeVnetHeader, VNET_F_DATA_VALID, VNET_F_NEEDS_CSUM, VNET_GSO_ECN, VNET_GSO_NONE, VNET_GSO_TCPV4, VNET_GSO_TCPV6, VNET_GSO_UDP, VNET_GSO_UDP_L4, VNET_HDR_LEN, type VnetHeader } from './common/vnet-header.js';
export type { BatchOptions, ReadOptions } from './main/rx-queue.js';
export { NetdevError, netdevError, type NetdevErrorFields } from './common/errors.js';
export { formatMac, parseMac, formatIPv4, parseIPv4 } from './common/addresses.js';
export { dummyProvider } from './providers/dummy/provider.js';
export { badValue, ConfigSchema, mustBe, oneOf, type ConfigKey, type ConfigKeyInfo, type ConfigKeys } from './providers/config-schema.js';
export {
  FRAME_OVERHEAD,
  MIN_FRAME,
  matchesEthertype,
  type Config,
  type CreateIo,
  type CreateOptions,
  type DeviceContext,
  type DeviceIo,
  type Ethertype,
  type Features,
  type Flags,
  type FrameStaging,
  type In4,
  type IoContext,
  type IoControl,
  type ProgramOptions,
  type ProgramResult,
  type Provider,
  type ProviderContext,
  type ProviderDevice,
  type Stats,
} from './providers/contract.js';
export { NETDEV_PROMISC, NETDEV_UP } from './ring/device-shared.js';
export { HOT_BELL, HOT_FRAMES, type AgentContext, type CreateAgent, type WorkerAgent } from './workers/agent-contract.js';
