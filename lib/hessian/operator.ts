// A curvature of a model's loss on fixed data as a linear operator on flat
// vectors: the Hessian H (v ↦ H v by the model's HVP), or a Gauss-Newton-type
// matrix G = Jᵀ M J (the GGN, the empirical or the Monte-Carlo Fisher: v ↦ G v
// by a J v pass, M in output space and a Jᵀ pass), each the sample-count-
// weighted mean over the batches, optionally restricted to the parameters of
// named modules (the principal block A_SS, acting on vectors that are zero
// outside S). Every probe (eigen.ts, estimators.ts, full.ts) runs on this one
// interface, so each runs on every curvature.
// A probe applies one operator to many vectors, so by default each batch keeps
// a cache: the first product computes what does not depend on v (activations,
// the loss gradient at every layer), later ones run only the tangent pass.
// Caches that would take more than `cacheBytes` together are dropped, last
// batch first, and those batches are recomputed on every product.
import { UsamError } from '../errors.js';
import type { Model } from '../model/model.js';
import type { CurvatureMethod, GaussNewtonKind, HvpMethod } from '../native/binding.js';
import { ops } from '../tensor/ops.js';
import type { ProcessGroup } from '../distributed.js';
import { type Batch, Passes } from '../model/passes.js';
import { runSync, type Work } from '../model/work.js';
import { type Generator, generator } from '../random.js';
import { floatTensor, type Tensor } from '../tensor/tensor.js';
import { persistent } from '../tensor/scope.js';
import { newHvpCache } from '../model/model.js';
import { zeros } from '../tensor/tensor.js';

/** The default limit of an operator's product caches over all its batches: 2 GiB. */
export const DEFAULT_HVP_CACHE_BYTES = 2 ** 31;

/** Which curvature an operator applies: the Hessian or a Gauss-Newton-type matrix (positive semi-definite). */
export type CurvatureKind = 'hessian' | GaussNewtonKind;

export interface CurvatureOperatorOptions {
  /** default 'hessian' */
  kind?: CurvatureKind;
  /** BatchNorm/dropout in training mode during the passes */
  training: boolean;
  /** restrict to the parameters of these modules */
  modules?: string[];
  /** how each HVP is computed (the Hessian only) */
  method?: HvpMethod;
  /** the most bytes the batches' caches may hold together; 0: no caches */
  cacheBytes?: number;
  /** data-parallel: the batches are this rank's shard, every product is all-reduced */
  group?: ProcessGroup;
  /** how quadratic forms vᵀHv are taken (curvatureWork); default: jets, or ⟨v, Hv⟩ by double backward where HVPs are */
  curvatureMethod?: CurvatureMethod;
  /** tensors the operator owns (e.g. sampled targets), disposed with it */
  owned?: Tensor[];
  /**
   * stream the data: each product makes the loader's batches one at a time
   * (epoch 0's order) and disposes each after its pass, so one batch is held
   * instead of all (no caches; `batches` is then empty)
   */
  stream?: StreamedData;
}

/** What streaming needs of a DataLoader. */
export interface StreamedData {
  readonly length: number;
  batch(epoch: number, index: number): Batch;
  batchLength(index: number): number;
}

export class CurvatureOperator {
  /** products used so far (each over all batches; named hvps for every kind) */
  hvps = 0;
  /** The dimension of the (restricted) operator. */
  readonly size: number;
  /** 1 on the coordinates of the selected modules, 0 elsewhere; undefined when all are selected. */
  readonly mask?: Tensor;
  /** Flat indices of the selected coordinates, in order. */
  readonly indices: (i: number) => number;
  readonly kind: CurvatureKind;
  readonly training: boolean;
  readonly method?: HvpMethod;
  readonly cacheBytes: number;
  readonly curvatureMethod?: CurvatureMethod;
  private readonly passes: Passes;
  private readonly owned: Tensor[];
  private readonly stream?: StreamedData;
  private cacheDropped = 0;

  constructor(
    readonly model: Model,
    batches: Batch[],
    o: CurvatureOperatorOptions,
  ) {
    this.kind = o.kind ?? 'hessian';
    this.training = o.training;
    this.method = o.method;
    this.stream = o.stream;
    this.cacheBytes = o.stream ? 0 : (o.cacheBytes ?? DEFAULT_HVP_CACHE_BYTES);
    this.owned = o.owned ?? [];
    this.curvatureMethod = o.curvatureMethod ?? (o.method === 'double-backward' ? 'double-backward' : undefined);
    this.passes = new Passes(model, { forward: 0, backward: 0, hvp: 0 }, o.group);
    if (!this.stream) this.passes.use(batches);
    if (this.cacheBytes > 0) {
      this.passes.hvpCaches = batches.map(() => newHvpCache());
      this.passes.curvatureCaches = batches.map(() => newHvpCache());
    }
    const modules = o.modules;
    if (!modules || modules.length === 0) {
      this.size = model.numParams;
      this.indices = (i) => i;
      return;
    }
    const info = model.paramInfo();
    const chosen = info.filter((p) => modules.some((m) => p.name.startsWith(`${m}.`)));
    for (const m of modules)
      if (!info.some((p) => p.name.startsWith(`${m}.`)))
        throw new UsamError(`modules: no parameters under '${m}'; the model's parameters are ${info.map((p) => p.name).join(', ')}`);
    const maskValues = new Float64Array(model.numParams);
    const starts: number[] = [];
    for (const p of chosen) {
      maskValues.fill(1, p.offset, p.offset + p.numel);
      for (let k = 0; k < p.numel; k++) starts.push(p.offset + k);
    }
    this.size = starts.length;
    this.indices = (i) => starts[i];
    this.mask = persistent(() => this.fromValues(maskValues));
  }

  /** The batches the operator averages over (for 'mc-fisher': each input once per drawn target set). */
  get batches(): readonly Batch[] {
    return this.stream ? [] : this.passes.batches;
  }

  /** A zero vector of the model's size, dtype and device. */
  zeros(): Tensor {
    return this.model.zerosLikeParams();
  }

  fromValues(values: ArrayLike<number>): Tensor {
    const m = this.model;
    if (values.length !== m.numParams) throw new UsamError(`expected a flat vector of ${m.numParams} numbers, got ${values.length}`);
    return floatTensor(m, values);
  }

  /** Zeroes the coordinates outside the selected modules. */
  restrict(v: Tensor): Tensor {
    if (this.mask) ops.mul(v, v, this.mask);
    return v;
  }

  /** out = A v (restricted). */
  apply(v: Tensor, out: Tensor): Tensor {
    return runSync(this.applyWork(v, out));
  }

  /**
   * out = A v (restricted), or for a block v of K directions, [K, P] each,
   * A applied to every row in one pass per batch (the tangents batched);
   * a block counts K products.
   */
  *applyWork(v: Tensor, out: Tensor): Work<Tensor> {
    const kind = this.kind;
    yield* this.passOver(v, out, (o) => (kind === 'hessian' ? this.passes.hvpWork(v, o, this.method) : this.passes.gaussNewtonWork(v, o, kind)));
    if (v.shape.length === 1) return this.restrict(out);
    const K = v.shape[0], P = this.model.numParams;
    if (this.mask) {
      const flat = out.view([K * P]);
      for (let k = 0; k < K; k++) this.restrict(flat.narrow(k * P, P)).dispose();
      flat.dispose();
    }
    return out;
  }

  /**
   * v_kᵀ H v_k (restricted v: the quadratic form of H_SS) for a flat v (one
   * number) or each row of a block [K, P] (K numbers), by second-order jets
   * pushed forward (no reverse pass, about half an HVP's matrix work) unless
   * curvatureMethod says otherwise; counts as K applications of H in `hvps`.
   */
  *curvatureWork(v: Tensor): Work<number[]> {
    if (this.kind !== 'hessian') return yield* this.formByProduct(v);
    const out = zeros([v.shape.length === 2 ? v.shape[0] : 1], this.model);
    try {
      yield* this.passOver(v, out, (o) => this.passes.curvatureWork(v, o, this.curvatureMethod));
      return Array.from(out.toArray() as ArrayLike<number>);
    } finally {
      out.dispose();
    }
  }

  // v_kᵀ A v_k as ⟨v_k, A v_k⟩ from one product (flat or block)
  private *formByProduct(v: Tensor): Work<number[]> {
    const av = zeros(v.shape, this.model);
    try {
      yield* this.applyWork(v, av);
      if (v.shape.length === 1) return [ops.dot(v, av)];
      const [K, P] = v.shape;
      const fv = v.view([K * P]), fa = av.view([K * P]);
      try {
        return Array.from({ length: K }, (_, k) => {
          const a = fv.narrow(k * P, P), b = fa.narrow(k * P, P);
          const d = ops.dot(a, b);
          a.dispose();
          b.dispose();
          return d;
        });
      } finally {
        fv.dispose();
        fa.dispose();
      }
    } finally {
      av.dispose();
    }
  }

  // Runs a pass over the batches into `out` in the operator's mode (the
  // model's own mode restored after), keeps the caches within their limit,
  // counts its applications.
  private *passOver(v: Tensor, out: Tensor, pass: (out: Tensor) => Work<number>): Work<void> {
    if (this.disposed) throw new UsamError(`this ${this.kind === 'hessian' ? 'Hessian' : `${this.kind} operator`} was disposed; it cannot be used after dispose() (make a new one with hessian(), ggn() or fisher())`);
    const wasTraining = this.model.training;
    this.model.train(this.training);
    try {
      if (this.stream) yield* this.streamed(out, pass);
      else yield* pass(out);
    } finally {
      this.model.train(wasTraining);
      this.keepCachesWithinLimit();
    }
    this.hvps += v.shape.length === 2 ? v.shape[0] : 1;
  }

  // A streamed pass: each batch made from the loader, its pass run, weighted
  // into `out` by its share of the samples (as Passes' accumulation), disposed.
  private *streamed(out: Tensor, pass: (out: Tensor) => Work<number>): Work<void> {
    const s = this.stream!;
    const sizes = Array.from({ length: s.length }, (_, j) => s.batchLength(j));
    const total = sizes.reduce((a, b) => a + b, 0);
    const scratch = sizes.length > 1 ? zeros(out.shape, this.model) : undefined;
    try {
      for (let j = 0; j < sizes.length; j++) {
        const b = s.batch(0, j);
        try {
          this.passes.use([b]);
          yield* pass(j === 0 ? out : scratch!);
        } finally {
          b.x.dispose();
          b.y.dispose();
        }
        if (j === 0) ops.scale(out, sizes[0] / total);
        else ops.axpy(out, sizes[j] / total, scratch!);
      }
    } finally {
      scratch?.dispose();
    }
  }

  /**
   * What the caches hold: bytes in all, per batch (HVP and curvature caches
   * together; 0 for a batch without one), and how often they were reused.
   */
  cacheInfo(): { bytes: number; perBatch: number[]; cachedBatches: number; droppedBatches: number; records: number; replays: number } {
    const kinds = [this.passes.hvpCaches, this.passes.curvatureCaches];
    const perBatch = this.passes.batches.map((_, j) => kinds.reduce((a, caches) => a + (caches[j]?.bytes ?? 0), 0));
    const live = kinds.flatMap((caches) => caches.filter((c): c is NonNullable<typeof c> => c !== undefined));
    return {
      bytes: perBatch.reduce((a, b) => a + b, 0),
      perBatch,
      cachedBatches: this.passes.batches.filter((_, j) => kinds.some((caches) => caches[j] !== undefined)).length,
      droppedBatches: this.cacheDropped,
      records: live.reduce((a, c) => a + c.records, 0),
      replays: live.reduce((a, c) => a + c.replays, 0),
    };
  }

  // Drops caches, last batch first (its curvature cache, then its HVP cache), until they fit in cacheBytes.
  private keepCachesWithinLimit(): void {
    const kinds = [this.passes.curvatureCaches, this.passes.hvpCaches];
    let total = kinds.reduce((a, caches) => a + caches.reduce((s, c) => s + (c?.bytes ?? 0), 0), 0);
    for (let j = this.passes.batches.length - 1; j >= 0 && total > this.cacheBytes; j--) {
      if (!kinds.some((caches) => caches[j] !== undefined)) continue;
      for (const caches of kinds) {
        const c = caches[j];
        if (!c) continue;
        total -= c.bytes;
        c.dispose();
        caches[j] = undefined;
      }
      this.cacheDropped++;
    }
  }

  /** A random vector of the operator's subspace: gaussian, rademacher or unit-norm gaussian. */
  random(gen: Generator, kind: 'gaussian' | 'rademacher' | 'sphere', out = this.zeros()): Tensor {
    if (kind === 'rademacher') gen.rademacher(out);
    else gen.gaussian(out);
    this.restrict(out);
    if (kind === 'sphere') ops.scale(out, 1 / ops.norm(out));
    return out;
  }

  newGenerator(seed: number): Generator {
    return generator(seed, this.model.device);
  }

  private disposed = false;

  dispose(): void {
    this.disposed = true;
    this.mask?.dispose();
    for (const t of this.owned) t.dispose();
    this.owned.length = 0;
    for (const c of [...this.passes.hvpCaches, ...this.passes.curvatureCaches]) c?.dispose();
    this.passes.hvpCaches = [];
    this.passes.curvatureCaches = [];
    this.passes.dispose();
  }
}
