// Checkpoints: the safetensors layout, atomic writes under SIGKILL, and the
// state they carry.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Model } from '../lib/model/model.js';
import { mlp } from '../lib/model/presets.js';
import { Optimizer } from '../lib/optim/optimizer.js';
import { loadCheckpoint, saveCheckpoint } from '../lib/train/checkpoint.js';
import { labels, tensor } from '../lib/tensor.js';
import { decodeSafetensors, encodeSafetensors, stTensor, writeAtomic } from '../lib/train/safetensors.js';
import { repoRoot } from './helpers.js';

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
    expect(() => decodeSafetensors(bytes.subarray(0, 40))).toThrow(/truncated|corrupt/);
  });

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
