/**
 * The Node options the project's worker threads start with (device workers and the job pool's).
 * A Worker inherits the parent's execArgv unless given one, and part of it is about the main
 * script alone: after `node --input-type=module -e ...` every worker's module entry fails with
 * ERR_INPUT_TYPE_NOT_ALLOWED.  An execArgv given explicitly must hold only options a worker
 * accepts: V8 options (--expose-gc, --max-old-space-size, --stack-size) and per-process ones
 * (--title, --disable-proto) throw ERR_WORKER_INVALID_EXEC_ARGV there, and need no passing, as
 * they already apply to the whole process (NODE_OPTIONS reaches workers either way).  So workers
 * get the parent's options that shape how modules load and how errors and warnings are reported,
 * and drop everything else: the entry point's (-e/--eval, -p/--print, --input-type, -i, -c,
 * --test, --watch), the inspector's, and any option not named here.
 */

/** Options a worker takes, each with its value if it has one. */
const WORKER_OPTIONS = new Set([
  '-r', '--require', '--import', '--loader', '--experimental-loader', '-C', '--conditions',
  '--preserve-symlinks', '--experimental-default-type', '--experimental-vm-modules', '--experimental-wasm-modules',
  '--experimental-import-meta-resolve', '--experimental-detect-module', '--experimental-require-module',
  '--enable-source-maps', '--no-warnings', '--trace-warnings', '--no-deprecation', '--trace-deprecation',
  '--throw-deprecation', '--pending-deprecation', '--redirect-warnings', '--disable-warning',
  '--unhandled-rejections', '--trace-uncaught', '--trace-exit', '--frozen-intrinsics',
]);

/** Options whose value is the next argument even if it starts with '-' (program text). */
const CODE_OPTIONS = new Set(['-e', '--eval', '-p', '--print']);

/**
 * The options of `execArgv` (default: this process's) that a worker thread accepts and needs, in
 * order, with their values.  A value given as a separate argument goes with its option: an
 * argument that does not start with '-' (and any argument after -e/--eval/-p/--print, or a
 * cluster of short options such as -pe) is the previous option's value.
 */
export function workerExecArgv(execArgv: readonly string[] = process.execArgv): string[] {
  const kept: string[] = [];
  let keepValue = false;
  for (let i = 0; i < execArgv.length; i++) {
    const arg = execArgv[i]!;
    if (!arg.startsWith('-')) {
      if (keepValue) kept.push(arg);
      keepValue = false;
      continue;
    }
    const name = arg.split('=', 1)[0]!;
    const hasValue = name !== arg;
    const takesCode = CODE_OPTIONS.has(name) || /^-[a-zA-Z]{2,}$/.test(name);
    if (takesCode && !hasValue) i++; // the program text, whatever it starts with
    keepValue = !hasValue && WORKER_OPTIONS.has(name);
    if (WORKER_OPTIONS.has(name)) kept.push(arg);
  }
  return kept;
}
