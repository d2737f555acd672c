/**
 * libc through koffi: the functions, constants and struct layouts the Linux providers use.  Loaded
 * once per thread (the main thread for control calls, each device worker for packet I/O).  Every
 * wrapper reads errno right after its call, on the same thread, and turns a failure into a
 * NetdevError named after the errno.  Layouts are x86-64 / aarch64 Linux (LP64).
 */
import koffi from 'koffi';
import { constants } from 'node:os';
import { NetdevError } from '../common/errors.js';

const libc = koffi.load('libc.so.6');

/** errno value -> name; of two names for one value (EAGAIN/EWOULDBLOCK, EOPNOTSUPP/ENOTSUP), the one OVS uses. */
const ERRNO_NAMES = new Map<number, string>();
for (const [name, value] of Object.entries(constants.errno as Record<string, number>)) {
  if (!ERRNO_NAMES.has(value)) ERRNO_NAMES.set(value, name);
}
for (const preferred of ['EAGAIN', 'EOPNOTSUPP', 'EDEADLK']) {
  const value = (constants.errno as Record<string, number>)[preferred];
  if (value !== undefined) ERRNO_NAMES.set(value, preferred);
}

/* Constants (linux/socket.h, linux/if_ether.h, linux/sockios.h, linux/if.h, linux/if_packet.h). */
export const AF_UNIX = 1;
export const AF_INET = 2;
export const AF_INET6 = 10;
export const AF_PACKET = 17;
export const SOCK_STREAM = 1;
export const SOCK_DGRAM = 2;
export const SOCK_RAW = 3;
export const SOCK_SEQPACKET = 5;
export const SOCK_NONBLOCK = 0o4000;
export const SOCK_CLOEXEC = 0o2000000;
export const O_RDONLY = 0;
export const O_RDWR = 2;
export const O_NONBLOCK = 0o4000;
export const O_CLOEXEC = 0o2000000;
export const ETH_P_ALL = 0x0003;
export const ETH_P_802_2 = 0x0004;
export const SOL_SOCKET = 1;
export const SO_RCVBUF = 8;
/** SO_RCVBUF past net.core.rmem_max (needs CAP_NET_ADMIN). */
export const SO_RCVBUFFORCE = 33;
export const SO_SNDBUF = 7;
export const SOL_PACKET = 263;
export const PACKET_IGNORE_OUTGOING = 23;
/** PACKET_VNET_HDR: every frame sent and received carries a struct virtio_net_hdr before it (offload metadata). */
export const PACKET_VNET_HDR = 15;
/**
 * PACKET_STATISTICS: a struct tpacket_stats { unsigned tp_packets; unsigned tp_drops; } of the
 * frames the socket took and dropped (its receive ring or buffer full) since the last read; reading resets it.
 */
export const PACKET_STATISTICS = 6;
/** PACKET_VERSION (TPACKET_V2: struct tpacket2_hdr ring frames), PACKET_RX_RING (a struct tpacket_req), PACKET_COPY_THRESH (a frame too large for a ring frame is also queued whole). */
export const PACKET_VERSION = 10;
export const TPACKET_V2 = 1;
export const PACKET_RX_RING = 5;
export const PACKET_COPY_THRESH = 7;
/** tpacket2_hdr tp_status bits: the frame is the reader's; the whole frame is queued on the socket too. */
export const TP_STATUS_USER = 0x1;
export const TP_STATUS_COPY = 0x2;
/** tpacket2_hdr tp_status bits: the frame's 802.1Q tag is in tp_vlan_tci, and its TPID in tp_vlan_tpid. */
export const TP_STATUS_VLAN_VALID = 0x10;
export const TP_STATUS_VLAN_TPID_VALID = 0x40;
export const MSG_DONTWAIT = 0x40;
export const MSG_TRUNC = 0x20;
export const MSG_NOSIGNAL = 0x4000;
export const CLONE_NEWNET = 0x40000000;
export const IFNAMSIZ = 16;
export const IFF_UP = 0x1;
export const IFF_PROMISC = 0x100;
export const ARPHRD_ETHER = 1;

export const TUNSETIFF = 0x400454ca;
export const TUNSETPERSIST = 0x400454cb;
export const IFF_TAP = 0x0002;
export const IFF_NO_PI = 0x1000;
/** IFF_VNET_HDR: every frame read from or written to the tun descriptor carries a struct virtio_net_hdr before it. */
export const IFF_VNET_HDR = 0x4000;
/** TUNGETFEATURES (_IOR('T', 207, unsigned int)): the IFF_* flags the kernel's tun driver supports. */
export const TUNGETFEATURES = 0x800454cf;
/** TUNSETOFFLOAD (_IOW('T', 208, unsigned int)): the TUN_F_* offloads the reader takes (the tap's TSO, checksum features follow). */
export const TUNSETOFFLOAD = 0x400454d0;
export const TUN_F_CSUM = 0x01;
export const TUN_F_TSO4 = 0x02;
export const TUN_F_TSO6 = 0x04;
export const TUN_F_USO4 = 0x20;
export const TUN_F_USO6 = 0x40;

export const SIOCADDRT = 0x890b;
export const SIOCGIFNAME = 0x8910;
export const SIOCGIFFLAGS = 0x8913;
export const SIOCSIFFLAGS = 0x8914;
export const SIOCGIFADDR = 0x8915;
export const SIOCSIFADDR = 0x8916;
export const SIOCGIFNETMASK = 0x891b;
export const SIOCSIFNETMASK = 0x891c;
export const SIOCGIFMTU = 0x8921;
export const SIOCSIFMTU = 0x8922;
export const SIOCSIFHWADDR = 0x8924;
export const SIOCGIFHWADDR = 0x8927;
export const SIOCGIFINDEX = 0x8933;
export const SIOCGIFTXQLEN = 0x8942;
export const SIOCETHTOOL = 0x8946;
export const SIOCGARP = 0x8954;

/** struct ifreq: a 16-byte name, then a 24-byte union (sockaddr, flags, ifindex, mtu, data pointer). */
export const IFREQ_SIZE = 40;
export const IFREQ_UNION = 16;
/** struct iovec and struct mmsghdr (a msghdr and the received length). */
export const IOVEC_SIZE = 16;
export const MMSGHDR_SIZE = 64;
export const MSGHDR_IOV = 16;
export const MSGHDR_IOVLEN = 24;
export const MSGHDR_FLAGS = 48;
export const MMSGHDR_LEN = 56;
/** struct sockaddr_ll. */
export const SOCKADDR_LL_SIZE = 20;
/** struct arpreq: protocol address, hardware address (sockaddrs) and device name. */
export const ARPREQ_SIZE = 68;
export const ARP_PA = 0;
export const ARP_HA = 16;
export const ARP_DEV = 52;
/** ethtool commands (linux/ethtool.h). */
export const ETHTOOL_GSET = 0x01;
export const ETHTOOL_SSET = 0x02;
/** struct ethtool_cmd: size and the offsets used. */
export const ETHTOOL_CMD_SIZE = 44;
export const ECMD_SUPPORTED = 4;
export const ECMD_ADVERTISING = 8;
export const ECMD_SPEED = 12;
export const ECMD_DUPLEX = 14;
export const ECMD_PORT = 15;
export const ECMD_AUTONEG = 18;
export const ECMD_SPEED_HI = 28;
export const PORT_TP = 0x00;
export const PORT_FIBRE = 0x03;
/** struct rtentry (net/route.h): size and offsets; RTF_UP | RTF_GATEWAY. */
export const RTENTRY_SIZE = 120;
export const RT_DST = 8;
export const RT_GATEWAY = 24;
export const RT_GENMASK = 40;
export const RT_FLAGS = 56;
export const RTF_UP_GATEWAY = 0x3;


const raw = {
  socket: libc.func('int socket(int domain, int type, int protocol)'),
  close: libc.func('int close(int fd)'),
  eventfd: libc.func('int eventfd(unsigned int initval, int flags)'),
  write: libc.func('long write(int fd, const void *buf, unsigned long count)'),
  open: libc.func('int open(const char *path, int flags)'),
  ioctl: libc.func('int ioctl(int fd, unsigned long request, ...)'),
  bind: libc.func('int bind(int fd, const void *addr, unsigned int len)'),
  setsockopt: libc.func('int setsockopt(int fd, int level, int name, const void *value, unsigned int len)'),
  getsockopt: libc.func('int getsockopt(int fd, int level, int name, void *value, unsigned int *len)'),
  recvmmsg: libc.func('int recvmmsg(int fd, void *msgvec, unsigned int vlen, int flags, void *timeout)'),
  sendmmsg: libc.func('int sendmmsg(int fd, void *msgvec, unsigned int vlen, int flags)'),
  recv: libc.func('long recv(int fd, void *buf, unsigned long len, int flags)'),
  setns: libc.func('int setns(int fd, int nstype)'),
  read: libc.func('long read(int fd, void *buf, unsigned long count)'),
  writev: libc.func('long writev(int fd, const void *iov, int iovcnt)'),
  readv: libc.func('long readv(int fd, const void *iov, int iovcnt)'),
  send: libc.func('long send(int fd, const void *buf, unsigned long len, int flags)'),
  poll: libc.func('int poll(void *fds, unsigned long nfds, int timeout)'),
  mkfifo: libc.func('int mkfifo(const char *path, unsigned int mode)'),
  listen: libc.func('int listen(int fd, int backlog)'),
  accept4: libc.func('int accept4(int fd, void *addr, void *len, int flags)'),
  connect: libc.func('int connect(int fd, const void *addr, unsigned int len)'),
  mmap: libc.func('void *mmap(void *addr, unsigned long length, int prot, int flags, int fd, long offset)'),
  munmap: libc.func('int munmap(void *addr, unsigned long length)'),
};

/** The errno name of `value` ('ENODEV'), or 'EIO' for an unknown one. */
export function errnoName(value: number): string {
  return ERRNO_NAMES.get(value) ?? 'EIO';
}

/** errno of the last call made on this thread. */
export function lastErrno(): number {
  return koffi.errno();
}

/**
 * The NetdevError for errno `value` (read it before any other call), naming the call and what
 * failed; an EPERM names the capabilities the call needs (`needs`: CAP_NET_ADMIN / CAP_NET_RAW,
 * those of the socket and ioctl calls, unless told otherwise).
 */
export function errnoError(value: number, call: string, detail: string, device?: string, needs = 'CAP_NET_ADMIN / CAP_NET_RAW'): NetdevError {
  const code = errnoName(value);
  return new NetdevError({ code, device, call, detail: `${detail}: ${code}${code === 'EPERM' ? ` (needs ${needs})` : ''}` });
}

/** Throws a NetdevError for errno if `result` is negative; returns `result` otherwise. */
export function check(result: number, call: string, detail: string, device?: string): number {
  if (result < 0) throw errnoError(koffi.errno(), call, detail, device);
  return result;
}

export const sys = {
  socket: (domain: number, type: number, protocol: number): number => raw.socket(domain, type, protocol) as number,
  close: (fd: number): number => raw.close(fd) as number,
  /** A new eventfd, non-blocking and close-on-exec. */
  eventfd: (): number => raw.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC) as number,
  /** Adds 1 to an eventfd's counter (wakes a poll on it). */
  signalEventfd: (fd: number): number => Number(raw.write(fd, EVENTFD_ONE, 8)),
  /** Resets an eventfd's counter. */
  clearEventfd: (fd: number): number => Number(raw.read(fd, EVENTFD_SCRAP, 8)),
  /**
   * poll(2) on two descriptors for readability, blocking up to `timeoutMs`: bit 0 of the result
   * says the first is readable (or failed), bit 1 the second.  Blocks the calling thread: workers only.
   */
  pollTwo: (a: number, b: number, timeoutMs: number): number => {
    POLL_TWO.fill(0);
    POLL_TWO_FDS[0] = a;
    POLL_TWO_FDS[2] = b;
    POLL_TWO[2] = POLLIN;
    POLL_TWO[6] = POLLIN;
    if ((raw.poll(POLL_TWO, 2, timeoutMs) as number) <= 0) return 0;
    return (POLL_TWO[3] !== 0 ? 1 : 0) | (POLL_TWO[7] !== 0 ? 2 : 0);
  },
  open: (path: string, flags: number): number => raw.open(path, flags) as number,
  /** ioctl with a pointer argument (a Buffer or typed array the kernel reads or fills). */
  ioctl: (fd: number, request: number, arg: Uint8Array): number => raw.ioctl(fd, request, 'void *', arg) as number,
  /** ioctl with an integer argument (TUNSETPERSIST). */
  ioctlInt: (fd: number, request: number, arg: number): number => raw.ioctl(fd, request, 'unsigned long', arg) as number,
  bind: (fd: number, addr: Uint8Array): number => raw.bind(fd, addr, addr.length) as number,
  setsockoptInt: (fd: number, level: number, name: number, value: number): number =>
    raw.setsockopt(fd, level, name, Int32Array.of(value), 4) as number,
  /** setsockopt with a struct (e.g. a struct tpacket_req as a Uint32Array). */
  setsockopt: (fd: number, level: number, name: number, value: ArrayBufferView): number =>
    raw.setsockopt(fd, level, name, value, value.byteLength) as number,
  /** A private anonymous mapping of `length` bytes, pages made only when touched (MAP_NORESERVE); MAP_FAILED (koffi.address) on failure. */
  mmapAnonymous: (length: number): unknown => raw.mmap(null, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0),
  /** Maps `length` bytes of `fd` (a packet socket's ring) shared, in place of the start of mapping `at` (MAP_FIXED). */
  mmapSocketAt: (at: unknown, length: number, fd: number): unknown => raw.mmap(at, length, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0),
  munmap: (at: unknown, length: number): number => raw.munmap(at, length) as number,
  /**
   * The frames an AF_PACKET socket dropped since the last call (PACKET_STATISTICS tp_drops; the
   * kernel resets its counters on each read), or -1 (errno says why).
   */
  packetDrops: (fd: number): number => {
    PACKET_STATS_LENGTH[0] = PACKET_STATS.byteLength;
    return (raw.getsockopt(fd, SOL_PACKET, PACKET_STATISTICS, PACKET_STATS, PACKET_STATS_LENGTH) as number) < 0 ? -1 : PACKET_STATS[1]!;
  },
  /** The socket's pending error (getsockopt SO_ERROR, which clears it): an errno value, 0 for none, or -1 (errno says why). */
  socketError: (fd: number): number => {
    SOCKET_ERROR_LENGTH[0] = 4;
    return (raw.getsockopt(fd, SOL_SOCKET, SO_ERROR, SOCKET_ERROR, SOCKET_ERROR_LENGTH) as number) < 0 ? -1 : SOCKET_ERROR[0]!;
  },
  recvmmsg: (fd: number, vec: Uint8Array, count: number, flags: number): number => raw.recvmmsg(fd, vec, count, flags, null) as number,
  sendmmsg: (fd: number, vec: Uint8Array, count: number, flags: number): number => raw.sendmmsg(fd, vec, count, flags) as number,
  recv: (fd: number, buf: Uint8Array, len: number, flags: number): number => Number(raw.recv(fd, buf, len, flags)),
  setns: (fd: number, type: number): number => raw.setns(fd, type) as number,
  read: (fd: number, buf: Uint8Array, count: number): number => Number(raw.read(fd, buf, count)),
  writev: (fd: number, iov: Uint8Array, count: number): number => Number(raw.writev(fd, iov, count)),
  readv: (fd: number, iov: Uint8Array, count: number): number => Number(raw.readv(fd, iov, count)),
  send: (fd: number, buf: Uint8Array, flags: number): number => Number(raw.send(fd, buf, buf.length, flags)),
  mkfifo: (path: string, mode: number): number => raw.mkfifo(path, mode) as number,
  listen: (fd: number, backlog: number): number => raw.listen(fd, backlog) as number,
  accept4: (fd: number, flags: number): number => raw.accept4(fd, null, null, flags) as number,
  connect: (fd: number, addr: Uint8Array): number => raw.connect(fd, addr, addr.length) as number,
  /** poll(2) on one descriptor for `events`; returns the revents (0 on timeout), or -1. */
  pollOne: (fd: number, events: number, timeoutMs: number): number => {
    const pollfd = new Int16Array(4);
    new Int32Array(pollfd.buffer, 0, 1)[0] = fd;
    pollfd[2] = events;
    const result = raw.poll(pollfd, 1, timeoutMs) as number;
    return result < 0 ? -1 : pollfd[3]!;
  },
};

const PROT_READ = 0x1;
const PROT_WRITE = 0x2;
const MAP_SHARED = 0x01;
const MAP_PRIVATE = 0x02;
const MAP_FIXED = 0x10;
const MAP_ANONYMOUS = 0x20;
const MAP_NORESERVE = 0x4000;
/** What mmap returns on failure, as koffi.address gives it. */
export const MAP_FAILED = 0xffffffffffffffffn;
const EFD_NONBLOCK = 0o4000;
const EFD_CLOEXEC = 0o2000000;
const EVENTFD_ONE = new BigUint64Array([1n]);
const EVENTFD_SCRAP = new BigUint64Array(1);
/** A struct tpacket_stats (tp_packets, tp_drops) and its length, for packetDrops. */
const PACKET_STATS = new Uint32Array(2);
const PACKET_STATS_LENGTH = new Uint32Array(1);
/** SO_ERROR, and the int and length getsockopt fills, for socketError. */
const SO_ERROR = 4;
const SOCKET_ERROR = new Int32Array(1);
const SOCKET_ERROR_LENGTH = new Uint32Array(1);
/** Two struct pollfd (int fd; short events; short revents), as shorts and as the ints that overlay the fds. */
const POLL_TWO = new Int16Array(8);
const POLL_TWO_FDS = new Int32Array(POLL_TWO.buffer);
export const POLLIN = 0x1;
export const POLLHUP = 0x10;
export const O_WRONLY = 1;

/** The address of a buffer's first byte (stable for the buffer's life: Buffers and SharedArrayBuffers do not move). */
export function addressOf(bytes: Uint8Array): bigint {
  return koffi.address(bytes);
}

/**
 * This thread's poll handles not yet closed.  They are stopped when the thread exits: libuv's
 * last run over the handles, as the environment is torn down, would otherwise call back into
 * JavaScript for a descriptor that became readable meanwhile (an unref'd notifier's socket after
 * the exit hook restored flags), which koffi turns into a fatal error (abort, status 134).
 */
const liveWatches = new Set<{ stop(): void }>();

/**
 * Watches `fd` on this thread's event loop (libuv poll, no thread of its own); see koffi.node.poll.
 * `onReadable(failed)`: `failed` when libuv reports an error on the descriptor (POLLERR), after
 * which libuv has stopped watching it until start() is called again.  Never called once the
 * thread's 'exit' event has run.
 */
export function watchReadable(fd: number, onReadable: (failed: boolean) => void): { stop(): void; close(): void; start(writable?: boolean): void; unref(): void } {
  // koffi calls back with libuv's status (negative on error) and the events; its typings name only the events.
  // An exception must not unwind through koffi's native frame (that aborts the whole process):
  // it is thrown again from the event loop, where it is the thread's uncaught exception as any other.
  const callback = ((status: number) => {
    try {
      onReadable(status < 0);
    } catch (error) {
      setImmediate(() => {
        throw error;
      });
    }
  }) as never;
  const handle = koffi.node.poll(fd, { readable: true }, callback);
  if (liveWatches.size === 0) process.once('exit', stopLiveWatches);
  liveWatches.add(handle);
  return {
    start: (writable = false) => handle.start({ readable: true, writable }, callback),
    stop: () => handle.stop(),
    close: () => {
      liveWatches.delete(handle);
      if (liveWatches.size === 0) process.off('exit', stopLiveWatches);
      handle.close();
    },
    unref: () => handle.unref(),
  };
}

function stopLiveWatches(): void {
  for (const handle of liveWatches) handle.stop();
}

/** struct sockaddr_un for `path` (at most 107 bytes; the caller checks). */
export function sockaddrUn(path: string): Buffer {
  const address = Buffer.alloc(110);
  address.writeUInt16LE(AF_UNIX, 0);
  address.write(path, 2, 'utf8');
  return address;
}

/** htons. */
export function htons(value: number): number {
  return ((value & 0xff) << 8) | ((value >> 8) & 0xff);
}
