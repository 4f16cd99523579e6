// The only place that loads the native addon. Candidates, in order:
//   1. USAM_ADDON (an explicit path to a .node file),
//   2. prebuilt binaries under prebuilds/<platform>-<arch>/ (CUDA flavour
//      first, then CPU; each must load and report the LibTorch version its
//      file name was tagged with),
//   3. the local source build, build/Release/usam.node.
// When none loads, one error lists every candidate and why it failed.
import { existsSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { constants } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describeTried, findLibtorch, HOW_TO_PROVIDE, libtorchLibDir } from '../../scripts/libtorch.mjs';
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

/** Prebuilds are named usam.<flavour>.torch<major.minor>.node (scripts/prebuild.mjs). */
const PREBUILD_NAME = /^usam\.(cpu|cuda)\.torch(\d+\.\d+)\.node$/;

export function addonCandidates(root = packageRoot, env: NodeJS.ProcessEnv = process.env): Candidate[] {
  const list: Candidate[] = [];
  if (env.USAM_ADDON) list.push({ path: resolve(env.USAM_ADDON), source: 'USAM_ADDON' });
  const dir = join(root, 'prebuilds', `${process.platform}-${process.arch}`);
  if (existsSync(dir)) {
    const found = readdirSync(dir)
      .map((f) => ({ f, m: PREBUILD_NAME.exec(f) }))
      .filter((e) => e.m)
      .map(({ f, m }) => ({ path: join(dir, f), source: 'prebuild' as const, flavour: m![1], torch: m![2] }))
      .sort((a, b) => (a.flavour === b.flavour ? b.torch.localeCompare(a.torch) : a.flavour === 'cuda' ? -1 : 1));
    list.push(...found);
  }
  list.push({ path: join(root, 'build', 'Release', 'usam.node'), source: 'local build' });
  return list;
}

export class AddonLoadError extends Error {
  constructor(
    readonly attempts: Attempt[],
    env: NodeJS.ProcessEnv = process.env,
  ) {
    const { found, tried } = findLibtorch(env);
    super(
      'universal-sam: no native addon could be loaded. Binaries tried:\n' +
        attempts.map((a) => `  - ${a.source}: ${a.path}\n      ${a.error}`).join('\n') +
        (found
          ? `\nLibTorch: found (${found.source}) at ${found.torchDir}.`
          : `\nLibTorch: not found. Looked in:\n${describeTried(tried)}\n${HOW_TO_PROVIDE}`) +
        '\nThen run `npm install` (or `npm run build:native`) in the package to fetch a prebuilt binary or build one.',
    );
    this.name = 'AddonLoadError';
  }
}

const SYSTEM_LIB_DIRS = ['/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib', '/usr/local/lib'];

/**
 * A prebuilt binary was linked on another machine: its RPATH does not point
 * at this machine's LibTorch. Loading the LibTorch found here (LIBTORCH,
 * Torch_DIR, a Python torch) with RTLD_GLOBAL first lets the binary's
 * dependencies resolve to it by soname.
 */
function preloadLibtorch(flavour: string | undefined): void {
  const { found } = findLibtorch();
  const dir = found ? libtorchLibDir(found.torchDir) : null;
  if (!dir || SYSTEM_LIB_DIRS.includes(dir)) return;
  const libs = ['libc10.so', 'libtorch_cpu.so', ...(flavour === 'cuda' ? ['libc10_cuda.so', 'libtorch_cuda.so'] : []), 'libtorch.so'];
  for (const lib of libs) {
    const path = join(dir, lib);
    if (!existsSync(path)) continue;
    try {
      process.dlopen({ exports: {} } as NodeJS.Module, path, constants.dlopen.RTLD_NOW | constants.dlopen.RTLD_GLOBAL);
    } catch {
      // not an addon ("did not self-register"): the library stays loaded, which is all we want
    }
  }
}

function firstLine(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  return msg.split('\n')[0];
}

/** Tries each candidate in order; returns the first that loads and fits. */
export function loadAddonFrom(candidates: Candidate[]): { addon: Addon; from: Candidate } {
  const require = createRequire(import.meta.url);
  const attempts: Attempt[] = [];
  for (const c of candidates) {
    if (!existsSync(c.path)) {
      attempts.push({ ...c, error: 'file does not exist' });
      continue;
    }
    try {
      if (c.source === 'prebuild') preloadLibtorch(c.flavour);
      const addon = require(c.path) as Addon;
      const v = addon.versions();
      if (c.torch && !v.torch.startsWith(c.torch + '.')) {
        attempts.push({ ...c, error: `built for LibTorch ${c.torch} but loaded LibTorch ${v.torch}` });
        continue;
      }
      return { addon, from: c };
    } catch (e) {
      attempts.push({ ...c, error: firstLine(e) });
    }
  }
  throw new AddonLoadError(attempts);
}

let cached: { addon: Addon; from: Candidate } | undefined;

/** The loaded addon (loaded once per thread). */
export function native(): Addon {
  cached ??= loadAddonFrom(addonCandidates());
  return cached.addon;
}

/** Which candidate was loaded. */
export function loadedFrom(): Candidate {
  native();
  return cached!.from;
}
