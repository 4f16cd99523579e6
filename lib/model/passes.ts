// The passes over a batch or its micro-batches, and the Batch type: used by
// the optimizer's steps, the Hessian operator and the data loader, so it sits
// in the model layer below them. With several micro-batches every quantity
// is the sample-count-weighted mean (one batch of their concatenation for a
// model without BatchNorm; BatchNorm normalises each micro-batch by its own
// statistics, and its running statistics move once, pooled).
// With a process group, the micro-batches of all ranks are one step: weights
// are over the global sample count, and each pass ends with one allreduce of
// its weighted sum and its scalars (one collective per pass), so N processes
// compute what one process computes on the concatenation of their batches
// (with BatchNorm: on those batches as micro-batches, each normalised by its
// own statistics, as PyTorch's DDP without SyncBatchNorm; the running
// statistics move by the pooled statistics of all ranks' batches, one small
// float64 allreduce per step, so they too equal one process's).
import { NonFiniteError, UsamError } from '../errors.js';
import { type HvpCache, type Model, newHvpCache } from './model.js';
import type { CurvatureMethod, GaussNewtonKind, HvpMethod, Precision } from '../native/binding.js';
import { native } from '../native/load.js';
import { ops } from '../tensor/ops.js';
import type { Tensor } from '../tensor/tensor.js';
import { persistent } from '../tensor/scope.js';
import { type Job, one, runSync, type Work } from './work.js';
import { type ProcessGroup, Reducer } from '../distributed.js';

export interface Batch {
  x: Tensor;
  y: Tensor;
}

export interface PassCounters {
  /** forward passes (one per micro-batch per evaluation) */
  forward: number;
  /** backward passes (first-order; an HVP counts as its own kind) */
  backward: number;
  /** Hessian-vector products, including those inside third-order gradients */
  hvp: number;
}

export class Passes {
  batches: Batch[] = [];
  weights: number[] = [];
  /** samples over all micro-batches of the step */
  count = 0;
  /** per batch, the HVP cache its HVPs record into and replay from (undefined: none) */
  hvpCaches: (HvpCache | undefined)[] = [];
  /** per batch, the cache of its curvature (vᵀHv) passes: another method, so another record */
  curvatureCaches: (HvpCache | undefined)[] = [];
  /** per batch, its gradient's graph kept for third-order passes (keepingGradientGraphs) */
  private gradientGraphs: HvpCache[] = [];
  private scratch?: Tensor;
  private readonly reducer?: Reducer;

  constructor(
    readonly model: Model,
    readonly counters: PassCounters,
    readonly group?: ProcessGroup,
    /** the ranks whose BatchNorm statistics are pooled (default `group`; 'local' perturbations pool them without syncing the passes) */
    readonly statsGroup: ProcessGroup | undefined = group,
  ) {
    if (group) this.reducer = new Reducer(group);
    this.precision = model.precision;
  }

  /** The (micro-)batches of the current step. */
  use(batches: Batch[]): void {
    if (batches.length === 0) throw new UsamError('a step needs at least one batch');
    const sizes = batches.map((b, i) => {
      const n = b.x.shape[0];
      if (!Number.isInteger(n) || n < 1) throw new UsamError(`batches[${i}].x has no batch dimension`);
      return n;
    });
    let total = sizes.reduce((a, b) => a + b, 0);
    if (this.group) {
      const t = native().Tensor.fromArray(new Float64Array([total]), [1], 'float64', this.model.device); // NCCL takes CUDA tensors
      this.group.allreduce(t, 'sum');
      total = (t.toArray() as Float64Array)[0];
      t.dispose();
    }
    this.weights = sizes.map((n) => n / total);
    this.count = total;
    this.batches = batches;
  }

  /**
   * Accumulates `pass(batch, out)` over micro-batches into `out`; returns the
   * weighted mean of its results. `extra` are further sums of the pass (the
   * correct count) that travel with it across ranks.
   */
  private *accumulate(out: Tensor, pass: (b: Batch, out: Tensor, index: number) => Work<number>, extra?: { get(): number; set(v: number): void }): Work<number> {
    if (this.batches.length === 1 && !this.group) return yield* pass(this.batches[0], out, 0);
    let value = (yield* pass(this.batches[0], out, 0)) * this.weights[0];
    ops.scale(out, this.weights[0]);
    if (this.batches.length > 1) {
      const scratch = this.scratchLike(out);
      for (let j = 1; j < this.batches.length; j++) {
        value += (yield* pass(this.batches[j], scratch, j)) * this.weights[j];
        ops.axpy(out, this.weights[j], scratch);
      }
    }
    if (!this.group) return value;
    const [sum, more] = this.reducer!.sum(out, [value, extra?.get() ?? 0]);
    extra?.set(more);
    return sum;
  }

  // A scratch vector of out's shape (flat, or a block [K, P] of HVPs), kept for the next pass.
  private scratchLike(out: Tensor): Tensor {
    if (this.scratch && this.scratch.shape.join() !== out.shape.join()) {
      this.scratch.dispose();
      this.scratch = undefined;
    }
    this.scratch ??= persistent(() => native().Tensor.zeros(out.shape, this.model.dtype, this.model.device));
    return this.scratch;
  }

  /** Correctly classified samples in the last lossAndGrad over all micro-batches (null without class labels). */
  correct: number | null = null;

  /**
   * A free NaN/Inf check of the last lossAndGrad's gradient: a sum over its
   * entries (finite exactly when every entry is), or null where the passes
   * did not compute one (CUDA, a process group).
   */
  gradSum: number | null = null;

  /**
   * ‖g‖² of the last lossAndGrad's gradient, summed in double by the pass as
   * it wrote g (SAM's ‖g0‖ with no pass of its own), or null where it did
   * not compute it (CUDA, micro-batches, a process group).
   */
  gradSquares: number | null = null;

  /**
   * L and ∇L at the current parameters. With updateStats, BatchNorm's running
   * statistics move once, by the mean and unbiased variance of all the
   * micro-batches together (as for one batch of their concatenation); each
   * micro-batch is still normalised by its own batch statistics, as in
   * PyTorch's gradient accumulation.
   */
  lossAndGrad(out: Tensor, updateStats: boolean): number {
    return runSync(this.lossAndGradWork(out, updateStats));
  }

  *lossAndGradWork(out: Tensor, updateStats: boolean): Work<number> {
    // data-parallel, the ranks pool their statistics too (a TorchScript model's BatchNorm moves its own; the Trainer averages those)
    const acrossRanks = this.statsGroup !== undefined && this.model.torchscript === undefined;
    const pooled = updateStats && (this.batches.length > 1 || acrossRanks);
    if (!pooled) return yield* this.lossAndGradOnce(out, updateStats);
    this.model.native.beginStats();
    try {
      const loss = yield* this.lossAndGradOnce(out, true);
      if (acrossRanks) this.poolStatsAcrossRanks();
      this.model.native.commitStats();
      return loss;
    } catch (e) {
      this.model.native.discardStats();
      throw e;
    }
  }

  // One float64 allreduce of the step's BatchNorm statistics as sums (none
  // without BatchNorm): every rank commits those of the global batch, which
  // is what one process whose micro-batches are the shards commits.
  private poolStatsAcrossRanks(): void {
    const sums = this.model.native.statsSums();
    try {
      if (sums.numel === 0) return;
      this.statsGroup!.allreduce(sums, 'sum');
      this.model.native.poolStats(sums);
    } finally {
      sums.dispose();
    }
  }

  private *lossAndGradOnce(out: Tensor, updateStats: boolean): Work<number> {
    const native = this.model.native;
    let loss: number;
    if (this.batches.length === 1 && !this.group) {
      // one batch, one rank (a step's every pass, usually): the pass as one job, no accumulation
      this.counters.forward++;
      this.counters.backward++;
      loss = yield new GradientJob(native, this.batches[0], out, updateStats, this.lossScale);
      const c = native.lastCorrect;
      this.correct = c >= 0 ? c : null;
      this.gradSum = native.lastGradSum;
      this.gradSquares = this.gradSum === null ? null : native.lastGradSquares;
    } else {
      let correct: number | null = 0;
      // Σ of the micro-batches' gradients as weighted into out: finite exactly when out is (the native copy computes each)
      let gradSum: number | null = 0;
      loss = yield* this.accumulate(
        out,
        (b, o, j) => {
          this.counters.forward++;
          this.counters.backward++;
          const weights = this.weights;
          const job = new GradientJob(native, b, o, updateStats, this.lossScale);
          return (function* () {
            const l: number = yield job;
            const c = native.lastCorrect;
            correct = c >= 0 && correct !== null ? correct + c : null;
            const sum = native.lastGradSum;
            gradSum = typeof sum !== 'number' || gradSum === null ? null : gradSum + weights[j] * sum;
            return l;
          })();
        },
        // a rank without class labels sends −1: the sum is negative, no count
        { get: () => correct ?? -1, set: (v) => (correct = v >= 0 ? Math.round(v) : null) },
      );
      this.correct = correct;
      // another rank's gradients were summed into out: only a check of out itself speaks for them
      this.gradSum = this.group ? null : gradSum;
      // ‖Σ_j w_j g_j‖² is not a sum of the micro-batches' squares
      this.gradSquares = null;
    }
    // under loss scaling an overflow is an event, not a failure: the step sees it at once, before a rule uses the gradient
    if (this.lossScale !== 1 && !(Number.isFinite(loss) && (this.gradSum !== null ? Number.isFinite(this.gradSum) : ops.allFinite(out))))
      throw new NonFiniteError(`a pass overflowed under the loss scale ${this.lossScale} (loss ${loss})`, 0, Number.isFinite(loss) ? 'gradient' : 'loss', loss);
    return loss;
  }

  /** q = vᵀHv and ∇(vᵀHv) at the current parameters. */
  quadraticFormGrad(v: Tensor, out: Tensor): number {
    return runSync(this.quadraticFormGradWork(v, out));
  }

  /** set by the Optimizer: these passes make one update from gradients and second-order terms together */
  optimizerStep = false;
  /** the loss scale of the step's gradient passes (optim/loss-scale.ts); 1: none */
  lossScale = 1;
  /** the precision these passes run in: the model's, or its Optimizer's (OptimizerOptions.precision), which switches the model to it around each step */
  precision: Precision;

  // A step that mixes bf16 gradients with second-order terms (which run in
  // float32) would weigh two precisions in one update: refused, for every
  // rule that takes such passes (the exact estimator, GNP), before any pass.
  // (The Hessian probes take float32 HVPs alone: they run.)
  private secondOrderInFloat32(what: string): void {
    if (this.optimizerStep && this.precision !== 'fp32')
      throw new UsamError(
        `this rule takes ${what}, which run in float32, and the step's precision is '${this.precision}': a step would mix its bf16 gradients with float32 second-order terms. Use precision 'fp32' for this rule (the Hessian probes run in float32 whatever the precision).`,
      );
  }

  *quadraticFormGradWork(v: Tensor, out: Tensor): Work<number> {
    this.secondOrderInFloat32('the gradient of vᵀHv');
    const native = this.model.native;
    return yield* this.accumulate(out, (b, o, j) => {
      const cache = this.gradientGraphs[j];
      // a kept graph's forward-backward passes are counted when it is released
      if (!cache) {
        this.counters.forward++;
        this.counters.backward++;
      }
      this.counters.hvp++;
      return one({ sync: () => native.quadraticFormGrad(b.x, b.y, v, o, cache), async: () => native.quadraticFormGradAsync(b.x, b.y, v, o, cache) });
    });
  }

  /**
   * Runs `work` with each batch's gradient graph kept for its third-order
   * passes (quadraticFormGradWork): the first direction builds it, the next
   * ones reuse it (it does not depend on the direction), and it is released
   * when `work` ends, however it ends, so no graph outlives the step.
   */
  *keepingGradientGraphs<T>(work: Work<T>): Work<T> {
    const caches = this.batches.map(() => newHvpCache());
    this.gradientGraphs = caches;
    try {
      return yield* work;
    } finally {
      this.gradientGraphs = [];
      for (const c of caches) {
        // each graph built is one forward-backward
        this.counters.forward += c.records;
        this.counters.backward += c.records;
        c.dispose();
      }
    }
  }

  /** H v at the current parameters. */
  hvp(v: Tensor, out: Tensor, method?: HvpMethod): number {
    return runSync(this.hvpWork(v, out, method));
  }

  *hvpWork(v: Tensor, out: Tensor, method?: HvpMethod): Work<number> {
    this.secondOrderInFloat32('Hessian-vector products');
    const native = this.model.native;
    return yield* this.alongDirections(v, out, this.hvpCaches, (b, o, cache) =>
      one({ sync: () => native.hvp(b.x, b.y, v, o, method, cache), async: () => native.hvpAsync(b.x, b.y, v, o, method, cache) }),
    );
  }

  /** out = G v for a Gauss-Newton-type curvature (flat v or a block [K, P]); shares the HVP caches (their key holds the kind). */
  *gaussNewtonWork(v: Tensor, out: Tensor, kind: GaussNewtonKind): Work<number> {
    const native = this.model.native;
    return yield* this.alongDirections(v, out, this.hvpCaches, (b, o, cache) =>
      one({ sync: () => native.gaussNewton(b.x, b.y, v, o, kind, cache), async: () => native.gaussNewtonAsync(b.x, b.y, v, o, kind, cache) }),
    );
  }

  /** out[k] = v_kᵀ H v_k for a flat v (out [1]) or each row of a block [K, P] (out [K]). */
  *curvatureWork(v: Tensor, out: Tensor, method?: CurvatureMethod): Work<number> {
    const native = this.model.native;
    return yield* this.alongDirections(v, out, this.curvatureCaches, (b, o, cache) =>
      one({ sync: () => native.curvature(b.x, b.y, v, o, method, cache), async: () => native.curvatureAsync(b.x, b.y, v, o, method, cache) }),
    );
  }

  // A pass along v (a flat direction or a block of K) over the batches, each with its cache of `caches`; counts K HVPs.
  private *alongDirections(v: Tensor, out: Tensor, caches: (HvpCache | undefined)[], pass: (b: Batch, out: Tensor, cache?: HvpCache) => Work<number>): Work<number> {
    const directions = v.shape.length === 2 ? v.shape[0] : 1;
    return yield* this.accumulate(out, (b, o, j) => {
      this.counters.forward++;
      this.counters.hvp += directions;
      return pass(b, o, caches[j]);
    });
  }

  dispose(): void {
    this.scratch?.dispose();
    this.reducer?.dispose();
  }
}

/**
 * One forward-backward as a Job: a class, not an object of two closures (a
 * step makes one per pass, and its JavaScript between the native calls is
 * what a small model's step is short of; scripts/bench/step-profile.ts).
 */
class GradientJob implements Job<number> {
  constructor(
    private readonly native: Model['native'],
    private readonly batch: Batch,
    private readonly out: Tensor,
    private readonly updateStats: boolean,
    private readonly lossScale: number,
  ) {}
  sync(): number {
    return this.native.lossAndGrad(this.batch.x, this.batch.y, this.out, this.updateStats, this.lossScale);
  }
  async(): Promise<number> {
    return this.native.lossAndGradAsync(this.batch.x, this.batch.y, this.out, this.updateStats, this.lossScale);
  }
}
