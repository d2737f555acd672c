/**
 * MAC flap detection for the Switch: reads the moves its MAC table logged (MacTable.readMoves:
 * one shared word when none happened) and says which MACs moved between ports more than a
 * number of times within a window, at most once per MAC and VLAN per window.
 */
import { formatMac } from '../common/addresses.js';
import { MacTable } from './mac-table.js';

/** A MAC that flaps, as `check` finds it: ports are port indices, in the order it first reached each. */
export interface Flapping {
  mac: string;
  vlan: number;
  ports: number[];
  /** Its moves within the window. */
  moves: number;
}

/** What the detector remembers of a MAC that moved lately. */
interface Mover {
  /** When it moved, in table ticks (those within the window). */
  times: number[];
  /** The ports it was on since its last report. */
  ports: number[];
  /** Not reported again before this tick. */
  quietUntil: number;
}

export class FlapDetector {
  private readonly window: number;
  private movesRead = 0;
  /** By VLAN/MAC. */
  private readonly movers = new Map<string, Mover>();

  /** A MAC flaps when it moves more than `moves` times within `seconds`. */
  constructor(
    private readonly table: MacTable,
    private readonly moves: number,
    seconds: number,
  ) {
    this.window = MacTable.ticks(seconds * 1000);
  }

  /** The MACs found flapping in the moves logged since the last check, each not reported within the window before. */
  check(): Flapping[] {
    if (this.table.moves === this.movesRead) return [];
    const flapping: Flapping[] = [];
    const { moves } = this.table.readMoves(this.movesRead, (vlan, mac, from, to, when) => {
      const key = `${vlan}/${formatMac(mac)}`;
      let mover = this.movers.get(key);
      if (!mover) this.movers.set(key, (mover = { times: [], ports: [], quietUntil: 0 }));
      mover.times.push(when);
      while (mover.times[0]! < when - this.window) mover.times.shift();
      for (const port of [from, to]) if (!mover.ports.includes(port)) mover.ports.push(port);
      if (mover.times.length > this.moves && when >= mover.quietUntil) {
        mover.quietUntil = when + this.window;
        flapping.push({ mac: formatMac(mac), vlan, ports: mover.ports, moves: mover.times.length });
        mover.ports = [to];
      }
    });
    this.movesRead = moves;
    const now = this.table.now();
    for (const [key, mover] of this.movers) if (mover.times.at(-1)! < now - this.window && mover.quietUntil <= now) this.movers.delete(key);
    return flapping;
  }
}
