// Checkpoints: the safetensors layout, atomic writes under SIGKILL, and the
// state they carry.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Model } from '../../lib/model/model.js';
import { mlp } from '../../lib/model/presets.js';
import { Optimizer } from '../../lib/optim/optimizer.js';
import { loadCheckpoint, saveCheckpoint } from '../../lib/train/checkpoint.js';
import { labels, tensor } from '../../lib/tensor/tensor.js';
import { decodeSafetensors, encodeSafetensors, readSafetensors, stTensor, writeAtomic, writeSafetensors } from '../../lib/safetensors.js';
import { Trainer } from '../../lib/train/trainer.js';
import { repoRoot } from '../helpers.js';

describe('safetensors', () => {
  it('follows the format: u64 LE header size, JSON header aligned to 8, contiguous offsets covering the data', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'usam-st-')), 'a.safetensors');
    writeAtomic(file, encodeSafetensors({ w: stTensor(Float32Array.from([1, 2, 3, 4, 5, 6]), [2, 3]), n: stTensor(BigInt64Array.from([7n]), []) }, { note: 'hi' }));
    const bytes = readFileSync(file);
    const n = Number(bytes.readBigUInt64LE(0));
    expect((8 + n) % 8).toBe(0);
    const header = JSON.parse(bytes.subarray(8, 8 + n).toString());
    expect(header.__metadata__).toEqual({ note: 'hi' });
    expect(header.w).toEqual({ dtype: 'F32', shape: [2, 3], data_offsets: [0, 24] });
    expect(header.n).toEqual({ dtype: 'I64', shape: [], data_offsets: [24, 32] });
    expect(bytes.length).toBe(8 + n + 32);
    const back = decodeSafetensors(bytes);
    expect(Array.from(back.tensors.w.data as Float32Array)).toEqual([1, 2, 3, 4, 5, 6]);
    expect((back.tensors.n.data as BigInt64Array)[0]).toBe(7n);
    expect(() => decodeSafetensors(bytes.subarray(0, 40))).toThrow(/truncated/);
  });

  /** A file with the given header (as JSON) and data bytes. */
  const fileOf = (header: object, dataBytes: number) => {
    const json = Buffer.from(JSON.stringify(header));
    const head = Buffer.alloc(8);
    head.writeBigUInt64LE(BigInt(json.length));
    return Buffer.concat([head, json, Buffer.alloc(dataBytes)]);
  };
  it.each([
    ['a float16 tensor (refused by name, never read as bytes)', { h: { dtype: 'F16', shape: [2], data_offsets: [0, 4] } }, 4, /'h' is F16 \(float16\), which universal-sam does not read; save it as float32/],
    ['a bfloat16 tensor', { h: { dtype: 'BF16', shape: [2], data_offsets: [0, 4] } }, 4, /'h' is BF16 \(bfloat16\)/],
    ['an unknown dtype', { h: { dtype: 'F12', shape: [2], data_offsets: [0, 4] } }, 4, /dtype "F12", which is not a safetensors dtype/],
    ['shape × dtype size ≠ byte length', { w: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, 8, /F32 \[3\] \(12 bytes\) but spans 8 bytes/],
    ['a range past the data', { w: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, 8, /ends at byte 12 of 8 data bytes/],
    ['overlapping tensors', { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, 12, /overlaps another tensor/],
    ['bytes that belong to no tensor', { a: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, 8, /bytes 0\.\.4 belong to no tensor/],
    ['a negative shape', { a: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, 4, /shape \[-1\]/],
    ['non-string metadata', { __metadata__: { n: 1 }, a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, 4, /__metadata__ must map names to strings/],
  ])('refuses %s, saying what is wrong', (_, header, dataBytes, message) => {
    expect(() => decodeSafetensors(fileOf(header, dataBytes), 'x.safetensors')).toThrow(message);
  });
  it('refuses a header larger than the format allows without reading it', () => {
    const b = Buffer.alloc(16);
    b.writeBigUInt64LE(2n ** 40n);
    expect(() => decodeSafetensors(b, 'x')).toThrow(/header claims 1099511627776 bytes \(at most 100000000\)/);
  });

  it('a checksum written with the file catches any byte changed afterwards, in the data or the header', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'usam-st-')), 'c.safetensors');
    writeSafetensors(file, { w: stTensor(Float64Array.from([1, 2, 3, 4]), [2, 2]), b: stTensor(Float32Array.from([5, 6]), [2]) }, { k: 'v' }, { checksum: true });
    const good = readFileSync(file);
    expect(readSafetensors(file).metadata.k).toBe('v');
    const n = Number(good.readBigUInt64LE(0));
    // one data byte flipped: a valid file in every other respect
    const data = Buffer.from(good);
    data[8 + n + 5] ^= 0x40;
    expect(() => decodeSafetensors(data, 'c')).toThrow(/c: the file is damaged: its checksum .* does not match its contents/);
    // a shape swapped in the header, same length: [2, 2] -> [1, 4]
    const head = Buffer.from(good.toString('latin1').replace('"shape":[2,2]', '"shape":[1,4]'), 'latin1');
    expect(head.length).toBe(good.length);
    expect(() => decodeSafetensors(head, 'c')).toThrow(/checksum .* does not match/);
  });
});

describe('damaged checkpoints', () => {
  const run = () => {
    const out = join(mkdtempSync(join(tmpdir(), 'usam-dmg-')), 'run');
    new Trainer({ dataset: 'synthetic', epochs: 1, out, hidden: [8] }).run();
    return out;
  };
  it('bytes overwritten in the middle: resume refuses the file and says it is damaged', () => {
    const out = run();
    const file = join(out, 'checkpoint.safetensors');
    const bytes = readFileSync(file);
    bytes.fill(0x7f, bytes.length >> 1, (bytes.length >> 1) + 16);
    writeFileSync(file, bytes);
    expect(() => new Trainer({ resume: out })).toThrow(/checkpoint\.safetensors: the file is damaged/);
  });
  it('a truncated file: resume refuses it and says so', () => {
    const out = run();
    const file = join(out, 'checkpoint.safetensors');
    truncateSync(file, readFileSync(file).length - 100);
    expect(() => new Trainer({ resume: out })).toThrow(/checkpoint\.safetensors: .*truncated\?\); the file is damaged/);
  });
});

// Python's own safetensors reads what we write and writes what we read
// (USAM_TEST_TORCH_PYTHONS: .ci/torch-venv.sh installs safetensors and numpy beside torch).
const stPython = (process.env.USAM_TEST_TORCH_PYTHONS ?? '')
  .split(':')
  .filter(Boolean)
  .find((py) => spawnSync(py, ['-c', 'import safetensors.numpy'], { encoding: 'utf8' }).status === 0);
describe.skipIf(!stPython)(`safetensors against Python's safetensors${stPython ? '' : ' (skipped: no Python with safetensors in USAM_TEST_TORCH_PYTHONS)'}`, () => {
  it('round-trips both ways, values, dtypes, shapes and metadata (our checksum included)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'usam-stpy-'));
    const ours = join(dir, 'ours.safetensors');
    const theirs = join(dir, 'theirs.safetensors');
    writeSafetensors(
      ours,
      { 'layer.0.weight': stTensor(Float32Array.from([1.5, -2, 3.25, 4, 5, 6]), [2, 3]), d: stTensor(Float64Array.from([Math.PI]), [1]), n: stTensor(BigInt64Array.from([-7n, 9n]), [2]), i: stTensor(Int32Array.from([3]), []), u: stTensor(Uint8Array.from([255, 0, 1]), [3]) },
      { note: 'from node' },
      { checksum: true },
    );
    const py = `
import json, sys, numpy as np
from safetensors.numpy import load_file, save_file
from safetensors import safe_open
t = load_file(sys.argv[1])
with safe_open(sys.argv[1], "np") as f: meta = f.metadata()
out = {k: {"dtype": str(v.dtype), "shape": list(v.shape), "values": v.reshape(-1).tolist()} for k, v in t.items()}
save_file({"w": np.arange(6, dtype=np.float64).reshape(3, 2) / 7, "k": np.array([-3, 4], dtype=np.int64), "f": np.array([0.1, 0.2], dtype=np.float32)}, sys.argv[2], metadata={"who": "python"})
print(json.dumps({"tensors": out, "meta": meta}))`;
    const r = spawnSync(stPython!, ['-c', py, ours, theirs], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const got = JSON.parse(r.stdout);
    expect(got.meta.note).toBe('from node');
    expect(got.meta['universal-sam.sha256']).toMatch(/^[0-9a-f]{64}$/);
    expect(got.tensors['layer.0.weight']).toEqual({ dtype: 'float32', shape: [2, 3], values: [1.5, -2, 3.25, 4, 5, 6] });
    expect(got.tensors.d).toEqual({ dtype: 'float64', shape: [1], values: [Math.PI] });
    expect(got.tensors.n).toEqual({ dtype: 'int64', shape: [2], values: [-7, 9] });
    expect(got.tensors.i).toEqual({ dtype: 'int32', shape: [], values: [3] });
    expect(got.tensors.u).toEqual({ dtype: 'uint8', shape: [3], values: [255, 0, 1] });
    const back = readSafetensors(theirs);
    expect(back.metadata).toEqual({ who: 'python' });
    expect(back.tensors.w.shape).toEqual([3, 2]);
    expect(Array.from(back.tensors.w.data as Float64Array)).toEqual([0, 1, 2, 3, 4, 5].map((v) => v / 7));
    expect(Array.from(back.tensors.k.data as BigInt64Array)).toEqual([-3n, 4n]);
    expect(back.tensors.f.dtype).toBe('F32');
    expect(Array.from(back.tensors.f.data as Float32Array)).toEqual([Math.fround(0.1), Math.fround(0.2)]);
  });
});

describe('checkpoint state', () => {
  it('a checkpoint restores parameters, BatchNorm buffers, counters, optimizer state and RNG states', () => {
    const dir = mkdtempSync(join(tmpdir(), 'usam-ck-'));
    const spec = mlp({ layers: [4, 5, 3], batchNorm: true, dropout: 0.2 });
    const a = new Model(spec, { dtype: 'float32', seed: 1 });
    const oa = new Optimizer(a, { base: { kind: 'adam', lr: 0.01 }, sharpness: { kind: 'frob-sam', rho: 0.05, lambda: 0.1 }, seed: 3 });
    const x = tensor(Float32Array.from({ length: 24 }, (_, i) => Math.sin(i)), [6, 4]);
    const y = labels([0, 1, 2, 0, 1, 2]);
    oa.step(x, y);
    saveCheckpoint(join(dir, 'c.safetensors'), a, oa, { any: 1 }, { epoch: 2, batch: 3, globalStep: 9, lossSum: 1.5, sharpnessSum: 0, sharpnessCount: 0, steps: 3, correct: 0, seen: 0 });
    const b = new Model(spec, { dtype: 'float32', seed: 99 });
    const ob = new Optimizer(b, { base: { kind: 'adam', lr: 0.01 }, sharpness: { kind: 'frob-sam', rho: 0.05, lambda: 0.1 }, seed: 0 });
    const ck = loadCheckpoint(join(dir, 'c.safetensors'));
    expect(ck.progress.globalStep).toBe(9);
    ck.restore(b, ob);
    expect(b.getParams()).toEqual(a.getParams());
    expect(b.buffers().values.toArray()).toEqual(a.buffers().values.toArray());
    expect(b.buffers().counters.toArray()).toEqual(a.buffers().counters.toArray());
    // the next step is the same step
    oa.step(x, y);
    ob.step(x, y);
    expect(b.getParams()).toEqual(a.getParams());
  });
});

describe('crash safety', () => {
  it('SIGKILL while writing checkpoints leaves the previous one loadable', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'usam-kill-'));
    const file = join(dir, 'checkpoint.safetensors');
    for (let round = 0; round < 4; round++) {
      const child = spawn(process.execPath, ['--import', 'tsx', join(repoRoot, 'test/fixtures/checkpoint-writer.ts'), file], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'inherit'] });
      let written = 0;
      await new Promise<void>((resolve) => {
        child.stdout.on('data', (d: Buffer) => {
          written += (d.toString().match(/wrote/g) ?? []).length;
          // kill at a different moment of a write each round
          if (written >= 1 + round) setTimeout(() => child.kill('SIGKILL'), 3 + 17 * round);
        });
        child.on('exit', () => resolve());
      });
      expect(written).toBeGreaterThan(0);
      const ck = loadCheckpoint(file);
      const v = ck.progress.globalStep;
      expect(v).toBeGreaterThanOrEqual(1);
      const model = new Model(mlp({ layers: [1000, 2500, 10] }), { dtype: 'float32' });
      const opt = new Optimizer(model, { base: { kind: 'sgd', lr: 0.1, momentum: 0.9 } });
      ck.restore(model, opt);
      const p = model.getParams();
      expect(p[0]).toBe(v);
      expect(p[p.length - 1]).toBe(v);
      model.dispose();
      opt.dispose();
    }
    // nothing but the checkpoint and, at most, one temporary file of the killed writer
    expect(readdirSync(dir).filter((f) => f !== 'checkpoint.safetensors').length).toBeLessThanOrEqual(1);
  });
});
