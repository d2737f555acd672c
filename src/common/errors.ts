/**
 * NetdevError: every failure of the library, errno-style as OVS's netdev.c: `.code` is the
 * errno name ('ENODEV'), `.errno` its number on this system, `.device` the device name (if any),
 * `.call` the API call that failed.  Where OVS defines the value an out-parameter takes on
 * failure (getMtu -> 1500, getIn4 -> 0.0.0.0, getVlanVid -> 0, ...), it is in `.fallback`.
 * The class is shared by both sides of a worker: it crosses comlink intact (see rpc.ts).
 */
import { constants } from 'node:os';

const ERRNO = constants.errno as Record<string, number>;

/** Builds the message: "dummy:a: setEtheraddr: EINVAL: invalid MAC address 'zz'". */
function formatMessage(code: string, device: string | undefined, call: string, detail: string | undefined): string {
  const parts = [device, call, code].filter((p) => p);
  return detail ? `${parts.join(': ')}: ${detail}` : parts.join(': ');
}

export interface NetdevErrorFields {
  readonly code: string;
  readonly device?: string | undefined;
  readonly call?: string | undefined;
  readonly detail?: string | undefined;
  readonly fallback?: unknown;
}

export class NetdevError extends Error {
  override readonly name = 'NetdevError';
  readonly code: string;
  readonly errno: number;
  readonly device: string | undefined;
  readonly call: string;
  readonly detail: string | undefined;
  readonly fallback: unknown;

  constructor(fields: NetdevErrorFields, options?: { cause?: unknown }) {
    super(formatMessage(fields.code, fields.device, fields.call ?? '', fields.detail), options);
    this.code = fields.code;
    this.errno = ERRNO[fields.code] ?? 0;
    this.device = fields.device;
    this.call = fields.call ?? '';
    this.detail = fields.detail;
    this.fallback = fields.fallback;
  }

  /** A copy naming `device` and `call` where this error does not yet name them. */
  within(device: string | undefined, call: string, fallback?: unknown): NetdevError {
    if (this.device !== undefined && this.call && fallback === undefined) return this;
    const copy = new NetdevError(
      {
        code: this.code,
        device: this.device ?? device,
        call: this.call || call,
        detail: this.detail,
        fallback: fallback ?? this.fallback,
      },
      { cause: this.cause },
    );
    // Keep where the error arose, under the message that now names device and call.
    const frames = this.stack?.indexOf('\n    at ') ?? -1;
    if (frames >= 0) copy.stack = `${copy.name}: ${copy.message}${this.stack!.slice(frames)}`;
    return copy;
  }

  /** Plain fields for crossing a thread boundary. */
  toFields(): NetdevErrorFields {
    return { code: this.code, device: this.device, call: this.call, detail: this.detail, fallback: this.fallback };
  }
}

/** Shorthand for `new NetdevError({ code, detail })`, for code that does not know device or call. */
export function netdevError(code: string, detail?: string): NetdevError {
  return new NetdevError({ code, detail });
}

/**
 * Turns anything thrown by a provider into a NetdevError naming `device` and `call`: a
 * NetdevError keeps its code, a Node system error (err.code 'ENOENT' ...) keeps its errno name,
 * anything else becomes EIO with its message.
 */
export function toNetdevError(error: unknown, device: string | undefined, call: string, fallback?: unknown): NetdevError {
  if (error instanceof NetdevError) return error.within(device, call, fallback);
  const sys = error as { code?: unknown; message?: unknown };
  const code = typeof sys?.code === 'string' && sys.code in ERRNO ? sys.code : 'EIO';
  const detail = error instanceof Error ? error.message : String(error);
  return new NetdevError({ code, device, call, detail, fallback }, { cause: error });
}
