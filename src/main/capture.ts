/**
 * Capture: the main thread's end of a device's capture.  The device worker copies the frames it
 * receives and sends into a capture ring (see CaptureTap in the worker); this side sleeps on the
 * ring's bell, and when woken turns what is there into pcap records and appends them to the file
 * with asynchronous writes, off the device's hot path.  close() stops the copying, writes what is
 * left and closes the file; closing the device closes its capture.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { NetdevError, toNetdevError } from '../common/errors.js';
import { PCAP_RECORD_HEADER_SIZE, pcapFileHeader, writeRecordHeader } from '../common/pcap.js';
import { Bell } from '../ring/bell.js';
import { createRing, RingReader } from '../ring/ring.js';
import { CAPTURE_RECORD_HEADER, type CaptureSpec } from '../ring/capture-format.js';
import type { WorkerClient } from './worker-client.js';

/** Options of Netdev.capture. */
export interface CaptureOptions {
  /** Which frames: received, sent, or both (default). */
  direction?: 'rx' | 'tx' | 'both';
  /** Nanosecond timestamps (default: microseconds, which every reader knows). */
  nanoseconds?: boolean;
  /** Write at most this many frames, then close (as tcpdump -c); capture.done resolves then. */
  limit?: number;
}

const CAPTURE_RING_BYTES = 4 * 1024 * 1024;
let nextCaptureId = 1;

export class Capture {
  private readonly reader: RingReader;
  private readonly bell: Bell;
  private readonly draining: Promise<void>;
  private stopping = false;
  private closed: Promise<void> | null = null;
  private written = 0;
  private readonly limit: number;
  private finished!: () => void;
  /** Resolves once the capture has closed (by close(), its limit, or its device closing). */
  readonly done = new Promise<void>((resolve) => (this.finished = resolve));
  private readonly id = nextCaptureId++;

  private constructor(
    private readonly file: FileHandle,
    private readonly path: string,
    private readonly worker: WorkerClient,
    private readonly device: string,
    private readonly nanoseconds: boolean,
    private readonly onClose: () => void,
    spec: CaptureSpec,
    limit: number | undefined,
  ) {
    this.limit = limit ?? Infinity;
    this.reader = new RingReader(spec.ring);
    this.bell = new Bell(spec.ring.dataBell);
    this.draining = this.drainLoop();
  }

  /** @internal Opens `path`, writes the pcap header and starts the worker's copying. */
  static async start(worker: WorkerClient, device: string, path: string, options: CaptureOptions, onClose: () => void): Promise<Capture> {
    const invalid = (detail: string) => new NetdevError({ code: 'EINVAL', device, call: 'capture', detail });
    const { direction = 'both', nanoseconds = false, limit } = options;
    if (!['rx', 'tx', 'both'].includes(direction)) throw invalid(`option direction must be 'rx', 'tx' or 'both', not ${JSON.stringify(direction)}`);
    if (typeof nanoseconds !== 'boolean') throw invalid(`option nanoseconds must be true or false, not ${JSON.stringify(nanoseconds)}`);
    if (limit !== undefined && !(Number.isSafeInteger(limit) && limit > 0)) throw invalid(`option limit must be a positive integer, not ${String(limit)}`);
    let file: FileHandle;
    try {
      file = await open(path, 'w');
      await file.write(pcapFileHeader(nanoseconds));
    } catch (error) {
      throw toNetdevError(error, device, 'capture');
    }
    const spec: CaptureSpec = { ring: createRing(CAPTURE_RING_BYTES, new Bell(), null), rx: direction !== 'tx', tx: direction !== 'rx' };
    const capture = new Capture(file, path, worker, device, nanoseconds, onClose, spec, limit);
    try {
      await worker.call((api) => api.startCapture(capture.id, spec), 'capture');
    } catch (error) {
      await capture.finish();
      throw error;
    }
    return capture;
  }

  /** Frames written to the file so far. */
  get frames(): number {
    return this.written;
  }

  /** Frames the capture could not keep (its ring was full). */
  get dropped(): number {
    return this.reader.droppedCount();
  }

  /** Stops capturing, writes what is left and closes the file.  Idempotent. */
  close(): Promise<void> {
    this.closed ??= (async () => {
      await this.worker.call((api) => api.stopCapture(this.id), 'capture').catch(() => {}); // a dead worker copies nothing more
      await this.finish();
    })();
    return this.closed;
  }

  private async finish(): Promise<void> {
    this.stopping = true;
    this.bell.ringNow();
    await this.draining;
    await this.file.close();
    this.onClose();
    this.finished();
  }

  private async drainLoop(): Promise<void> {
    for (;;) {
      await this.writeWaiting();
      if (this.stopping) {
        await this.writeWaiting();
        return;
      }
      const seq = this.bell.prepare();
      if (this.reader.usedBytes() !== 0 || this.stopping) {
        this.bell.cancel();
        continue;
      }
      await this.bell.sleep(seq);
    }
  }

  /** Turns every waiting capture record into a pcap record and appends them with one write. */
  private async writeWaiting(): Promise<void> {
    const records: Buffer[] = [];
    const { reader } = this;
    const words = reader.words;
    for (let length = 0; this.written + records.length < this.limit && (length = reader.next()) >= 0; ) {
      const frameLength = length - CAPTURE_RECORD_HEADER;
      const at = reader.offset >> 2;
      const record = Buffer.allocUnsafe(PCAP_RECORD_HEADER_SIZE + frameLength);
      const nanos = words[at + 1]!;
      writeRecordHeader(record, 0, words[at]! >>> 0, this.nanoseconds ? nanos : Math.floor(nanos / 1000), frameLength);
      record.set(reader.bytes.subarray(reader.offset + CAPTURE_RECORD_HEADER, reader.offset + length), PCAP_RECORD_HEADER_SIZE);
      records.push(record);
    }
    if (this.written + records.length >= this.limit) reader.discardAll(); // beyond the limit
    reader.release();
    if (records.length === 0) return;
    try {
      await this.file.write(Buffer.concat(records));
      this.written += records.length;
      if (this.written >= this.limit) void this.close();
    } catch (error) {
      process.emitWarning(`netdev: ${this.device}: capture to ${this.path} failed: ${(error as Error).message}`);
      this.stopping = true;
    }
  }
}
