// math.md §4: SAM and ASAM.
//   SAM:  e = rho·g0 / (‖g0‖ + 1e-7)
//   ASAM: T = eta + |w|;  e = rho·T²⊙g0 / (‖T⊙g0‖ + 1e-7)
//   grad = ∇L(w + e)
import { ops } from '../../ops.js';
import type { Tensor } from '../../tensor.js';
import type { Work } from '../../model/work.js';
import { perturb, type RuleContext, type RuleResult } from './context.js';

export function* samStep(ctx: RuleContext, o: ({ adaptive: false } | { adaptive: true; eta: number }) & { scale?: Tensor }): Work<RuleResult> {
  const e = ctx.workspace.get('direction');
  if (o.adaptive) {
    const t = ctx.workspace.get('asam-scale');
    ops.abs(t, ctx.w0);
    ops.addScalar(t, o.eta);
    ops.mul(e, t, ctx.g0); // T⊙g0
    const scale = ctx.rho / (ops.norm(e) + 1e-7);
    ops.mul(e, e, t); // T²⊙g0
    ops.scale(e, scale);
  } else {
    ops.copy(e, ctx.g0);
    ops.scale(e, ctx.rho / (ops.norm(ctx.g0) + 1e-7));
  }
  if (o.scale) ops.mul(e, e, o.scale); // parameter groups with their own rho
  perturb(ctx, e, 1);
  const perturbedLoss = yield* ctx.passes.lossAndGradWork(ctx.grad, ctx.statsEveryPass);
  const sharpness = perturbedLoss - ctx.loss;
  return { sharpness, penalty: sharpness };
}
