/**
 * comlink over worker_threads, shared by both ends of a device worker: the endpoint adapter and a
 * transfer handler that carries NetdevError across the thread boundary with its code, device,
 * call and fallback intact (comlink's own handler keeps only message, name and stack).
 */
import type { MessagePort, Worker } from 'node:worker_threads';
// comlink's ESM build (its package.json points Node at the UMD one). Its types stay out of this
// module's exports: the published declarations must resolve without this project's src/types,
// and comlink's own need the DOM library, which a Node program's tsconfig may leave out.
import * as Comlink from 'comlink/dist/esm/comlink.mjs';
import nodeEndpoint from 'comlink/dist/esm/node-adapter.mjs';
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

/**
 * An API as the other thread calls it through comlink: each method, answering through a promise
 * (comlink's Remote<T>, for APIs of methods that take and return plain data).
 */
export type Remote<T> = { readonly [K in keyof T]: T[K] extends (...args: infer A) => infer R ? (...args: A) => Promise<Awaited<R>> : never };

/** Wraps the main thread's side of a worker as a comlink proxy of type T. */
export function wrapWorker<T>(worker: Worker): Remote<T> {
  const remote = Comlink.wrap<T>(nodeEndpoint(worker as unknown as Parameters<typeof nodeEndpoint>[0]));
  return remote as unknown as Remote<T>; // the same proxy: TypeScript cannot relate the two mapped types for an open T
}

/** Exposes `api` to the main thread over the worker's parent port. */
export function exposeToParent(api: object, port: MessagePort): void {
  Comlink.expose(api, nodeEndpoint(port as unknown as Parameters<typeof nodeEndpoint>[0]));
}
