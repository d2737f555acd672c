/**
 * comlink over worker_threads, shared by both ends of a device worker: the endpoint adapter and a
 * transfer handler that carries NetdevError across the thread boundary with its code, device,
 * call and fallback intact (comlink's own handler keeps only message, name and stack).
 */
import * as Comlink from 'comlink/dist/esm/comlink.mjs';
import nodeEndpoint from 'comlink/dist/esm/node-adapter.mjs';
import type { MessagePort, Worker } from 'node:worker_threads';
import { NetdevError, type NetdevErrorFields } from './errors.js';

type Thrown = { netdev: NetdevErrorFields; stack?: string | undefined } | { message: string; name: string; stack?: string | undefined } | { value: unknown };

const defaultThrowHandler = Comlink.transferHandlers.get('throw')!;

Comlink.transferHandlers.set('throw', {
  canHandle: defaultThrowHandler.canHandle,
  serialize({ value }: { value: unknown }): [Thrown, []] {
    if (value instanceof NetdevError) return [{ netdev: value.toFields(), stack: value.stack }, []];
    if (value instanceof Error) return [{ message: value.message, name: value.name, stack: value.stack }, []];
    return [{ value }, []];
  },
  deserialize(thrown: Thrown): never {
    if ('netdev' in thrown) {
      const error = new NetdevError(thrown.netdev);
      if (thrown.stack) error.stack = thrown.stack;
      throw error;
    }
    if ('message' in thrown) throw Object.assign(new Error(thrown.message), thrown);
    throw thrown.value;
  },
} as Comlink.TransferHandler<{ value: unknown }, Thrown>);

/** Wraps the main thread's side of a worker as a comlink proxy of type T. */
export function wrapWorker<T>(worker: Worker): Comlink.Remote<T> {
  return Comlink.wrap<T>(nodeEndpoint(worker as unknown as Parameters<typeof nodeEndpoint>[0]));
}

/** Exposes `api` to the main thread over the worker's parent port. */
export function exposeToParent(api: object, port: MessagePort): void {
  Comlink.expose(api, nodeEndpoint(port as unknown as Parameters<typeof nodeEndpoint>[0]));
}

export { Comlink };
