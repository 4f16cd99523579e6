// Distribution: the packed package installs without a compiler and loads its
// prebuilt binary; the loader's error names every place it looked.
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { native } from '../lib/native/load.js';
import { repoRoot } from './helpers.js';

/** A folder whose only programs are node, npm and sh (npm runs scripts with it): no compiler, cmake or apt-get. */
function bareBin(): string {
  const bin = mkdtempSync(join(tmpdir(), 'usam-bin-'));
  symlinkSync(process.execPath, join(bin, 'node'));
  symlinkSync('/bin/sh', join(bin, 'sh'));
  const npm = spawnSync('sh', ['-c', 'command -v npm'], { encoding: 'utf8' }).stdout.trim();
  symlinkSync(npm, join(bin, 'npm'));
  return bin;
}

describe('npm pack → install → load from the prebuild', () => {
  it('installs the tarball into a fresh directory with no compiler on PATH and loads the prebuilt binary', () => {
    const work = mkdtempSync(join(tmpdir(), 'usam-pack-'));
    if (!existsSync(join(repoRoot, 'dist', 'index.js'))) {
      const tsc = spawnSync(process.execPath, [join(repoRoot, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json'], { cwd: repoRoot });
      expect(tsc.status).toBe(0);
    }
    // stage the package as `npm run prebuild` leaves it: the binary named by flavour and LibTorch version
    const stage = join(work, 'stage');
    for (const f of ['package.json', 'README.md', 'CMakeLists.txt', 'binding.gyp', 'dist', 'lib', 'native', 'scripts'])
      cpSync(join(repoRoot, f), join(stage, f), { recursive: true });
    const v = native().versions();
    const [major, minor] = v.torch.split('.');
    const prebuild = `usam.${v.flavour}.torch${major}.${minor}.node`;
    mkdirSync(join(stage, 'prebuilds', `${process.platform}-${process.arch}`), { recursive: true });
    cpSync(join(repoRoot, 'build/Release/usam.node'), join(stage, 'prebuilds', `${process.platform}-${process.arch}`, prebuild));
    const pack = spawnSync('npm', ['pack', '--ignore-scripts', '--pack-destination', work], { cwd: stage, encoding: 'utf8' });
    expect(pack.status, pack.stderr).toBe(0);
    const tarball = join(work, readdirSync(work).find((f) => f.endsWith('.tgz'))!);

    const app = join(work, 'app');
    mkdirSync(app);
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true, type: 'module' }));
    const env: NodeJS.ProcessEnv = { ...process.env, PATH: bareBin(), npm_config_loglevel: 'error' };
    for (const k of Object.keys(env)) if (k.startsWith('npm_') && k !== 'npm_config_loglevel' && k !== 'npm_config_cache') delete env[k];
    expect(spawnSync('/bin/sh', ['-c', 'command -v c++ g++ gcc cc cmake'], { env, encoding: 'utf8' }).stdout.trim()).toBe('');
    const install = spawnSync('npm', ['install', tarball, '--prefer-offline', '--no-audit', '--no-fund', '--foreground-scripts'], { cwd: app, env, encoding: 'utf8' });
    expect(install.status, install.stdout + install.stderr + JSON.stringify(install.error)).toBe(0);
    expect(install.stdout + install.stderr).toMatch(/using the prebuilt binary .*usam\.(cpu|cuda)\.torch/);
    expect(existsSync(join(app, 'node_modules/universal-sam/build'))).toBe(false);

    const use = spawnSync(
      'node',
      [
        '--input-type=module',
        '-e',
        `import { loadedFrom, Model, mlp, tensor, labels } from 'universal-sam';
         const m = new Model(mlp({ layers: [3, 4, 2] }), { dtype: 'float64', seed: 1 });
         const loss = m.loss(tensor(new Float64Array(6).fill(0.5), [2, 3]), labels([0, 1]));
         console.log(JSON.stringify({ from: loadedFrom(), loss }));`,
      ],
      { cwd: app, env, encoding: 'utf8' },
    );
    expect(use.status, use.stderr).toBe(0);
    const out = JSON.parse(use.stdout);
    expect(out.from.source).toBe('prebuild');
    expect(out.from.path).toContain(prebuild);
    expect(out.loss).toBeGreaterThan(0);
  });
});

describe('loader errors', () => {
  it('with no binary that loads and no LibTorch, the one error names every candidate and every place it looked', () => {
    const empty = mkdtempSync(join(tmpdir(), 'usam-empty-'));
    const garbage = join(empty, 'garbage.node');
    writeFileSync(garbage, 'not a shared object');
    const script = `
      import { addonCandidates, loadAddonFrom } from ${JSON.stringify(join(repoRoot, 'lib/native/load.ts'))};
      try { loadAddonFrom(addonCandidates(${JSON.stringify(empty)})); } catch (e) { console.log(e.message); process.exit(3); }`;
    const env: NodeJS.ProcessEnv = { PATH: dirname(process.execPath) === '/usr/bin' ? bareBin() : dirname(process.execPath), HOME: process.env.HOME, USAM_ADDON: garbage, USAM_SYSTEM_TORCH_DIRS: '/nonexistent/cmake/Torch' };
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: repoRoot, env, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(3);
    const msg = r.stdout;
    expect(msg).toMatch(/no native addon could be loaded/);
    expect(msg).toContain(`USAM_ADDON: ${garbage}`);
    expect(msg).toMatch(/local build: .*build\/Release\/usam\.node\n\s+file does not exist/);
    expect(msg).toMatch(/LibTorch: not found\. Looked in:/);
    expect(msg).toMatch(/LIBTORCH \(environment\): not set/);
    expect(msg).toMatch(/Torch_DIR \(environment\): not set/);
    expect(msg).toMatch(/python torch \(python3\): (not found|cannot import torch)/);
    expect(msg).toMatch(/system \(\/nonexistent\/cmake\/Torch\): no TorchConfig\.cmake/);
    expect(msg).toMatch(/apt-get install libtorch-dev/);
  });
});

describe('memory reuse', () => {
  // glibc only: the addon keeps freed tensor memory for reuse unless told not to
  const mallocTuned = (env: NodeJS.ProcessEnv) => {
    const script = `import { native } from ${JSON.stringify(join(repoRoot, 'lib/native/load.ts'))}; console.log(native().versions().mallocTuned);`;
    const merged: NodeJS.ProcessEnv = { ...process.env, ...env };
    for (const k of Object.keys(merged)) if (merged[k] === undefined) delete merged[k];
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: repoRoot, env: merged, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    return r.stdout.trim();
  };
  it('is on by default, off with USAM_MALLOC_TUNING=0, and left alone when the user tunes malloc', () => {
    expect(mallocTuned({ USAM_MALLOC_TUNING: undefined, GLIBC_TUNABLES: undefined })).toBe('true');
    expect(mallocTuned({ USAM_MALLOC_TUNING: '0' })).toBe('false');
    expect(mallocTuned({ USAM_MALLOC_TUNING: undefined, GLIBC_TUNABLES: 'glibc.malloc.trim_threshold=1000000' })).toBe('false');
  });
});

describe('scripts/gpu-check.sh (its CPU-side parts)', () => {
  it('is valid bash, and on a machine without a CUDA torch stops with a clear summary', () => {
    expect(spawnSync('bash', ['-n', join(repoRoot, 'scripts/gpu-check.sh')]).status).toBe(0);
    const out = mkdtempSync(join(tmpdir(), 'usam-gpu-'));
    const r = spawnSync('bash', [join(repoRoot, 'scripts/gpu-check.sh'), 'run', out], { cwd: repoRoot, encoding: 'utf8', env: { ...process.env, PYTHON: '/usr/bin/python3' } });
    expect(r.status).toBe(1);
    expect(readFileSync(join(out, 'summary.md'), 'utf8')).toMatch(/needs python3 with a CUDA torch and a visible GPU/);
  });
});
