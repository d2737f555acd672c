/**
 * What a kernel demo holds while it runs: the network namespaces it made, its child processes,
 * and the signals that stop it.  A first signal aborts `stop` and kills the children (the demo
 * then closes its devices before end(): their workers must not outlive them); a second removes
 * the namespaces at once and exits with status 130.
 */
import { execFileSync } from 'node:child_process';
import type { PortCounters } from '../switch/switch.js';
import { Children } from './demo-processes.js';

const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGPIPE'] as const;

export class DemoSession {
  readonly children = new Children();
  /** Aborted by the first signal. */
  readonly stop = new AbortController();
  private readonly made: string[] = [];
  private readonly interrupted = (): void => {
    if (this.stop.signal.aborted) {
      this.removeAll();
      process.exit(130);
    }
    this.stop.abort();
    this.children.killAll();
  };

  /** Starts listening for the signals; `print` is where `out` writes. */
  constructor(private readonly print: (line: string) => void) {
    for (const signal of SIGNALS) process.on(signal, this.interrupted);
  }

  /** Prints `line`, unless a signal has stopped the demo (it then says nothing more but what it removed). */
  readonly out = (line: string): void => {
    if (!this.stop.signal.aborted) this.print(line);
  };

  /** Makes namespace `ns`; end() removes it. */
  addNamespace(ns: string): void {
    execFileSync('ip', ['netns', 'add', ns], { stdio: ['ignore', 'ignore', 'pipe'] });
    this.made.push(ns);
  }

  /** Kills the children, removes the namespaces and stops listening for the signals. */
  end(): void {
    this.removeAll();
    for (const signal of SIGNALS) process.off(signal, this.interrupted);
  }

  private removeAll(): void {
    this.children.killAll();
    for (const ns of this.made.splice(0)) {
      try {
        execFileSync('ip', ['netns', 'del', ns], { stdio: ['ignore', 'ignore', 'pipe'] });
      } catch {
        // already gone
      }
    }
  }
}

/** The columns of a demo's counters table after the port's name: rx frames, rx bytes, tx frames, tx bytes, drops, floods. */
export const COUNTER_HEADINGS = 'rx frames   rx bytes   tx frames   tx bytes   drops   floods';

/** One port's counters under COUNTER_HEADINGS. */
export function counterColumns(c: PortCounters): string {
  return `${String(c.rxFrames).padStart(9)} ${String(c.rxBytes).padStart(10)} ${String(c.txFrames).padStart(11)} ${String(c.txBytes).padStart(10)} ${String(c.rxDropped + c.txDropped).padStart(7)} ${String(c.floods).padStart(8)}`;
}
