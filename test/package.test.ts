/**
 * The package as its users get it: `npm pack` of the built project, installed from the tarball
 * into a fresh project in a temporary folder, then README's tour run there as a user's ESM
 * program, the `netdev` command run from node_modules/.bin, and a TypeScript user of the package
 * type-checked under `strict` with `skipLibCheck: false` (every published declaration checked).
 *
 * The install is `npm ci --offline` with a lockfile made from this project's own: its runtime
 * entries (comlink, koffi, piscina and theirs, with their integrity) and the tarball, so the
 * tarballs and metadata that this project's `npm ci` left in the npm cache are enough and no
 * request leaves the machine.  If the cache lacks something, the same `npm ci` runs again
 * allowed to reach the registry; if that fails for want of a network, the tests skip, saying so
 * (in CI, where `CI=true`, they fail instead).
 */
import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const FIXTURES = join(ROOT, 'test/fixtures/package');
const TSC = join(ROOT, 'node_modules/typescript/bin/tsc');
const NODE_TYPES = join(ROOT, 'node_modules/@types');
/** What stops npm from reaching the registry: then the tests skip (outside CI). */
const NO_NETWORK = /ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH|EHOSTUNREACH|ENOTCACHED/;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * The environment without what `npm test` adds for its script: npm_config_local_prefix (this
 * project) would make an npm run in the fresh project act on this one.  The cache, config files,
 * registry and proxies given to npm are kept.
 */
const KEPT_NPM_SETTINGS = /^npm_config_(cache|userconfig|globalconfig|registry|cafile|proxy|https_proxy|noproxy|strict_ssl)$/i;
const ENV = Object.fromEntries(Object.entries(process.env).filter(([key]) => !/^npm_/i.test(key) || KEPT_NPM_SETTINGS.test(key)));

/** Runs `program` with `args` in `cwd` (an argument vector, no shell), at most `timeoutMs`; never rejects. */
function run(program: string, args: string[], cwd: string, timeoutMs = 45_000): Promise<Run> {
  return new Promise((done) => {
    execFile(program, args, { cwd, env: ENV, timeout: timeoutMs, encoding: 'utf8', maxBuffer: 16 << 20 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
      const why = error?.killed ? `${error.message}: killed after ${timeoutMs} ms` : error?.message;
      done({ code, stdout, stderr: code === -1 ? `${stderr}\n${why}` : stderr });
    });
  });
}

let work = '';
/** The fresh project, with the package installed from its tarball. */
let app = '';
/** The tarball's files, as `npm pack` lists them. */
let packed: string[] = [];
/** Why the package could not be installed here (no registry and not all in the cache), or null. */
let cannotInstall: string | null = null;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'netdev-package-'));
  const pack = await run('npm', ['pack', '--json', '--pack-destination', work], ROOT);
  if (pack.code !== 0) throw new Error(`npm pack failed: ${pack.stderr}`);
  const [tarball] = JSON.parse(pack.stdout) as { filename: string; integrity: string; files: { path: string }[] }[];
  packed = tarball!.files.map((f) => f.path);

  app = join(work, 'app');
  const spec = `file:../${tarball!.filename}`;
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as Record<string, unknown>;
  const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean }> };
  const packages: Record<string, unknown> = {
    '': { name: 'app', version: '1.0.0', dependencies: { netdev: spec } },
    'node_modules/netdev': {
      version: pkg.version,
      resolved: spec,
      integrity: tarball!.integrity,
      license: pkg.license,
      dependencies: pkg.dependencies,
      bin: pkg.bin,
      engines: pkg.engines,
    },
  };
  for (const [path, entry] of Object.entries(lock.packages)) if (path !== '' && !entry.dev) packages[path] = entry;
  mkdirSync(app);
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true, type: 'module', dependencies: { netdev: spec } }, null, 2));
  writeFileSync(join(app, 'package-lock.json'), JSON.stringify({ name: 'app', version: '1.0.0', lockfileVersion: 3, requires: true, packages }, null, 2));

  const quiet = ['--no-audit', '--no-fund', '--loglevel=error'];
  let install = await run('npm', ['ci', '--offline', '--prefix', app, ...quiet], app);
  if (install.code !== 0 && /ENOTCACHED/.test(install.stderr)) {
    console.warn(`\n*** package.test.ts: not everything is in the npm cache (${firstLine(install.stderr)}); installing from the registry ***\n`);
    install = await run('npm', ['ci', '--prefer-offline', '--prefix', app, ...quiet], app, 60_000);
  }
  if (install.code !== 0) {
    if (!NO_NETWORK.test(install.stderr)) throw new Error(`npm ci of the tarball failed: ${install.stderr}`);
    cannotInstall = `the package's dependencies are neither all in the npm cache nor reachable in the registry (${firstLine(install.stderr)})`;
    if (process.env.CI === 'true') throw new Error(`package.test.ts: ${cannotInstall}, and CI must run it`);
  }
}, 90_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

function firstLine(text: string): string {
  return text.split('\n').find((line) => line.trim() !== '') ?? '';
}

/** Skips the calling test loudly when the package could not be installed here (never in CI: beforeAll failed). */
function requireInstall(test: TestContext): void {
  if (cannotInstall === null) return;
  console.warn(`\n*** SKIPPED "${test.task.name}": ${cannotInstall} ***\n`);
  test.skip(cannotInstall);
}

/** Every file under `dir`, relative to `base`. */
function filesUnder(dir: string, base: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    return entry.isDirectory() ? filesUnder(path, base) : [relative(base, path)];
  });
}

describe('the package as its users get it', () => {
  it('packs what dist needs at run time, compiled from the current sources, and nothing else', () => {
    const outside = packed.filter((path) => !path.startsWith('dist/') && !['package.json', 'README.md'].includes(path) && !/^LICEN[CS]E/.test(path));
    expect(outside).toEqual([]);
    const sources = filesUnder(join(ROOT, 'src'), join(ROOT, 'src')).filter((path) => path.endsWith('.ts') && !path.endsWith('.d.ts'));
    expect(sources.length).toBeGreaterThan(40);
    const modules = sources.map((path) => `dist/${path.replace(/\.ts$/, '')}`);
    const missing = modules.flatMap((module) => [`${module}.js`, `${module}.d.ts`]).filter((path) => !packed.includes(path));
    expect(missing).toEqual([]);
    // A file in dist that no source makes is left over from an old build, and would be published.
    const stale = packed.filter((path) => path.startsWith('dist/') && !modules.includes(path.replace(/(\.js\.map|\.js|\.d\.ts)$/, '')));
    expect(stale, 'stale build output in dist/ (rm -rf dist && npm run build)').toEqual([]);
    // What dist loads by URL at run time (workers, pool tasks, providers' I/O modules) is in the tarball.
    const loaded = packed
      .filter((path) => path.endsWith('.js'))
      .flatMap((path) => [...readFileSync(join(ROOT, path), 'utf8').matchAll(/new URL\('(\.{1,2}\/[^']+)', import\.meta\.url\)/g)].map((m) => join(dirname(path), m[1]!)));
    expect(loaded).toEqual(expect.arrayContaining(['dist/workers/device-worker.js', 'dist/workers/pool-tasks.js', 'dist/providers/dummy/io.js', 'dist/providers/system/io.js']));
    expect(loaded.filter((path) => !packed.includes(path))).toEqual([]);
  });

  it("runs README's tour as a user's ESM program: frames, control calls, a NetdevError, a monitor notice, then exits", async (test) => {
    requireInstall(test);
    copyFileSync(join(FIXTURES, 'tour.mjs'), join(app, 'tour.mjs'));
    const tour = await run(process.execPath, ['tour.mjs'], app);
    expect(tour.stderr).toBe(''); // no warning, no error
    expect(tour.code).toBe(0); // and it ended by itself: mgr.close() left nothing running
    const seen = JSON.parse(tour.stdout) as Record<string, unknown> & { sent: number[][] };
    const [one, two, three] = seen.sent;
    expect(seen.resolved).toBe(`file://${join(app, 'node_modules/netdev/dist/index.js')}`);
    expect(seen).toMatchObject({
      queued: true,
      first: one, // every byte
      batch: [two],
      emptyRecv: null,
      third: three,
      mtu: 9000,
      txPackets: 3,
      carrier: true,
      in4: { address: '10.0.0.1', netmask: '255.255.255.0', prefixLength: 24 },
      error: { isNetdevError: true, code: 'EOPNOTSUPP', errno: 95, device: 'dummy:a', call: 'getIfindex' },
      notice: 'dummy:a',
    });
    expect(seen.mac).toMatch(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
  });

  it('installs the netdev command', async (test) => {
    requireInstall(test);
    const help = await run(join(app, 'node_modules/.bin/netdev'), ['--help'], app);
    expect(help.stderr).toBe('');
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^usage: netdev <command>/);
  });

  it('type-checks a TypeScript user under strict with skipLibCheck false, with and without the DOM library', async (test) => {
    requireInstall(test);
    copyFileSync(join(FIXTURES, 'consumer.ts'), join(app, 'consumer.ts'));
    const compilerOptions = { module: 'NodeNext', strict: true, skipLibCheck: false, noEmit: true, types: ['node'], typeRoots: [NODE_TYPES] };
    writeFileSync(join(app, 'tsconfig.json'), JSON.stringify({ compilerOptions, include: ['consumer.ts'] }));
    // A Node program's tsconfig often has no DOM library (as @tsconfig/node20): every published declaration must check without it.
    writeFileSync(
      join(app, 'tsconfig.node-lib.json'),
      JSON.stringify({ compilerOptions: { ...compilerOptions, lib: ['ES2023'] }, include: ['consumer.ts', 'node_modules/netdev/dist/**/*.d.ts'], exclude: [] }),
    );
    const [user, everyDeclaration] = await Promise.all([
      run(process.execPath, [TSC, '-p', 'tsconfig.json'], app, 100_000),
      run(process.execPath, [TSC, '-p', 'tsconfig.node-lib.json', '--listFiles'], app, 100_000),
    ]);
    expect(user.stdout + user.stderr).toBe('');
    expect(user.code).toBe(0);
    const output = everyDeclaration.stdout + everyDeclaration.stderr;
    expect(output.split('\n').filter((line) => line.includes('error TS'))).toEqual([]);
    expect(everyDeclaration.code).toBe(0);
    const checked = output.split('\n');
    const declarations = packed.filter((path) => path.endsWith('.d.ts'));
    expect(declarations.filter((path) => !checked.includes(join(app, 'node_modules/netdev', path)))).toEqual([]);
  }, 120_000); // about 5 s of CPU for each compiler (checking @types/node), far longer on a loaded machine
});
