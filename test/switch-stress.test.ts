/**
 * The Switch under load, with every byte of every frame checked at its receiver and every frame
 * that does not arrive counted somewhere (see switch-rig.ts for the account).
 */
import { afterEach, beforeEach, describe, it } from 'vitest';
import { NetdevManager } from '../dist/index.js';
import { SwitchRig } from './switch-rig.js';

let mgr: NetdevManager;
let rig: SwitchRig | null = null;
beforeEach(() => {
  mgr = new NetdevManager();
});
afterEach(async () => {
  await rig?.close();
  rig = null;
  await mgr.close();
});

/** Frames checked, and frames dropped and counted, over the whole file (printed at its end). */
const totals = { checked: 0, dropped: 0 };
function tally(account: { received: number; dropped: number }[]): void {
  for (const row of account) {
    totals.checked += row.received;
    totals.dropped += row.dropped;
  }
}

describe('Switch under load, dummy ports (main thread path)', () => {
  it('4 ports, small rings, two floods, a slow receiver: no damaged frame, every loss counted', async () => {
    rig = new SwitchRig(mgr);
    for (let n = 1; n <= 4; n++) await rig.add(n, { kind: 'dummy', ringSize: 16384, ...(n === 4 ? { slowMs: 2 } : {}) });
    await rig.phase([1, 2], 'flood');
    await Promise.all([rig.send(1, 20_000, 64, 463), rig.send(2, 20_000, 64, 463)]);
    const account = await rig.settle();
    rig.expectIntact();
    tally(account);
    console.log(account);
  });
});
