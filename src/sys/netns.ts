/**
 * Network namespaces.  setns(2) moves only the calling thread, and a socket stays in the namespace
 * it was created in: so a device worker enters its device's namespace for good, and the main
 * thread enters one just long enough to create a socket (or read /proc/thread-self/net), then
 * comes back.  Names are those of `ip netns` (/var/run/netns/NAME); absolute paths (e.g.
 * /proc/PID/ns/net) are taken as they are.
 */
import { readFileSync } from 'node:fs';
import { netdevError } from '../common/errors.js';
import { check, CLONE_NEWNET, errnoError, lastErrno, O_CLOEXEC, O_RDONLY, sys } from './libc.js';

const NETNS_DIR = '/var/run/netns';
const NAME_PATTERN = /^[^/\s\0]{1,255}$/;

/** The path of a namespace given by `ip netns` name or absolute path; EINVAL for anything else. */
export function netnsPath(spec: string): string {
  if (spec.startsWith('/') && !spec.includes('\0')) return spec;
  if (NAME_PATTERN.test(spec) && spec !== '.' && spec !== '..') return `${NETNS_DIR}/${spec}`;
  throw netdevError('EINVAL', `invalid network namespace ${JSON.stringify(spec)} (a name under ${NETNS_DIR} or an absolute path)`);
}

/**
 * The argument vector running iproute2's `program` (ip, tc) with `args` in namespace `spec`
 * (undefined: this process's own): `-n NAME` for an `ip netns` name, nsenter for a path.
 */
export function iproute2InNetns(spec: string | undefined, program: string, args: readonly string[]): string[] {
  if (spec === undefined) return [program, ...args];
  return spec.startsWith('/') ? ['nsenter', `--net=${spec}`, program, ...args] : [program, '-n', spec, ...args];
}

/** Moves this thread into the namespace `fd` refers to; EPERM names CAP_SYS_ADMIN, which setns(2) needs. */
function setns(fd: number, detail: string): void {
  if (sys.setns(fd, CLONE_NEWNET) < 0) throw errnoError(lastErrno(), 'setns', detail, undefined, 'CAP_SYS_ADMIN');
}

let homeFd = -1;

/** This thread's own namespace, opened once (for coming back after run()). */
function home(): number {
  if (homeFd < 0) homeFd = check(sys.open('/proc/thread-self/ns/net', O_RDONLY | O_CLOEXEC), 'setns', 'cannot open this thread\'s network namespace');
  return homeFd;
}

export class Netns {
  private constructor(
    /** As given: a name or a path. */
    readonly spec: string,
    private readonly fd: number,
  ) {}

  /** Opens the namespace `spec`; ENOENT if it does not exist. */
  static open(spec: string): Netns {
    const path = netnsPath(spec);
    const fd = sys.open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) check(fd, 'setns', `cannot open network namespace ${path}`);
    return new Netns(spec, fd);
  }

  /** Moves this thread into namespace `spec` for good (a device worker); keeps no descriptor open. */
  static enter(spec: string): void {
    const netns = Netns.open(spec);
    try {
      netns.enter();
    } finally {
      netns.close();
    }
  }

  /** Moves this thread into the namespace for good. */
  enter(): void {
    setns(this.fd, `cannot enter network namespace ${this.spec}`);
  }

  /** Runs `fn` (synchronous) with this thread inside the namespace, then comes back. */
  run<T>(fn: () => T): T {
    const back = home();
    this.enter();
    try {
      return fn();
    } finally {
      setns(back, 'cannot return to the original network namespace');
    }
  }

  close(): void {
    sys.close(this.fd);
  }
}

/** Reads a /proc/thread-self/net file as seen from `netns` (or this thread's own namespace). */
export function readProcNet(file: string, netns: Netns | null): string {
  const read = () => readFileSync(`/proc/thread-self/net/${file}`, 'utf8');
  return netns ? netns.run(read) : read();
}
