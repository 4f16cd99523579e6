// What a SAM-family rule sees during one step, and the helpers they share.
import { UNIT_ROUNDOFF, type Model } from '../../model/model.js';
import { ops } from '../../tensor/ops.js';
import { type Generator, sampleInto } from '../../random.js';
import type { UserSampler } from '../../sharpness/config.js';
import { NonFiniteError, UsamError } from '../../errors.js';
import { floatTensor, type Tensor } from '../../tensor/tensor.js';
import type { Passes } from '../../model/passes.js';
import type { Work } from '../../model/work.js';
import { persistent } from '../../tensor/scope.js';

export interface RuleContext {
  model: Model;
  passes: Passes;
  /** the step's number, counting from 1 (as every number a person reads), for error messages */
  step: number;
  rho: number;
  /** w, kept (copied on the first read) so that params may then be overwritten; restored bitwise after the step */
  readonly w0: Tensor;
  /** w during the step: `weights.w` reads it without keeping a copy; `weights.shift()` (a perturbation) and `weights.keep()` keep it first */
  weights: StepWeights;
  /** ∇L(w) of the unperturbed pass */
  g0: Tensor;
  /** ‖g0‖², summed in double by that pass as it wrote g0 (Passes.gradSquares), or null where it did not (CUDA, micro-batches, ranks): use gradientNorm(ctx) */
  g0Squares: number | null;
  /** L(w) */
  loss: number;
  /** where the rule writes the gradient handed to the base optimizer; it is g0's
   *  buffer, so a rule writes it only when done with g0 (combine may alias its first term) */
  grad: Tensor;
  workspace: Workspace;
  /** batchNorm 'every-pass': each perturbed forward-backward pass moves BatchNorm's running statistics, as the reference's train-mode closures do */
  statsEveryPass: boolean;
}

export interface RuleResult {
  /** the step's reading of its measure (math.md §2a; lib/sharpness/reading.ts names it): SAM L(w+e) − L(w), the others phi(mean psi(q_i)) */
  sharpness: number;
  /** the term that lambda multiplies in the objective F(w) = L(w) + lambda·penalty */
  penalty: number;
  /** Σ of the gradient's entries when the rule computed it (a free NaN/Inf check) */
  gradSum?: number;
  /** in reduced precision, the perturbation's estimated rounding error (perturbedPasses' `rounding`) */
  perturbationRounding?: number;
}

/** Flat buffers reused across steps, allocated on first use. */
export class Workspace {
  private readonly buffers = new Map<string, Tensor>();
  constructor(private readonly model: Model) {}
  get(name: string): Tensor {
    let t = this.buffers.get(name);
    if (!t) {
      t = persistent(() => this.model.zerosLikeParams());
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

/**
 * The weights w of one step, kept exact while params hold perturbed points.
 * Until a rule first overwrites params, w is params itself; then keep()
 * copies it into the workspace's saved buffer once, or the first shift()
 * writes it there in the pass that perturbs params (the buffer allocated on
 * that first use: a plain step never holds it). A rule that never perturbs (exact, GNP)
 * copies nothing, and its base step updates params in place. After a
 * failure, restore() copies w back, bit for bit.
 */
export class StepWeights {
  private saved: Tensor | undefined; // holds w once kept
  constructor(
    private readonly params: Tensor,
    private readonly workspace: Workspace,
  ) {}

  /** w: params until it is kept, the saved copy after. */
  get w(): Tensor {
    return this.saved ?? this.params;
  }

  /** Keeps w (a copy, made once a step) before params are overwritten: returns where it is kept. */
  keep(): Tensor {
    if (!this.saved) {
      this.saved = this.workspace.get('saved-params');
      ops.copy(this.saved, this.params);
    }
    return this.saved;
  }

  /**
   * params ← w + scale·dir, returning ⟨probe, dir⟩ (summed in double; 0
   * without a probe): a perturbation of the step's w, in one fused pass. The
   * first one of a step keeps w in that same pass (its copy fused into the
   * shift: one read of w fewer than keep() then a shift).
   */
  shift(scale: number, dir: Tensor, probe?: Tensor): number {
    if (this.saved) return ops.shiftDot(this.params, this.saved, scale, dir, probe);
    const saved = this.workspace.get('saved-params');
    const dot = ops.shiftDot(this.params, this.params, scale, dir, probe, saved);
    this.saved = saved; // only once w is there: a refused call leaves nothing to restore
    return dot;
  }

  /** Where the base step reads w from when params may hold a perturbed w (params = from − lr·(...)), else undefined. */
  get perturbedFrom(): Tensor | undefined {
    return this.saved;
  }

  /** The base step wrote params from the kept w: nothing to restore. */
  settle(): void {
    this.saved = undefined;
  }

  /** params ← w exactly, wherever the step stopped. */
  restore(): void {
    if (this.saved) ops.copy(this.params, this.saved);
    this.saved = undefined;
  }
}

/**
 * Draws directions u ~ mu. Within a step, the next draw of a built-in
 * measure is made on a background thread while the current forward-backward
 * pass runs, into the other of two buffers (so nothing is copied); begin()
 * announces how many draws the step makes, so no prefetch outlives the step
 * and checkpoints stay exact. The sequence of draws is the same as drawing
 * synchronously. A direction returned by next() stays valid until the next
 * call but one.
 */
export class DirectionSampler {
  private remaining = 0;
  private pending: number | null = null; // buffer index being filled in the background
  private turn = 0; // buffer index the next fill goes to
  private readonly buffers: Tensor[] = [];

  constructor(
    private readonly mu: 'gaussian' | 'rademacher' | 'sphere' | 'cube' | UserSampler,
    private readonly gen: Generator,
    private readonly halfCube: number | undefined,
    private readonly newBuffer: () => Tensor,
  ) {}

  /** The step is about to make `draws` draws: start the first one now. */
  begin(draws: number): void {
    if (typeof this.mu !== 'string') return;
    this.remaining = draws;
    if (this.pending === null && this.remaining > 0) this.schedule();
  }

  private buffer(i: number): Tensor {
    while (this.buffers.length <= i) this.buffers.push(persistent(this.newBuffer));
    return this.buffers[i];
  }

  private schedule(): void {
    const out = this.buffer(this.turn);
    if (this.mu === 'cube') {
      const a = this.halfCube ?? NaN;
      if (!(a > 0)) throw new UsamError(`halfCube must be > 0 for the cube measure, got ${this.halfCube}`);
      this.gen.fillAsync(out, 'uniform', -a, a);
    } else this.gen.fillAsync(out, this.mu as 'gaussian' | 'rademacher' | 'sphere');
    this.pending = this.turn;
    this.turn ^= 1;
    this.remaining--;
  }

  /** The next direction u (a flat vector owned by the sampler). */
  next(numParams: number): Tensor {
    if (typeof this.mu === 'string') {
      if (this.pending === null) {
        const out = this.buffer(this.turn);
        this.turn ^= 1;
        sampleInto(this.gen, this.mu, out, this.halfCube);
        return out;
      }
      this.gen.wait();
      const u = this.buffers[this.pending];
      this.pending = null;
      if (this.remaining > 0) this.schedule();
      return u;
    }
    const u = this.mu(numParams);
    if (!u || u.length !== numParams)
      throw new UsamError(`sharpness.mu: the user sampler returned ${u?.length ?? 'nothing'} numbers; it must return a flat vector of ${numParams}`);
    const out = this.buffer(0);
    const t = floatTensor(out, u);
    if (!ops.allFinite(t)) throw new UsamError('sharpness.mu: the user sampler returned NaN or Inf');
    ops.copy(out, t);
    t.dispose();
    return out;
  }

  /** A failed step: wait for a fill in flight and forget the step's remaining draws (the caller restores the generator). */
  abort(): void {
    if (this.pending !== null) this.gen.wait();
    this.pending = null;
    this.remaining = 0;
  }

  dispose(): void {
    this.abort();
    for (const b of this.buffers) b.dispose();
  }
}

/** Evaluates a user-visible scalar function, refusing NaN/Inf with the field and step named. */
export function finite(value: number, field: string, at: number, step: number): number {
  if (!Number.isFinite(value))
    throw new NonFiniteError(`step ${step}: sharpness.${field} returned ${value} at ${at}; it must be finite on the samples`, step, field, value);
  return value;
}

/**
 * The n perturbed passes of the zeroth-order rules: L_i = L(w + rho·s_i·u_i)
 * and g_i = ∇L there (g_i written into the returned buffers). Antithetic
 * directions pair each draw u with −u (s_i = ±1), independent ones draw every u.
 * `firstOrder[i]` = rho·s_i·g0ᵀu_i is the first-order part of L_i − L(w) (one
 * dot product per draw): the step's reading subtracts it (curvatureSamples),
 * so that the gradient does not swamp the curvature it reports.
 * `differences`: the rule's update is built from L_i − L(w) and g_i − g0
 * (Trace/Det/Frob-SAM, the universal class), so in reduced precision a
 * perturbation below the precision's floor is refused (perturbationFloor).
 */
export function* perturbedPasses(
  ctx: RuleContext,
  sampler: DirectionSampler,
  n: number,
  antithetic: boolean,
  differences = true,
): Work<{ losses: number[]; grads: Tensor[]; firstOrder: number[]; rounding?: number }> {
  const grads = ctx.workspace.list('perturbed-grad-', n);
  // ‖w‖ once per step (w is the same for every draw)
  const weights = differences && ctx.passes.precision !== 'fp32' ? ops.norm(ctx.weights.w) : undefined;
  let rounding: number | undefined;
  const losses: number[] = [];
  const firstOrder: number[] = [];
  let u: Tensor | undefined;
  let slope = 0;
  for (let i = 0; i < n; i++) {
    const negate = antithetic && i % 2 === 1;
    if (!negate) {
      u = sampler.next(ctx.model.numParams);
      if (weights !== undefined) rounding = Math.max(rounding ?? 0, perturbationFloor(ctx, weights, u));
      // params ← w + rho·u, and the slope rho·g0ᵀu from the same pass over u
      slope = ctx.rho * ctx.weights.shift(ctx.rho, u, ctx.g0);
    } else ctx.weights.shift(-ctx.rho, u!);
    firstOrder.push(negate ? -slope : slope);
    const loss = yield* ctx.passes.lossAndGradWork(grads[i], ctx.statsEveryPass);
    if (!Number.isFinite(loss))
      throw new NonFiniteError(
        `step ${ctx.step}: the perturbed loss L(w ${negate ? '−' : '+'} rho·u_${antithetic ? i >> 1 : i}) is ${loss} (rho ${ctx.rho}); nothing was updated. Lower rho or the learning rate.`,
        ctx.step,
        'perturbed loss',
        loss,
      );
    losses.push(loss);
  }
  return { losses, grads, firstOrder, ...(rounding !== undefined ? { rounding } : {}) };
}

/**
 * Refuse a perturbation above this estimated relative rounding error
 * (docs/models.md, "The finite-difference floor"): measured on the MLP,
 * Frob-SAM's update errs by ≈ 2.3·E against float32, so 0.05 keeps it near
 * 10%; the readings lose digits sooner (scripts/precision-floor.ts), which
 * is why the step reports E.
 */
export const MAX_PERTURBATION_ROUNDING = 0.05;

/**
 * The finite-difference floor of reduced precision. A bf16/fp16 pass rounds
 * the weights it multiplies, w + rho·u and w alike, to the precision's unit
 * roundoff u_p (relative), so the perturbation the passes see is rho·u plus
 * the difference of two roundings: an error of rms √(2/3)·u_p·|w| per
 * weight (each rounding uniform within ±u_p·|w|), against rho·|u|. Its
 * estimate over all parameters, √(2/3)·u_p·‖w‖/(rho·‖u‖), is the relative
 * error of what L_i − L(w) and g_i − g0 measure (scripts/precision-floor.ts
 * compares it with the measured error of the update); above
 * MAX_PERTURBATION_ROUNDING the step is refused, with the rho that passes;
 * below, the estimate is returned for StepResult.perturbationRounding. One
 * norm per draw (‖w‖ = `weights`, one per step), in reduced precision only.
 */
function perturbationFloor(ctx: RuleContext, weights: number, u: Tensor): number {
  const unit = UNIT_ROUNDOFF[ctx.passes.precision];
  const direction = ops.norm(u);
  const rounding = (Math.sqrt(2 / 3) * unit * weights) / (ctx.rho * direction);
  if (rounding <= MAX_PERTURBATION_ROUNDING) return rounding;
  // E is proportional to 1/rho: the rho with E at the bound
  const floor = (ctx.rho * rounding) / MAX_PERTURBATION_ROUNDING;
  throw new UsamError(
    `step ${ctx.step}: rho ${ctx.rho} is below the finite-difference floor of precision '${ctx.passes.precision}' for these weights: ` +
      `its passes round w + rho·u and w to ${Math.round(-Math.log2(unit))} significant bits, which leaves the perturbation rho·u an estimated relative error of ${rounding.toPrecision(2)} ` +
      `(√(2/3)·2^${Math.log2(unit)}·‖w‖/(rho·‖u‖), ‖w‖ ${weights.toPrecision(3)}, ‖u‖ ${direction.toPrecision(3)}; at most ${MAX_PERTURBATION_ROUNDING} is accepted), ` +
      `and the rule's differences L(w + rho·u) − L(w) and ∇L(w + rho·u) − ∇L(w) with it. Use rho ≥ ${floor.toPrecision(2)}, or precision 'fp32' for this rule (docs/models.md, "The finite-difference floor").`,
  );
}

/**
 * The curvature samples behind a finite-difference rule's reading (math.md
 * §2a): q_i = 2·(L_i − L(w) − rho·s_i·g0ᵀu_i)/rho², which is u_iᵀHu_i exactly
 * on a quadratic and u_iᵀHu_i + O(rho·‖u_i‖³) otherwise.
 */
export function curvatureSamples(ctx: RuleContext, p: { losses: number[]; firstOrder: number[] }): number[] {
  const rho2 = ctx.rho * ctx.rho;
  return p.losses.map((l, i) => (2 * (l - ctx.loss - p.firstOrder[i])) / rho2);
}

/** ‖g0‖: from its pass's sum of squares where it computed one (no pass over g0 of its own), else by ops.norm. */
export function gradientNorm(ctx: RuleContext): number {
  return ctx.g0Squares !== null ? Math.sqrt(ctx.g0Squares) : ops.norm(ctx.g0);
}
