/**
 * What the Linux providers (system, tap, pltap, and the tunnel kinds) keep per network namespace:
 * one AF_INET datagram socket for the ioctls (created inside its namespace, so it answers for that
 * namespace) and one rtnetlink notifier (change events, queries, and the requests that make and
 * delete tunnel devices), both opened on first use and closed with the provider.
 */
import { AF_INET, check, SOCK_CLOEXEC, SOCK_DGRAM, sys } from '../../sys/libc.js';
import { Netns } from '../../sys/netns.js';
import type { ProviderContext } from '../contract.js';
import { LinkNotifiers, type LinkNotifier } from './link-notifier.js';

/** One AF_INET datagram socket for the ioctls of one namespace. */
export interface ControlSocket {
  fd: number;
  netns: Netns | null;
}

/** The control sockets of a provider, one per namespace, each created inside its namespace on first use. */
export class ControlSockets {
  private readonly sockets = new Map<string, ControlSocket>();

  /** Closes every socket and namespace descriptor. */
  close(): void {
    for (const { fd, netns } of this.sockets.values()) {
      sys.close(fd);
      netns?.close();
    }
    this.sockets.clear();
  }

  /** The socket of namespace `spec` (undefined: this process's own). */
  get(spec: string | undefined): ControlSocket {
    const key = spec ?? '';
    let socket = this.sockets.get(key);
    if (!socket) {
      const netns = spec === undefined ? null : Netns.open(spec);
      const open = () => check(sys.socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), 'socket', 'cannot create the AF_INET control socket');
      socket = { fd: netns ? netns.run(open) : open(), netns };
      this.sockets.set(key, socket);
    }
    return socket;
  }
}

/** What a Linux device needs from its provider: its namespace's control socket and notifier, and the job pool. */
export interface DeviceServices {
  socket: ControlSocket;
  notifier: LinkNotifier;
  runProgram: ProviderContext['runProgram'];
}

/** The services a Linux provider keeps: per namespace, a control socket and a notifier. */
export class LinuxServices {
  private readonly sockets = new ControlSockets();
  private readonly notifiers = new LinkNotifiers();
  private runProgram: ProviderContext['runProgram'] | null = null;

  /** Provider init: keeps the job pool, and opens this namespace's control socket (failing init if it cannot). */
  init(context: ProviderContext): void {
    this.runProgram = context.runProgram;
    this.sockets.get(undefined);
  }

  /** Closes the sockets of every namespace (after every device closed). */
  close(): void {
    this.notifiers.close();
    this.sockets.close();
  }

  /** The services of a device in namespace `netns` (undefined: this process's own). */
  forNamespace(netns: string | undefined): DeviceServices {
    const socket = this.sockets.get(netns);
    return { socket, notifier: this.notifiers.get(netns, socket.netns), runProgram: this.runProgram! };
  }
}
