// Dynamic loss scaling for float16 (torch.cuda.amp.GradScaler's policy),
// done once per optimizer step for every rule: every pass of the step
// differentiates S·L and divides its gradient by S once (the native
// lossAndGrad, S a power of two so that the division is exact), so SAM's
// ascent gradient, the perturbed gradients of Trace/Det/Frob-SAM and the
// final gradient are all unscaled before the rule combines them (the
// finite-difference losses L(w + ρu) − L(w) are never scaled: they come back
// unscaled from the forward pass). An Inf/NaN in any pass skips the whole
// step (the Optimizer restores the parameters, BatchNorm statistics and
// direction generator, as for any failed step), multiplies S by
// backoffFactor and counts the skip; growthInterval steps in a row without
// one multiply S by growthFactor.
import { z } from 'zod';

export const lossScaleConfig = z.union([
  z.literal(false),
  z
    .object({
      /** the first scale (GradScaler's init_scale) */
      init: z.number().positive().finite().default(2 ** 16),
      growthFactor: z.number().gt(1).finite().default(2),
      backoffFactor: z.number().gt(0).lt(1).default(0.5),
      /** good steps in a row before the scale grows */
      growthInterval: z.number().int().positive().default(2000),
    })
    .strict(),
]);

export type LossScaleInput = z.input<typeof lossScaleConfig>;

/** The scaler's state: in stateDict() and checkpoints, so a resumed run scales as the uninterrupted one. */
export interface LossScaleState {
  scale: number;
  /** good steps since the last skip or growth */
  goodSteps: number;
  /** steps skipped for Inf/NaN so far */
  skipped: number;
}

export class LossScaler {
  state: LossScaleState;

  constructor(private readonly config: Exclude<z.output<typeof lossScaleConfig>, false>) {
    this.state = { scale: config.init, goodSteps: 0, skipped: 0 };
  }

  get scale(): number {
    return this.state.scale;
  }

  /** A step went through: the scale grows after growthInterval of them. */
  stepped(): void {
    this.state.goodSteps++;
    if (this.state.goodSteps >= this.config.growthInterval) {
      this.state.scale *= this.config.growthFactor;
      this.state.goodSteps = 0;
    }
  }

  /** A pass met Inf/NaN: the step is skipped and the scale backs off. */
  skip(): void {
    this.state.scale *= this.config.backoffFactor;
    this.state.goodSteps = 0;
    this.state.skipped++;
  }
}
