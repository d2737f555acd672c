/**
 * AbortSignal support for the waits a caller may cancel (frames()/batches() iteration, send,
 * sendBatch, open).  An aborted wait fails as every failure of the library does, with a
 * NetdevError: code ECANCELED, naming the device and the call, with the signal's reason as
 * `cause` (Node's own APIs reject with an AbortError instead; `error.cause` is what they carry).
 */
import { NetdevError } from '../common/errors.js';

/** The option `signal` as given: undefined, or an AbortSignal; EINVAL for anything else. */
export function checkSignal(signal: unknown, device: string, call: string): AbortSignal | undefined {
  if (signal === undefined || signal instanceof AbortSignal) return signal;
  throw new NetdevError({ code: 'EINVAL', device, call, detail: 'signal must be an AbortSignal' });
}

/** The error of a wait that `signal` aborted: ECANCELED naming `device` and `call`, caused by the signal's reason. */
export function abortError(signal: AbortSignal, device: string, call: string, detail = 'aborted'): NetdevError {
  return new NetdevError({ code: 'ECANCELED', device, call, detail }, { cause: signal.reason });
}

/** Throws abortError() if `signal` has aborted. */
export function throwIfAborted(signal: AbortSignal | undefined, device: string, call: string): void {
  if (signal?.aborted) throw abortError(signal, device, call);
}
