// What a SAM-family rule sees during one step, and the helpers they share.
import type { Model } from '../../model/model.js';
import { ops } from '../../ops.js';
import { type Generator, sampleInto } from '../../random.js';
import type { UserSampler } from '../../sharpness/config.js';
import { native } from '../../native/load.js';
import type { Tensor } from '../../tensor.js';
import type { Passes } from '../passes.js';

export interface RuleContext {
  model: Model;
  passes: Passes;
  /** the step number (0-based), for error messages */
  step: number;
  rho: number;
  /** w, saved before any perturbation; restored bitwise after each */
  w0: Tensor;
  /** ∇L(w) of the unperturbed pass */
  g0: Tensor;
  /** L(w) */
  loss: number;
  /** where the rule writes the gradient handed to the base optimizer */
  grad: Tensor;
  workspace: Workspace;
}

export interface RuleResult {
  /** estimate of the sharpness measure S(w) (math.md §1; SAM: L(w+e) − L(w)) */
  sharpness: number;
  /** the term that lambda multiplies in the objective F(w) = L(w) + lambda·penalty */
  penalty: number;
}

/** Flat buffers reused across steps, allocated on first use. */
export class Workspace {
  private readonly buffers = new Map<string, Tensor>();
  constructor(private readonly model: Model) {}
  get(name: string): Tensor {
    let t = this.buffers.get(name);
    if (!t) {
      t = this.model.zerosLikeParams();
      this.buffers.set(name, t);
    }
    return t;
  }
  list(prefix: string, n: number): Tensor[] {
    return Array.from({ length: n }, (_, i) => this.get(`${prefix}${i}`));
  }
  dispose(): void {
    for (const t of this.buffers.values()) t.dispose();
    this.buffers.clear();
  }
}

/** Draws directions u ~ mu into a flat buffer. */
export class DirectionSampler {
  constructor(
    private readonly mu: 'gaussian' | 'rademacher' | 'sphere' | 'cube' | UserSampler,
    private readonly gen: Generator,
    private readonly halfCube: number | undefined,
  ) {}

  draw(out: Tensor, numParams: number): void {
    if (typeof this.mu === 'string') return sampleInto(this.gen, this.mu, out, this.halfCube);
    const u = this.mu(numParams);
    if (!u || u.length !== numParams)
      throw new Error(`sharpness.mu: the user sampler returned ${u?.length ?? 'nothing'} numbers; it must return a flat vector of ${numParams}`);
    const t = native().Tensor.fromArray(
      out.dtype === 'float64' ? Float64Array.from(u) : Float32Array.from(u),
      [numParams],
      out.dtype as 'float32' | 'float64',
      out.device,
    );
    if (!ops.allFinite(t)) throw new Error('sharpness.mu: the user sampler returned NaN or Inf');
    ops.copy(out, t);
    t.dispose();
  }
}

/** Evaluates a user-visible scalar function, refusing NaN/Inf with the field and step named. */
export function finite(value: number, field: string, at: number, step: number): number {
  if (!Number.isFinite(value))
    throw new Error(`step ${step}: sharpness.${field} returned ${value} at ${at}; it must be finite on the samples`);
  return value;
}

/** Sign of direction i: antithetic directions pair u with −u. */
export function directionSign(i: number, antithetic: boolean): 1 | -1 {
  return antithetic && i % 2 === 1 ? -1 : 1;
}

/** params ← w0 + scale·u, then the pass, then params ← w0 exactly. */
export function atPerturbed<T>(ctx: RuleContext, u: Tensor, scale: number, pass: () => T): T {
  ops.axpy(ctx.model.params, scale, u);
  try {
    return pass();
  } finally {
    ops.copy(ctx.model.params, ctx.w0);
  }
}
