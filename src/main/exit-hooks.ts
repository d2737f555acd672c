/**
 * OVS's fatal-signal hook: restorers (one per manager with open devices) run synchronously
 * when the process exits (normally, by process.exit, or after an uncaught exception) and when it
 * receives SIGINT, SIGTERM or SIGHUP.  On a signal that nobody else listens to, the hooks run and
 * the signal is raised again with its default action, so the process still dies of it (and its
 * exit status says so).  If the application listens to the signal itself, it decides what happens:
 * its mgr.close() or process.exit() restores the flags.
 */
const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

const restorers = new Set<() => void>();

function runRestorers(): void {
  for (const restore of restorers) {
    try {
      restore();
    } catch {
      // A failing restore must not keep the others from running.
    }
  }
}

function onSignal(signal: NodeJS.Signals): void {
  if (process.listenerCount(signal) > 1) return;
  runRestorers();
  uninstall();
  process.kill(process.pid, signal);
}

function install(): void {
  process.on('exit', runRestorers);
  for (const signal of SIGNALS) process.on(signal, onSignal);
}

function uninstall(): void {
  process.off('exit', runRestorers);
  for (const signal of SIGNALS) process.off(signal, onSignal);
}

/** Registers `restore` to run at exit or on a fatal signal; returns the function that unregisters it. */
export function addExitRestorer(restore: () => void): () => void {
  if (restorers.size === 0) install();
  restorers.add(restore);
  return () => {
    if (restorers.delete(restore) && restorers.size === 0) uninstall();
  };
}
