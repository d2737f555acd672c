/**
 * The rtnetlink change notifier (main thread), as OVS's linux_netdev_notifier: per network
 * namespace, one NETLINK_ROUTE socket joined to the link and IPv4/IPv6 address groups, read
 * without blocking when a libuv poll handle says it is readable (no thread, no timer; the handle
 * does not keep the process alive).  Each parsed message goes to every listener.  After a socket
 * overrun (ENOBUFS: messages were lost) or an unparsable message, the notifier lists every link
 * again (an RTM_GETLINK dump) and hands the list out as a resync, from which each listener learns
 * what changed meanwhile, deletions included; then it goes on listening (libuv stops a poll handle
 * on the overrun's POLLERR, so it is started again).  A second socket answers RTM_GETLINK queries
 * and dumps (statistics, carrier, VLAN) and carries requests that change links (the tunnel
 * provider's RTM_NEWLINK, RTM_DELLINK, RTM_NEWNEIGH, RTM_DELNEIGH).
 */
import { NetdevError } from '../../common/errors.js';
import { check, errnoError, errnoName, lastErrno, MSG_DONTWAIT, SOCK_CLOEXEC, SOCK_NONBLOCK, SOCK_RAW, sys, watchReadable } from '../../sys/libc.js';
import type { Netns } from '../../sys/netns.js';
import {
  AF_NETLINK, dumpLinksRequest, getLinkRequest, NETLINK_CAP_ACK, NETLINK_EXT_ACK, NETLINK_ROUTE, netlinkAddress, parseRouteMessages, RTMGRP_IPV4_IFADDR,
  RTMGRP_IPV6_IFADDR, RTMGRP_LINK, SOL_NETLINK, type AddressMessage, type LinkMessage,
} from '../../sys/netlink.js';

/**
 * After messages were lost (or one could not be parsed), anything may have changed: `links` are
 * the namespace's links as they are now, by ifindex (a link not in it is gone), or null if they
 * could not be listed.
 */
export interface LinkResync {
  kind: 'resync';
  links: ReadonlyMap<number, LinkMessage> | null;
}

/** A change: a link or address message, or a resync. */
export type RouteChange = LinkMessage | AddressMessage | LinkResync;
export type RouteListener = (change: RouteChange) => void;

const RECEIVE_BYTES = 256 * 1024;
/** Dumps to try while links keep changing under them (NLM_F_DUMP_INTR) before taking the last one as it is. */
const DUMP_ATTEMPTS = 3;

function routeSocket(netns: Netns | null, groups: number): number {
  const open = () => {
    const fd = check(sys.socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_ROUTE), 'socket', 'NETLINK_ROUTE socket');
    if (sys.bind(fd, netlinkAddress(groups)) < 0) {
      const error = errnoError(lastErrno(), 'bind', 'NETLINK_ROUTE bind');
      sys.close(fd);
      throw error;
    }
    return fd;
  };
  return netns ? netns.run(open) : open();
}

export class LinkNotifier {
  private readonly listeners = new Set<RouteListener>();
  private readonly buffer = new Uint8Array(RECEIVE_BYTES);
  private events: { fd: number; poll: ReturnType<typeof watchReadable> } | null = null;
  private queryFd = -1;
  private seq = 0;

  constructor(private readonly netns: Netns | null) {}

  /** Calls `listener` with every change until the returned function is called; the socket opens with the first listener. */
  subscribe(listener: RouteListener): () => void {
    if (!this.events) {
      const fd = routeSocket(this.netns, RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR);
      const poll = watchReadable(fd, (failed) => this.readAll(failed));
      poll.unref();
      this.events = { fd, poll };
    }
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0 && this.events) {
        this.events.poll.close();
        sys.close(this.events.fd);
        this.events = null;
      }
    };
  }

  /**
   * Reads everything queued on the event socket and hands it out, then a resync if messages were
   * lost or unparsable.  `pollFailed`: libuv reported the socket's error (an overrun's POLLERR)
   * and stopped the poll handle, which is started again.
   */
  private readAll(pollFailed: boolean): void {
    const events = this.events;
    let resync = false;
    // A listener may unsubscribe the last and close the socket: stop reading it then.
    while (this.events === events && events) {
      const length = sys.recv(events.fd, this.buffer, this.buffer.length, MSG_DONTWAIT);
      if (length < 0) {
        const code = errnoName(lastErrno());
        if (code === 'ENOBUFS') resync = true; // messages were lost: anything may have changed
        if (code === 'ENOBUFS' || code === 'EINTR') continue;
        break;
      }
      for (const message of parseRouteMessages(this.buffer, length)) {
        if (message.kind === 'link' || message.kind === 'address') this.emit(message);
        else if (message.kind === 'unparsable') resync = true;
      }
    }
    if (pollFailed && this.events === events && events) events.poll.start();
    if (resync && this.listeners.size > 0) this.emit({ kind: 'resync', links: this.dumpLinks() });
  }

  private emit(change: RouteChange): void {
    for (const listener of [...this.listeners]) listener(change);
  }

  /**
   * Every link of the namespace now, by ifindex: an RTM_GETLINK dump, again while links change
   * under it (an inconsistent dump may miss a link that exists).  Null if no consistent dump
   * could be had.
   */
  private dumpLinks(): Map<number, LinkMessage> | null {
    try {
      for (let attempt = 0; attempt < DUMP_ATTEMPTS; attempt++) {
        const dump = this.dumpOnce();
        if (!dump.interrupted) return dump.links;
      }
      return null;
    } catch (error) {
      // What is left of the dump on the socket must not be taken for a later answer.
      if (this.queryFd >= 0) sys.close(this.queryFd);
      this.queryFd = -1;
      process.emitWarning(`netdev: cannot list the links after lost rtnetlink messages: ${(error as Error).message}`);
      return null;
    }
  }

  private dumpOnce(): { links: Map<number, LinkMessage>; interrupted: boolean } {
    const fd = this.querySocket();
    const seq = ++this.seq;
    check(sys.send(fd, dumpLinksRequest(seq), 0), 'send', 'RTM_GETLINK dump');
    const links = new Map<number, LinkMessage>();
    // The kernel writes the first part within send(), and each next part within the recv() that makes room for it.
    for (;;) {
      const length = check(sys.recv(fd, this.buffer, this.buffer.length, MSG_DONTWAIT), 'recv', 'RTM_GETLINK dump');
      for (const message of parseRouteMessages(this.buffer, length)) {
        if (message.kind === 'link') links.set(message.ifindex, message);
        else if (message.kind === 'done' && message.seq === seq) return { links, interrupted: message.interrupted };
        else if (message.kind === 'error' && message.seq === seq && message.errno !== 0) {
          throw new NetdevError({ code: errnoName(message.errno), detail: 'RTM_GETLINK dump' });
        } else if (message.kind === 'unparsable') {
          throw new NetdevError({ code: 'EPROTO', detail: `RTM_GETLINK dump: ${message.reason}` });
        }
      }
    }
  }

  /** The socket for requests, its errors carrying the kernel's message (where the kernel can: the options are best effort). */
  private querySocket(): number {
    if (this.queryFd < 0) {
      this.queryFd = routeSocket(this.netns, 0);
      sys.setsockoptInt(this.queryFd, SOL_NETLINK, NETLINK_EXT_ACK, 1);
      sys.setsockoptInt(this.queryFd, SOL_NETLINK, NETLINK_CAP_ACK, 1);
    }
    return this.queryFd;
  }

  /** Closes the sockets (every listener must have left). */
  close(): void {
    if (this.queryFd >= 0) sys.close(this.queryFd);
    this.queryFd = -1;
  }

  /**
   * Sends the request `build(seq)` makes (one asking for an acknowledgement: NLM_F_ACK) on the
   * query socket, in this namespace, and returns once the kernel acknowledged it; the kernel's
   * refusal is a NetdevError with its errno, its detail `what` (which request it was) and the
   * kernel's own message if it gave one.  Synchronous (also used from exit hooks).
   */
  request(build: (seq: number) => Buffer, what: string): void {
    const fd = this.querySocket();
    const seq = ++this.seq;
    check(sys.send(fd, build(seq), 0), 'send', what);
    // rtnetlink answers within send(): the acknowledgement is already queued.
    for (;;) {
      const length = check(sys.recv(fd, this.buffer, this.buffer.length, MSG_DONTWAIT), 'recv', `${what}: answer`);
      for (const message of parseRouteMessages(this.buffer, length)) {
        if (message.kind !== 'error' || message.seq !== seq) continue;
        if (message.errno !== 0) throw new NetdevError({ code: errnoName(message.errno), detail: message.message ? `${what}: the kernel says: ${message.message}` : what });
        return;
      }
    }
  }

  /** The kernel's RTM_NEWLINK answer for `ifindex` (statistics included); ENODEV etc. as NetdevError. */
  queryLink(ifindex: number): LinkMessage {
    const fd = this.querySocket();
    const seq = ++this.seq;
    check(sys.send(fd, getLinkRequest(ifindex, seq), 0), 'send', 'RTM_GETLINK');
    // rtnetlink answers within send(): the reply is already queued.
    for (;;) {
      const length = check(sys.recv(fd, this.buffer, this.buffer.length, MSG_DONTWAIT), 'recv', 'RTM_GETLINK answer');
      for (const message of parseRouteMessages(this.buffer, length)) {
        if (message.kind === 'link' && message.ifindex === ifindex) return message;
        if (message.kind === 'error' && message.seq === seq && message.errno !== 0) {
          throw new NetdevError({ code: errnoName(message.errno), detail: `RTM_GETLINK for ifindex ${ifindex}` });
        }
      }
    }
  }
}

/** One LinkNotifier per namespace (undefined: this process's own), created on first use. */
export class LinkNotifiers {
  private readonly notifiers = new Map<string, LinkNotifier>();

  close(): void {
    for (const notifier of this.notifiers.values()) notifier.close();
    this.notifiers.clear();
  }

  get(spec: string | undefined, netns: Netns | null): LinkNotifier {
    const key = spec ?? '';
    let notifier = this.notifiers.get(key);
    if (!notifier) {
      notifier = new LinkNotifier(netns);
      this.notifiers.set(key, notifier);
    }
    return notifier;
  }
}
