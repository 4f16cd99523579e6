// Where LibTorch comes from, in order: LIBTORCH or Torch_DIR from the
// environment; a Python torch (torch.utils.cmake_prefix_path); the system
// (Debian's libtorch-dev). Used by the install step and `usam doctor`.
import { existsSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

// USAM_SYSTEM_TORCH_DIRS (':'-separated) replaces the list (tests use it to
// simulate a machine without LibTorch).
export const SYSTEM_TORCH_DIRS = process.env.USAM_SYSTEM_TORCH_DIRS !== undefined
  ? process.env.USAM_SYSTEM_TORCH_DIRS.split(':').filter(Boolean)
  : [
  '/usr/lib/x86_64-linux-gnu/cmake/Torch',
  '/usr/lib/aarch64-linux-gnu/cmake/Torch',
  '/usr/lib/cmake/Torch',
  '/usr/local/lib/cmake/Torch',
  '/usr/local/libtorch/share/cmake/Torch',
  '/opt/libtorch/share/cmake/Torch',
];

const hasConfig = (dir) => existsSync(join(dir, 'TorchConfig.cmake'));

/** Returns { found: {source, torchDir} | null, tried: [{source, where, why}] }. */
export function findLibtorch(env = process.env) {
  const tried = [];
  const consider = (source, where, torchDir, missing) => {
    if (torchDir && hasConfig(torchDir)) return { source, torchDir };
    tried.push({ source, where, why: missing ?? `no TorchConfig.cmake in ${torchDir}` });
    return null;
  };

  if (env.LIBTORCH) {
    const hit = consider('LIBTORCH', env.LIBTORCH, join(env.LIBTORCH, 'share', 'cmake', 'Torch'));
    if (hit) return { found: hit, tried };
  } else tried.push({ source: 'LIBTORCH', where: 'environment', why: 'not set' });

  if (env.Torch_DIR) {
    const hit = consider('Torch_DIR', env.Torch_DIR, env.Torch_DIR);
    if (hit) return { found: hit, tried };
  } else tried.push({ source: 'Torch_DIR', where: 'environment', why: 'not set' });

  const pythons = [...new Set([env.PYTHON, 'python3', '/usr/bin/python3'].filter(Boolean))];
  for (const py of pythons) {
    let prefix;
    try {
      prefix = execFileSync(py, ['-c', 'import torch.utils; print(torch.utils.cmake_prefix_path)'], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
        timeout: 60_000,
      }).trim();
    } catch (e) {
      const why = e.code === 'ENOENT' ? 'not found' : 'cannot import torch';
      tried.push({ source: 'python torch', where: py, why });
      continue;
    }
    const hit = consider('python torch', py, join(prefix, 'Torch'), hasConfig(join(prefix, 'Torch')) ? undefined
      : `torch.utils.cmake_prefix_path is ${prefix}, which has no Torch/TorchConfig.cmake (this torch ships no C++ CMake files)`);
    if (hit) return { found: hit, tried };
  }

  for (const dir of SYSTEM_TORCH_DIRS) {
    const hit = consider('system', dir, dir, 'no TorchConfig.cmake');
    if (hit) return { found: hit, tried };
  }
  return { found: null, tried };
}

/** The folder holding libtorch.so for a folder holding TorchConfig.cmake, or null. */
export function libtorchLibDir(torchDir) {
  // LibTorch archives and Python wheels: <root>/share/cmake/Torch -> <root>/lib;
  // Debian: /usr/lib/<triplet>/cmake/Torch -> /usr/lib/<triplet>
  for (const dir of [join(torchDir, '..', '..', '..', 'lib'), join(torchDir, '..', '..')])
    if (existsSync(join(dir, 'libtorch.so'))) return dir;
  return null;
}

export function describeTried(tried) {
  return tried.map((t) => `  - ${t.source} (${t.where}): ${t.why}`).join('\n');
}

export const HOW_TO_PROVIDE = [
  'Provide LibTorch in one of these ways, then run `npm install` again:',
  '  - Debian/Ubuntu: `sudo apt-get install libtorch-dev` (CPU, LibTorch 1.13)',
  '  - set LIBTORCH to an unpacked LibTorch archive (the folder holding share/cmake/Torch)',
  '  - set Torch_DIR to a folder holding TorchConfig.cmake',
  '  - install PyTorch for python3 (CUDA wheels ship LibTorch 2.x: torch.utils.cmake_prefix_path)',
].join('\n');
