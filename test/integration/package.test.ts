// Distribution and loading: the packed package installs without a compiler
// and loads the prebuilt binary that fits the LibTorch it finds; the loader
// never loads a binary next to another LibTorch, test-loads in a child
// process, and its errors name what it looked at; a build never mixes two
// LibTorch installations.
//
// Some checks need binaries or LibTorch installations beyond the one this
// suite runs on. CI provides them (.ci/run); elsewhere those checks are
// reported as skipped, naming the variable:
//   USAM_TEST_PREBUILDS       a folder of real prebuilds (npm run prebuild -- --out DIR)
//   USAM_TEST_BUILDS          ':'-separated local builds against other LibTorch versions
//   USAM_TEST_TORCH_PYTHONS   ':'-separated Pythons with PyTorch 2.x (their LibTorch)
import { spawn, spawnSync, type SpawnOptions } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadedFrom, native } from '../../lib/native/load.js';
import { readBuildInfo } from '../../lib/native/build-record.mjs';
import { repoRoot } from '../helpers.js';

const listFromEnv = (name: string) => (process.env[name] ?? '').split(':').filter(Boolean);
const prebuildDir = process.env.USAM_TEST_PREBUILDS;
const otherBuilds = listFromEnv('USAM_TEST_BUILDS').filter((p) => existsSync(p));
const torchPythons = listFromEnv('USAM_TEST_TORCH_PYTHONS').filter((p) => existsSync(p));
const platform = `${process.platform}-${process.arch}`;
const loaded = loadedFrom();

/** torch.__version__ and torch.version.cuda of a Python: what its LibTorch is, by PyTorch's own word. */
function pythonTorch(python: string): { version: string; cuda: boolean } {
  const r = spawnSync(python, ['-c', 'import torch, json; print(json.dumps([torch.__version__, torch.version.cuda]))'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${python} cannot import torch: ${r.stderr}`);
  const [version, cuda] = JSON.parse(r.stdout) as [string, string | null];
  return { version, cuda: cuda !== null };
}

/** The LibTorch of Debian's libtorch-dev, by dpkg's word, or null when it is not installed. */
function debianTorch(): { version: string; cuda: boolean } | null {
  const r = spawnSync('dpkg-query', ['-W', '-f=${Status} ${Version}', 'libtorch-dev'], { encoding: 'utf8' });
  const m = /install ok installed (\d+\.\d+\.\d+)/.exec(r.stdout ?? '');
  return m ? { version: m[1], cuda: false } : null;
}

/** A folder whose only programs are node, npm and sh (npm runs scripts with it): no compiler, cmake, apt-get or python. */
function bareBin(): string {
  const bin = mkdtempSync(join(tmpdir(), 'usam-bin-'));
  symlinkSync(process.execPath, join(bin, 'node'));
  symlinkSync('/bin/sh', join(bin, 'sh'));
  const npm = spawnSync('sh', ['-c', 'command -v npm'], { encoding: 'utf8' }).stdout.trim();
  symlinkSync(npm, join(bin, 'npm'));
  return bin;
}

/** The environment of a user's shell with only node and npm, and PYTHON as given. */
function userEnv(python?: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, PATH: bareBin(), npm_config_loglevel: 'error' };
  for (const k of Object.keys(env))
    if ((k.startsWith('npm_') && k !== 'npm_config_loglevel' && k !== 'npm_config_cache') || k.startsWith('USAM_') || k === 'VITEST')
      delete env[k];
  delete env.PYTHON;
  if (python) env.PYTHON = python;
  return env;
}

/**
 * spawnSync's result without holding this worker's event loop: vitest's
 * worker must answer its runner within 60 s, and an npm install on a busy
 * machine can take longer than that.
 */
function spawnAsync(command: string, args: string[], options: SpawnOptions): Promise<{ status: number | null; stdout: string; stderr: string; error?: Error }> {
  return new Promise((done) => {
    const child = spawn(command, args, { ...options, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '', stderr = '';
    child.stdout!.on('data', (d) => (stdout += d));
    child.stderr!.on('data', (d) => (stderr += d));
    child.on('error', (error) => done({ status: null, stdout, stderr, error }));
    child.on('close', (status) => done({ status, stdout, stderr }));
  });
}

/** Runs an ES module script with node, from `cwd`; returns its JSON output. */
function runModule(script: string, cwd: string, env: NodeJS.ProcessEnv): { status: number | null; out: unknown; stderr: string } {
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd, env, encoding: 'utf8' });
  let out: unknown = null;
  try {
    out = JSON.parse(r.stdout);
  } catch {
    out = r.stdout;
  }
  return { status: r.status, out, stderr: r.stderr };
}

/** Runs TypeScript from the checkout (the loader as the library has it) in a fresh process. */
function runTs(script: string, env: NodeJS.ProcessEnv = process.env) {
  return spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: repoRoot, env, encoding: 'utf8' });
}

const loaderPath = JSON.stringify(join(repoRoot, 'lib/native/load.ts'));

describe('npm pack → install → load from the prebuild', () => {
  // Real prebuilds when CI made them; else the binary this suite runs on, under its prebuild name.
  const prebuilds = prebuildDir
    ? readdirSync(prebuildDir).filter((f) => /^usam\.(cpu|cuda)\.torch\d+\.\d+\.node$/.test(f)).map((f) => join(prebuildDir, f))
    : [];
  const what = prebuildDir
    ? `the prebuilds in USAM_TEST_PREBUILDS (${prebuilds.map((p) => basename(p)).join(', ')})`
    : 'the binary this suite runs on, as a prebuild (USAM_TEST_PREBUILDS not set: real prebuilds untested)';

  it(`installs ${what} with no compiler on PATH and loads the one that fits each LibTorch`, async () => {
    const work = mkdtempSync(join(tmpdir(), 'usam-pack-'));
    const stage = join(work, 'stage');
    for (const f of ['package.json', 'README.md', 'CMakeLists.txt', 'binding.gyp', 'lib', 'native', 'scripts'])
      cpSync(join(repoRoot, f), join(stage, f), { recursive: true });
    // dist/ compiled now from these sources (a stale dist/ in the checkout must not stand in)
    const tsc = await spawnAsync(process.execPath, [join(repoRoot, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json', '--outDir', join(stage, 'dist')], {
      cwd: repoRoot,
    });
    expect(tsc.status, tsc.stdout + tsc.stderr).toBe(0);
    const staged = join(stage, 'prebuilds', platform);
    mkdirSync(staged, { recursive: true });
    const binaries = prebuilds.length > 0 ? prebuilds : [loaded.path];
    for (const b of binaries) {
      const info = readBuildInfo(b)!;
      const [major, minor] = info.torch.split('.');
      cpSync(b, join(staged, `usam.${info.flavour}.torch${major}.${minor}.node`));
    }
    const pack = await spawnAsync('npm', ['pack', '--ignore-scripts', '--pack-destination', work], { cwd: stage });
    expect(pack.status, pack.stderr).toBe(0);
    const tarball = join(work, readdirSync(work).find((f) => f.endsWith('.tgz'))!);

    const app = join(work, 'app');
    mkdirSync(app);
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true, type: 'module' }));
    // with no real prebuilds the one binary is the suite's own, built for the LibTorch this suite chose
    // (PYTHON=<venv python> npm test: that venv's torch): the user's install and loads choose the same way
    const suitePython = prebuilds.length === 0 ? process.env.PYTHON : undefined;
    const env = userEnv(suitePython);
    expect(spawnSync('/bin/sh', ['-c', 'command -v c++ g++ gcc cc cmake'], { env, encoding: 'utf8' }).stdout.trim()).toBe('');
    const install = await spawnAsync('npm', ['install', tarball, '--prefer-offline', '--no-audit', '--no-fund', '--foreground-scripts'], { cwd: app, env });
    expect(install.status, install.stdout + install.stderr + JSON.stringify(install.error)).toBe(0);
    expect(install.stdout + install.stderr).toMatch(/using the prebuilt binary .*usam\.(cpu|cuda)\.torch.* from \//);
    // nothing built: build/ holds only the record of the LibTorch the install found, which loading then uses instead of asking Python
    const installed = join(app, 'node_modules/universal-sam');
    expect(readdirSync(join(installed, 'build'), { recursive: true }).sort()).toEqual(['Release', join('Release', 'usam.libtorch.json')]);
    const recorded = (JSON.parse(readFileSync(join(installed, 'build/Release/usam.libtorch.json'), 'utf8')) as { found: { libDir: string }[] }).found;

    // Each LibTorch environment: the default one (no PYTHON: Debian's libtorch-dev, by dpkg's word), and
    // each Python with torch 2.x (by torch's word). With no real prebuilds the one binary is tried as it is.
    const v = native().versions();
    const environments: { python?: string; torch: { version: string; cuda: boolean } }[] =
      prebuilds.length === 0
        ? [{ python: suitePython, torch: { version: v.torch, cuda: v.flavour === 'cuda' } }]
        : [...(debianTorch() ? [{ torch: debianTorch()! }] : []), ...torchPythons.map((python) => ({ python, torch: pythonTorch(python) }))];
    let checked = 0;
    for (const { python, torch } of environments) {
      const [major, minor] = torch.version.split('.');
      const flavour = torch.cuda ? 'cuda' : 'cpu';
      const expected = `usam.${flavour}.torch${major}.${minor}.node`;
      if (!binaries.some((b) => readBuildInfo(b)!.flavour === flavour && readBuildInfo(b)!.torch.startsWith(`${major}.${minor}.`))) continue;
      const use = runModule(
        `import { loadedFrom, Model, Optimizer, mlp, tensor, labels, cuda, native } from 'universal-sam';
         const m = new Model(mlp({ layers: [3, 4, 2] }), { dtype: 'float64', seed: 1 });
         const x = tensor(new Float64Array(6).map((_, i) => Math.sin(i)), [2, 3]), y = labels([0, 1]);
         const opt = new Optimizer(m, { base: { kind: 'sgd', lr: 0.1 }, sharpness: { kind: 'frob-sam', rho: 0.05, lambda: 0.1 }, seed: 2 });
         const before = m.loss(x, y);
         for (let i = 0; i < 5; i++) opt.step(x, y);
         let cudaError = null;
         try { new Model(mlp({ layers: [3, 2] }), { device: 'cuda' }); } catch (e) { cudaError = e instanceof Error ? e.message : 'not an Error'; }
         console.log(JSON.stringify({ from: loadedFrom(), v: native().versions(), before, after: m.loss(x, y), cuda: cuda.isAvailable(), cudaError }));`,
        app,
        userEnv(python),
      );
      expect(use.status, `${python ?? 'default'}: ${use.stderr}`).toBe(0);
      const out = use.out as { from: { source: string; path: string; libtorch: { libDir: string } }; v: { torch: string; flavour: string }; before: number; after: number; cuda: boolean; cudaError: string | null };
      expect(out.from.source).toBe('prebuild');
      expect(basename(out.from.path)).toBe(expected);
      expect(out.v.torch.startsWith(`${major}.${minor}.`)).toBe(true);
      expect(out.v.flavour).toBe(flavour);
      if (python) expect(out.from.libtorch.libDir.startsWith(dirname(dirname(python)))).toBe(true);
      else expect(out.from.libtorch.libDir).toBe(recorded[0].libDir);
      expect(out.after).toBeLessThan(out.before);
      if (!out.cuda) expect(out.cudaError).toMatch(/no CUDA device is available|CPU flavour/);
      checked++;
    }
    expect(checked).toBeGreaterThan(0);
  });
});

describe('loader', () => {
  it('with no binary that loads and no LibTorch, the one error names every candidate and every place it looked', () => {
    const empty = mkdtempSync(join(tmpdir(), 'usam-empty-'));
    const garbage = join(empty, 'garbage.node');
    writeFileSync(garbage, 'not a shared object');
    // USAM_ADDON is the only candidate when set; without it, the local build is
    const script = `
      import { addonCandidates, loadAddonFrom } from ${loaderPath};
      for (const env of [process.env, { ...process.env, USAM_ADDON: '' }]) {
        try { loadAddonFrom(addonCandidates(${JSON.stringify(empty)}, env)); } catch (e) { console.log(e.message); }
      }
      process.exit(3);`;
    const env: NodeJS.ProcessEnv = { PATH: dirname(process.execPath) === '/usr/bin' ? bareBin() : dirname(process.execPath), HOME: process.env.HOME, USAM_ADDON: garbage, USAM_SYSTEM_TORCH_DIRS: '/nonexistent/cmake/Torch' };
    const r = runTs(script, env);
    expect(r.status, r.stderr).toBe(3);
    const msg = r.stdout;
    expect(msg).toMatch(/no native addon could be loaded/);
    const [exclusive, fallback] = msg.split('universal-sam: no native addon could be loaded.').slice(1);
    expect(exclusive).toContain(`USAM_ADDON: ${garbage}\n      has no universal-sam build info`);
    expect(exclusive).not.toMatch(/local build/);
    expect(fallback).toMatch(/local build: .*build\/Release\/usam\.node\n\s+file does not exist/);
    expect(msg).toMatch(/LibTorch: not found\. Looked in:/);
    expect(msg).toMatch(/LIBTORCH \(environment\): not set/);
    expect(msg).toMatch(/Torch_DIR \(environment\): not set/);
    expect(msg).toMatch(/python torch \(python3\): (not found|cannot import torch)/);
    expect(msg).toMatch(/system \(\/nonexistent\/cmake\/Torch\): no TorchConfig\.cmake/);
    expect(msg).toMatch(/pip install torch/);
    expect(msg).toMatch(/apt-get install libtorch-dev/);
  });

  it.skipIf(torchPythons.length === 0)(
    `ranks the local build and the prebuilds by the environment's LibTorch${torchPythons.length ? '' : ' (skipped: no USAM_TEST_TORCH_PYTHONS)'}`,
    () => {
      const root = mkdtempSync(join(tmpdir(), 'usam-rank-'));
      const dir = join(root, 'prebuilds', platform);
      mkdirSync(dir, { recursive: true });
      for (const name of ['usam.cpu.torch1.13.node', 'usam.cpu.torch2.13.node', 'usam.cuda.torch2.14.node']) writeFileSync(join(dir, name), '');
      mkdirSync(join(root, 'build', 'Release'), { recursive: true });
      cpSync(loaded.path, join(root, 'build', 'Release', 'usam.node')); // built against the suite's LibTorch
      const order = (python?: string) =>
        JSON.parse(
          runTs(
            `import { addonCandidates } from ${loaderPath};
             console.log(JSON.stringify(addonCandidates(${JSON.stringify(root)}, ${JSON.stringify({ PATH: dirname(process.execPath), ...(python ? { PYTHON: python } : {}) })}).map((c) => c.source === 'local build' ? 'local' : c.flavour + c.torch)));`,
          ).stdout,
        ) as string[];
      for (const python of torchPythons) {
        const t = pythonTorch(python);
        const first = `${t.cuda ? 'cuda' : 'cpu'}${t.version.split('.').slice(0, 2).join('.')}`;
        const ranked = order(python);
        // the environment's first LibTorch first: the local build when it was made for it, else the prebuild that fits it
        expect(ranked[0]).toBe(loaded.libtorch.libDir.startsWith(dirname(dirname(python))) ? 'local' : first);
        expect(ranked).toContain('local');
      }
      if (debianTorch()) expect(order().slice(0, 2)).toEqual(loaded.build.torch.startsWith('1.13.') ? ['local', 'cpu1.13'] : ['cpu1.13', expect.any(String)]);
    },
  );

  it('reads what a binary was built against from the file, and loads exactly that LibTorch', () => {
    const info = readBuildInfo(loaded.path)!;
    expect(info).not.toBeNull();
    const v = native().versions();
    expect(JSON.parse(v.build)).toEqual(info);
    expect(v.torch).toBe(info.torch);
    expect(v.flavour).toBe(info.flavour);
    // the library really mapped into this process is the one the binary records
    expect(dirname(v.torchLibrary)).toBe(loaded.libtorch.libDir);
    if (info.kind === 'local') expect(loaded.libtorch.libDir).toBe(info.torchLibDir);
    const maps = readFileSync('/proc/self/maps', 'utf8');
    const torchLibs = new Set(maps.split('\n').filter((l) => /\/lib(torch_cpu|c10)\.so/.test(l)).map((l) => dirname(l.slice(l.indexOf('/')))));
    expect([...torchLibs].length).toBe(1);
  });

  const hasCc = spawnSync('sh', ['-c', 'command -v cc']).status === 0;
  it.skipIf(!hasCc)(`a binary that crashes when loaded is refused with an error, in a child process, and the caller lives${hasCc ? '' : ' (skipped: no C compiler)'}`, () => {
    const dir = mkdtempSync(join(tmpdir(), 'usam-crash-'));
    const info = JSON.stringify(readBuildInfo(loaded.path)).replace(/["\\]/g, '\\$&');
    // a shared object with valid build info whose constructor segfaults, as an ABI mismatch does
    writeFileSync(
      join(dir, 'crash.c'),
      `#include <signal.h>
       __attribute__((used)) const char info[] = "<<universal-sam-build-info>>${info}<<universal-sam-build-info>>";
       __attribute__((constructor)) static void crash(void) { raise(SIGSEGV); }`,
    );
    const cc = spawnSync('cc', ['-shared', '-fPIC', '-o', join(dir, 'crash.node'), join(dir, 'crash.c')], { encoding: 'utf8' });
    expect(cc.status, cc.stderr).toBe(0);
    const r = runTs(`
      import { loadAddonFrom } from ${loaderPath};
      try { loadAddonFrom([{ path: ${JSON.stringify(join(dir, 'crash.node'))}, source: 'USAM_ADDON' }]); }
      catch (e) { console.log(e.message); process.exit(3); }`);
    expect(r.status, r.stderr).toBe(3);
    expect(r.stdout).toMatch(/crashed \(SIGSEGV\) when test-loaded in a child process, so it was not loaded here/);
  });

  const other = otherBuilds.find((b) => readBuildInfo(b)?.torchLibDir !== loaded.build.torchLibDir);
  it.skipIf(!other)(
    `a binary built against another LibTorch than the one this process holds gets an error naming both${other ? '' : ' (skipped: USAM_TEST_BUILDS has no build against another LibTorch)'}`,
    () => {
      const theirs = readBuildInfo(other!)!;
      const r = runTs(`
        import { loadAddonFrom } from ${loaderPath};
        loadAddonFrom([{ path: ${JSON.stringify(loaded.path)}, source: 'USAM_ADDON' }]);
        try { loadAddonFrom([{ path: ${JSON.stringify(other)}, source: 'USAM_ADDON' }]); }
        catch (e) { console.log(e.message); process.exit(3); }`);
      expect(r.status, r.stderr).toBe(3);
      expect(r.stdout).toContain(`needs LibTorch ${theirs.torch.split('+')[0]}`);
      expect(r.stdout).toContain(theirs.torchLibDir);
      expect(r.stdout).toContain(`this process already has the LibTorch in ${loaded.libtorch.libDir} loaded`);
      expect(r.stdout).toContain(`LibTorch ${loaded.build.torch}`);
    },
  );

  const foreignPrebuild = prebuildDir
    ? readdirSync(prebuildDir).map((f) => join(prebuildDir, f)).find((p) => readBuildInfo(p) && !readBuildInfo(p)!.torch.startsWith('1.13.'))
    : undefined;
  it.skipIf(!foreignPrebuild)(
    `a prebuild with no fitting LibTorch on the machine gets an error naming its LibTorch and the machine's${foreignPrebuild ? '' : ' (skipped: USAM_TEST_PREBUILDS has no 2.x prebuild)'}`,
    () => {
      const info = readBuildInfo(foreignPrebuild!)!;
      const [major, minor] = info.torch.split('.');
      const r = runTs(
        `import { loadAddonFrom } from ${loaderPath};
         try { loadAddonFrom([{ path: ${JSON.stringify(foreignPrebuild)}, source: 'prebuild', flavour: '${info.flavour}', torch: '${major}.${minor}' }]); }
         catch (e) { console.log(e.message); process.exit(3); }`,
        { ...userEnv(), PATH: dirname(process.execPath) },
      );
      expect(r.status, r.stderr).toBe(3);
      expect(r.stdout).toContain(`prebuilt against LibTorch ${major}.${minor} (${info.flavour}), and no LibTorch ${major}.${minor}`);
      expect(r.stdout).toMatch(/found: LibTorch 1\.13\.\d \(cpu\) at \/usr\/lib\/x86_64-linux-gnu/);
    },
  );
});

describe('the build uses one LibTorch, whole', () => {
  const cpuPython = torchPythons.find((p) => !pythonTorch(p).cuda);
  const debian = '/usr/lib/x86_64-linux-gnu/cmake/Caffe2';
  it.skipIf(!cpuPython || !existsSync(debian))(
    `stops at configure time when the Caffe2 targets would come from another LibTorch, naming both${cpuPython && existsSync(debian) ? '' : ' (skipped: needs Debian\'s libtorch-dev and a torch 2.x CPU Python in USAM_TEST_TORCH_PYTHONS)'}`,
    () => {
      const torch = spawnSync(cpuPython!, ['-c', 'import torch.utils; print(torch.utils.cmake_prefix_path)'], { encoding: 'utf8' }).stdout.trim();
      const build = mkdtempSync(join(tmpdir(), 'usam-cmake-'));
      const r = spawnSync('cmake', ['-S', repoRoot, '-B', build, `-DTorch_DIR=${torch}/Torch`, `-DCaffe2_DIR=${debian}`], { encoding: 'utf8' });
      expect(r.status).not.toBe(0);
      const out = r.stdout + r.stderr;
      expect(out).toMatch(/this build would mix two LibTorch installations/);
      expect(out).toContain(`${dirname(dirname(torch))}/lib`);
      expect(out).toContain('/usr/lib/x86_64-linux-gnu');
    },
  );
});

describe('usam version', () => {
  it('prints the flavour, the LibTorch version and folder it runs with, and what it was built against', () => {
    const r = spawnSync(process.execPath, [join(repoRoot, 'scripts/usam.mjs'), 'version'], { cwd: repoRoot, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const v = native().versions();
    expect(r.stdout).toContain(`(${v.flavour} flavour, ${loaded.source}: ${loaded.path})`);
    expect(r.stdout).toContain(`LibTorch ${v.torch} (${v.flavour}) at ${loaded.libtorch.libDir}`);
    expect(r.stdout).toContain(`built against LibTorch ${loaded.build.torch} at ${loaded.build.torchLibDir}`);
  });
});

describe('process settings', () => {
  const versionsIn = (env: NodeJS.ProcessEnv) => {
    const merged: NodeJS.ProcessEnv = { ...process.env, ...env };
    for (const k of Object.keys(merged)) if (merged[k] === undefined) delete merged[k];
    const r = runTs(`import { native } from ${loaderPath}; console.log(JSON.stringify(native().versions()));`, merged);
    expect(r.status, r.stderr).toBe(0);
    return JSON.parse(r.stdout) as { mallocTuned: boolean; threads: number; defaultThreads: number };
  };
  it('memory reuse is on by default, off with USAM_MALLOC_TUNING=0, and left alone when the user tunes malloc', () => {
    expect(versionsIn({ USAM_MALLOC_TUNING: undefined, GLIBC_TUNABLES: undefined }).mallocTuned).toBe(true);
    expect(versionsIn({ USAM_MALLOC_TUNING: '0' }).mallocTuned).toBe(false);
    expect(versionsIn({ USAM_MALLOC_TUNING: undefined, GLIBC_TUNABLES: 'glibc.malloc.trim_threshold=1000000' }).mallocTuned).toBe(false);
  });
  it('a process uses one thread per usable core by default, and OMP_NUM_THREADS when set', () => {
    const byDefault = versionsIn({ OMP_NUM_THREADS: undefined, MKL_NUM_THREADS: undefined });
    // nproc counts the cores this process may run on (its affinity), as the addon does
    const cores = Number(spawnSync('nproc', { encoding: 'utf8' }).stdout.trim());
    expect(cores).toBeGreaterThan(0);
    expect(byDefault.threads).toBe(cores);
    expect(byDefault.defaultThreads).toBe(cores);
    const told = versionsIn({ OMP_NUM_THREADS: '1', MKL_NUM_THREADS: undefined });
    expect(told.threads).toBe(1);
    expect(told.defaultThreads).toBe(0);
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
