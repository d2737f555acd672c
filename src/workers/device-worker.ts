/**
 * The device worker: one per open device.  It loads the provider's I/O half and runs the loop
 * that moves frames device -> RX ring and TX ring -> device in rounds of bounded batches.  When a
 * round moves nothing it sleeps on its bell (Atomics.waitAsync), so an idle device costs no CPU
 * and control calls from the main thread (comlink messages) are served while it sleeps.  A busy
 * loop yields to the event loop every few milliseconds so control calls are never starved.
 * While a worker agent is attached (see agent-contract.ts), its round() takes the place of
 * receive(), and after traffic the loop waits hot, in the agent's waitHot(), for a while before
 * it sleeps (see run()).
 *
 * If the I/O half throws, the error is rethrown outside any promise: the worker dies and the main
 * thread puts the device in an error state (a crashed worker harms no other device).
 */
import { parentPort } from 'node:worker_threads';
import { exposeToParent } from '../common/rpc.js';
import { netdevError } from '../common/errors.js';
import { Bell } from '../ring/bell.js';
import { RingReader, RingWriter, type RingDescriptor } from '../ring/ring.js';
import type { CaptureSpec } from '../ring/capture-format.js';
import { CounterBatch, DeviceShared } from '../ring/device-shared.js';
import type { CreateIo, DeviceIo, Ethertype, IoContext } from '../providers/contract.js';
import { HOT_FRAMES, type CreateAgent, type WorkerAgent } from './agent-contract.js';
import type { CaptureTap } from './capture-tap.js';

/** Everything the main thread hands a new device worker. */
export interface DeviceWorkerSpec {
  name: string;
  ethertype: Ethertype;
  /** Frames in both rings are vnet frames (IoContext.offloads). */
  offloads: boolean;
  /** URL of the provider's I/O module (exports createIo). */
  ioModule: string;
  options: unknown;
  rx: RingDescriptor;
  tx: RingDescriptor;
  shared: SharedArrayBuffer;
  bell: SharedArrayBuffer;
}

/** The calls the main thread makes on a device worker (through comlink). */
export interface DeviceWorkerApi {
  /** Creates the I/O half and starts the loop; rejects if the I/O half cannot be created. */
  start(spec: DeviceWorkerSpec): Promise<void>;
  /** Forwards to DeviceIo.control; EOPNOTSUPP if the I/O half has none. */
  control(op: string, arg: unknown): Promise<unknown>;
  /** Discards every frame waiting on the device (DeviceIo.drain). */
  drain(): Promise<void>;
  /** Starts capture `id`: copying frames into its capture ring. */
  startCapture(id: number, spec: CaptureSpec): Promise<void>;
  /** Stops capture `id`, publishing what it copied. */
  stopCapture(id: number): Promise<void>;
  /** A new socket on the device for other workers to send on (DeviceIo.sendingSocket); EOPNOTSUPP without one. */
  sendingSocket(): Promise<number>;
  /** Loads the worker agent module at `url` and attaches it with `options`; resolves with its number and its `started`.  EBUSY if one is attached or attaching. */
  attachAgent(url: string, options: unknown): Promise<{ id: number; started: unknown }>;
  /** Calls agent `id`'s control(op, arg); EOPNOTSUPP if it has none, EBADF if it is not the one attached. */
  agentCall(id: number, op: string, arg: unknown): Promise<unknown>;
  /** Detaches agent `id` (the worker receives into the RX ring again); resolves with what its close() returned.  EBADF if it is not the one attached. */
  detachAgent(id: number): Promise<unknown>;
  /** Stops the loop and closes the I/O half. */
  stop(): Promise<void>;
}

const RX_BUDGET = 256;
const TX_BUDGET = 256;
const YIELD_AFTER_MS = 2;
/** A worker with an agent waits in its waitHot for up to HOT_WAIT_MS at a time, until HOT_IDLE_WAITS waits in a row found nothing. */
const HOT_WAIT_MS = 10;
const HOT_IDLE_WAITS = 10;

const yieldToEventLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

class IoLoop {
  private stopping = false;
  private readonly done: Promise<void>;
  /** The captures in progress, by id. */
  readonly captures = new Map<number, CaptureTap>();
  /** The worker agent attached, if any. */
  agent: WorkerAgent | null = null;
  /** Hot waits in a row that found nothing (see run); any round that moves frames resets it. */
  private idleHotWaits = HOT_IDLE_WAITS;

  constructor(
    private readonly io: DeviceIo,
    private readonly context: IoContext,
    private readonly tx: RingReader,
  ) {
    // Frames a socket callback says are waiting are moved inside the callback (see Bell.ringHere).
    context.bell.onRingHere = () => (this.stopping ? 0 : this.round());
    this.done = this.run();
    this.done.catch((error: unknown) => {
      setImmediate(() => {
        throw error;
      });
    });
  }

  /** One round: a batch each way, then one publish, one release and one counter flush. */
  round(): number {
    const received = this.agent ? this.agent.round(RX_BUDGET) : this.io.receive(RX_BUDGET);
    const sent = this.io.transmit(this.tx, TX_BUDGET);
    for (const capture of this.captures.values()) capture.transmitted(sent);
    this.tx.release();
    this.publish();
    for (const capture of this.captures.values()) capture.received();
    if (received + sent > 0) this.idleHotWaits = 0;
    return received + sent;
  }

  /** Makes what the I/O half wrote visible to the main thread: counters first, so stats never lag a frame already readable. */
  publish(): void {
    this.context.counters.flush();
    this.context.rx.publish();
  }

  /** After a control call: publish what it wrote and wake the loop, whose sources may have changed. */
  afterControl(): void {
    this.publish();
    this.context.bell.ringHere();
  }

  private async run(): Promise<void> {
    const { bell } = this.context;
    let lastYield = performance.now();
    while (!this.stopping) {
      if (this.round() > 0) {
        if (performance.now() - lastYield > YIELD_AFTER_MS) {
          await yieldToEventLoop();
          lastYield = performance.now();
        }
        continue;
      }
      const hot = this.agent?.waitHot;
      if (hot && this.idleHotWaits < HOT_IDLE_WAITS) {
        // Hot: an agent's worker that moved frames lately waits in the agent's waitHot (poll(2) on
        // its socket and its bell's eventfd, for the Switch's).  Its event loop gets a turn when
        // the bell rang (a control call, or frames to send), when a wait timed out, and every
        // YIELD_AFTER_MS.
        bell.prepare(); // a ring now also reaches the agent's wait
        const moved = this.stopping ? 0 : this.round();
        const woke = moved === 0 ? hot.call(this.agent, HOT_WAIT_MS) : 0;
        bell.cancel();
        if ((woke & HOT_FRAMES) !== 0) this.round();
        if (moved === 0 && woke === 0) this.idleHotWaits++;
        if ((moved === 0 && (woke & HOT_FRAMES) === 0) || performance.now() - lastYield > YIELD_AFTER_MS) {
          await yieldToEventLoop();
          lastYield = performance.now();
        }
        continue;
      }
      const seq = bell.prepare();
      if (this.stopping || this.round() > 0) {
        bell.cancel();
        continue;
      }
      const sleeping = bell.sleep(seq);
      if (sleeping) await sleeping;
      lastYield = performance.now();
    }
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.context.bell.ringHere();
    await this.done;
  }
}

let io: DeviceIo | null = null;
let loop: IoLoop | null = null;
/** True while attachAgent loads an agent; the number of the agent attached last. */
let attaching = false;
let agentId = 0;

/** The agent attached as number `id`; EBADF if it is not (detached, or another one since). */
function attachedAgent(id: number): WorkerAgent {
  requireIo();
  if (!loop!.agent || id !== agentId) throw netdevError('EBADF', 'that worker agent is not attached to this device');
  return loop!.agent;
}
let rings: { rx: RingDescriptor; tx: RingDescriptor } | null = null;
let context: IoContext | null = null;

function requireIo(): DeviceIo {
  if (!io) throw netdevError('EBADF', 'device worker has not started');
  return io;
}

const api: DeviceWorkerApi = {
  async start(spec) {
    if (io) throw netdevError('EBUSY', 'device worker already started');
    const module = (await import(spec.ioModule)) as { createIo?: CreateIo };
    if (typeof module.createIo !== 'function') {
      throw netdevError('EINVAL', `I/O module ${spec.ioModule} does not export createIo`);
    }
    const shared = new DeviceShared(spec.shared);
    context = {
      name: spec.name,
      ethertype: spec.ethertype,
      offloads: spec.offloads,
      options: spec.options,
      rx: new RingWriter(spec.rx),
      shared,
      counters: new CounterBatch(shared),
      bell: new Bell(spec.bell),
    };
    io = await module.createIo(context);
    rings = { rx: spec.rx, tx: spec.tx };
    loop = new IoLoop(io, context, new RingReader(spec.tx));
  },

  async control(op, arg) {
    const device = requireIo();
    if (!device.control) throw netdevError('EOPNOTSUPP', `I/O half has no control operations (asked for '${op}')`);
    const result = await device.control(op, arg);
    loop?.afterControl();
    return result;
  },

  async drain() {
    await requireIo().drain();
  },

  async startCapture(id, spec) {
    requireIo();
    // Loaded by the first capture: a worker that never captures does without it (and its imports).
    const { CaptureTap } = await import('./capture-tap.js');
    requireIo(); // the device may have closed meanwhile
    loop!.captures.set(id, new CaptureTap(spec, rings!.rx, rings!.tx, context!.offloads));
  },

  async stopCapture(id) {
    requireIo();
    loop!.captures.get(id)?.received(); // publish what it holds
    loop!.captures.delete(id);
  },

  async sendingSocket() {
    const device = requireIo();
    if (!device.sendingSocket) throw netdevError('EOPNOTSUPP', 'the I/O half has no packet socket to send on');
    return device.sendingSocket();
  },

  async attachAgent(url, options) {
    const device = requireIo();
    if (loop!.agent || attaching) throw netdevError('EBUSY', 'a worker agent is attached to this device already');
    attaching = true; // the place is taken from now on, across the awaits below
    let agent: WorkerAgent;
    try {
      const module = (await import(url)) as { createAgent?: CreateAgent };
      if (typeof module.createAgent !== 'function') throw netdevError('EINVAL', `agent module ${url} does not export createAgent`);
      agent = await module.createAgent({ io: device, device: context!, options });
    } finally {
      attaching = false;
    }
    if (!loop) {
      agent.close?.();
      throw netdevError('EBADF', 'device is closed');
    }
    loop.agent = agent;
    agentId++;
    return { id: agentId, started: agent.started }; // read now: in the same step as the agent took over
  },

  async agentCall(id, op, arg) {
    const agent = attachedAgent(id);
    if (!agent.control) throw netdevError('EOPNOTSUPP', `the worker agent has no control calls (asked for '${op}')`);
    return agent.control(op, arg);
  },

  async detachAgent(id) {
    const agent = attachedAgent(id);
    loop!.agent = null;
    return agent.close?.();
  },

  async stop() {
    const agent = loop?.agent;
    if (loop) loop.agent = null;
    agent?.close?.(); // what it holds is released with the device
    await loop?.stop();
    await io?.close();
    io = null;
    loop = null;
  },
};

if (!parentPort) throw new Error('device-worker.js must run in a worker thread');
exposeToParent(api, parentPort);
