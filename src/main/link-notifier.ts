/**
 * The rtnetlink change notifier (main thread), as the seed's linux_netdev_notifier: per network
 * namespace, one NETLINK_ROUTE socket joined to the link and IPv4/IPv6 address groups, read
 * without blocking when a libuv poll handle says it is readable (no thread, no timer; the handle
 * does not keep the process alive).  Each parsed message goes to every listener; a socket overrun
 * (ENOBUFS) or an unparsable message goes as null: "anything may have changed" (the seed's
 * report_notify_error).  A second socket answers RTM_GETLINK queries (statistics, carrier, VLAN).
 */
import { NetdevError } from '../common/errors.js';
import { check, errnoError, errnoName, lastErrno, MSG_DONTWAIT, SOCK_CLOEXEC, SOCK_NONBLOCK, SOCK_RAW, sys, watchReadable } from '../sys/libc.js';
import type { Netns } from '../sys/netns.js';
import {
  AF_NETLINK, getLinkRequest, NETLINK_ROUTE, netlinkAddress, parseRouteMessages, RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR, RTMGRP_LINK,
  type AddressMessage, type LinkMessage,
} from '../sys/netlink.js';

/** A change: a link or address message, or null for "anything may have changed". */
export type RouteListener = (change: LinkMessage | AddressMessage | null) => void;

const RECEIVE_BYTES = 256 * 1024;

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
      const poll = watchReadable(fd, () => this.readAll());
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

  /** Reads everything queued on the event socket and hands it out. */
  private readAll(): void {
    const events = this.events;
    if (!events) return;
    for (;;) {
      const length = sys.recv(events.fd, this.buffer, this.buffer.length, MSG_DONTWAIT);
      if (length < 0) {
        const code = errnoName(lastErrno());
        if (code === 'ENOBUFS') this.emit(null); // messages were lost: anything may have changed
        if (code === 'ENOBUFS' || code === 'EINTR') continue;
        return;
      }
      for (const message of parseRouteMessages(this.buffer, length)) {
        if (message.kind === 'link' || message.kind === 'address') this.emit(message);
        else if (message.kind === 'unparsable') this.emit(null);
      }
    }
  }

  private emit(change: LinkMessage | AddressMessage | null): void {
    for (const listener of [...this.listeners]) listener(change);
  }

  /** Closes the sockets (every listener must have left). */
  close(): void {
    if (this.queryFd >= 0) sys.close(this.queryFd);
    this.queryFd = -1;
  }

  /** The kernel's RTM_NEWLINK answer for `ifindex` (statistics included); ENODEV etc. as NetdevError. */
  queryLink(ifindex: number): LinkMessage {
    if (this.queryFd < 0) this.queryFd = routeSocket(this.netns, 0);
    const seq = ++this.seq;
    check(sys.send(this.queryFd, getLinkRequest(ifindex, seq), 0), 'send', 'RTM_GETLINK');
    // rtnetlink answers within send(): the reply is already queued.
    for (;;) {
      const length = check(sys.recv(this.queryFd, this.buffer, this.buffer.length, MSG_DONTWAIT), 'recv', 'RTM_GETLINK answer');
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
