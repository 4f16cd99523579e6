// In-memory datasets (float32 features, int32 labels), the readers that make
// them, and the transformations with the reference's semantics: the first
// fraction of the training set, label noise that flips a seeded random
// fraction of labels to a different class, per-channel normalisation.
import * as check from '../arguments.js';
import { UsamError } from '../errors.js';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { readCifar } from './cifar.js';
import { readIdx } from './idx.js';
import { Prng } from './prng.js';
import { extent } from '../extent.js';

export interface Dataset {
  name: string;
  /** count × prod(shape) features */
  x: Float32Array;
  y: Int32Array;
  /** per-sample shape: [features] or [channels, height, width] */
  shape: number[];
  classes: number;
}

/**
 * A dataset for a door's argument `name`: x Float32Array, y Int32Array,
 * shape, classes, and x holding count × prod(shape) values.
 */
export function datasetArg(fn: string, name: string, d: unknown): Dataset {
  const what = 'a dataset { name, x: Float32Array, y: Int32Array, shape, classes } (fashionMnist(...), synthetic(...))';
  check.object(fn, name, d as object, what);
  const o = d as Partial<Dataset>;
  if (!(o.x instanceof Float32Array)) throw new check.ArgumentError(fn, `${name}.x`, `must be a Float32Array of features, got ${check.describeValue(o.x)}`);
  if (!(o.y instanceof Int32Array)) throw new check.ArgumentError(fn, `${name}.y`, `must be an Int32Array of labels, got ${check.describeValue(o.y)}`);
  const shape = check.numbers(fn, `${name}.shape`, o.shape, { integer: true, min: 1 });
  check.number(fn, `${name}.classes`, o.classes, { integer: true, min: 1 });
  const size = Array.from(shape).reduce((a, b) => a * b, 1);
  if (o.x.length !== o.y.length * size)
    throw new check.ArgumentError(fn, `${name}.x`, `holds ${o.x.length} values; ${o.y.length} samples of shape [${Array.from(shape).join(', ')}] need ${o.y.length * size}`);
  return d as Dataset;
}

export const count = (d: Dataset) => d.y.length;
export const sampleSize = (d: Dataset) => d.shape.reduce((a, b) => a * b, 1);

const SPLITS = ['train', 'test'] as const;
const CIFAR_VARIANTS = ['cifar10', 'cifar100'] as const;

export const FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist';

function bytesToUnit(bytes: Uint8Array): Float32Array {
  const out = new Float32Array(bytes.length);
  for (let i = 0; i < bytes.length; i++) out[i] = bytes[i] / 255;
  return out;
}

function findFile(dir: string, names: string[], what: string): string {
  for (const n of names) {
    const p = join(dir, n);
    if (existsSync(p)) return p;
  }
  throw new UsamError(`${what}: none of ${names.join(', ')} found in ${dir}`);
}

/** MNIST-format IDX pairs (MNIST, Fashion-MNIST), raw or gzipped. */
export function readIdxDataset(dir: string, split: 'train' | 'test', name: string): Dataset {
  check.string('readIdxDataset', 'dir', dir, 'a folder');
  check.oneOf('readIdxDataset', 'split', split, SPLITS);
  check.string('readIdxDataset', 'name', name, "the dataset's name");
  const prefix = split === 'train' ? 'train' : 't10k';
  const imgFile = findFile(dir, [`${prefix}-images-idx3-ubyte.gz`, `${prefix}-images-idx3-ubyte`, `${prefix}-images.idx3-ubyte`], `${name} ${split} images`);
  const lblFile = findFile(dir, [`${prefix}-labels-idx1-ubyte.gz`, `${prefix}-labels-idx1-ubyte`, `${prefix}-labels.idx1-ubyte`], `${name} ${split} labels`);
  const images = readIdx(imgFile);
  const labels = readIdx(lblFile);
  if (images.dims.length !== 3) throw new UsamError(`${imgFile}: expected 3 dimensions (count, rows, cols), got ${images.dims.length}`);
  if (labels.dims.length !== 1 || labels.dims[0] !== images.dims[0])
    throw new UsamError(`${lblFile}: ${labels.dims[0]} labels for ${images.dims[0]} images in ${imgFile}`);
  const y = Int32Array.from(labels.data);
  const classes = extent(y).max + 1;
  return { name, x: bytesToUnit(images.data), y, shape: [1, images.dims[1], images.dims[2]], classes: Math.max(classes, 10) };
}

export function fashionMnist(split: 'train' | 'test', dir = FASHION_MNIST_DIR): Dataset {
  check.oneOf('fashionMnist', 'split', split, SPLITS);
  check.string('fashionMnist', 'dir', dir, 'a folder');
  if (!existsSync(dir))
    throw new UsamError(
      `Fashion-MNIST not found in ${dir}. Install Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist; npm install does it when run as root), or pass --data-dir with the IDX files.`,
    );
  return readIdxDataset(dir, split, 'fashion-mnist');
}

export function cifar(variant: 'cifar10' | 'cifar100', split: 'train' | 'test', dir: string): Dataset {
  check.oneOf('cifar', 'variant', variant, CIFAR_VARIANTS);
  check.oneOf('cifar', 'split', split, SPLITS);
  check.string('cifar', 'dir', dir, 'a folder');
  const sub = variant === 'cifar10' ? 'cifar-10-batches-bin' : 'cifar-100-binary';
  const base = existsSync(join(dir, sub)) ? join(dir, sub) : dir;
  const files =
    variant === 'cifar10'
      ? split === 'train'
        ? [1, 2, 3, 4, 5].map((i) => join(base, `data_batch_${i}.bin`))
        : [join(base, 'test_batch.bin')]
      : [join(base, split === 'train' ? 'train.bin' : 'test.bin')];
  const r = readCifar(files, variant);
  return { name: variant, x: bytesToUnit(r.images), y: r.labels, shape: [3, 32, 32], classes: variant === 'cifar10' ? 10 : 100 };
}

/** Gaussian class clusters: a learnable synthetic set. */
export function synthetic(o: { count: number; shape: number[]; classes: number; seed: number; noise?: number; split?: 'train' | 'test' }): Dataset {
  check.object('synthetic', 'options', o);
  check.number('synthetic', 'options.count', o.count, { integer: true, min: 1 });
  check.numbers('synthetic', 'options.shape', o.shape, { integer: true, min: 1 });
  check.number('synthetic', 'options.classes', o.classes, { integer: true, min: 1 });
  check.number('synthetic', 'options.seed', o.seed, { integer: true, min: 0 });
  if (o.noise !== undefined) check.number('synthetic', 'options.noise', o.noise, { min: 0 });
  if (o.split !== undefined) check.oneOf('synthetic', 'options.split', o.split, SPLITS);
  const rng = new Prng(o.seed, 0x5eed); // the class means depend on the seed only
  const samples = new Prng(o.seed, o.split === 'test' ? 0x7e57 : 0x7a1);
  const size = o.shape.reduce((a, b) => a * b, 1);
  const gauss = (r: Prng) => Math.sqrt(-2 * Math.log(1 - r.next())) * Math.cos(2 * Math.PI * r.next());
  const means = Array.from({ length: o.classes }, () => Float32Array.from({ length: size }, () => gauss(rng)));
  const x = new Float32Array(o.count * size);
  const y = new Int32Array(o.count);
  for (let i = 0; i < o.count; i++) {
    const c = samples.int(o.classes);
    y[i] = c;
    for (let k = 0; k < size; k++) x[i * size + k] = means[c][k] + (o.noise ?? 1) * gauss(samples);
  }
  return { name: 'synthetic', x, y, shape: o.shape, classes: o.classes };
}

/** The first `fraction` of the samples (the reference's subset semantics). */
export function subset(d: Dataset, fraction: number): Dataset {
  datasetArg('subset', 'dataset', d);
  if (!(typeof fraction === 'number' && fraction > 0 && fraction <= 1))
    throw new check.ArgumentError('subset', 'fraction', `must be in (0, 1], got ${check.describeValue(fraction)}`);
  const n = Math.max(1, Math.floor(count(d) * fraction));
  return { ...d, x: d.x.slice(0, n * sampleSize(d)), y: d.y.slice(0, n) };
}

/**
 * Label noise: floor(fraction·N) samples, chosen by a seeded permutation, get
 * a label drawn uniformly from the other classes (never their own).
 */
export function withLabelNoise(d: Dataset, fraction: number, seed: number): { dataset: Dataset; flipped: Int32Array } {
  datasetArg('withLabelNoise', 'dataset', d);
  check.number('withLabelNoise', 'fraction', fraction, { min: 0, max: 1 });
  check.number('withLabelNoise', 'seed', seed, { integer: true, min: 0 });
  const rng = new Prng(seed, 0x1abe1);
  const n = Math.floor(count(d) * fraction);
  const flipped = rng.permutation(count(d)).slice(0, n).sort();
  const y = d.y.slice();
  for (const i of flipped) y[i] = (y[i] + 1 + rng.int(d.classes - 1)) % d.classes;
  return { dataset: { ...d, y }, flipped };
}

/** Per-channel mean and standard deviation over a dataset. */
export function channelStats(d: Dataset): { mean: number[]; std: number[] } {
  datasetArg('channelStats', 'dataset', d);
  const channels = d.shape.length === 3 ? d.shape[0] : 1;
  const per = sampleSize(d) / channels;
  const sum = new Float64Array(channels), sq = new Float64Array(channels);
  for (let i = 0; i < count(d); i++)
    for (let c = 0; c < channels; c++)
      for (let k = 0; k < per; k++) {
        const v = d.x[i * sampleSize(d) + c * per + k];
        sum[c] += v;
        sq[c] += v * v;
      }
  const n = count(d) * per;
  const mean = Array.from(sum, (s) => s / n);
  return { mean, std: Array.from(sq, (s, c) => Math.sqrt(Math.max(s / n - mean[c] ** 2, 1e-12))) };
}

/** (x − mean_c) / std_c per channel (a new dataset). */
export function normalize(d: Dataset, stats: { mean: number[]; std: number[] }): Dataset {
  datasetArg('normalize', 'dataset', d);
  check.object('normalize', 'stats', stats, 'per-channel statistics { mean, std } (channelStats(...))');
  const channels = d.shape.length === 3 ? d.shape[0] : 1;
  check.numbers('normalize', 'stats.mean', stats.mean, { length: channels });
  check.numbers('normalize', 'stats.std', stats.std, { length: channels });
  const per = sampleSize(d) / channels;
  const x = new Float32Array(d.x.length);
  for (let i = 0; i < d.x.length; i++) {
    const c = Math.floor((i % sampleSize(d)) / per);
    x[i] = (d.x[i] - stats.mean[c]) / stats.std[c];
  }
  return { ...d, x };
}
