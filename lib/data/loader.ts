// Batches from an in-memory dataset. The order of epoch e is a permutation
// drawn from a stream seeded by (seed, e), and the augmentation of batch b of
// epoch e from (seed, e, b): any position of any epoch can be resumed
// exactly without storing generator state. With `shard`, rank r of W gets
// its contiguous part of every global batch (the same permutation and the
// same augmentation on every rank): the ranks' batches together are the one
// batch a single process would take.
import * as check from '../arguments.js';
import { UsamError } from '../errors.js';
import type { FloatDType } from '../native/binding.js';
import type { Batch } from '../model/passes.js';
import { persistent } from '../tensor/scope.js';
import { tensor, tensorArg } from '../tensor/tensor.js';
import { count, datasetArg, type Dataset, sampleSize } from './dataset.js';
import { Prng } from './prng.js';

export interface LoaderOptions {
  batchSize: number;
  shuffle?: boolean;
  seed?: number;
  dropLast?: boolean;
  /** CIFAR augmentation: pad 4 and random 32×32 crop, random horizontal flip */
  augment?: 'crop-flip';
  dtype?: FloatDType;
  device?: string;
  /** data-parallel: this rank's part of each batch of `batchSize` (the global batch) */
  shard?: { rank: number; worldSize: number };
}

/** Rank r's contiguous share [lo, hi) of n items split over W ranks: ⌊rn/W⌋ up to ⌊(r+1)n/W⌋. */
export function shareRange(n: number, shard: { rank: number; worldSize: number }): [number, number] {
  return [Math.floor((shard.rank * n) / shard.worldSize), Math.floor(((shard.rank + 1) * n) / shard.worldSize)];
}

export class DataLoader {
  readonly batchSize: number;
  private staging?: { x: Float32Array; y: Int32Array };
  constructor(
    readonly dataset: Dataset,
    readonly options: LoaderOptions,
  ) {
    datasetArg('new DataLoader', 'dataset', dataset);
    check.object('new DataLoader', 'options', options, 'loader options { batchSize, shuffle?, seed?, ... }');
    check.number('new DataLoader', 'options.batchSize', options.batchSize, { integer: true, min: 1 });
    if (options.shuffle !== undefined) check.boolean('new DataLoader', 'options.shuffle', options.shuffle);
    if (options.dropLast !== undefined) check.boolean('new DataLoader', 'options.dropLast', options.dropLast);
    if (options.seed !== undefined) check.number('new DataLoader', 'options.seed', options.seed, { integer: true, min: 0 });
    if (options.augment !== undefined) check.oneOf('new DataLoader', 'options.augment', options.augment, ['crop-flip'] as const);
    if (options.dtype !== undefined) check.oneOf('new DataLoader', 'options.dtype', options.dtype, ['float32', 'float64'] as const);
    if (options.device !== undefined) check.string('new DataLoader', 'options.device', options.device);
    this.batchSize = options.batchSize;
    if (options.augment && dataset.shape.length !== 3) throw new UsamError(`augment '${options.augment}' needs image data [C, H, W]`);
    const sh = options.shard;
    if (sh) {
      if (!(Number.isInteger(sh.worldSize) && sh.worldSize >= 1 && Number.isInteger(sh.rank) && sh.rank >= 0 && sh.rank < sh.worldSize))
        throw new check.ArgumentError('new DataLoader', 'options.shard', `must be { rank, worldSize } with 0 ≤ rank < worldSize, got ${JSON.stringify(sh)}`);
      const last = this.globalLength(this.length - 1);
      if (last < sh.worldSize)
        throw new UsamError(
          `the last batch holds ${last} samples, fewer than the ${sh.worldSize} ranks, so a rank would get none; choose a batch size that leaves at least ${sh.worldSize} in it, or dropLast`,
        );
    }
  }

  /** Samples of global batch `index` (all ranks together). */
  private globalLength(index: number): number {
    return Math.max(0, Math.min(this.batchSize, count(this.dataset) - index * this.batchSize));
  }

  /** This rank's range [lo, hi) within a global batch of n samples. */
  private shardRange(n: number): [number, number] {
    return this.options.shard ? shareRange(n, this.options.shard) : [0, n];
  }

  /** Batches per epoch. */
  get length(): number {
    const n = count(this.dataset);
    return this.options.dropLast ? Math.floor(n / this.batchSize) : Math.ceil(n / this.batchSize);
  }

  order(epoch: number): Int32Array {
    check.number('DataLoader.order', 'epoch', epoch, { integer: true, min: 0 });
    const n = count(this.dataset);
    return this.options.shuffle ? new Prng(this.options.seed ?? 0, 0x0dde5, epoch).permutation(n) : Int32Array.from({ length: n }, (_, i) => i);
  }

  /** Batch `index` of epoch `epoch`, in new tensors. */
  batch(epoch: number, index: number, order?: Int32Array): Batch {
    const { xs, ys } = this.stage('DataLoader.batch', epoch, index, order);
    const device = this.options.device;
    return {
      x: tensor(xs, [ys.length, ...this.dataset.shape], { dtype: this.options.dtype ?? 'float32', device }),
      y: tensor(ys, [ys.length], { dtype: 'int64', device }),
    };
  }

  /**
   * Batch `index` of epoch `epoch` written into `into`, tensors of that batch's shape (e.g. made by
   * an earlier batch() call), which are returned. A loop over many steps should refill its batch
   * tensors this way: a new tensor per step, freed between the step's own temporaries, leaves holes
   * in the C heap that are never reused (docs/benchmarks.md, memory over long runs).
   */
  batchInto(into: Batch, epoch: number, index: number, order?: Int32Array): Batch {
    check.object('DataLoader.batchInto', 'into', into, 'a batch { x, y } made by batch()');
    tensorArg('DataLoader.batchInto', 'into.x', into.x);
    tensorArg('DataLoader.batchInto', 'into.y', into.y);
    const { xs, ys } = this.stage('DataLoader.batchInto', epoch, index, order);
    const want = [ys.length, ...this.dataset.shape];
    if (into.x.shape.join() !== want.join() || into.y.shape.join() !== String(ys.length))
      throw new UsamError(
        `batchInto: batch ${index} has shape [${want}] with labels [${ys.length}], ` +
          `but 'into' has x [${into.x.shape}] and y [${into.y.shape}]; make 'into' with batch() for a batch of this size`,
      );
    into.x.copyFrom(xs);
    into.y.copyFrom(ys);
    return into;
  }

  /** How many samples batch `index` holds (the last one may be partial; with a shard, this rank's part). */
  batchLength(index: number): number {
    check.number('DataLoader.batchLength', 'index', index, { integer: true, min: 0 });
    const [lo, hi] = this.shardRange(this.globalLength(index));
    return hi - lo;
  }

  // The samples of one batch, augmented, in staging arrays reused from batch
  // to batch (the tensors copy them): a fresh 400 KB array per step left to
  // the garbage collector also fragmented the C heap over long runs.
  private stage(fn: string, epoch: number, index: number, given: Int32Array | undefined): { xs: Float32Array; ys: Int32Array } {
    check.number(fn, 'epoch', epoch, { integer: true, min: 0 });
    check.number(fn, 'index', index, { integer: true, min: 0 });
    const order = given ?? this.order(epoch);
    if (!(order instanceof Int32Array) || order.length !== count(this.dataset))
      throw new check.ArgumentError(fn, 'order', `must be an Int32Array of ${count(this.dataset)} sample indices (order(epoch)), got ${check.describeValue(order)}`);
    const d = this.dataset;
    const size = sampleSize(d);
    const start = index * this.batchSize;
    const end = Math.min(start + this.batchSize, order.length);
    if (start >= end) throw new check.ArgumentError(fn, 'index', `is ${index}: batch ${index} is past the end of the epoch (${this.length} batches)`);
    const [lo, hi] = this.shardRange(end - start);
    const from = start + lo, to = start + hi;
    if (!this.staging || this.staging.x.length < (to - from) * size) this.staging = { x: new Float32Array(this.batchSize * size), y: new Int32Array(this.batchSize) };
    const xs = this.staging.x.subarray(0, (to - from) * size);
    const ys = this.staging.y.subarray(0, to - from);
    const rng = this.options.augment ? new Prng(this.options.seed ?? 0, 0xa06, epoch, index) : undefined;
    // the augmentation draws of the global batch in order, so a shard's samples are augmented as in one process
    for (let k = start; k < from; k++) if (rng) drawCropFlip(rng);
    for (let k = from; k < to; k++) {
      const i = order[k];
      const src = d.x.subarray(i * size, (i + 1) * size);
      const dst = xs.subarray((k - from) * size, (k - from + 1) * size);
      if (rng) cropFlip(src, dst, d.shape, drawCropFlip(rng));
      else dst.set(src);
      ys[k - from] = d.y[i];
    }
    return { xs, ys };
  }

  /** The batches of epoch 0 in order: a loader is an Iterable<Batch> (e.g. for hessian()). */
  [Symbol.iterator](): Iterator<Batch> {
    return this.epoch(0);
  }

  /** The batches of one epoch, from `start` on. */
  *epoch(epoch: number, start = 0): Generator<Batch> {
    check.number('DataLoader.epoch', 'start', start, { integer: true, min: 0 });
    const order = this.order(epoch);
    for (let b = start; b < this.length; b++) yield this.batch(epoch, b, order);
  }
}

/**
 * Batch tensors refilled step after step: one pair per batch size (the full
 * one and a partial last one), made on first use outside every scope() and
 * refilled by batchInto(). What a long training loop should use instead of
 * a new pair per step (docs/benchmarks.md, memory over long runs).
 */
export class BatchTensors {
  private readonly kept = new Map<number, Batch>();
  private disposed = false;
  constructor(readonly loader: DataLoader) {
    check.instanceOf('new BatchTensors', 'loader', loader, DataLoader, 'a DataLoader');
  }

  /** Batch `index` of the epoch, in the kept tensors of its size (valid until the next call). */
  next(epoch: number, index: number, order?: Int32Array): Batch {
    if (this.disposed) throw new UsamError('BatchTensors.next: these batch tensors were disposed; they cannot be used after dispose()');
    order ??= this.loader.order(epoch);
    const size = this.loader.batchLength(index);
    const kept = this.kept.get(size);
    if (kept) return this.loader.batchInto(kept, epoch, index, order);
    const made = persistent(() => this.loader.batch(epoch, index, order));
    this.kept.set(size, made);
    return made;
  }

  dispose(): void {
    this.disposed = true;
    for (const { x, y } of this.kept.values()) {
      x.dispose();
      y.dispose();
    }
    this.kept.clear();
  }
}

/** One sample's draws of cropFlip: the offsets and the flip. */
function drawCropFlip(rng: Prng): { dy: number; dx: number; flip: boolean } {
  const dy = rng.int(9) - 4, dx = rng.int(9) - 4;
  return { dy, dx, flip: rng.next() < 0.5 };
}

/** Zero-pad by 4, crop back to H×W at the drawn offset, flipped horizontally when drawn so. */
function cropFlip(src: Float32Array, dst: Float32Array, shape: number[], { dy, dx, flip }: { dy: number; dx: number; flip: boolean }): void {
  const [c, h, w] = shape;
  for (let ch = 0; ch < c; ch++)
    for (let yy = 0; yy < h; yy++)
      for (let xx = 0; xx < w; xx++) {
        const sy = yy + dy, sx0 = flip ? w - 1 - xx : xx;
        const sx = sx0 + dx;
        dst[(ch * h + yy) * w + xx] = sy >= 0 && sy < h && sx >= 0 && sx < w ? src[(ch * h + sy) * w + sx] : 0;
      }
}
