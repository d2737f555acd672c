import { describe, expect, it } from 'vitest';
import { Worker } from 'node:worker_threads';
import { Bell } from '../dist/ring/bell.js';
import { copyRecord, createRing, RingReader, RingWriter, type RingDescriptor } from '../dist/ring/ring.js';

function pair(capacity: number, producerWaits = false): { writer: RingWriter; reader: RingReader; descriptor: RingDescriptor } {
  const descriptor = createRing(capacity, new Bell(), producerWaits ? new Bell() : null);
  return { writer: new RingWriter(descriptor), reader: new RingReader(descriptor), descriptor };
}

function record(length: number, seed: number): Uint8Array {
  return Uint8Array.from({ length }, (_, i) => (seed * 31 + i) & 255);
}

describe('ring', () => {
  it('rounds capacity to a power of two and limits records to half of it', () => {
    const { writer } = pair(5000);
    expect(writer.capacity).toBe(8192);
    expect(writer.maxRecord).toBe(4092);
    expect(() => writer.reserve(4093)).toThrow(RangeError);
  });

  it('takes a record of maxRecord bytes into an empty ring wherever its head is (the half-ring cap)', () => {
    const refused: number[] = [];
    for (let position = 0; position < 4096; position += 4) {
      const { writer, reader } = pair(4096);
      // Move the head to `position` with records read and released at once (each 4 bytes of header and its data).
      for (let left = position; left > 0; left -= Math.min(left, 2048)) {
        writer.push(new Uint8Array(Math.min(left, 2048) - 4));
        writer.publish();
        reader.discardAll();
      }
      const largest = record(writer.maxRecord, position);
      if (!writer.push(largest)) {
        refused.push(position);
        continue;
      }
      writer.publish();
      const length = reader.next();
      if (length !== largest.length || !Buffer.from(reader.bytes.buffer, reader.bytes.byteOffset + reader.offset, length).equals(largest)) refused.push(position);
    }
    expect(refused).toEqual([]);
  });

  it('keeps records intact and in order across many wrap-arounds', () => {
    const { writer, reader } = pair(4096);
    let written = 0;
    let read = 0;
    const sizes = [1, 3, 60, 64, 100, 333, 1000, 1500, 2000, 7];
    while (read < 5000) {
      while (written < 5000 && writer.push(record(sizes[written % sizes.length]!, written))) written++;
      writer.publish();
      for (let length = reader.next(); length >= 0; length = reader.next()) {
        const expected = record(sizes[read % sizes.length]!, read);
        const got = Buffer.from(reader.bytes.buffer, reader.bytes.byteOffset + reader.offset, length);
        if (!got.equals(expected)) throw new Error(`record ${read} differs`);
        read++;
      }
      reader.release();
    }
    expect(written).toBe(5000);
    expect(reader.next()).toBe(-1);
  });

  it('refuses records when full without writing anything, and takes them again once space is released', () => {
    const { writer, reader } = pair(4096);
    let accepted = 0;
    while (writer.push(record(100, accepted))) accepted++;
    // 104 bytes per record: 39 fit in 4096 bytes.
    expect(accepted).toBe(39);
    expect(writer.fits(100)).toBe(false);
    expect(writer.fits(1)).toBe(true);
    writer.publish();
    expect(reader.next()).toBe(100);
    // Not released yet: still full.
    expect(writer.push(record(100, 99))).toBe(false);
    reader.release();
    expect(writer.push(record(100, accepted))).toBe(true);
    writer.publish();
    let seen = 1;
    for (let length = reader.next(); length >= 0; length = reader.next()) {
      expect(reader.bytes.subarray(reader.offset, reader.offset + length)).toEqual(record(100, seen));
      seen++;
    }
    expect(seen).toBe(accepted + 1);
  });

  it('publishes nothing before publish(), and counts drops', () => {
    const { writer, reader } = pair(4096);
    writer.push(record(10, 1));
    expect(reader.next()).toBe(-1);
    writer.countDrops(3);
    expect(reader.droppedCount()).toBe(0);
    writer.publish();
    expect(reader.droppedCount()).toBe(3);
    expect(reader.next()).toBe(10);
  });

  it('pads short records with zeros over stale bytes', () => {
    const { writer, reader } = pair(4096);
    // Records of 0xee bytes cover the whole region (the second round wraps), so the short record
    // lands on stale bytes at offset 3016.
    for (const rounds of [4, 3]) {
      for (let i = 0; i < rounds; i++) expect(writer.push(new Uint8Array(1000).fill(0xee))).toBe(true);
      writer.publish();
      expect(reader.discardAll()).toBe(rounds);
    }
    expect(writer.push(Uint8Array.of(9, 9), 60)).toBe(true);
    writer.publish();
    const length = reader.next();
    expect(length).toBe(60);
    expect(reader.offset).toBe(3016);
    const frame = reader.bytes.subarray(reader.offset, reader.offset + 60);
    expect(Array.from(frame.subarray(0, 2))).toEqual([9, 9]);
    expect(frame.subarray(2).every((b) => b === 0)).toBe(true);
  });

  it('copies records of every length from 1 to 300 bytes between rings exactly, by words or by memcpy', () => {
    const source = pair(8192);
    const target = pair(8192);
    for (let length = 1; length <= 300; length++) {
      source.writer.push(record(length, length));
      source.writer.push(record(3, 99));
      source.writer.publish();
      for (const expected of [record(length, length), record(3, 99)]) {
        expect(source.reader.next()).toBe(expected.length);
        const at = target.writer.reserve(expected.length);
        copyRecord(source.reader, target.writer, at, expected.length);
        target.writer.commit(expected.length);
      }
      source.reader.release();
      target.writer.publish();
      for (const expected of [record(length, length), record(3, 99)]) {
        const got = target.reader.next();
        expect(got).toBe(expected.length);
        expect(target.reader.bytes.subarray(target.reader.offset, target.reader.offset + got)).toEqual(expected);
      }
      target.reader.release();
    }
  });

  it('unread() steps back one record', () => {
    const { writer, reader } = pair(4096);
    writer.push(record(5, 1));
    writer.push(record(6, 2));
    writer.publish();
    expect(reader.next()).toBe(5);
    expect(reader.next()).toBe(6);
    reader.unread();
    expect(reader.next()).toBe(6);
    expect(reader.next()).toBe(-1);
  });

  it('skips a wrap marker published alone (an abandoned reservation)', () => {
    const { writer, reader } = pair(4096);
    // Move the head near the end, then reserve something that must wrap, and abandon it.
    writer.push(new Uint8Array(2000));
    writer.push(new Uint8Array(1500));
    writer.publish();
    expect(reader.discardAll()).toBe(2);
    expect(writer.reserve(1000)).toBe(4);
    writer.publish();
    expect(reader.next()).toBe(-1);
    writer.push(record(7, 7));
    writer.publish();
    expect(reader.next()).toBe(7);
    expect(reader.bytes.subarray(reader.offset, reader.offset + 7)).toEqual(record(7, 7));
  });

  it('carries records of every size from 1 to 70000 bytes', () => {
    const { writer, reader } = pair(256 * 1024);
    const top = 70_000;
    const patterns = Array.from({ length: 256 }, (_, v) => Buffer.alloc(top, v));
    let next = 1;
    for (let size = 1; size <= top; size++) {
      const at = writer.reserve(size);
      expect(at).toBeGreaterThanOrEqual(0);
      writer.bytes.fill(size & 255, at, at + size);
      writer.commit(size);
      writer.publish();
      const length = reader.next();
      expect(length).toBe(next);
      const got = Buffer.from(reader.bytes.buffer, reader.bytes.byteOffset + reader.offset, length);
      if (!got.equals(patterns[next & 255]!.subarray(0, next))) throw new Error(`record of ${next} bytes corrupted`);
      reader.release();
      next++;
    }
    expect(next).toBe(top + 1);
  });

  async function runProducer(mode: 'wait' | 'drop', count: number, capacity: number) {
    const { reader, descriptor } = pair(capacity, mode === 'wait');
    const bell = new Bell(descriptor.dataBell);
    const worker = new Worker(new URL('./fixtures/ring-producer.mjs', import.meta.url), {
      workerData: { descriptor, count, maxLength: 120, mode, batch: 64 },
    });
    const finished = new Promise<{ dropped: number }>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    let producerDone = false;
    void finished.then(() => {
      producerDone = true;
      bell.ringNow();
    });
    let received = 0;
    let lastSeq = -1;
    let bad = '';
    const check = (length: number) => {
      const b = reader.bytes;
      const at = reader.offset;
      const seq = (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0;
      if (seq <= lastSeq || (mode === 'wait' && seq !== lastSeq + 1)) bad ||= `sequence ${seq} after ${lastSeq}`;
      if (length !== 4 + (seq % 120)) bad ||= `record ${seq} has length ${length}`;
      for (let i = 4; i < length; i++) if (b[at + i] !== ((seq + i) & 255)) bad ||= `record ${seq} corrupted at byte ${i}`;
      lastSeq = seq;
      received++;
    };
    for (;;) {
      let length: number;
      while ((length = reader.next()) >= 0) check(length);
      reader.release();
      if (producerDone) {
        if (reader.usedBytes() === 0) break;
        continue;
      }
      const ticket = bell.prepare();
      if (reader.usedBytes() !== 0 || producerDone) {
        bell.cancel();
        continue;
      }
      await bell.sleep(ticket);
    }
    const { dropped } = await finished;
    await worker.terminate();
    return { received, dropped, counted: reader.droppedCount(), bad };
  }

  it('moves 2 million records between two threads without loss when the producer waits', async () => {
    const result = await runProducer('wait', 2_000_000, 64 * 1024);
    expect(result.bad).toBe('');
    expect(result.received).toBe(2_000_000);
    expect(result.dropped).toBe(0);
  });

  it('moves 2 million records between two threads, counting every drop when the producer drops', async () => {
    const result = await runProducer('drop', 2_000_000, 4096);
    expect(result.bad).toBe('');
    expect(result.counted).toBe(result.dropped);
    expect(result.received + result.dropped).toBe(2_000_000);
    expect(result.received).toBeGreaterThan(0);
  });
});
