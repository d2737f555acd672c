/**
 * The CLI's standard output and when a long-running command should stop.  When the reader of
 * standard output goes away (EPIPE, as under `netdev switch ... | head -2`), later lines are
 * dropped quietly and the commands waiting in untilStopped() stop as on Ctrl-C, so they still
 * clean up (ports removed, flags restored) and exit normally.
 */

let readerGone = false;
const stoppers = new Set<() => void>();

process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code !== 'EPIPE') process.stderr.write(`netdev: standard output: ${error.message}\n`);
  readerGone = true;
  for (const stop of stoppers) stop();
});

/** Writes `line` and a newline to standard output, unless its reader has gone. */
export function printLine(line: string): void {
  if (!readerGone) process.stdout.write(`${line}\n`);
}

/**
 * Resolves at the first SIGINT or SIGTERM, or once standard output's reader has gone, or when
 * `cancel` aborts (the command ended otherwise: its signal handlers are removed).
 */
export function untilStopped(cancel?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    const stop = () => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      stoppers.delete(stop);
      cancel?.removeEventListener('abort', stop);
      resolve();
    };
    if (readerGone || cancel?.aborted) return resolve();
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
    stoppers.add(stop);
    cancel?.addEventListener('abort', stop);
  });
}
