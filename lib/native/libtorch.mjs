// LibTorch installations on this machine, and what a binary was built
// against. Shared by the install step (plain JS: it runs before TypeScript is
// compiled) and the loader (lib/native/load.ts).
//
// Where LibTorch comes from, in order: LIBTORCH or Torch_DIR from the
// environment; a Python torch (PYTHON, then python3); the system (Debian's
// libtorch-dev). The first found is the one a build uses; the loader may
// match a prebuilt binary to any of them.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { join } from 'node:path';

// USAM_SYSTEM_TORCH_DIRS (':'-separated) replaces the list (tests use it to
// simulate a machine without LibTorch).
const systemTorchDirs = (env) => env.USAM_SYSTEM_TORCH_DIRS !== undefined
  ? env.USAM_SYSTEM_TORCH_DIRS.split(':').filter(Boolean)
  : SYSTEM_TORCH_DIRS;
export const SYSTEM_TORCH_DIRS = [
  '/usr/lib/x86_64-linux-gnu/cmake/Torch',
  '/usr/lib/aarch64-linux-gnu/cmake/Torch',
  '/usr/lib/cmake/Torch',
  '/usr/local/lib/cmake/Torch',
  '/usr/local/libtorch/share/cmake/Torch',
  '/opt/libtorch/share/cmake/Torch',
];

const hasConfig = (dir) => existsSync(join(dir, 'TorchConfig.cmake'));

/** The real path, or the path itself when it cannot be resolved. */
export const realpath = (p) => {
  try {
    return realpathSync(p);
  } catch {
    return p;
  }
};

/** The folder holding libtorch.so for a folder holding TorchConfig.cmake, or null. */
export function libtorchLibDir(torchDir) {
  // LibTorch archives and Python wheels: <root>/share/cmake/Torch -> <root>/lib;
  // Debian: /usr/lib/<triplet>/cmake/Torch -> /usr/lib/<triplet>
  // (the same rule as CMakeLists.txt's USAM_TORCH_LIB_DIR)
  for (const dir of [join(torchDir, '..', '..', '..', 'lib'), join(torchDir, '..', '..')])
    if (existsSync(join(dir, 'libtorch.so'))) return realpath(dir);
  return null;
}

/** The version in a TorchConfigVersion.cmake ("2.13.0"), or null. */
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
 */
export function libtorchAt(libDir) {
  if (!libDir || !existsSync(join(libDir, 'libtorch.so'))) return null;
  const configs = [join(libDir, '..', 'share', 'cmake', 'Torch'), join(libDir, 'cmake', 'Torch')];
  const version = configs.map(configVersion).find(Boolean) ?? null;
  return { libDir: realpath(libDir), version, cuda: existsSync(join(libDir, 'libtorch_cuda.so')) };
}

/**
 * The torch package folder of a Python, found without importing torch
 * (importing takes seconds; the spec lookup milliseconds).
 */
function pythonTorchPackage(py, env) {
  const code = 'import importlib.util as u; s = u.find_spec("torch"); print(s.submodule_search_locations[0] if s else "")';
  return execFileSync(py, ['-c', code], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000, env }).trim();
}

// One search per environment and process: the loader asks several times
// while ranking and checking candidates, and each asks up to three Pythons.
const searches = new Map();

/** Forget earlier searches (after installing a LibTorch). */
export function clearLibtorchSearches() {
  searches.clear();
}

/**
 * Every LibTorch this environment points at, in the order of preference.
 * Returns { all: [{source, where, torchDir, libDir, version, cuda}], tried: [{source, where, why}] }
 * where tried lists the places that gave none.
 */
export function findAllLibtorch(env = process.env) {
  const key = JSON.stringify(['LIBTORCH', 'Torch_DIR', 'PYTHON', 'PATH', 'USAM_SYSTEM_TORCH_DIRS'].map((k) => env[k] ?? null));
  if (!searches.has(key)) searches.set(key, searchLibtorch(env));
  const { all, tried } = searches.get(key);
  return { all: all.map((t) => ({ ...t })), tried: tried.map((t) => ({ ...t })) };
}

function searchLibtorch(env) {
  const all = [];
  const tried = [];
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

  const pythons = [...new Set([env.PYTHON, 'python3', '/usr/bin/python3'].filter(Boolean))];
  for (const py of pythons) {
    let pkg;
    try {
      pkg = pythonTorchPackage(py, env);
    } catch (e) {
      tried.push({ source: 'python torch', where: py, why: e.code === 'ENOENT' ? 'not found' : 'cannot run it' });
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

/** The LibTorch a build uses: the first found. Returns { found: {source, where, torchDir, libDir, version, cuda} | null, tried }. */
export function findLibtorch(env = process.env) {
  const { all, tried } = findAllLibtorch(env);
  return { found: all[0] ?? null, tried };
}

/** "LibTorch 2.13.0 (cpu) at /…/torch/lib" */
export function describeLibtorch(t) {
  return `LibTorch ${t.version ?? '(unknown version)'} (${t.cuda ? 'cuda' : 'cpu'}) at ${t.libDir}`;
}

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

// ---------------------------------------------------------------------------
// Build info: CMake embeds a JSON object between two markers in every binary
// (native/build_info.h.in), readable without loading the binary.
const MARKER = '<<universal-sam-build-info>>';

/**
 * {flavour, torch, torchLibDir, cuda, kind: 'local'|'prebuild', addon} of a
 * binary, or null when the file has none (not a universal-sam binary, or one
 * built before build info existed).
 */
export function readBuildInfo(binaryPath) {
  let bytes;
  try {
    bytes = readFileSync(binaryPath);
  } catch {
    return null;
  }
  const marker = Buffer.from(MARKER, 'latin1');
  const start = bytes.indexOf(marker);
  if (start < 0) return null;
  const end = bytes.indexOf(marker, start + marker.length);
  if (end < 0) return null;
  try {
    return JSON.parse(bytes.subarray(start + marker.length, end).toString('utf8'));
  } catch {
    return null;
  }
}

/** The major.minor of a version string: "2.13.0+cpu" -> "2.13". */
export const majorMinor = (version) => (version ?? '').split('.').slice(0, 2).join('.');

/** The libraries to load, in dependency order, for a flavour ('cpu' | 'cuda') from a LibTorch folder. */
export function libtorchFiles(libDir, flavour) {
  const names = ['libc10.so', 'libtorch_cpu.so', ...(flavour === 'cuda' ? ['libc10_cuda.so', 'libtorch_cuda.so'] : []), 'libtorch.so'];
  return names.map((n) => join(libDir, n)).filter((p) => existsSync(p));
}
