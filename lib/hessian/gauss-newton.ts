// The Gauss-Newton-type curvature operators: G = Jᵀ M J, positive
// semi-definite, with J the Jacobian of the batch's outputs in the parameters
// (docs/hessian.md, "Operators"):
//   ggn(model, data)                    M = ∂²L/∂z²: the generalised Gauss-Newton matrix
//   fisher(model, data, {kind: 'empirical'})  (1/n) Σ_n ∇ℓ_n ∇ℓ_nᵀ at the data's targets
//                                       (ℓ_n sample n's loss summed over its outputs, n the
//                                       number of terms the loss averages: N, or N·d for MSE,
//                                       BCE and Huber over d outputs a sample)
//   fisher(model, data, {kind: 'mc'})   the same at targets drawn from the model's
//                                       predictive distribution (`samples` per input); E = GGN
// Each returns the probes of hessian() (eigenvalues, trace, density...) on its operator.
import { UsamError } from '../errors.js';
import * as check from '../arguments.js';
import type { Model } from '../model/model.js';
import type { Batch } from '../model/passes.js';
import { generator } from '../random.js';
import { type Tensor, zeros } from '../tensor/tensor.js';
import { persistent } from '../tensor/scope.js';
import { Curvature } from './hessian.js';
import { CurvatureOperator } from './operator.js';
import { operatorArgs, type OperatorOptions } from './operator-args.js';

/** The generalised Gauss-Newton matrix Jᵀ (∂²L/∂z²) J of the loss on `data`. */
export function ggn(model: Model, data: Batch | Iterable<Batch>, options?: Partial<OperatorOptions>): Curvature {
  const a = operatorArgs('ggn', model, data, options);
  refuseHessianOptions('ggn', a.options);
  return new Curvature(new CurvatureOperator(model, a.batches, { ...a.operator, kind: 'ggn' }));
}

export interface FisherOptions extends OperatorOptions {
  /** 'empirical': the per-sample gradients at the data's targets; 'mc': at targets drawn from the model */
  kind: 'empirical' | 'mc';
  /** 'mc': targets drawn per input (default 1); each costs one pass per product */
  samples?: number;
  /** 'mc': the seed of the draws (default 0) */
  seed?: number;
}

/**
 * The Fisher information of the model's predictive distribution, as the
 * second moment of per-sample loss gradients: empirical (at the data's
 * targets) or Monte-Carlo (at targets drawn once, when the operator is made,
 * from softmax(z) for cross-entropy, Bernoulli(σ(z)) for BCE with logits,
 * N(z, I/2) for MSE, whose (z − ỹ)² is that density's negative log; fixed
 * for all its products). Its expectation over the draws is the GGN.
 */
export function fisher(model: Model, data: Batch | Iterable<Batch>, options: Partial<FisherOptions>): Curvature {
  const a = operatorArgs('fisher', model, data, options);
  refuseHessianOptions('fisher', a.options);
  const o = a.options as Partial<FisherOptions>;
  if (o.kind === undefined) throw new check.ArgumentError('fisher', 'options.kind', "is required: 'empirical' (gradients at the data's targets) or 'mc' (at targets drawn from the model)");
  check.oneOf('fisher', 'options.kind', o.kind, ['empirical', 'mc'] as const);
  if (o.kind === 'empirical') {
    for (const key of ['samples', 'seed'] as const)
      if (o[key] !== undefined) throw new check.ArgumentError('fisher', `options.${key}`, "applies to kind 'mc' only (the empirical Fisher uses the data's targets)");
    return new Curvature(new CurvatureOperator(model, a.batches, { ...a.operator, kind: 'empirical-fisher' }));
  }
  if (a.operator.stream) throw new check.ArgumentError('fisher', 'options.stream', "is not taken with kind 'mc': its drawn targets are kept per batch; pass the batches");
  const samples = o.samples ?? 1;
  check.number('fisher', 'options.samples', samples, { integer: true, min: 1 });
  const seed = o.seed ?? 0;
  check.number('fisher', 'options.seed', seed, { integer: true, min: 0, max: Number.MAX_SAFE_INTEGER });
  const owned: Tensor[] = [];
  try {
    const drawn = drawTargets(model, a.batches, a.operator.training, samples, seed, owned);
    return new Curvature(new CurvatureOperator(model, drawn, { ...a.operator, kind: 'mc-fisher', owned }));
  } catch (e) {
    for (const t of owned) t.dispose();
    throw e;
  }
}

function refuseHessianOptions(fn: string, o: object): void {
  for (const key of ['hvpMethod', 'curvatureMethod'])
    if (key in o && (o as Record<string, unknown>)[key] !== undefined)
      throw new check.ArgumentError(fn, `options.${key}`, `applies to hessian() only (${fn}'s products are a J v pass, the output-space matrix and a Jᵀ pass); leave it out`);
}

// For each batch, `samples` batches {x, ỹ_m} with targets drawn from the
// model's outputs in the operator's mode: one generator for all, so the
// draws depend on the seed and the data alone.
function drawTargets(model: Model, batches: Batch[], training: boolean, samples: number, seed: number, owned: Tensor[]): Batch[] {
  const loss = model.spec.loss?.type ?? 'cross-entropy';
  if (loss !== 'cross-entropy' && loss !== 'bce-with-logits' && loss !== 'mse')
    throw new UsamError(
      `fisher: kind 'mc' draws targets from the model's likelihood, which the loss '${loss}' does not define; use a cross-entropy, bce-with-logits or mse model, or kind 'empirical', or ggn()`,
    );
  const gen = generator(seed, model.device);
  const wasTraining = model.training;
  model.train(training);
  try {
    return batches.flatMap((b) => {
      const z = model.forward(b.x);
      try {
        const noise = zeros(loss === 'cross-entropy' ? [samples, z.shape[0]] : [samples, ...z.shape], { dtype: z.dtype as 'float32' | 'float64', device: model.device });
        try {
          if (loss === 'mse') gen.gaussian(noise);
          else gen.uniform(noise, 0, 1);
          const targets = model.native.fisherTargets(z, noise) as Tensor;
          const shape = targets.shape.slice(1);
          const each = shape.reduce((p, d) => p * d, 1);
          const all = targets.view([samples * each]);
          targets.dispose();
          try {
            return Array.from({ length: samples }, (_, m) => {
              const y = persistent(() => all.narrow(m * each, each).view(shape)) as Tensor;
              owned.push(y);
              return { x: b.x, y };
            });
          } finally {
            all.dispose();
          }
        } finally {
          noise.dispose();
        }
      } finally {
        z.dispose();
      }
    });
  } finally {
    model.train(wasTraining);
  }
}
