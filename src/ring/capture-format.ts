/**
 * The records of a capture ring, shared by the device worker (which writes them) and the main
 * thread (which turns them into pcap records): seconds, nanoseconds and direction as three 32-bit
 * words, then the frame.
 */
import type { RingDescriptor } from './ring.js';

/** A capture: the ring its records go to, and which directions. */
export interface CaptureSpec {
  ring: RingDescriptor;
  rx: boolean;
  tx: boolean;
}

/** Bytes before each frame in a capture record. */
export const CAPTURE_RECORD_HEADER = 12;
export const CAPTURE_RX = 0;
export const CAPTURE_TX = 1;
