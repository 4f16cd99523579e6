#!/usr/bin/env node
// npm run prebuild: builds the addon with prebuildify (node-gyp → binding.gyp
// → the CMake build) against the LibTorch found (scripts/libtorch.mjs), and
// names it after what it is: prebuilds/<platform>-<arch>/usam.<flavour>.torch<major.minor>.node
// (cpu: Debian's LibTorch 1.13; cuda: a LibTorch 2.x CUDA build, e.g.
// LIBTORCH or a Python torch). The loader and the install step pick the
// flavour that fits the LibTorch of the machine they run on.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, renameSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const require = createRequire(import.meta.url);
const dir = join(root, 'prebuilds', `${process.platform}-${process.arch}`);
const staged = join(dir, 'usam.build.node');
rmSync(staged, { force: true });
const bin = join(dirname(require.resolve('prebuildify/package.json')), 'bin.js');
const r = spawnSync(process.execPath, [bin, '--napi', '--strip', '--name', 'usam.build'], { cwd: root, stdio: 'inherit' });
if (r.status !== 0 || !existsSync(staged)) {
  console.error('universal-sam: prebuildify failed (see above)');
  process.exit(r.status || 1);
}
const versions = JSON.parse(
  execFileSync(process.execPath, ['-e', `process.stdout.write(JSON.stringify(require(${JSON.stringify(staged)}).versions()))`], { encoding: 'utf8' }),
);
const [major, minor] = versions.torch.split('.');
const name = `usam.${versions.flavour}.torch${major}.${minor}.node`;
renameSync(staged, join(dir, name));
console.error(`universal-sam: wrote ${join('prebuilds', `${process.platform}-${process.arch}`, name)} (${versions.flavour}, LibTorch ${versions.torch})`);
