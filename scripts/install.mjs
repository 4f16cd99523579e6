#!/usr/bin/env node
// The install step of universal-sam (`npm install`): makes sure a native
// addon that fits this machine exists. Builds it from source with cmake-js
// against LibTorch (found by lib/native/libtorch.mjs; on Debian, installed
// with apt when missing and we are root), unless an up-to-date build exists.
// Then records what its search found beside the local build, so that loading
// a prebuild asks no Python (lib/native/libtorch.mjs, the install's record).
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, realpathSync, renameSync, rmSync, statSync } from 'node:fs';
import { execFileSync, spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import {
  clearLibtorchSearches,
  describeLibtorch,
  describeTried,
  findLibtorch,
  HOW_TO_PROVIDE,
  majorMinor,
} from '../lib/native/libtorch.mjs';
import {
  libtorchRecordPath,
  readBuildInfo,
  writeLibtorchRecord,
} from '../lib/native/build-record.mjs';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const require = createRequire(import.meta.url);
const log = (msg) => console.error(`universal-sam: ${msg}`);
// --force-source: build now, whatever exists. npm's --build-from-source
// (npm_config_build_from_source): no prebuilt binary (an up-to-date local build stays).
const force = process.argv.includes('--force-source');
const fromSource = ['true', '1'].includes(process.env.npm_config_build_from_source ?? '');
// --out DIR: write the addon to DIR/usam.node instead of build/Release (CI
// builds one binary per LibTorch side by side).
const outIndex = process.argv.indexOf('--out');
if (outIndex > 0 && !process.argv[outIndex + 1]) {
  log('--out needs a folder: node scripts/install.mjs --out DIR');
  process.exit(2);
}
const outDir = outIndex > 0 ? resolve(process.argv[outIndex + 1]) : join(root, 'build', 'Release');
// A prebuild (npm run prebuild sets USAM_PREBUILD=1) carries no RUNPATH to
// this machine's LibTorch: the loader loads the user's.
const kind = process.env.USAM_PREBUILD === '1' ? 'prebuild' : 'local';
// The addon lands in build/Release by default, where node-gyp (binding.gyp
// delegates here) and the loader expect it.
const output = join(outDir, 'usam.node');
// cmake-js builds in build/cmake/<kind>-<LibTorch>: one CMake cache per
// LibTorch, so switching between them neither reuses another's cached
// library paths nor recompiles from scratch when switching back.
// The record of what the search found, for the loader of this package: only
// when the addon lands where the loader looks (not with --out). Removed first:
// the prebuild check below must search afresh, and an install that stops
// halfway leaves none (the loader then searches).
const record = outIndex < 0 ? libtorchRecordPath(root) : null;
if (record) rmSync(record, { force: true });
const cmakeDirFor = (torch) =>
  join(root, 'build', 'cmake', `${kind}-${createHash('sha256').update(torch.libDir).digest('hex').slice(0, 12)}`);

function newestSource() {
  const files = [join(root, 'CMakeLists.txt'), ...readdirSync(join(root, 'native')).map((f) => join(root, 'native', f))];
  return Math.max(...files.map((f) => statSync(f).mtimeMs));
}

// USAM_NO_APT=1: never run apt-get (print the command instead).
const noApt = process.env.USAM_NO_APT === '1';

function canApt() {
  return !noApt && process.platform === 'linux' && process.getuid?.() === 0 && spawnSync('apt-get', ['--version']).status === 0;
}

const aptCommand = (pkgs) => `apt-get update && apt-get install -y --no-install-recommends ${pkgs.join(' ')}`;

function aptInstall(pkgs) {
  log(`installing the Debian packages this machine lacks, as root (USAM_NO_APT=1 turns this off): ${aptCommand(pkgs)}`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
  execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...pkgs], { stdio: 'inherit', env });
}

const FASHION_MNIST = '/usr/share/datasets/fashion-mnist';

// Debian packages this machine lacks: LibTorch when nothing provides it (and
// a build is needed), Gloo's headers for a build with data-parallel training
// (c10d's Gloo backend; LibTorch ships none), and the default real data set,
// Fashion-MNIST.
function installMissingPackages(needTorch, mayBuild) {
  const missing = [];
  if (needTorch) missing.push('libtorch-dev');
  if (mayBuild && !existsSync('/usr/include/gloo/config.h')) missing.push('libgloo-dev');
  if (!existsSync(FASHION_MNIST)) missing.push('dataset-fashion-mnist');
  // Debian's LibTorch calls the BLAS of the libblas.so.3 alternative; the
  // reference BLAS it falls back to is ~10-20× slower than OpenBLAS on the
  // matrix products that dominate training.
  if (usesReferenceBlas() || missing.includes('libtorch-dev')) missing.push('libopenblas0-pthread');
  if (missing.length === 0) return;
  if (canApt()) {
    try {
      aptInstall(missing);
      clearLibtorchSearches();
    } catch (e) {
      log(`apt-get could not install ${missing.join(' ')}: ${e.message}`);
    }
  } else {
    log(`this machine lacks Debian packages that universal-sam uses (${missing.join(', ')}); to install them: sudo ${aptCommand(missing)}` +
      (noApt ? ' (not run: USAM_NO_APT=1)' : ''));
  }
  if (missing.includes('libopenblas0-pthread') && !missing.includes('libtorch-dev') && !canApt()) {
    log('LibTorch uses the reference BLAS here; libopenblas0-pthread makes training ~10× faster.');
  }
  if (!canApt() && missing.includes('dataset-fashion-mnist')) {
    log(`Fashion-MNIST (the default data set) is not in ${FASHION_MNIST}: install Debian's dataset-fashion-mnist ` +
      '(sudo apt-get install dataset-fashion-mnist), or pass --data-dir to usam train.');
  }
}

function usesReferenceBlas() {
  const blas = '/usr/lib/x86_64-linux-gnu/libblas.so.3';
  try {
    return existsSync(blas) && realpathSync(blas).includes('/blas/');
  } catch {
    return false;
  }
}

function resolveLibtorch() {
  const { found, tried } = findLibtorch();
  if (!found) {
    log(`no LibTorch found. Looked in:\n${describeTried(tried)}\n${HOW_TO_PROVIDE}`);
    process.exit(1);
  }
  log(`${describeLibtorch(found)}, from ${found.source} (${found.where})`);
  return found;
}

function build(torch) {
  const cmakeDir = cmakeDirFor(torch);
  const cmakeJs = join(dirname(require.resolve('cmake-js/package.json')), 'bin', 'cmake-js');
  const version = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version;
  const args = [cmakeJs, 'compile', '--directory', root, '--out', cmakeDir,
    `--parallel`, String(availableParallelism()),
    `--CDTorch_DIR=${torch.torchDir}`, `--CDUSAM_PACKAGE_VERSION=${version}`,
    `--CDUSAM_PREBUILD=${kind === 'prebuild' ? 'ON' : 'OFF'}`];
  log(`building the ${torch.cuda ? 'cuda' : 'cpu'} flavour from source (cmake-js, ${describeLibtorch(torch)})`);
  const r = spawnSync(process.execPath, args, { stdio: 'inherit', cwd: root });
  if (r.status !== 0) {
    log('the native build failed (see above).');
    process.exit(r.status ?? 1);
  }
  mkdirSync(dirname(output), { recursive: true });
  // copy, then rename: a process that has the old binary loaded keeps its mapping
  copyFileSync(join(cmakeDir, 'Release', 'usam.node'), `${output}.tmp`);
  renameSync(`${output}.tmp`, output);
  log(`built ${output}`);
}

// A prebuilt binary that loads here (the loader's own check, from dist/) makes
// the build unnecessary; prebuilds come in published packages only.
function loadablePrebuild(torch) {
  const loader = join(root, 'dist', 'native', 'load.js');
  const dir = join(root, 'prebuilds', `${process.platform}-${process.arch}`);
  if (!existsSync(dir) || !readdirSync(dir).some((f) => f.endsWith('.node')) || !existsSync(loader)) return null;
  const script =
    `import(${JSON.stringify(pathToFileURL(loader).href)}).then((m) => {` +
    `const r = m.loadAddonFrom(m.addonCandidates().filter((c) => c.source === 'prebuild'));` +
    `process.stdout.write(JSON.stringify({ ...r.from, versions: r.addon.versions(), libtorch: r.libtorch })); })`;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' });
  if (r.status !== 0) {
    log(`no prebuilt binary fits this machine:\n${r.stderr.split('\n').filter((l) => l.includes('  - ') || l.includes('      ')).join('\n')}`);
    return null;
  }
  const found = JSON.parse(r.stdout);
  if (torch && found.libtorch.libDir !== torch.libDir) {
    log(`the prebuilt binaries fit ${found.libtorch.libDir}, not ${describeLibtorch(torch)}: building for the latter`);
    return null;
  }
  return found;
}

// Up to date: newer than every source, and built against the LibTorch that a
// build would use now (installing another torch, or setting PYTHON, rebuilds).
function upToDate(torch) {
  if (!existsSync(output) || statSync(output).mtimeMs < newestSource()) return false;
  const info = readBuildInfo(output);
  // the same folder, and still the same LibTorch in it (pip upgrades in place)
  return Boolean(
    torch && info && info.kind === kind && info.torchLibDir === torch.libDir &&
      majorMinor(info.torch) === majorMinor(torch.version) && info.flavour === (torch.cuda ? 'cuda' : 'cpu'),
  );
}

let torchNow = findLibtorch().found;
const hasLocalBuild = upToDate(torchNow);
// one apt-get run for everything this machine lacks (LibTorch is needed by a
// prebuilt binary and by a source build alike)
installMissingPackages(!force && hasLocalBuild ? false : !torchNow, force || !hasLocalBuild);
torchNow ??= findLibtorch().found;
// a prebuild only for the LibTorch a build would use now (not one that merely
// loads with another LibTorch on the machine), and never when a build was
// asked for (--out, a prebuild of our own)
const prebuilt = !force && !fromSource && !hasLocalBuild && outIndex < 0 && kind === 'local' ? loadablePrebuild(torchNow) : null;
if (prebuilt)
  log(`using the prebuilt binary ${prebuilt.path} (${prebuilt.versions.flavour} flavour, LibTorch ${prebuilt.versions.torch} from ${prebuilt.libtorch.libDir})`);
else if (!force && hasLocalBuild) log(`addon is up to date (${output})`);
else build(resolveLibtorch());

if (record) {
  try {
    writeLibtorchRecord(record);
  } catch (e) {
    log(`could not record the LibTorch found in ${record} (${e.message}): loading a prebuild will search for it each time`);
  }
}
