// Gradient clipping by norm, as torch.nn.utils.clip_grad_norm_(params,
// max_norm): g ← g · min(1, maxNorm / (‖g‖₂ + 1e-6)), applied once per step
// to the step's final gradient: after the rule has combined its passes
// (SAM's gradient at w + e, the perturbed gradients of Trace/Det/Frob-SAM,
// the exact estimator's third-derivative term), after data-parallel
// averaging (every pass all-reduced, or the final gradients averaged in
// 'local' mode), and before weight decay and the base optimizer's update
// (which is where PyTorch's training loops clip: before optimizer.step()).
// `perGroup` clips each parameter group by its own norm instead of one
// global norm.
import { z } from 'zod';
import { ops } from '../tensor/ops.js';
import { persistent } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import type { Segment } from './groups.js';

/** PyTorch's epsilon in clip_grad_norm_'s coefficient max_norm / (total_norm + 1e-6). */
export const CLIP_EPSILON = 1e-6;

export const clipConfig = z
  .union([
    z.number().positive().finite(),
    z
      .object({
        maxNorm: z.number().positive().finite(),
        /** each parameter group clipped by its own norm (default: one global norm, as clip_grad_norm_ over all parameters) */
        perGroup: z.boolean().default(false),
      })
      .strict(),
  ])
  .transform((v) => (typeof v === 'number' ? { maxNorm: v, perGroup: false } : v));

export type ClipInput = z.input<typeof clipConfig>;
export type ClipConfig = z.output<typeof clipConfig>;

/** What clipping saw: the norm before clipping (global, over all groups) and whether any part was scaled. */
export interface ClipResult {
  norm: number;
  clipped: boolean;
}

export class GradientClipper {
  // per group, views of the gradient's ranges (made once: the optimizer's gradient vector does not change)
  private views?: { of: Tensor; groups: Tensor[][] };

  constructor(
    readonly config: ClipConfig,
    private readonly segments: Segment[],
  ) {}

  /** Clips `grad` in place; returns its norm before clipping. */
  clip(grad: Tensor): ClipResult {
    const { maxNorm } = this.config;
    if (!this.config.perGroup || this.segments.length <= 1) {
      const norm = ops.norm(grad);
      const coefficient = maxNorm / (norm + CLIP_EPSILON);
      if (coefficient < 1) ops.scale(grad, coefficient);
      return { norm, clipped: coefficient < 1 };
    }
    const groups = this.groupViews(grad);
    let total = 0;
    let clipped = false;
    for (const views of groups) {
      const squared = views.reduce((s, v) => s + ops.dot(v, v), 0);
      total += squared;
      const coefficient = maxNorm / (Math.sqrt(squared) + CLIP_EPSILON);
      if (coefficient < 1) {
        for (const v of views) ops.scale(v, coefficient);
        clipped = true;
      }
    }
    return { norm: Math.sqrt(total), clipped };
  }

  private groupViews(grad: Tensor): Tensor[][] {
    if (this.views?.of !== grad) {
      this.dispose();
      const count = Math.max(...this.segments.map((s) => s.group)) + 1;
      const groups: Tensor[][] = Array.from({ length: count }, () => []);
      persistent(() => this.segments.forEach((s) => groups[s.group].push(grad.narrow(s.offset, s.numel))));
      this.views = { of: grad, groups: groups.filter((g) => g.length > 0) };
    }
    return this.views.groups;
  }

  dispose(): void {
    for (const g of this.views?.groups ?? []) for (const v of g) v.dispose();
    this.views = undefined;
  }
}
