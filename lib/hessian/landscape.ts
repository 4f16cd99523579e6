// The loss landscape on a plane through the weights: L(w + α d₁ + β d₂) on
// a grid, along the Hessian's top two eigenvectors (unit norm: α, β in
// weight units, and the quadratic model ½(λ₁α² + λ₂β²) is the curvature's
// prediction), along random directions normalised filter by filter as Li et
// al. (2018, "Visualizing the Loss Landscape of Neural Nets") do (each row
// of a weight matrix, each output channel of a convolution, scaled to the
// norm of the weights it moves; biases and other 1-D parameters left at 0),
// or along two given directions. The weights are restored bit for bit.
import * as check from '../arguments.js';
import { UsamError } from '../errors.js';
import { type Model, modelArg } from '../model/model.js';
import type { Batch } from '../model/passes.js';
import { generator, streamSeed } from '../random.js';
import { ops } from '../tensor/ops.js';
import { floatTensor, type Tensor, tensorArg } from '../tensor/tensor.js';
import { hessian } from './hessian.js';
import { operatorArgs, type OperatorOptions } from './operator-args.js';

export interface LandscapeOptions extends Pick<OperatorOptions, 'mode'> {
  /** 'eigenvectors' (default): the Hessian's top two; 'random': filter-normalised gaussian; or two flat tensors */
  directions?: 'eigenvectors' | 'random' | [Tensor, Tensor];
  /** α and β run over [−range, range] (default 1) */
  range?: number;
  /** grid points per axis, odd so that 0 is on it (default 21) */
  points?: number;
  /** random directions' seed, and the Lanczos start's (default 0) */
  seed?: number;
}

export interface Landscape {
  /** the grid's coordinates along d₁ and d₂ */
  alphas: number[];
  betas: number[];
  /** loss[j][i] = L(w + alphas[i]·d₁ + betas[j]·d₂), the weighted mean over the batches */
  loss: number[][];
  /** L(w) */
  center: number;
  directions: 'eigenvectors' | 'random' | 'given';
  /** for eigenvector directions: λ₁ and λ₂ */
  eigenvalues?: [number, number];
  /** ‖d₁‖, ‖d₂‖ and their cosine */
  norms: [number, number];
  cosine: number;
  /** forward passes used (grid points × batches) */
  passes: number;
}

/** L(w + α d₁ + β d₂) on a points × points grid (see the file's comment for the directions). */
export function lossLandscape(model: Model, data: Batch | Iterable<Batch>, options: Partial<LandscapeOptions> = {}): Landscape {
  const a = operatorArgs('lossLandscape', model, data, options);
  const o = a.options as Partial<LandscapeOptions>;
  for (const key of ['group', 'modules', 'stream'] as const)
    if (a.options[key] !== undefined) throw new check.ArgumentError('lossLandscape', `options.${key}`, 'is not taken by lossLandscape (it moves every weight of one process, over batches it holds); leave it out');
  const range = o.range ?? 1;
  check.number('lossLandscape', 'options.range', range, { min: Number.MIN_VALUE });
  const points = o.points ?? 21;
  check.number('lossLandscape', 'options.points', points, { integer: true, min: 3, max: 401 });
  if (points % 2 === 0) throw new check.ArgumentError('lossLandscape', 'options.points', `is ${points}: make it odd, so that the weights themselves (α = β = 0) are on the grid`);
  const seed = o.seed ?? 0;
  const kind = o.directions ?? 'eigenvectors';
  const owned: Tensor[] = [];
  const w0 = model.params.clone();
  try {
    let d: [Tensor, Tensor];
    let eigenvalues: [number, number] | undefined;
    if (kind === 'eigenvectors') {
      const h = hessian(model, a.batches, { mode: a.operator.training ? 'train' : 'eval', cache: a.options.cache });
      try {
        const r = h.eigenvalues({ k: 2, vectors: true, seed, tol: 1e-6 });
        owned.push(...r.largestVectors!);
        d = [r.largestVectors![0], r.largestVectors![1]];
        eigenvalues = [r.largest[0], r.largest[1]];
      } finally {
        h.dispose();
      }
    } else if (kind === 'random') {
      d = [filterNormalisedDirection(model, seed, 0), filterNormalisedDirection(model, seed, 1)];
      owned.push(...d);
    } else if (Array.isArray(kind) && kind.length === 2) {
      kind.forEach((t, i) => {
        tensorArg('lossLandscape', `options.directions[${i}]`, t);
        if (t.shape.length !== 1 || t.shape[0] !== model.numParams || t.dtype !== model.dtype)
          throw new UsamError(`lossLandscape: options.directions[${i}] must be a flat ${model.dtype} tensor of the model's ${model.numParams} parameters, got ${t.dtype} [${t.shape}]`);
      });
      d = kind;
    } else
      throw new check.ArgumentError('lossLandscape', 'options.directions', `must be 'eigenvectors', 'random' or two flat tensors [d1, d2], got ${check.describeValue(kind)}`);
    const grid = Array.from({ length: points }, (_, i) => range * (-1 + (2 * i) / (points - 1)));
    grid[(points - 1) / 2] = 0;
    const wasTraining = model.training;
    model.train(a.operator.training);
    const total = a.batches.reduce((s, b) => s + b.x.shape[0], 0);
    const lossHere = () => a.batches.reduce((s, b) => s + model.native.loss(b.x, b.y, false) * b.x.shape[0], 0) / total;
    let loss: number[][];
    try {
      loss = grid.map((beta) =>
        grid.map((alpha) => {
          ops.combine(model.params, [1, alpha, beta], [w0, d[0], d[1]]);
          return lossHere();
        }),
      );
    } finally {
      ops.copy(model.params, w0);
      model.train(wasTraining);
    }
    const n1 = ops.norm(d[0]), n2 = ops.norm(d[1]);
    return {
      alphas: grid,
      betas: grid.slice(),
      loss,
      center: loss[(points - 1) / 2][(points - 1) / 2],
      directions: typeof kind === 'string' ? kind : 'given',
      ...(eigenvalues ? { eigenvalues } : {}),
      norms: [n1, n2],
      cosine: ops.dot(d[0], d[1]) / (n1 * n2),
      passes: points * points * a.batches.length,
    };
  } finally {
    w0.dispose();
    for (const t of owned) t.dispose();
  }
}

/**
 * A gaussian direction scaled filter by filter to the weights' norms (Li et
 * al. 2018): a parameter of two or more dimensions is split along its first
 * (a Linear's output rows, a Conv2d's output channels); 1-D parameters
 * (biases, normalisation scales) get 0. `index` picks the stream (0: d₁, 1: d₂).
 */
export function filterNormalisedDirection(model: Model, seed: number, index: number): Tensor {
  modelArg('filterNormalisedDirection', 'model', model);
  check.number('filterNormalisedDirection', 'seed', seed, { integer: true, min: 0, max: Number.MAX_SAFE_INTEGER });
  check.number('filterNormalisedDirection', 'index', index, { integer: true, min: 0, max: 2 ** 20 });
  const gen = generator(streamSeed(seed, 'directions', index), 'cpu');
  const g = floatTensor({ dtype: 'float64', device: 'cpu' }, new Float64Array(model.numParams));
  gen.gaussian(g);
  const values = g.toArray() as Float64Array;
  g.dispose();
  const w = model.getParams();
  for (const p of model.paramInfo()) {
    if (p.shape.length < 2) {
      values.fill(0, p.offset, p.offset + p.numel);
      continue;
    }
    const size = p.numel / p.shape[0];
    for (let f = 0; f < p.shape[0]; f++) {
      const start = p.offset + f * size;
      let dn = 0, wn = 0;
      for (let i = start; i < start + size; i++) {
        dn += values[i] * values[i];
        wn += w[i] * w[i];
      }
      const scale = dn > 0 ? Math.sqrt(wn / dn) : 0;
      for (let i = start; i < start + size; i++) values[i] *= scale;
    }
  }
  return floatTensor(model, values);
}
