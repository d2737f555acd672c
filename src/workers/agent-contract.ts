/**
 * The worker agent contract: code that runs inside a device's worker thread and takes over its
 * receive rounds, for a forwarding app's fast path (the Switch's forwarding agent is one).  A
 * worker agent is a module loaded by URL inside the worker, as a provider's I/O half is, that
 * exports `createAgent: CreateAgent`; `Netdev.attachAgent(url, options)` starts it and returns a
 * handle to call it and to detach it.  One agent runs in a device's worker at a time.
 *
 * While an agent is attached, each round of the worker calls agent.round(budget) instead of the
 * I/O half's receive(); transmitting from the TX ring goes on as before.  The agent reads the
 * device however its I/O half allows (e.g. its `staging` capability) and may put frames in the
 * RX ring itself (IoContext.rx: reserve, commit; the worker publishes after each round).
 * Everything runs on the worker's thread: no member may block, except waitHot.
 */
import type { DeviceIo, IoContext } from '../providers/contract.js';

/** What the worker gives an agent it creates. */
export interface AgentContext {
  /** The device's I/O half (its optional capabilities, such as `staging`, are what agents use). */
  readonly io: DeviceIo;
  /** The device's rings, counters and bell, as the I/O half has them. */
  readonly device: IoContext;
  /** What Netdev.attachAgent was given (structured-cloned). */
  readonly options: unknown;
}

/** What waitHot saw: frames are waiting on the device; the worker's bell rang (a call, frames to send). */
export const HOT_FRAMES = 1;
export const HOT_BELL = 2;

/** A running agent. */
export interface WorkerAgent {
  /** What attachAgent resolves with on the main thread (structured-cloneable), once the agent runs. */
  readonly started?: unknown;
  /** Receives and handles up to `budget` frames from the device; returns how many it took (0: none waiting). */
  round(budget: number): number;
  /**
   * Optional: after rounds that moved frames, the worker waits here for up to `timeoutMs`
   * instead of sleeping on its bell (blocking this thread, e.g. in poll(2)), until the device has
   * frames or the bell rings (the agent makes the bell reach it with IoContext.bell.setKickFd(an
   * eventfd it polls); Netdev.attachAgent makes rings from the main thread signal that eventfd).
   * Returns HOT_FRAMES and/or HOT_BELL, or 0 on timeout.
   */
  waitHot?(timeoutMs: number): number;
  /** Optional: answers AgentHandle.call(op, arg) from the main thread (may return a promise). */
  control?(op: string, arg: unknown): unknown;
  /** Optional: the agent is detached (the worker receives into the RX ring again; its result is what detach() resolves with), or its device stops. */
  close?(): unknown;
}

/** The export `createAgent` of a worker agent module. */
export type CreateAgent = (context: AgentContext) => WorkerAgent | Promise<WorkerAgent>;
