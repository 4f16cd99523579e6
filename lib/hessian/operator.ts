// The Hessian of a model's loss on fixed data as a linear operator on flat
// vectors: H v by the model's HVP (the sample-count-weighted mean over the
// batches), optionally restricted to the parameters of named modules (the
// principal block H_SS, acting on vectors that are zero outside S).
import type { Model } from '../model/model.js';
import type { HvpMethod } from '../native/binding.js';
import { native } from '../native/load.js';
import { ops } from '../ops.js';
import { type Batch, Passes } from '../model/passes.js';
import { runSync, type Work } from '../model/work.js';
import { type Generator, generator } from '../random.js';
import type { Tensor } from '../tensor.js';
import { persistent } from '../scope.js';

export class HessianOperator {
  /** HVPs used so far (each over all batches). */
  hvps = 0;
  /** The dimension of the (restricted) operator. */
  readonly size: number;
  /** 1 on the coordinates of the selected modules, 0 elsewhere; undefined when all are selected. */
  readonly mask?: Tensor;
  /** Flat indices of the selected coordinates, in order. */
  readonly indices: (i: number) => number;
  private readonly passes: Passes;

  constructor(
    readonly model: Model,
    batches: Batch[],
    readonly training: boolean,
    modules?: string[],
    readonly method?: HvpMethod,
  ) {
    this.passes = new Passes(model, { forward: 0, backward: 0, hvp: 0 });
    this.passes.use(batches);
    if (!modules || modules.length === 0) {
      this.size = model.numParams;
      this.indices = (i) => i;
      return;
    }
    const info = model.paramInfo();
    const chosen = info.filter((p) => modules.some((m) => p.name.startsWith(`${m}.`)));
    for (const m of modules)
      if (!info.some((p) => p.name.startsWith(`${m}.`)))
        throw new Error(`modules: no parameters under '${m}'; the model's parameters are ${info.map((p) => p.name).join(', ')}`);
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

  /** A zero vector of the model's size, dtype and device. */
  zeros(): Tensor {
    return this.model.zerosLikeParams();
  }

  fromValues(values: ArrayLike<number>): Tensor {
    const m = this.model;
    if (values.length !== m.numParams) throw new Error(`expected a flat vector of ${m.numParams} numbers, got ${values.length}`);
    return native().Tensor.fromArray(m.dtype === 'float64' ? Float64Array.from(values) : Float32Array.from(values), [m.numParams], m.dtype, m.device);
  }

  /** Zeroes the coordinates outside the selected modules. */
  restrict(v: Tensor): Tensor {
    if (this.mask) ops.mul(v, v, this.mask);
    return v;
  }

  /** out = H v (restricted). */
  apply(v: Tensor, out: Tensor): Tensor {
    return runSync(this.applyWork(v, out));
  }

  *applyWork(v: Tensor, out: Tensor): Work<Tensor> {
    if (this.disposed) throw new Error('this Hessian was disposed; it cannot be used after dispose() (make a new one with hessian(model, data))');
    const wasTraining = this.model.training;
    this.model.train(this.training);
    try {
      yield* this.passes.hvpWork(v, out, this.method);
    } finally {
      this.model.train(wasTraining);
    }
    this.hvps++;
    return this.restrict(out);
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
    this.passes.dispose();
  }
}
