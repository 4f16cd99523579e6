// The install's record of its LibTorch search (lib/native/libtorch.mjs): with
// a valid record the loader ranks the candidates and chooses a prebuild's
// LibTorch without running Python; another environment, a touched or replaced
// libtorch_cpu.so, or a damaged record sends it back to the search, never to
// a crash. A fake LibTorch and a python3 that counts its runs stand in for the
// machine's (no binary is loaded).
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, renameSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { type BuildInfo, clearLibtorchSearches } from '../../lib/native/libtorch.mjs';
import { libtorchRecordPath, readLibtorchRecord, writeLibtorchRecord } from '../../lib/native/build-record.mjs';
import { addonCandidates, libtorchFor } from '../../lib/native/load.js';

const platform = `${process.platform}-${process.arch}`;
const prebuild99: BuildInfo = { flavour: 'cpu', torch: '9.9.0', torchLibDir: '/built/elsewhere', cuda: '', kind: 'prebuild', addon: '0.0.0' };

/**
 * A package folder with a cpu prebuild for LibTorch 9.9, a LibTorch 9.9 laid
 * out as a torch wheel, and on PATH only a python3 that finds it and counts
 * its runs. (The search also asks /usr/bin/python3, whatever it finds.)
 */
function fixture() {
  const root = mkdtempSync(join(tmpdir(), 'usam-record-'));
  const torch = join(root, 'site-packages', 'torch');
  const cmake = join(torch, 'share', 'cmake', 'Torch');
  mkdirSync(cmake, { recursive: true });
  writeFileSync(join(cmake, 'TorchConfig.cmake'), '');
  writeFileSync(join(cmake, 'TorchConfigVersion.cmake'), 'set(PACKAGE_VERSION "9.9.0")\n');
  mkdirSync(join(torch, 'lib'));
  for (const f of ['libc10.so', 'libtorch_cpu.so', 'libtorch.so']) writeFileSync(join(torch, 'lib', f), f);
  const bin = join(root, 'bin');
  mkdirSync(bin);
  const runs = join(root, 'python-runs');
  writeFileSync(join(bin, 'python3'), `#!/bin/sh\necho run >> '${runs}'\necho '${torch}'\n`, { mode: 0o755 });
  mkdirSync(join(root, 'prebuilds', platform), { recursive: true });
  writeFileSync(join(root, 'prebuilds', platform, 'usam.cpu.torch9.9.node'), '');
  const env: NodeJS.ProcessEnv = { PATH: bin, HOME: root, USAM_SYSTEM_TORCH_DIRS: '' };
  const pythonRuns = () => (existsSync(runs) ? readFileSync(runs, 'utf8').split('\n').filter(Boolean).length : 0);
  return { root, bin, env, libDir: realpathSync(join(torch, 'lib')), library: join(torch, 'lib', 'libtorch_cpu.so'), record: libtorchRecordPath(root), pythonRuns };
}

type Fixture = ReturnType<typeof fixture>;

/** The prebuild's LibTorch and the first candidate, as the loader decides them in a fresh process (no search remembered), and how often Python ran. */
function resolve(fx: Fixture, env = fx.env) {
  clearLibtorchSearches();
  const before = fx.pythonRuns();
  const libtorch = libtorchFor(prebuild99, env, fx.root);
  const first = addonCandidates(fx.root, env)[0];
  return { libtorch, first, pythonRuns: fx.pythonRuns() - before };
}

describe("the install's LibTorch record", () => {
  it('with a valid record, a prebuild gets its LibTorch and the candidates their order without running Python; without one, Python runs', () => {
    const fx = fixture();
    writeLibtorchRecord(fx.record, fx.env); // what scripts/install.mjs does when it finishes
    expect(fx.pythonRuns()).toBeGreaterThan(0); // the install's search asked it

    const recorded = resolve(fx);
    expect(recorded.libtorch).toMatchObject({ libDir: fx.libDir, version: '9.9.0', cuda: false, source: 'python torch', where: 'python3' });
    expect(recorded.first).toMatchObject({ source: 'prebuild', flavour: 'cpu', torch: '9.9' });
    expect(recorded.pythonRuns).toBe(0);

    rmSync(fx.record);
    const searched = resolve(fx);
    expect(searched.libtorch).toEqual(recorded.libtorch);
    expect(searched.first).toEqual(recorded.first);
    expect(searched.pythonRuns).toBeGreaterThan(0);
  });

  it('records what decided the search and the identity of libtorch_cpu.so, and stays valid under npm\'s PATH', () => {
    const fx = fixture();
    // npm runs the install with its own folders in front of the user's PATH
    writeLibtorchRecord(fx.record, { ...fx.env, PATH: `${join(fx.root, 'node_modules', '.bin')}:${fx.bin}` });
    const record = JSON.parse(readFileSync(fx.record, 'utf8'));
    expect(record.key.pythons[0]).toEqual(['python3', join(fx.bin, 'python3')]);
    expect(record.key.variables).toMatchObject({ PYTHON: null, LIBTORCH: null, HOME: fx.root, USAM_SYSTEM_TORCH_DIRS: '' });
    const s = statSync(fx.library, { bigint: true });
    expect(record.found[0].library).toEqual({ path: join(fx.libDir, 'libtorch_cpu.so'), dev: String(s.dev), ino: String(s.ino), size: String(s.size), mtimeNs: String(s.mtimeNs) });
    expect(readdirSync(dirname(fx.record))).toEqual(['usam.libtorch.json']); // written by rename: no temporary file left
    expect(resolve(fx).pythonRuns).toBe(0);
  });

  it('another value of a variable the search reads, or another python3 on PATH, invalidates the record', () => {
    const fx = fixture();
    writeLibtorchRecord(fx.record, fx.env);
    expect(readLibtorchRecord(fx.record, fx.env)).not.toBeNull();
    const other = join(fx.root, 'other-bin');
    mkdirSync(other);
    cpSync(join(fx.bin, 'python3'), join(other, 'python3'));
    for (const env of [{ ...fx.env, PYTHONPATH: '/elsewhere' }, { ...fx.env, PYTHON: join(fx.bin, 'python3') }, { ...fx.env, PATH: `${other}:${fx.bin}` }]) {
      expect(readLibtorchRecord(fx.record, env)).toBeNull();
      const r = resolve(fx, env);
      expect(r.libtorch).toMatchObject({ libDir: fx.libDir });
      expect(r.pythonRuns).toBeGreaterThan(0);
    }
    expect(resolve(fx).pythonRuns).toBe(0); // the install's own environment still has it
  });

  it('a touched or replaced libtorch_cpu.so invalidates the record', () => {
    const fx = fixture();
    writeLibtorchRecord(fx.record, fx.env);
    const later = new Date(Date.now() + 10_000);
    utimesSync(fx.library, later, later);
    expect(resolve(fx).pythonRuns).toBeGreaterThan(0);

    writeLibtorchRecord(fx.record, fx.env);
    expect(resolve(fx).pythonRuns).toBe(0);
    // the same size and mtime in a new file (as pip and apt install one): another inode
    cpSync(fx.library, `${fx.library}.new`, { preserveTimestamps: true });
    renameSync(`${fx.library}.new`, fx.library);
    expect(resolve(fx).pythonRuns).toBeGreaterThan(0);
  });

  it('a damaged record is ignored: the loader searches, and does not throw', () => {
    const fx = fixture();
    writeLibtorchRecord(fx.record, fx.env);
    const good = readFileSync(fx.record, 'utf8');
    const wrongType = JSON.parse(good);
    wrongType.found[0].libDir = 5;
    for (const damaged of [good.slice(0, good.length / 2), 'null', '[]', JSON.stringify(wrongType), JSON.stringify({ ...JSON.parse(good), format: 0 })]) {
      writeFileSync(fx.record, damaged);
      expect(readLibtorchRecord(fx.record, fx.env)).toBeNull();
      const r = resolve(fx);
      expect(r.libtorch).toMatchObject({ libDir: fx.libDir, version: '9.9.0' });
      expect(r.pythonRuns).toBeGreaterThan(0);
    }
  });
});
