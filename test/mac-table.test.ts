import { Worker } from 'node:worker_threads';
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { MacTable } from '../dist/switch/mac-table.js';
import { FILTER, FLOOD, ForwardingDecision, LOCAL } from '../dist/switch/decision.js';
import { BLOCKED, CONTROL_MAX_AGE, CONTROL_STATES, inputCounter, INVALID_SOURCE, RESERVED, switchControl } from '../dist/switch/fabric.js';
import { BLOCKING, FORWARDING, LEARNING, LISTENING } from '../dist/switch/spanning-tree.js';

/** The Switch's shared control words: aging time `maxAge` ticks, every port forwarding (no spanning tree). */
function control(maxAge: number): Int32Array {
  const words = switchControl();
  words[CONTROL_MAX_AGE] = maxAge;
  words.fill(FORWARDING, CONTROL_STATES);
  return words;
}

/** MAC number `n` as 6 bytes (02:00:nn:nn:nn:nn). */
function mac(n: number): Uint8Array {
  return Uint8Array.of(2, 0, (n >>> 24) & 255, (n >>> 16) & 255, (n >>> 8) & 255, n & 255);
}

describe('MacTable (shared memory)', () => {
  it('learns, moves and looks up entries per VLAN', () => {
    const table = new MacTable(64);
    const now = table.now();
    expect(table.lookup(0, mac(1), 0, now, 10)).toBe(-1);
    expect(table.learn(0, mac(1), 0, 3, now)).toBe(true);
    expect(table.lookup(0, mac(1), 0, now, 10)).toBe(3);
    expect(table.lookup(7, mac(1), 0, now, 10)).toBe(-1); // another VLAN
    table.learn(0, mac(1), 0, 5, now); // the MAC moved
    expect(table.lookup(0, mac(1), 0, now, 10)).toBe(5);
    expect(table.size).toBe(1);
  });

  it('ignores entries older than the aging time, and purges them', () => {
    const table = new MacTable(64);
    table.learn(0, mac(1), 0, 1, 100);
    table.learn(0, mac(2), 0, 2, 150);
    expect(table.lookup(0, mac(1), 0, 160, 50)).toBe(-1);
    expect(table.lookup(0, mac(2), 0, 160, 50)).toBe(2);
    table.purge(160, 50);
    expect(table.size).toBe(1);
    expect(table.lookup(0, mac(2), 0, 160, 50)).toBe(2);
  });

  it('keeps every other entry reachable when entries are deleted from crowded probe runs', () => {
    const table = new MacTable(1024);
    for (let n = 0; n < 1024; n++) expect(table.learn(0, mac(n), 0, n % 4, 0)).toBe(true);
    expect(table.learn(0, mac(5000), 0, 0, 0)).toBe(false); // full
    table.forgetPort(1);
    expect(table.size).toBe(768);
    for (let n = 0; n < 1024; n++) expect(table.lookup(0, mac(n), 0, 0, 1)).toBe(n % 4 === 1 ? -1 : n % 4);
    expect(table.learn(0, mac(5000), 0, 0, 0)).toBe(true);
  });

  it('takes concurrent learning from several threads without losing entries', async () => {
    const table = new MacTable(8192);
    const code = `
      const { workerData } = require('node:worker_threads');
      import(workerData.module).then(({ MacTable }) => {
        const table = new MacTable(workerData.descriptor);
        for (let n = 0; n < 3000; n++) {
          const m = workerData.base + n;
          table.learn(0, Uint8Array.of(2, 0, m >>> 24, (m >>> 16) & 255, (m >>> 8) & 255, m & 255), 0, workerData.port, 1);
        }
      });`;
    const module = new URL('../dist/switch/mac-table.js', import.meta.url).href;
    const workers = [0, 1].map((i) => new Worker(code, { eval: true, workerData: { module, descriptor: table.descriptor, base: i * 1_000_000, port: i } }));
    await Promise.all(workers.map((w) => once(w, 'exit')));
    expect(table.size).toBe(6000);
    for (const i of [0, 1]) for (let n = 0; n < 3000; n += 97) expect(table.lookup(0, mac(i * 1_000_000 + n), 0, 1, 1)).toBe(i);
  });

  it('never hangs on a lock a dead writer left taken: learning gives up, lookups go on', () => {
    const table = new MacTable(64);
    table.learn(0, mac(1), 0, 1, 0);
    Atomics.store(new Int32Array(table.descriptor.buffer), 0, 1); // the lock word, as a terminated writer leaves it
    expect(table.learn(0, mac(2), 0, 2, 0)).toBe(false);
    table.forgetPort(1); // skipped, not stuck
    expect(table.lookup(0, mac(1), 0, 0, 1)).toBe(1);
    expect(table.learn(0, mac(1), 0, 1, 0)).toBe(true); // known on that port: no lock needed
  });

  it('logs each move of a MAC between ports, in order, and nothing for a MAC seen again where it is', () => {
    const table = new MacTable(64);
    const now = table.now();
    table.learn(5, mac(1), 0, 1, now); // new: no move
    table.learn(5, mac(1), 0, 1, now + 1); // same port: no move
    table.learn(5, mac(1), 0, 2, now + 2);
    table.learn(0, mac(7), 0, 3, now + 3);
    table.learn(0, mac(7), 0, 4, now + 4);
    table.learn(5, mac(1), 0, 1, now + 5);
    expect(table.moves).toBe(3);
    const seen: unknown[] = [];
    const read = table.readMoves(0, (vlan, m, from, to, when) => seen.push([vlan, [...m], from, to, when - now]));
    expect(read).toEqual({ moves: 3, lost: 0 });
    expect(seen).toEqual([[5, [...mac(1)], 1, 2, 2], [0, [...mac(7)], 3, 4, 4], [5, [...mac(1)], 2, 1, 5]]);
    expect(table.readMoves(3, () => expect.unreachable())).toEqual({ moves: 3, lost: 0 });
    // Far more moves than the log keeps between two reads: the oldest are said lost, the last ones read.
    for (let i = 0; i < 2000; i++) table.learn(0, mac(9), 0, i % 2, now);
    let last = -1;
    const flood = table.readMoves(3, (_vlan, _m, _from, to) => (last = to));
    expect(flood.moves).toBe(3 + 1999);
    expect(flood.lost).toBeGreaterThan(0);
    expect(last).toBe(1999 % 2);
  });

  it('keeps logging moves, and its entries intact, when the 32-bit move count wraps', () => {
    const table = new MacTable(64);
    const now = table.now();
    for (let n = 0; n < 40; n++) table.learn(0, mac(100 + n), 0, 1, now); // entries the log must never overwrite
    new Int32Array(table.descriptor.buffer)[3] = 2 ** 31 - 3; // the move count (header word 3), 3 short of wrapping
    const since = table.moves;
    for (let i = 0; i < 10; i++) table.learn(0, mac(9), 0, i % 2 === 0 ? 2 : 3, now + i);
    const seen: number[] = [];
    const read = table.readMoves(since, (_vlan, _m, from, to) => seen.push(from * 10 + to));
    expect(read).toEqual({ moves: (since + 9) | 0, lost: 0 }); // its first learn was not a move
    expect(seen).toEqual([23, 32, 23, 32, 23, 32, 23, 32, 23]);
    for (let n = 0; n < 40; n++) expect(table.lookup(0, mac(100 + n), 0, now, 1000)).toBe(1);
  });

  it('refuses a size that is not a power of two', () => {
    expect(() => new MacTable(1000)).toThrow(RangeError);
  });
});

describe('ForwardingDecision (one batch of frames)', () => {
  /** A frame from MAC `src` to MAC `dst`. */
  const frame = (dst: number, src: number): Uint8Array => {
    const f = new Uint8Array(60);
    f.set(mac(dst), 0);
    f.set(mac(src), 6);
    return f;
  };

  it('looks each source and destination up once per run of a flow, and sees a MAC that moves within the batch', () => {
    const table = new MacTable(64);
    const decision = new ForwardingDecision(table, control(1000), 1, 0);
    const counters = new Float64Array(1024);
    const now = table.now();
    table.learn(0, mac(2), 0, 1, now); // B behind port 1
    decision.beginBatch();
    const decide = (f: Uint8Array, input: number) => decision.decide(counters, 0, input, null, f, 0, f.length, now);
    expect(decide(frame(2, 1), 0)).toBe(1); // A (port 0) -> B: port 1
    expect(decide(frame(2, 1), 0)).toBe(1);
    expect(table.lookup(0, mac(1), 0, now, 1000)).toBe(0); // A learned on port 0
    // B shows up on port 0 in the same batch: frames to B now stay behind port 0 (filtered).
    expect(decide(frame(1, 2), 0)).toBe(FILTER);
    expect(table.lookup(0, mac(2), 0, now, 1000)).toBe(0);
    expect(decide(frame(2, 1), 0)).toBe(FILTER);
    // A new batch forgets what the last one looked up: a change made meanwhile by another thread is seen.
    table.learn(0, mac(2), 0, 3, now);
    decision.beginBatch();
    expect(decide(frame(2, 1), 0)).toBe(3);
  });

  it('drops reserved group addresses outside its mask and invalid sources, counting each, and learns no invalid source', () => {
    const table = new MacTable(64);
    const counters = new Float64Array(1024);
    const now = table.now();
    const reserved = (last: number) => Uint8Array.of(0x01, 0x80, 0xc2, 0, 0, last);
    const to = (dst: Uint8Array, src = mac(1)) => {
      const f = new Uint8Array(60);
      f.set(dst, 0);
      f.set(src, 6);
      return f;
    };
    // Bit 0 (STP BPDUs, the spanning tree off) and bit 3 (802.1X) forwarded.
    const decision = new ForwardingDecision(table, control(1000), 0b1001, 0);
    decision.beginBatch();
    const decide = (f: Uint8Array) => decision.decide(counters, 0, 0, null, f, 0, f.length, now);
    expect([0, 1, 2, 3, 0x0e, 0x0f].map((n) => decide(to(reserved(n))))).toEqual([FLOOD, FILTER, FILTER, FLOOD, FILTER, FILTER]);
    expect(counters[RESERVED]).toBe(4);
    expect(decide(to(reserved(0x10)))).toBe(FLOOD); // 01:80:c2:00:00:10 is not reserved
    expect(decide(to(Uint8Array.of(0x01, 0x00, 0x5e, 0, 0, 0xfb)))).toBe(FLOOD);
    expect(counters[RESERVED]).toBe(4);
    const broadcast = new Uint8Array(6).fill(0xff);
    expect(decide(to(broadcast, Uint8Array.of(0x03, 0, 0, 0, 0, 7)))).toBe(FILTER); // group source
    expect(decide(to(broadcast, new Uint8Array(6)))).toBe(FILTER); // all-zero source
    expect(decide(to(broadcast, Uint8Array.of(0, 0, 0, 0, 0, 1)))).toBe(FLOOD); // 00:00:00:00:00:01 is valid
    expect(counters[INVALID_SOURCE]).toBe(2);
    expect(table.lookup(0, Uint8Array.of(0x03, 0, 0, 0, 0, 7), 0, now, 1000)).toBe(-1);
    expect(table.lookup(0, new Uint8Array(6), 0, now, 1000)).toBe(-1);
    expect(table.size).toBe(2); // mac(1) and 00:00:00:00:00:01
  });

  it('honours spanning tree states: a blocking port neither learns nor forwards, a learning one learns only, and BPDUs are the Switch\'s own', () => {
    const table = new MacTable(64);
    const counters = new Float64Array(1024);
    const now = table.now();
    const words = control(1000);
    const decision = new ForwardingDecision(table, words, 0, 1); // the spanning tree runs: BPDUs are local
    decision.beginBatch();
    const decide = (f: Uint8Array, input: number) => decision.decide(counters, inputCounter(input, 0), input, null, f, 0, f.length, now);
    words[CONTROL_STATES + 0] = BLOCKING;
    expect(decide(frame(2, 1), 0)).toBe(FILTER);
    expect(table.lookup(0, mac(1), 0, now, 1000)).toBe(-1);
    const bpdu = new Uint8Array(60);
    bpdu.set([0x01, 0x80, 0xc2, 0, 0, 0], 0);
    bpdu.set(mac(1), 6);
    expect(decide(bpdu, 0)).toBe(LOCAL); // taken by the spanning tree even on a blocking port
    words[CONTROL_STATES + 0] = LEARNING;
    expect(decide(frame(2, 1), 0)).toBe(FILTER);
    expect(table.lookup(0, mac(1), 0, now, 1000)).toBe(0);
    expect(counters[inputCounter(0, BLOCKED)]).toBe(2);
    words[CONTROL_STATES + 0] = FORWARDING;
    words[CONTROL_STATES + 1] = LISTENING;
    expect(decide(frame(1, 2), 1)).toBe(FILTER); // from a listening port: not learned, not forwarded
    expect(table.lookup(0, mac(2), 0, now, 1000)).toBe(-1);
    expect([decision.forwards(0), decision.forwards(1)]).toEqual([true, false]);
  });
});
