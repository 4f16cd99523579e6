// Base optimizers over the flat parameter vector, with PyTorch semantics
// (torch.optim.SGD, Adam, AdamW); each step is one fused native call.
import { z } from 'zod';
import { native } from '../native/load.js';
import { persistent } from '../scope.js';
import type { Tensor } from '../tensor.js';

export const baseConfig = z.discriminatedUnion('kind', [
  z
    .object({
      kind: z.literal('sgd'),
      lr: z.number().positive(),
      momentum: z.number().min(0).default(0),
      dampening: z.number().min(0).default(0),
      weightDecay: z.number().min(0).default(0),
      nesterov: z.boolean().default(false),
    })
    .strict()
    .refine((c) => !c.nesterov || (c.momentum > 0 && c.dampening === 0), {
      message: 'nesterov needs momentum > 0 and dampening 0 (as in PyTorch)',
      path: ['nesterov'],
    }),
  z
    .object({
      kind: z.enum(['adam', 'adamw']),
      lr: z.number().positive(),
      beta1: z.number().min(0).lt(1).default(0.9),
      beta2: z.number().min(0).lt(1).default(0.999),
      eps: z.number().positive().default(1e-8),
      weightDecay: z.number().min(0).optional(),
    })
    .strict(),
]);

export type BaseConfigInput = z.input<typeof baseConfig>;
export type BaseConfig = z.output<typeof baseConfig>;

export interface BaseOptimizerState {
  kind: BaseConfig['kind'];
  step: number;
  /** the state buffers under PyTorch's names (momentum_buffer; exp_avg, exp_avg_sq), live tensors */
  buffers: Record<string, Tensor>;
}

export interface BaseOptimizer {
  readonly config: BaseConfig;
  /** w ← step(w, grad) with learning rate `lr` (the schedule's current value). */
  step(params: Tensor, grad: Tensor, lr: number): void;
  /** Step count and state buffers (momentum, Adam moments), for checkpoints. */
  state(): BaseOptimizerState;
  /** Sets the step count (the buffers of state() are written in place by the caller). */
  restoreStep(step: number): void;
  dispose(): void;
}

export function createBaseOptimizer(config: BaseConfigInput, like: Tensor): BaseOptimizer {
  const c = baseConfig.parse(config);
  // the optimizer's own buffers, outside every scope() (it disposes them)
  const zeros = () => persistent(() => native().Tensor.zeros(like.shape, like.dtype as 'float32' | 'float64', like.device));
  let steps = 0;
  if (c.kind === 'sgd') {
    const momentum = zeros();
    return {
      config: c,
      step(params, grad, lr) {
        native().optim.sgdStep(params, grad, momentum, { ...c, lr, first: steps === 0 });
        steps++;
      },
      state: () => ({ kind: c.kind, step: steps, buffers: { momentum_buffer: momentum } }),
      restoreStep: (step) => void (steps = step),
      dispose: () => momentum.dispose(),
    };
  }
  const expAvg = zeros();
  const expAvgSq = zeros();
  const decoupled = c.kind === 'adamw';
  // PyTorch defaults: Adam weight_decay 0, AdamW weight_decay 0.01.
  const weightDecay = c.weightDecay ?? (decoupled ? 0.01 : 0);
  return {
    config: c,
    step(params, grad, lr) {
      steps++;
      native().optim.adamStep(params, grad, expAvg, expAvgSq, { ...c, lr, weightDecay, decoupled, step: steps });
    },
    state: () => ({ kind: c.kind, step: steps, buffers: { exp_avg: expAvg, exp_avg_sq: expAvgSq } }),
    restoreStep: (step) => void (steps = step),
    dispose: () => {
      expAvg.dispose();
      expAvgSq.dispose();
    },
  };
}
