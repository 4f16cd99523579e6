// Base optimizers over the flat parameter vector, with PyTorch semantics
// (torch.optim.SGD, Adam, AdamW); each step is one fused native call.
import { z } from 'zod';
import * as check from '../arguments.js';
import { parseOrThrow } from '../errors.js';
import { native } from '../native/load.js';
import { persistent } from '../tensor/scope.js';
import { type Tensor, tensorArg } from '../tensor/tensor.js';
import type { ParamGroup, Segment } from './groups.js';

export const baseConfig = z.discriminatedUnion('kind', [
  z
    .object({
      kind: z.literal('sgd'),
      lr: z.number().nonnegative('lr must be ≥ 0 (0 freezes the parameters, as in PyTorch)'),
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
      lr: z.number().nonnegative('lr must be ≥ 0 (0 freezes the parameters, as in PyTorch)'),
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
  /**
   * w ← step(w, grad) with learning rate `lr` (the schedule's current
   * value). With parameter groups, `lr` and `weightDecay` give each group's
   * current values (group 0, the default group, first). `from`: the weights
   * the step starts from where `params` holds others (a sharpness-aware step's
   * w0, its params still perturbed): params = from − lr·(...) in the same
   * pass, bit for bit a copy of `from` into params and then the step.
   */
  step(params: Tensor, grad: Tensor, lr: number | readonly number[], weightDecay?: readonly number[], from?: Tensor): void;
  /** Step count and state buffers (momentum, Adam moments), for checkpoints. */
  state(): BaseOptimizerState;
  /** Sets the step count (the buffers of state() are written in place by the caller). */
  restoreStep(step: number): void;
  dispose(): void;
}

/** The weight decay a config means; PyTorch's defaults: Adam 0, AdamW 0.01. */
export function weightDecayOf(c: BaseConfig): number {
  return c.kind === 'sgd' ? c.weightDecay : (c.weightDecay ?? (c.kind === 'adamw' ? 0.01 : 0));
}

/**
 * The base optimizer over the flat vector `like` describes. With parameter
 * groups (groups.ts), each range of the vector is stepped with its group's
 * learning rate and weight decay as given to step() (the Optimizer reads its
 * live paramGroups): one fused call per range, on views of the vectors.
 */
export function createBaseOptimizer(config: BaseConfigInput, like: Tensor, grouping?: { groups: ParamGroup[]; segments: Segment[] }): BaseOptimizer {
  const c = parseOrThrow(baseConfig, config, 'base optimizer config', 'config');
  tensorArg('createBaseOptimizer', 'like', like);
  if (grouping !== undefined) {
    check.object('createBaseOptimizer', 'grouping', grouping, '{ groups, segments } (resolveGroups)');
    check.array('createBaseOptimizer', 'grouping.groups', grouping.groups, 'an array of parameter groups');
    check.array('createBaseOptimizer', 'grouping.segments', grouping.segments, 'an array of { group, offset, numel }');
  }
  // the optimizer's own buffers, outside every scope() (it disposes them)
  const zeros = () => persistent(() => native().Tensor.zeros(like.shape, like.dtype as 'float32' | 'float64', like.device));
  const decoupled = c.kind === 'adamw';
  const defaultDecay = weightDecayOf(c);
  const buffers: Record<string, Tensor> = c.kind === 'sgd' ? { momentum_buffer: zeros() } : { exp_avg: zeros(), exp_avg_sq: zeros() };
  const grouped = grouping && grouping.groups.length > 1 ? grouping : undefined;
  // views per range of every vector the step sees (params, gradient, buffers), made once
  const views = new Map<Tensor, Tensor[]>();
  const parts = (t: Tensor) => {
    let v = views.get(t);
    if (!v) {
      v = persistent(() => grouped!.segments.map((seg) => t.narrow(seg.offset, seg.numel)));
      views.set(t, v);
    }
    return v;
  };
  let steps = 0;
  const one = (params: Tensor, grad: Tensor, b: Tensor[], lr: number, weightDecay: number, from: Tensor | undefined) => {
    if (c.kind === 'sgd') native().optim.sgdStep(params, grad, b[0], { ...c, lr, weightDecay, first: steps === 0 }, from);
    else native().optim.adamStep(params, grad, b[0], b[1], { ...c, lr, weightDecay, decoupled, step: steps + 1 }, from);
  };
  const list = Object.values(buffers);
  return {
    config: c,
    step(params, grad, lr, weightDecay, from) {
      const lrs = typeof lr === 'number' ? [lr] : lr;
      const decays = weightDecay ?? [defaultDecay];
      if (from !== undefined) tensorArg('BaseOptimizer.step', 'from', from);
      if (!grouped) one(params, grad, list, lrs[0], decays[0], from);
      else {
        const [p, g] = [parts(params), parts(grad)];
        const f = from !== undefined ? parts(from) : undefined;
        const bs = list.map(parts);
        grouped.segments.forEach((seg, i) => {
          const group = grouped.groups[seg.group];
          one(p[i], g[i], bs.map((b) => b[i]), lrs[seg.group] ?? lrs[0], decays[seg.group] ?? (seg.group === 0 ? defaultDecay : group.weightDecay), f?.[i]);
        });
      }
      steps++;
    },
    state: () => ({ kind: c.kind, step: steps, buffers }),
    restoreStep: (step) => void (steps = step),
    dispose: () => {
      for (const v of views.values()) for (const t of v) t.dispose();
      views.clear();
      for (const t of list) t.dispose();
    },
  };
}
