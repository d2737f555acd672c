/**
 * The kernel demo's frame bursts: self-checking frames sent from h1's eth0 through the library,
 * at full rate or paced, received and checked byte for byte at h2's eth0, with every lost frame
 * looked for in the counters of each device on the path and in the Switch's.
 */
import type { Netdev } from '../main/netdev.js';
import type { Switch } from '../switch/switch.js';

/** IEEE local experimental ethertype. */
export const BURST_ETHERTYPE = 0x88b5;
const SOURCE_MAC = [2, 0, 0, 0, 0, 1];
/** Frames per sendBatch. */
const BATCH = 256;
/** A burst is over once nothing has arrived for this long: its last frames are in h2's ring, or counted lost. */
const SETTLE_MS = 300;
const SEQ_AT = 14;
const PAYLOAD_AT = SEQ_AT + 4;

/** The key of h1's eth0's txPackets among the device counters. */
const SENT_OUT = 'sent out';
/** The kernel's queue in front of a Switch port (the place frames offered faster than it forwards are lost). */
const queuePlace = (port: string) => `the kernel's queue in front of the Switch's port ${port} (its packet socket's receive ring: ${port}'s rxQueueDropped)`;

/** Broadcast frame number `seq`: its number, then bytes (seq + offset) & 0xff to its end. */
function writeFrame(frame: Uint8Array, seq: number): void {
  frame.fill(0xff, 0, 6);
  frame.set(SOURCE_MAC, 6);
  frame[12] = BURST_ETHERTYPE >> 8;
  frame[13] = BURST_ETHERTYPE & 0xff;
  new DataView(frame.buffer, frame.byteOffset).setUint32(SEQ_AT, seq);
  for (let i = PAYLOAD_AT; i < frame.length; i++) frame[i] = (seq + i) & 0xff;
}

/** Reads every frame h2's device receives and checks each byte of it, until the device closes. */
export class BurstReceiver {
  /** Frames received intact and in order, frames with any byte wrong, frames whose number was not above the last one's. */
  intact = 0;
  damaged = 0;
  outOfOrder = 0;
  /** performance.now() of the first batch since markFirst(), and of the last batch. */
  first = -1;
  last = 0;
  private lastSeq = -1;
  readonly done: Promise<void>;

  constructor(dev: Netdev, private readonly size: number) {
    this.done = this.read(dev);
  }

  /** All frames received so far, whatever their state. */
  get count(): number {
    return this.intact + this.damaged + this.outOfOrder;
  }

  /** Starts timing anew: `first` becomes the time of the next batch. */
  markFirst(): void {
    this.first = -1;
  }

  private async read(dev: Netdev): Promise<void> {
    for await (const batch of dev.batches()) {
      this.last = performance.now();
      if (this.first < 0) this.first = this.last;
      for (const frame of batch) this.check(frame);
    }
  }

  private check(frame: Uint8Array): void {
    const seq = frame.length === this.size ? new DataView(frame.buffer, frame.byteOffset, frame.byteLength).getUint32(SEQ_AT) : -1;
    let intact = seq >= 0 && frame[12] === BURST_ETHERTYPE >> 8 && frame[13] === (BURST_ETHERTYPE & 0xff);
    for (let i = 0; intact && i < 6; i++) intact = frame[i] === 0xff && frame[6 + i] === SOURCE_MAC[i];
    for (let i = PAYLOAD_AT; intact && i < frame.length; i++) intact = frame[i] === ((seq + i) & 0xff);
    if (!intact) this.damaged++;
    else if (seq <= this.lastSeq) this.outOfOrder++;
    else {
      this.intact++;
      this.lastSeq = seq;
    }
  }
}

/** The path of a burst: h1's sender, h2's receiver, the Switch and its ports. */
export interface BurstPath {
  sender: Netdev;
  receiver: BurstReceiver;
  receiverDev: Netdev;
  sw: Switch;
  ports: readonly Netdev[];
}

export interface BurstResult {
  frames: number;
  size: number;
  /** Frames h1's eth0 counted out (txPackets). */
  sentOut: number;
  /** Frames that arrived (intact or not), and those damaged or out of order among them. */
  arrived: number;
  damaged: number;
  outOfOrder: number;
  /** Frames/s at h2, first arrival to last. */
  rate: number;
  /** Frames lost, by the place whose counter counted them (device statistics). */
  counted: Map<string, number>;
  /** The Switch's own drop counters that grew, by counter ("p1 rxDropped"). */
  switchDrops: Map<string, number>;
}

/**
 * Every device counter that a frame lost between h1's sender and h2's receiver adds to, by the
 * place it stands for (a Switch port's queue and ring drops are what the Switch counts in its
 * rxDropped), and h1's eth0's txPackets under the key SENT_OUT.
 */
async function deviceCounters(path: BurstPath): Promise<Map<string, number>> {
  const counted = new Map<string, number>();
  const h1 = await path.sender.getStats();
  counted.set(SENT_OUT, h1.txPackets ?? 0);
  counted.set("h1's eth0 (kernel txDropped, txErrors)", (h1.txDropped ?? 0) + (h1.txErrors ?? 0));
  for (const port of path.ports) {
    const s = await port.getStats(); // brings the port's rxQueueDropped up to date first
    counted.set(queuePlace(port.name), s.rxQueueDropped ?? 0);
    counted.set(`the Switch's port ${port.name}'s RX ring (rxRingDropped)`, s.rxRingDropped ?? 0);
    counted.set(`${port.name}'s veth (kernel rxDropped, txDropped, txErrors)`, (s.rxDropped ?? 0) + (s.txDropped ?? 0) + (s.txErrors ?? 0));
  }
  const h2 = await path.receiverDev.getStats();
  counted.set("h2's eth0 and its reader (kernel rxDropped, rxQueueDropped, rxRingDropped)", (h2.rxDropped ?? 0) + (h2.rxQueueDropped ?? 0) + (h2.rxRingDropped ?? 0));
  return counted;
}

function switchDrops(sw: Switch): Map<string, number> {
  const counters = new Map<string, number>();
  for (const { name, counters: c } of sw.counters()) {
    counters.set(`${name} rxDropped`, c.rxDropped);
    counters.set(`${name} txDropped`, c.txDropped);
  }
  return counters;
}

/** How much each counter grew from `before` to `after`, for those that grew. */
function growth(before: Map<string, number>, after: Map<string, number>): Map<string, number> {
  const grown = new Map<string, number>();
  for (const [key, value] of after) if (value > (before.get(key) ?? 0)) grown.set(key, value - (before.get(key) ?? 0));
  return grown;
}

/** The next turn of the event loop (full rate), or the next timer tick (paced). */
const tick = (rate: number | null) => new Promise((resolve) => (rate === null ? setImmediate(resolve) : setTimeout(resolve, 1)));

/**
 * Sends `frames` frames of `size` bytes, numbered from `firstSeq`, from h1: at full rate (a batch
 * per turn of the event loop) or paced at `rate` frames/s (each timer tick, the frames due by
 * then); waits until nothing has arrived for SETTLE_MS; says what arrived and which counters the
 * lost frames went to.  Stops sending and waiting when `signal` aborts.
 */
export async function sendBurst(path: BurstPath, frames: number, size: number, firstSeq: number, rate: number | null, signal: AbortSignal): Promise<BurstResult> {
  const { receiver } = path;
  const [devicesBefore, switchBefore] = [await deviceCounters(path), switchDrops(path.sw)];
  const [arrivedBefore, damagedBefore, outOfOrderBefore] = [receiver.count, receiver.damaged, receiver.outOfOrder];
  const batch = Array.from({ length: BATCH }, () => new Uint8Array(size));
  receiver.markFirst();
  const start = performance.now();
  for (let sent = 0; sent < frames && !signal.aborted; await tick(rate)) {
    const due = rate === null ? frames : Math.min(frames, Math.floor(((performance.now() - start) / 1000) * rate));
    const count = Math.min(BATCH, due - sent);
    if (count <= 0) continue;
    for (let i = 0; i < count; i++) writeFrame(batch[i]!, firstSeq + sent + i);
    await path.sender.sendBatch(count === BATCH ? batch : batch.slice(0, count)); // copied by the time it resolves
    sent += count;
  }
  while (performance.now() - Math.max(receiver.last, start) < SETTLE_MS && !signal.aborted) await new Promise((resolve) => setTimeout(resolve, 10));
  const arrived = receiver.count - arrivedBefore;
  const seconds = (receiver.last - receiver.first) / 1000;
  const counted = growth(devicesBefore, await deviceCounters(path));
  const sentOut = counted.get(SENT_OUT) ?? 0;
  counted.delete(SENT_OUT);
  return {
    frames, size, sentOut, arrived, damaged: receiver.damaged - damagedBefore, outOfOrder: receiver.outOfOrder - outOfOrderBefore,
    rate: arrived > 1 && seconds > 0 ? arrived / seconds : 0, counted, switchDrops: growth(switchBefore, switchDrops(path.sw)),
  };
}

/**
 * Prints a burst's line (sent, arrived, lost %, damaged or out of order) and where its lost
 * frames were counted; true if every frame arrived intact and in order or was counted lost.
 */
export function reportBurst(label: string, result: BurstResult, out: (line: string) => void): boolean {
  const { frames, arrived } = result;
  const lost = frames - arrived;
  const bad = result.damaged + result.outOfOrder;
  out(`burst ${label}: ${frames} frames of ${result.size} bytes sent from h1 (its eth0 counted ${result.sentOut} out), ${arrived} arrived at h2 ` +
    `(${(result.rate / 1e6).toFixed(3)} M frames/s), ${lost} lost (${((lost / frames) * 100).toFixed(1)} %), ` +
    (bad === 0 ? 'every byte of each arrived frame as sent, in order' : `${result.damaged} DAMAGED and ${result.outOfOrder} OUT OF ORDER`));
  if (lost === 0) return bad === 0;
  const counted = [...result.counted.values()].reduce((a, b) => a + b, 0);
  const places = [...result.counted].map(([place, count]) => `${count} by ${place}`).join(', ');
  const inSwitch = [...result.switchDrops].map(([counter, count]) => `${counter} +${count}`).join(', ');
  out(`  where the ${lost} lost frames were counted: ${places || 'nowhere'}; in the Switch's counters: ${inSwitch || 'none'}`);
  if (counted < lost) out(`  ${lost - counted} LOST FRAMES COUNTED NOWHERE`);
  return bad === 0 && counted >= lost;
}

/**
 * One sentence on what the loss of the full-rate burst means, true to where it was counted and
 * to what the paced burst showed.
 */
export function explainLoss(full: BurstResult, paced: BurstResult, ports: readonly string[], cpus: number, out: (line: string) => void): void {
  const lost = full.frames - full.arrived;
  if (lost === 0) return;
  const onlyAtQueue = (name: string) =>
    full.counted.size === 1 && (full.counted.get(queuePlace(name)) ?? 0) >= lost && (full.switchDrops.get(`${name} rxDropped`) ?? 0) >= lost;
  const port = ports.find(onlyAtQueue);
  const where = port === undefined
    ? 'the excess is dropped where counted above'
    : `the kernel's queue in front of the Switch's port ${port} fills, and drops the excess, which ${port}'s rxDropped counts`;
  const intact = full.damaged + full.outOfOrder === 0;
  const pacedLost = paced.frames - paced.arrived;
  const facts = [
    ...(intact ? ['every frame that arrived is intact and in order'] : []),
    pacedLost === 0 ? 'paced at a rate the path carries, none is lost' : `paced, ${pacedLost} (${((pacedLost / paced.frames) * 100).toFixed(1)} %) still were lost`,
  ];
  const sentence = facts.join(', and ');
  out(`  what the loss at full rate means: h1 offers frames faster than the forwarding path takes them (the sender, the Switch's workers ` +
    `and h2's reader share ${cpus} CPUs); ${where}. ` +
    (intact && pacedLost === 0 ? `Nothing else is wrong: ${sentence}.` : `${sentence[0]!.toUpperCase()}${sentence.slice(1)}.`));
}
