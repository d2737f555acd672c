/**
 * Producer thread for the ring benchmark.  'ring' mode: writes `count` copies of a frame into the
 * ring in batches of 256, one publish per batch, sleeping on its space bell while the ring is
 * full (lossless).  'post' and 'post-batch' modes: the reference, the same frames sent with
 * postMessage, one message per frame or one per batch of 256 (structured clone copies them).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Bell } from '../dist/ring/bell.js';
import { RingWriter, type RingDescriptor } from '../dist/ring/ring.js';

interface ProducerJob {
  mode: 'ring' | 'post' | 'post-batch';
  descriptor?: RingDescriptor;
  count: number;
  size: number;
}

const BATCH = 256;
const job = workerData as ProducerJob;
const frame = new Uint8Array(job.size).fill(0xab);
const port = parentPort!;

function produceIntoRing(descriptor: RingDescriptor): void {
  const writer = new RingWriter(descriptor);
  const space = new Bell(descriptor.spaceBell!);
  for (let sent = 0; sent < job.count; ) {
    const end = Math.min(job.count, sent + BATCH);
    while (sent < end) {
      if (writer.push(frame)) {
        sent++;
        continue;
      }
      writer.publish();
      const ticket = space.prepare();
      if (writer.fits(frame.length)) space.cancel();
      else space.sleepSync(ticket);
    }
    writer.publish();
  }
}

function produceMessages(batched: boolean): void {
  if (!batched) {
    for (let i = 0; i < job.count; i++) port.postMessage(frame);
    return;
  }
  // Distinct frames: structured clone copies each once (the same object twice would be copied once).
  const batch = Array.from({ length: BATCH }, () => frame.slice());
  for (let sent = 0; sent < job.count; sent += BATCH) {
    port.postMessage(sent + BATCH <= job.count ? batch : batch.slice(0, job.count - sent));
  }
}

port.once('message', () => {
  if (job.mode === 'ring') produceIntoRing(job.descriptor!);
  else produceMessages(job.mode === 'post-batch');
  port.postMessage('done');
});
