// Data: IDX and CIFAR readers on files written here, subset and label-noise
// semantics, the seeded loader and its augmentation.
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { cifar, type Dataset, readIdxDataset, subset, synthetic, withLabelNoise } from '../../lib/data/dataset.js';
import { encodeIdx, readIdx } from '../../lib/data/idx.js';
import { DataLoader } from '../../lib/data/loader.js';

const dir = mkdtempSync(join(tmpdir(), 'usam-data-'));

describe('IDX', () => {
  const images = Uint8Array.from({ length: 5 * 4 * 3 }, (_, i) => (i * 7) % 256);
  const labels = Uint8Array.from([3, 1, 4, 1, 5]);
  it('reads raw and gzipped files the test wrote', () => {
    writeFileSync(join(dir, 'raw.idx'), encodeIdx([5, 4, 3], images));
    writeFileSync(join(dir, 'gz.idx.gz'), gzipSync(encodeIdx([5, 4, 3], images)));
    for (const f of ['raw.idx', 'gz.idx.gz']) {
      const r = readIdx(join(dir, f));
      expect(r.dims).toEqual([5, 4, 3]);
      expect(Array.from(r.data)).toEqual(Array.from(images));
    }
  });

  it('reads an MNIST-layout folder into a dataset scaled to [0, 1]', () => {
    const d = join(dir, 'mnist');
    mkdirSync(d);
    writeFileSync(join(d, 'train-images-idx3-ubyte.gz'), gzipSync(encodeIdx([5, 4, 3], images)));
    writeFileSync(join(d, 'train-labels-idx1-ubyte'), encodeIdx([5], labels));
    const ds = readIdxDataset(d, 'train', 'mnist');
    expect(ds.shape).toEqual([1, 4, 3]);
    expect(Array.from(ds.y)).toEqual([3, 1, 4, 1, 5]);
    expect(ds.x[1]).toBeCloseTo(7 / 255, 7);
    expect(() => readIdxDataset(d, 'test', 'mnist')).toThrow(/mnist test images: none of .* found in/);
  });

  it('refuses missing, truncated, corrupt and mismatched files with clear errors', () => {
    expect(() => readIdx(join(dir, 'nope.idx'))).toThrow(/IDX file not found/);
    const good = encodeIdx([5, 4, 3], images);
    writeFileSync(join(dir, 'short.idx'), good.subarray(0, good.length - 7));
    expect(() => readIdx(join(dir, 'short.idx'))).toThrow(/truncated or corrupt/);
    writeFileSync(join(dir, 'magic.idx'), Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]));
    expect(() => readIdx(join(dir, 'magic.idx'))).toThrow(/bad magic number/);
    const gz = gzipSync(good);
    writeFileSync(join(dir, 'broken.gz'), gz.subarray(0, 20));
    expect(() => readIdx(join(dir, 'broken.gz'))).toThrow(/corrupt gzip/);
  });
});

describe('CIFAR', () => {
  const record = (label: number[], fill: number) => Uint8Array.from([...label, ...new Array(3072).fill(fill)]);
  it('reads CIFAR-10 batches and CIFAR-100 (fine labels)', () => {
    const c10 = join(dir, 'c10');
    mkdirSync(c10);
    for (let b = 1; b <= 5; b++) writeFileSync(join(c10, `data_batch_${b}.bin`), Buffer.concat([record([b], b), record([9], 200)]));
    writeFileSync(join(c10, 'test_batch.bin'), record([0], 255));
    const train = cifar('cifar10', 'train', c10);
    expect(train.y.length).toBe(10);
    expect(Array.from(train.y)).toEqual([1, 9, 2, 9, 3, 9, 4, 9, 5, 9]);
    expect(train.shape).toEqual([3, 32, 32]);
    expect(train.x[0]).toBeCloseTo(1 / 255, 7);
    expect(cifar('cifar10', 'test', c10).x[3071]).toBe(1);
    const c100 = join(dir, 'c100');
    mkdirSync(c100);
    writeFileSync(join(c100, 'train.bin'), Buffer.concat([record([3, 77], 1), record([0, 5], 2)]));
    expect(Array.from(cifar('cifar100', 'train', c100).y)).toEqual([77, 5]);
    writeFileSync(join(c100, 'test.bin'), record([3, 77], 1).subarray(0, 3000));
    expect(() => cifar('cifar100', 'test', c100)).toThrow(/not a whole number of cifar100 records/);
  });
});

describe('subset and label noise (reference semantics)', () => {
  const d: Dataset = synthetic({ count: 1000, shape: [3], classes: 10, seed: 1 });
  it('subset keeps the first fraction', () => {
    const s = subset(d, 0.25);
    expect(s.y.length).toBe(250);
    expect(Array.from(s.y)).toEqual(Array.from(d.y.slice(0, 250)));
    expect(Array.from(s.x)).toEqual(Array.from(d.x.slice(0, 750)));
  });

  it('label noise flips exactly floor(fraction·N) labels, each to a different class, reproducibly', () => {
    const { dataset, flipped } = withLabelNoise(d, 0.3, 7);
    expect(flipped.length).toBe(300);
    let changed = 0;
    for (let i = 0; i < 1000; i++) if (dataset.y[i] !== d.y[i]) changed++;
    expect(changed).toBe(300);
    for (const i of flipped) expect(dataset.y[i]).not.toBe(d.y[i]);
    expect(Array.from(withLabelNoise(d, 0.3, 7).dataset.y)).toEqual(Array.from(dataset.y));
    expect(Array.from(withLabelNoise(d, 0.3, 8).dataset.y)).not.toEqual(Array.from(dataset.y));
    // the new label is uniform over the other classes: every offset 1..9 occurs
    const offsets = new Set(Array.from(flipped, (i) => (dataset.y[i] - d.y[i] + 10) % 10));
    expect([...offsets].sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(() => withLabelNoise(d, 1.5, 1)).toThrow(/withLabelNoise: argument 'fraction' must be a finite number ≥ 0 and ≤ 1, got the number 1.5/);
  });
});

describe('loader', () => {
  const d = synthetic({ count: 50, shape: [2], classes: 3, seed: 2 });
  it('each epoch visits every sample once in a seeded order, different per epoch', () => {
    const l = new DataLoader(d, { batchSize: 8, shuffle: true, seed: 5 });
    expect(l.length).toBe(7);
    const seen = [...l.epoch(0)].flatMap((b) => Array.from(b.y.toArray() as BigInt64Array, Number));
    expect(seen.length).toBe(50);
    expect(Array.from(l.order(0)).sort((a, b) => a - b)).toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect(Array.from(l.order(0))).toEqual(Array.from(new DataLoader(d, { batchSize: 8, shuffle: true, seed: 5 }).order(0)));
    expect(Array.from(l.order(1))).not.toEqual(Array.from(l.order(0)));
    expect(new DataLoader(d, { batchSize: 8, dropLast: true }).length).toBe(6);
  });

  it('batchInto refills given tensors with exactly what batch() makes, and refuses tensors of another size', () => {
    const l = new DataLoader(d, { batchSize: 8, shuffle: true, seed: 5, dtype: 'float64' });
    const full = l.batch(0, 0), last = l.batch(0, 6);
    expect([l.batchLength(0), l.batchLength(6), l.batchLength(7)]).toEqual([8, 2, 0]);
    expect(last.x.shape).toEqual([2, 2]);
    for (const [epoch, index] of [[1, 3], [2, 0], [0, 5]]) {
      const fresh = l.batch(epoch, index);
      expect(l.batchInto(full, epoch, index)).toBe(full);
      expect(Array.from(full.x.toArray() as Float64Array)).toEqual(Array.from(fresh.x.toArray() as Float64Array));
      expect(Array.from(full.y.toArray() as BigInt64Array)).toEqual(Array.from(fresh.y.toArray() as BigInt64Array));
    }
    l.batchInto(last, 3, 6);
    expect(Array.from(last.y.toArray() as BigInt64Array)).toEqual(Array.from(l.batch(3, 6).y.toArray() as BigInt64Array));
    expect(() => l.batchInto(last, 0, 1)).toThrow(/batch 1 has shape \[8,2\] with labels \[8\], but 'into' has x \[2,2\] and y \[2\]/);
    expect(() => l.batchInto(full, 0, 7)).toThrow(/past the end of the epoch/);
  });

  it('crop-flip: pads 4, crops back, flips; reproducible per (epoch, batch)', () => {
    const img: Dataset = { name: 'img', x: Float32Array.from({ length: 3 * 8 * 8 }, (_, i) => i + 1), y: Int32Array.from([0]), shape: [3, 8, 8], classes: 1 };
    const l = new DataLoader(img, { batchSize: 1, augment: 'crop-flip', seed: 3 });
    const a = l.batch(0, 0).x.toArray() as Float32Array;
    expect(Array.from(l.batch(0, 0).x.toArray() as Float32Array)).toEqual(Array.from(a));
    // every output value is 0 (padding) or a pixel of the same channel
    for (let ch = 0; ch < 3; ch++)
      for (let k = 0; k < 64; k++) {
        const v = a[ch * 64 + k];
        expect(v === 0 || (v > ch * 64 && v <= (ch + 1) * 64)).toBe(true);
      }
    const variants = new Set(Array.from({ length: 30 }, (_, e) => Array.from(l.batch(e, 0).x.toArray() as Float32Array).join(',')));
    expect(variants.size).toBeGreaterThan(5);
  });
});

describe('loader shards (data-parallel ranks)', () => {
  it('the ranks\' parts of each batch, in rank order, are the batch of one loader, augmentation included', () => {
    const d = synthetic({ count: 47, shape: [3, 8, 8], classes: 5, seed: 2 });
    const o = { batchSize: 10, shuffle: true, seed: 4, augment: 'crop-flip' as const };
    const whole = new DataLoader(d, o);
    const ranks = [0, 1, 2].map((rank) => new DataLoader(d, { ...o, shard: { rank, worldSize: 3 } }));
    expect(ranks.map((l) => l.length)).toEqual([5, 5, 5]);
    for (const epoch of [0, 1])
      for (let b = 0; b < whole.length; b++) {
        const w = whole.batch(epoch, b);
        const parts = ranks.map((l) => l.batch(epoch, b));
        expect(parts.map((p) => p.y.shape[0])).toEqual(ranks.map((l) => l.batchLength(b)));
        expect(parts.reduce((s, p) => s + p.y.shape[0], 0)).toBe(w.y.shape[0]);
        expect(parts.flatMap((p) => Array.from(p.x.toArray() as Float32Array))).toEqual(Array.from(w.x.toArray() as Float32Array));
        expect(parts.flatMap((p) => Array.from(p.y.toArray() as BigInt64Array))).toEqual(Array.from(w.y.toArray() as BigInt64Array));
      }
  });
  it('refuses a last batch smaller than the ranks, and a bad shard', () => {
    const d = synthetic({ count: 21, shape: [4], classes: 2, seed: 1 });
    expect(() => new DataLoader(d, { batchSize: 10, shard: { rank: 0, worldSize: 2 } })).toThrow(/the last batch holds 1 samples, fewer than the 2 ranks/);
    expect(new DataLoader(d, { batchSize: 10, dropLast: true, shard: { rank: 1, worldSize: 2 } }).batchLength(1)).toBe(5);
    expect(() => new DataLoader(d, { batchSize: 10, shard: { rank: 2, worldSize: 2 } })).toThrow(/0 ≤ rank < worldSize/);
  });
});
