// The only place that loads the native addon. Candidates:
//   - USAM_ADDON (an explicit path to a .node file): when set, the only one;
//   - else the prebuilt binaries under prebuilds/<platform>-<arch>/ (named
//     usam.<flavour>.torch<major.minor>.node) and the local source build
//     (build/Release/usam.node), ordered by the LibTorch they fit: the first
//     LibTorch this environment points at first (the local build before a
//     prebuild for the same one, CUDA before CPU).
//
// Every binary carries its build info (flavour, LibTorch version and folder;
// native/build_info.h.in), read from the file before anything is loaded. A
// local build runs with exactly the LibTorch it was linked against; a prebuild
// with a LibTorch found on this machine of the same major.minor (and CUDA for
// the cuda flavour). That LibTorch is loaded first, by path, so nothing found
// earlier on the library path can stand in for it. A binary is refused when
// this process already holds another LibTorch, and is test-loaded in a child
// process before it is loaded here (once per binary and LibTorch: a stamp in
// the temp folder remembers it), because an ABI mismatch segfaults instead of
// throwing. When none loads, one error lists every candidate and why it
// failed, and every LibTorch on the machine.
//
// Which LibTorch this environment points at (to rank the candidates and to
// choose a prebuild's) comes from the record `npm install` left beside the
// local build while it is valid (readLibtorchRecord in ./libtorch.mjs), so
// loading runs no Python; else from a search, which asks the Pythons.
import * as check from '../arguments.js';
import { NativeError, UsamError } from '../errors.js';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { constants, tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  type BuildInfo,
  type LibtorchFound,
  type LibtorchLibrary,
  describeLibtorch,
  describeTried,
  findAllLibtorch,
  HOW_TO_PROVIDE,
  libtorchAt,
  majorMinor,
  realpath,
} from './libtorch.mjs';
import {
  libtorchFiles,
  libtorchRecordPath,
  readBuildInfo,
  readLibtorchRecord,
} from './build-record.mjs';
import type { Addon } from './binding.js';

/** The package root: lib/native/ and dist/native/ both sit two levels below it. */
export const packageRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface Candidate {
  path: string;
  source: 'USAM_ADDON' | 'prebuild' | 'local build';
  flavour?: string;
  torch?: string;
}

export interface Attempt extends Candidate {
  error: string;
}

/** What was loaded: the binary, what it was built against, and the LibTorch it runs with. */
export interface Loaded {
  addon: Addon;
  from: Candidate;
  build: BuildInfo;
  libtorch: LibtorchLibrary;
}

/** Prebuilds are named usam.<flavour>.torch<major.minor>.node (scripts/prebuild.mjs). */
const PREBUILD_NAME = /^usam\.(cpu|cuda)\.torch(\d+\.\d+)\.node$/;

export function addonCandidates(root = packageRoot, env: NodeJS.ProcessEnv = process.env): Candidate[] {
  check.string('addonCandidates', 'root', root, 'a package folder');
  check.record('addonCandidates', 'env', env);
  // an explicit binary is the only candidate: falling back would hide that it does not load
  if (env.USAM_ADDON) return [{ path: resolve(env.USAM_ADDON), source: 'USAM_ADDON' }];
  const local: Candidate = { path: join(root, 'build', 'Release', 'usam.node'), source: 'local build' };
  const dir = join(root, 'prebuilds', `${process.platform}-${process.arch}`);
  const prebuilds: Candidate[] = existsSync(dir)
    ? readdirSync(dir)
        .map((f) => ({ f, m: PREBUILD_NAME.exec(f) }))
        .filter((e) => e.m)
        .map(({ f, m }) => ({ path: join(dir, f), source: 'prebuild' as const, flavour: m![1], torch: m![2] }))
    : [];
  if (prebuilds.length === 0) return [local];
  // rank by the LibTorch each fits: the environment's first choice first;
  // for the same LibTorch the local build (made for it), then CUDA, then CPU
  const { all } = readLibtorchRecord(libtorchRecordPath(root), env) ?? findAllLibtorch(env);
  const localInfo = existsSync(local.path) ? readBuildInfo(local.path) : null;
  const rank = (c: Candidate) => {
    const i =
      c.source === 'local build'
        ? all.findIndex((t) => localInfo !== null && t.libDir === localInfo.torchLibDir)
        : all.findIndex((t) => majorMinor(t.version) === c.torch && (c.flavour !== 'cuda' || t.cuda));
    return (i < 0 ? all.length : i) * 3 + (c.source === 'local build' ? 0 : c.flavour === 'cuda' ? 1 : 2);
  };
  return [...prebuilds, local].sort((a, b) => rank(a) - rank(b));
}

export class AddonLoadError extends UsamError {
  constructor(
    readonly attempts: Attempt[],
    env: NodeJS.ProcessEnv = process.env,
  ) {
    check.array('new AddonLoadError', 'attempts', attempts, 'an array of { source, path, error }');
    check.record('new AddonLoadError', 'env', env);
    const { all, tried } = findAllLibtorch(env);
    super(
      'universal-sam: no native addon could be loaded. Binaries tried:\n' +
        attempts.map((a) => `  - ${a.source}: ${a.path}\n      ${a.error}`).join('\n') +
        (all.length > 0
          ? `\nLibTorch on this machine:\n${all.map((t) => `  - ${describeLibtorch(t)}, from ${t.source} (${t.where})`).join('\n')}`
          : `\nLibTorch: not found. Looked in:\n${describeTried(tried)}\n${HOW_TO_PROVIDE}`) +
        '\nThen run `npm install` (or `npm run build:native`) in the package to fetch a prebuilt binary or build one.',
    );
  }
}


/**
 * The LibTorch a binary must run with, or why there is none. A prebuild's is
 * the first LibTorch of this environment that fits it: from the install's
 * record in root when valid, else from a search.
 */
export function libtorchFor(info: BuildInfo, env: NodeJS.ProcessEnv = process.env, root = packageRoot): LibtorchLibrary | string {
  const built = `built against LibTorch ${info.torch} (${info.flavour}) at ${info.torchLibDir}`;
  if (info.kind === 'local') {
    const here = libtorchAt(info.torchLibDir);
    if (!here) return `${built}, which is no longer there; rebuild it (npm run build:native)`;
    if (here.version && majorMinor(here.version) !== majorMinor(info.torch))
      return `${built}, which now holds LibTorch ${here.version}; rebuild it (npm run build:native)`;
    return here;
  }
  const fitting = (all: LibtorchFound[]) => all.find((t) => majorMinor(t.version) === majorMinor(info.torch) && (info.flavour !== 'cuda' || t.cuda));
  const recorded = fitting(readLibtorchRecord(libtorchRecordPath(root), env)?.all ?? []);
  if (recorded) return recorded;
  // a record without one that fits does not decide: a fitting LibTorch may have been installed since
  const { all } = findAllLibtorch(env);
  const fits = fitting(all);
  if (fits) return fits;
  const here = all.length > 0 ? all.map(describeLibtorch).join('; ') : 'none';
  return `prebuilt against LibTorch ${majorMinor(info.torch)} (${info.flavour}), and no LibTorch ${majorMinor(info.torch)}` +
    `${info.flavour === 'cuda' ? ' with CUDA' : ''} is on this machine (found: ${here})`;
}

/** Folders of the LibTorch libraries already mapped into this process (another addon, an earlier load). */
function libtorchDirsInProcess(): string[] {
  let maps: string;
  try {
    maps = readFileSync('/proc/self/maps', 'utf8');
  } catch {
    return [];
  }
  const dirs = new Set<string>();
  for (const line of maps.split('\n')) {
    const path = line.slice(line.indexOf('/'));
    if (line.includes('/') && /^lib(c10|torch_cpu)\.so/.test(basename(path))) dirs.add(realpath(dirname(path)));
  }
  return [...dirs];
}

// How LibTorch's libraries are loaded ahead of the addon: now, with global
// symbols, and never unloaded. process.dlopen() closes a library that does
// not register as an addon, and without RTLD_NODELETE (glibc's 0x1000; Node's
// os.constants.dlopen lacks it) that unloads it again, so the addon's
// dependencies would be looked up on the system path instead (measured: a
// torch 2.13 prebuild then bound Debian's libtorch_cpu.so.1.13 and died of
// SIGBUS).
const RTLD_NODELETE = 0x1000;
const PRELOAD_FLAGS = constants.dlopen.RTLD_NOW | constants.dlopen.RTLD_GLOBAL | RTLD_NODELETE;

// Run in a child process: load the LibTorch libraries by path as above,
// then the addon; print its versions().
const CHILD_LOAD = `
const { libs, addon, flags } = JSON.parse(process.argv[1]);
for (const lib of libs) {
  try { process.dlopen({ exports: {} }, lib, flags); }
  catch (e) { if (!/did not self-register/.test(e.message)) { console.error(e.message); process.exit(2); } }
}
process.stdout.write(JSON.stringify(require(addon).versions()));`;

/**
 * The folder of this user's test-load stamps (mode 0700, owned by the user),
 * or null when it cannot be had safely: then every process checks again.
 */
function stampFolder(): string | null {
  const dir = join(tmpdir(), `universal-sam-load-checks-${process.getuid?.() ?? 'user'}`);
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const s = statSync(dir);
    if (!s.isDirectory() || (process.getuid && s.uid !== process.getuid()) || (s.mode & 0o077) !== 0) return null;
    return dir;
  } catch {
    return null;
  }
}

/** Test-loads a binary in a child process; null when it loaded, else why not. */
function loadsInChild(addonPath: string, libs: string[]): string | null {
  const id = (p: string) => {
    const s = statSync(p);
    return [realpath(p), s.size, s.mtimeMs];
  };
  // what else decides how the libraries resolve: the dynamic loader's
  // variables, and a wheel's nvidia/*/lib folders (pip replaces files there)
  const nvidia = join(dirname(libs[0] ?? addonPath), '..', '..', 'nvidia');
  const nvidiaDirs = existsSync(nvidia) ? readdirSync(nvidia).map((d) => join(nvidia, d, 'lib')).filter((d) => existsSync(d)).map(id) : [];
  const key = createHash('sha256')
    .update(JSON.stringify([id(addonPath), libs.map(id), nvidiaDirs, process.env.LD_LIBRARY_PATH ?? '', process.env.LD_PRELOAD ?? '', process.execPath, process.versions.modules]))
    .digest('hex');
  const stampDir = stampFolder();
  const stamp = stampDir ? join(stampDir, key.slice(0, 32)) : null;
  if (stamp && existsSync(stamp)) return null;
  const r = spawnSync(process.execPath, ['-e', CHILD_LOAD, JSON.stringify({ libs, addon: addonPath, flags: PRELOAD_FLAGS })], {
    encoding: 'utf8',
    timeout: 300_000,
  });
  if (r.error) return `could not be test-loaded in a child process: ${r.error.message}`;
  if (r.signal)
    return `crashed (${r.signal}) when test-loaded in a child process, so it was not loaded here: the binary and ` +
      `LibTorch ${libs.length > 0 ? `in ${dirname(libs[0])} ` : ''}do not fit together (an ABI mismatch); rebuild it (npm run build:native)`;
  if (r.status !== 0) {
    const lines = r.stderr.split('\n').map((l) => l.trim()).filter(Boolean);
    const reason = lines.find((l) => /^Error:|error/i.test(l)) ?? lines.at(-1) ?? `exit code ${r.status}`;
    return `failed to load in a child process: ${reason.replace(/^Error: /, '')}`;
  }
  try {
    if (stamp) writeFileSync(stamp, r.stdout, { flag: 'wx', mode: 0o600 });
  } catch {
    // no stamp (or another process wrote it first): the next process checks again
  }
  return null;
}

/** LibTorch folders this loader has loaded into the process (they stay: RTLD_NODELETE). */
const preloadedHere = new Set<string>();

function loadLibrariesGlobally(libs: string[]): void {
  for (const lib of libs) {
    try {
      process.dlopen({ exports: {} } as NodeJS.Module, lib, PRELOAD_FLAGS);
    } catch (e) {
      // a plain library is no addon ("did not self-register"): RTLD_NODELETE keeps it loaded, which is all we want
      if (!(e instanceof Error) || !/did not self-register/.test(e.message)) throw e;
    }
  }
}

function firstLine(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  return msg.split('\n')[0];
}

/** Loads one candidate, or throws why it cannot be loaded. */
function loadCandidate(c: Candidate, env: NodeJS.ProcessEnv, root: string): Loaded {
  if (!existsSync(c.path)) throw new UsamError('file does not exist');
  const build = readBuildInfo(c.path);
  if (!build)
    throw new UsamError('has no universal-sam build info (not a universal-sam binary, or built by an older version); rebuild it (npm run build:native)');
  if (c.flavour && (build.flavour !== c.flavour || majorMinor(build.torch) !== c.torch))
    throw new UsamError(`is named for ${c.flavour} LibTorch ${c.torch} but was built as ${build.flavour} against LibTorch ${build.torch}`);
  const libtorch = libtorchFor(build, env, root);
  if (typeof libtorch === 'string') throw new UsamError(libtorch);

  const other = libtorchDirsInProcess().filter((d) => d !== libtorch.libDir);
  if (other.length > 0) {
    const held = libtorchAt(other[0]) ? describeLibtorch(libtorchAt(other[0])!) : `the LibTorch in ${other[0]}`;
    throw new UsamError(
      `needs ${describeLibtorch(libtorch)}, but this process already has the LibTorch in ${other.join(', ')} loaded (${held})` +
        (preloadedHere.has(other[0])
          ? ', which universal-sam loaded for a candidate listed above that then failed; fix or remove that one. '
          : ', loaded by another library of this process. ') +
        `Two LibTorch builds cannot share a process: build universal-sam against that one (LIBTORCH or Torch_DIR=<its folder>, then npm run build:native).`,
    );
  }

  const libs = libtorchFiles(libtorch.libDir, build.flavour);
  const childError = loadsInChild(c.path, libs);
  if (childError) throw new UsamError(childError);

  loadLibrariesGlobally(libs);
  preloadedHere.add(libtorch.libDir);
  const addon = createRequire(import.meta.url)(c.path) as Addon;
  // `using t = ...` disposes a tensor at the end of its block
  for (const cls of [addon.Tensor, addon.HvpCache])
    Object.defineProperty(cls.prototype, Symbol.dispose, {
      value(this: { dispose(): void }) {
        this.dispose();
      },
    });
  // an older binary without it still loads (its errors are plain Errors)
  if (typeof addon.setErrorClass === 'function') addon.setErrorClass(NativeError);
  const v = addon.versions();
  if (majorMinor(v.torch) !== majorMinor(build.torch))
    throw new UsamError(`built against LibTorch ${build.torch} but reports LibTorch ${v.torch}`);
  const loadedDir = v.torchLibrary ? realpath(dirname(v.torchLibrary)) : libtorch.libDir;
  if (loadedDir !== libtorch.libDir)
    throw new UsamError(`was meant to run with ${describeLibtorch(libtorch)} but LibTorch came from ${loadedDir}`);
  return { addon, from: c, build, libtorch };
}

/** Tries each candidate in order; returns the first that loads and fits (root: the package whose install record to use). */
export function loadAddonFrom(candidates: Candidate[], env: NodeJS.ProcessEnv = process.env, root = packageRoot): Loaded {
  const attempts: Attempt[] = [];
  for (const c of candidates) {
    try {
      return loadCandidate(c, env, root);
    } catch (e) {
      attempts.push({ ...c, error: firstLine(e) });
    }
  }
  throw new AddonLoadError(attempts, env);
}

let cached: Loaded | undefined;

/** The loaded addon (loaded once per thread). */
export function native(): Addon {
  cached ??= loadAddonFrom(addonCandidates());
  return cached.addon;
}

/** Which candidate was loaded, what it was built against, and the LibTorch it runs with. */
export function loadedFrom(): Candidate & { build: BuildInfo; libtorch: LibtorchLibrary } {
  native();
  return { ...cached!.from, build: cached!.build, libtorch: cached!.libtorch };
}
