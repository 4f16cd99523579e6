#!/usr/bin/env node
// npm run prebuild [-- --out DIR]: builds the addon with prebuildify (node-gyp
// → binding.gyp → the CMake build, with USAM_PREBUILD=1: no RUNPATH to this
// machine's LibTorch) against the LibTorch found (lib/native/libtorch.mjs: set
// LIBTORCH, Torch_DIR or PYTHON to choose), and names it after what it is:
// DIR/usam.<flavour>.torch<major.minor>.node (DIR defaults to
// prebuilds/<platform>-<arch>). Run it once per LibTorch to ship: cpu on
// Debian's 1.13, cpu on a torch 2.x CPU wheel, cuda on a torch 2.x CUDA wheel.
// The loader picks the one that fits the LibTorch of the machine it runs on.
//
// prebuildify runs `node-gyp rebuild`, which deletes build/ first (the local
// build and its CMake trees too) and leaves the prebuild in
// build/Release/usam.node: run `npm install` (or build:native) afterwards to
// get a local build back, and give --out a folder outside build/.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  readBuildInfo,
} from '../lib/native/build-record.mjs';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const require = createRequire(import.meta.url);
const platformDir = join(root, 'prebuilds', `${process.platform}-${process.arch}`);
const outIndex = process.argv.indexOf('--out');
const dest = outIndex > 0 ? resolve(process.argv[outIndex + 1] ?? '') : platformDir;
const staged = join(platformDir, 'usam.build.node');
rmSync(staged, { force: true });
const bin = join(dirname(require.resolve('prebuildify/package.json')), 'bin.js');
const r = spawnSync(process.execPath, [bin, '--napi', '--strip', '--name', 'usam.build'], {
  cwd: root,
  stdio: 'inherit',
  env: { ...process.env, USAM_PREBUILD: '1' },
});
if (r.status !== 0 || !existsSync(staged)) {
  console.error('universal-sam: prebuildify failed (see above)');
  process.exit(r.status || 1);
}
const info = readBuildInfo(staged);
if (!info || info.kind !== 'prebuild') {
  console.error(`universal-sam: ${staged} has no prebuild build info: ${JSON.stringify(info)}`);
  process.exit(1);
}
const [major, minor] = info.torch.split('.');
const name = `usam.${info.flavour}.torch${major}.${minor}.node`;
mkdirSync(dest, { recursive: true });
copyFileSync(staged, join(dest, name));
rmSync(staged);
console.error(`universal-sam: wrote ${relative(process.cwd(), join(dest, name))} (${info.flavour}, LibTorch ${info.torch}${info.cuda ? `, CUDA ${info.cuda}` : ''})`);
