// @ts-check
// LibTorch installations on this machine, what a binary was built against,
// and the install's record of what it found. Shared by the install step
// (plain JS: it runs before TypeScript is compiled) and the loader
// (lib/native/load.ts). The types are JSDoc, checked by tsc (allowJs), which
// also emits this file and its declarations into dist/native/ beside the
// loader (tsc would not copy a hand-written declaration file).
//
// Where LibTorch comes from, in order: LIBTORCH or Torch_DIR from the
// environment; a Python torch (PYTHON, then python3); the system (Debian's
// libtorch-dev). The first found is the one a build uses; the loader may
// match a prebuilt binary to any of them.
import { execFileSync } from 'node:child_process';
import { accessSync, constants, existsSync, mkdirSync, readFileSync, realpathSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

/**
 * A place the search looked that gave no LibTorch, and why.
 * @typedef {{ source: string, where: string, why: string }} LibtorchAttempt
 */
/**
 * A LibTorch library folder: its version (from TorchConfigVersion.cmake) and whether it is a CUDA build.
 * @typedef {{ libDir: string, version: string | null, cuda: boolean }} LibtorchLibrary
 */
/**
 * A LibTorch the search found: how (source: 'LIBTORCH', 'Torch_DIR', 'python torch' or 'system'; where:
 * the variable's value, the interpreter or the folder) and its CMake folder.
 * @typedef {LibtorchLibrary & { source: string, where: string, torchDir: string }} LibtorchFound
 */
/**
 * Every LibTorch this environment points at, in the order of preference, and the places that gave none.
 * @typedef {{ all: LibtorchFound[], tried: LibtorchAttempt[] }} LibtorchSearch
 */
/**
 * What a binary was built against (CMake embeds it: native/build_info.h.in).
 * @typedef {{ flavour: 'cpu' | 'cuda', torch: string, torchLibDir: string, cuda: string, kind: 'local' | 'prebuild', addon: string }} BuildInfo
 */

// USAM_SYSTEM_TORCH_DIRS (':'-separated) replaces the list (tests use it to
// simulate a machine without LibTorch).
/** @param {NodeJS.ProcessEnv} env */
const systemTorchDirs = (env) => env.USAM_SYSTEM_TORCH_DIRS !== undefined
  ? env.USAM_SYSTEM_TORCH_DIRS.split(':').filter(Boolean)
  : SYSTEM_TORCH_DIRS;
/** @type {string[]} */
export const SYSTEM_TORCH_DIRS = [
  '/usr/lib/x86_64-linux-gnu/cmake/Torch',
  '/usr/lib/aarch64-linux-gnu/cmake/Torch',
  '/usr/lib/cmake/Torch',
  '/usr/local/lib/cmake/Torch',
  '/usr/local/libtorch/share/cmake/Torch',
  '/opt/libtorch/share/cmake/Torch',
];

/** @param {string} dir */
const hasConfig = (dir) => existsSync(join(dir, 'TorchConfig.cmake'));

/**
 * The real path, or the path itself when it cannot be resolved.
 * @param {string} p
 * @returns {string}
 */
export const realpath = (p) => {
  try {
    return realpathSync(p);
  } catch {
    return p;
  }
};

/**
 * The folder holding libtorch.so for a folder holding TorchConfig.cmake, or null.
 * @param {string} torchDir
 * @returns {string | null}
 */
export function libtorchLibDir(torchDir) {
  // LibTorch archives and Python wheels: <root>/share/cmake/Torch -> <root>/lib;
  // Debian: /usr/lib/<triplet>/cmake/Torch -> /usr/lib/<triplet>
  // (the same rule as CMakeLists.txt's USAM_TORCH_LIB_DIR)
  for (const dir of [join(torchDir, '..', '..', '..', 'lib'), join(torchDir, '..', '..')])
    if (existsSync(join(dir, 'libtorch.so'))) return realpath(dir);
  return null;
}

/**
 * The version in a TorchConfigVersion.cmake ("2.13.0"), or null.
 * @param {string} torchDir
 * @returns {string | null}
 */
function configVersion(torchDir) {
  try {
    return /set\(PACKAGE_VERSION "([^"]+)"\)/.exec(readFileSync(join(torchDir, 'TorchConfigVersion.cmake'), 'utf8'))?.[1] ?? null;
  } catch {
    return null;
  }
}

/**
 * What a LibTorch library folder holds: { libDir, version, cuda } (version
 * from the TorchConfigVersion.cmake beside it, null when there is none;
 * cuda: it has libtorch_cuda.so), or null when there is no libtorch.so.
 * @param {string | null} libDir
 * @returns {LibtorchLibrary | null}
 */
export function libtorchAt(libDir) {
  if (!libDir || !existsSync(join(libDir, 'libtorch.so'))) return null;
  const configs = [join(libDir, '..', 'share', 'cmake', 'Torch'), join(libDir, 'cmake', 'Torch')];
  const version = configs.map(configVersion).find(Boolean) ?? null;
  return { libDir: realpath(libDir), version, cuda: existsSync(join(libDir, 'libtorch_cuda.so')) };
}

/**
 * The Pythons the search asks, in order.
 * @param {NodeJS.ProcessEnv} env
 * @returns {string[]}
 */
const pythonsOf = (env) => [...new Set([...(env.PYTHON ? [env.PYTHON] : []), 'python3', '/usr/bin/python3'])];

/**
 * The torch package folder of a Python, found without importing torch
 * (importing takes seconds; the spec lookup milliseconds).
 * @param {string} py
 * @param {NodeJS.ProcessEnv} env
 * @returns {string}
 */
function pythonTorchPackage(py, env) {
  const code = 'import importlib.util as u; s = u.find_spec("torch"); print(s.submodule_search_locations[0] if s else "")';
  return execFileSync(py, ['-c', code], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000, env }).trim();
}

/**
 * The file a command name runs: the first executable file of that name on
 * PATH, or the path itself (resolved) when it names one; null when none.
 * @param {string} command
 * @param {NodeJS.ProcessEnv} env
 * @returns {string | null}
 */
function commandPath(command, env) {
  if (command.includes('/')) return resolve(command);
  for (const dir of (env.PATH ?? '').split(':')) {
    const path = resolve(dir || '.', command);
    try {
      accessSync(path, constants.X_OK);
      if (statSync(path).isFile()) return path;
    } catch {
      // not here: the next folder
    }
  }
  return null;
}

// What decides a search besides the files it finds, as far as it can be told
// without running Python: the variables it reads, where Python looks for
// packages (PYTHONPATH, PYTHONHOME, the user's site-packages under HOME or
// PYTHONUSERBASE), and the file each Python it asks resolves to. Not PATH
// itself, only what it resolves: npm runs the install with its own folders
// put in front of the user's PATH. (A shim that picks a Python by folder,
// as pyenv's does, is one file here: the record keeps what the install found.)
const SEARCH_VARIABLES = ['LIBTORCH', 'Torch_DIR', 'PYTHON', 'USAM_SYSTEM_TORCH_DIRS', 'PYTHONPATH', 'PYTHONHOME', 'PYTHONUSERBASE', 'PYTHONNOUSERSITE', 'HOME'];

/**
 * What decides the result of a search in this environment, as far as it can be told without running Python.
 * @param {NodeJS.ProcessEnv} [env]
 * @returns {{ variables: Record<string, string | null>, pythons: [string, string | null][] }}
 */
export function searchKey(env = process.env) {
  return {
    variables: Object.fromEntries(SEARCH_VARIABLES.map((k) => [k, env[k] ?? null])),
    pythons: pythonsOf(env).map((py) => [py, commandPath(py, env)]),
  };
}

// One search per environment and process: the loader asks several times
// while ranking and checking candidates, and each asks up to three Pythons.
/** @type {Map<string, LibtorchSearch>} */
const searches = new Map();

/** Forget earlier searches (after installing a LibTorch). */
export function clearLibtorchSearches() {
  searches.clear();
}

/**
 * Every LibTorch this environment points at, in the order of preference,
 * and the places that gave none (runs the Pythons: use the install's record
 * where it is valid, readLibtorchRecord).
 * @param {NodeJS.ProcessEnv} [env]
 * @returns {LibtorchSearch}
 */
export function findAllLibtorch(env = process.env) {
  const key = JSON.stringify(searchKey(env));
  let search = searches.get(key);
  if (!search) searches.set(key, (search = searchLibtorch(env)));
  return { all: search.all.map((t) => ({ ...t })), tried: search.tried.map((t) => ({ ...t })) };
}

/**
 * @param {NodeJS.ProcessEnv} env
 * @returns {LibtorchSearch}
 */
function searchLibtorch(env) {
  /** @type {LibtorchFound[]} */
  const all = [];
  /** @type {LibtorchAttempt[]} */
  const tried = [];
  /** @type {(source: string, where: string, torchDir: string, missing?: string) => void} */
  const consider = (source, where, torchDir, missing) => {
    const info = torchDir && hasConfig(torchDir) ? libtorchAt(libtorchLibDir(torchDir)) : null;
    if (!info) {
      tried.push({ source, where, why: missing ?? (torchDir && hasConfig(torchDir) ? `no libtorch.so beside ${torchDir}` : `no TorchConfig.cmake in ${torchDir}`) });
      return;
    }
    if (all.some((f) => f.libDir === info.libDir)) return;
    all.push({ source, where, torchDir: realpath(torchDir), ...info, version: info.version ?? configVersion(torchDir) });
  };

  if (env.LIBTORCH) consider('LIBTORCH', env.LIBTORCH, join(env.LIBTORCH, 'share', 'cmake', 'Torch'));
  else tried.push({ source: 'LIBTORCH', where: 'environment', why: 'not set' });

  if (env.Torch_DIR) consider('Torch_DIR', env.Torch_DIR, env.Torch_DIR);
  else tried.push({ source: 'Torch_DIR', where: 'environment', why: 'not set' });

  for (const py of pythonsOf(env)) {
    let pkg;
    try {
      pkg = pythonTorchPackage(py, env);
    } catch (e) {
      tried.push({ source: 'python torch', where: py, why: /** @type {NodeJS.ErrnoException} */ (e).code === 'ENOENT' ? 'not found' : 'cannot run it' });
      continue;
    }
    if (!pkg) {
      tried.push({ source: 'python torch', where: py, why: 'cannot import torch' });
      continue;
    }
    const dir = join(pkg, 'share', 'cmake', 'Torch');
    consider('python torch', py, dir, hasConfig(dir) ? undefined
      : `torch at ${pkg} has no share/cmake/Torch/TorchConfig.cmake (this torch ships no C++ CMake files)`);
  }

  for (const dir of systemTorchDirs(env)) consider('system', dir, dir, hasConfig(dir) ? undefined : 'no TorchConfig.cmake');
  return { all, tried };
}

/**
 * The LibTorch a build uses: the first found.
 * @param {NodeJS.ProcessEnv} [env]
 * @returns {{ found: LibtorchFound | null, tried: LibtorchAttempt[] }}
 */
export function findLibtorch(env = process.env) {
  const { all, tried } = findAllLibtorch(env);
  return { found: all[0] ?? null, tried };
}

/**
 * "LibTorch 2.13.0 (cpu) at /…/torch/lib"
 * @param {LibtorchLibrary} t
 * @returns {string}
 */
export function describeLibtorch(t) {
  return `LibTorch ${t.version ?? '(unknown version)'} (${t.cuda ? 'cuda' : 'cpu'}) at ${t.libDir}`;
}

/**
 * @param {LibtorchAttempt[]} tried
 * @returns {string}
 */
export function describeTried(tried) {
  return tried.map((t) => `  - ${t.source} (${t.where}): ${t.why}`).join('\n');
}

export const HOW_TO_PROVIDE = [
  'Provide LibTorch in one of these ways, then run `npm install` again:',
  '  - install PyTorch 2.x for python3 (`pip install torch`, CPU or CUDA wheels; PYTHON selects the interpreter)',
  '  - set LIBTORCH to an unpacked LibTorch archive (the folder holding share/cmake/Torch)',
  '  - set Torch_DIR to a folder holding TorchConfig.cmake',
  '  - Debian/Ubuntu: `sudo apt-get install libtorch-dev` (CPU, LibTorch 1.13)',
].join('\n');

/**
 * The major.minor of a version string: "2.13.0+cpu" -> "2.13".
 * @param {string | null | undefined} version
 * @returns {string}
 */
export const majorMinor = (version) => (version ?? '').split('.').slice(0, 2).join('.');
