/**
 * The main thread's side of one device worker.  comlink alone would leave a call pending forever
 * if the worker died (and releaseProxy does not stop a worker), so every call is raced against
 * the worker's end: when the worker crashes, exits or is stopped, every pending and later call
 * rejects with a NetdevError, and onFailure hears about an unexpected end exactly once.
 */
import { Bell } from '../ring/bell.js';
import { Worker } from 'node:worker_threads';
import { wrapWorker, type Remote } from '../common/rpc.js';
import { NetdevError, toNetdevError } from '../common/errors.js';
import type { DeviceWorkerApi, DeviceWorkerSpec } from '../workers/device-worker.js';
import { workerExecArgv } from './worker-exec-argv.js';

const WORKER_URL = new URL('../workers/device-worker.js', import.meta.url);
const STOP_GRACE_MS = 2000;

export class WorkerClient {
  private readonly worker: Worker;
  private readonly remote: Remote<DeviceWorkerApi>;
  private readonly ended: Promise<never>;
  private endWith!: (error: NetdevError) => void;
  private endError: NetdevError | null = null;
  /** The worker's bell. */
  private bell: Bell | null = null;
  private stopping = false;

  /**
   * Starts a worker for device `name`; `onFailure` is called once if it dies before stop().
   * Resolves once the device's I/O half is running; rejects (and stops the worker) if it fails.
   */
  static async start(spec: DeviceWorkerSpec, onFailure: (error: NetdevError) => void): Promise<WorkerClient> {
    const client = new WorkerClient(spec.name, onFailure);
    client.bell = new Bell(spec.bell);
    try {
      await client.call((api) => api.start(spec));
    } catch (error) {
      await client.stop();
      throw error;
    }
    return client;
  }

  private constructor(
    private readonly name: string,
    onFailure: (error: NetdevError) => void,
  ) {
    this.worker = new Worker(WORKER_URL, { execArgv: workerExecArgv() });
    this.remote = wrapWorker<DeviceWorkerApi>(this.worker);
    this.ended = new Promise<never>((_, reject) => {
      this.endWith = (error) => {
        if (this.endError) return;
        this.endError = error;
        reject(error);
        if (!this.stopping) onFailure(error);
      };
    });
    this.ended.catch(() => {});
    this.worker.on('error', (error) => {
      const cause = toNetdevError(error, name, 'worker');
      this.endWith(
        new NetdevError(
          { code: cause.code, device: name, call: 'worker', detail: `device worker crashed: ${cause.detail ?? cause.message}` },
          { cause: error },
        ),
      );
    });
    this.worker.on('exit', (code) => {
      this.endWith(
        new NetdevError({
          code: this.stopping ? 'EBADF' : 'EIO',
          device: name,
          call: 'worker',
          detail: this.stopping ? 'device is closed' : `device worker exited with code ${code}`,
        }),
      );
    });
  }

  /** The error the worker ended with, or null while it runs. */
  get failure(): NetdevError | null {
    return this.endError;
  }

  /** Calls the worker; rejects with a NetdevError naming `call` if the call fails or the worker ends first. */
  async call<T>(invoke: (api: Remote<DeviceWorkerApi>) => Promise<T>, call = 'worker'): Promise<T> {
    if (this.endError) throw this.endError.within(this.name, call);
    try {
      const reply = invoke(this.remote);
      this.bell?.ring(); // a worker waiting in poll(2) hears the call only through its bell
      return await Promise.race([reply, this.ended]);
    } catch (error) {
      throw toNetdevError(error, this.name, call);
    }
  }

  /**
   * Stops the I/O loop, closes the I/O half and ends the worker (terminating it if it does not
   * stop within a grace period).  Every call still pending rejects.  Never rejects.
   */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    if (!this.endError) {
      let timer: NodeJS.Timeout | undefined;
      const grace = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, STOP_GRACE_MS);
      });
      await Promise.race([this.remote.stop().catch(() => {}), this.ended.catch(() => {}), grace]);
      clearTimeout(timer);
    }
    await this.worker.terminate();
    this.endWith(new NetdevError({ code: 'EBADF', device: this.name, call: 'worker', detail: 'device is closed' }));
  }
}
