// The sharpness-aware optimizer: one step = the unperturbed pass, the rule
// of the configured SAM-family member, exact restoration of w, and the base
// optimizer's update. Tensors stay native; this file only decides.
import { isTensor, type Model, modelArg } from '../model/model.js';
import { Reducer } from '../distributed.js';
import * as check from '../arguments.js';
import { ConfigError, NonFiniteError, parseOrThrow, UsamError } from '../errors.js';
import { ops } from '../tensor/ops.js';
import { generator, streamSeed, type Generator } from '../random.js';
import { persistent, track } from '../tensor/scope.js';
import type { Reading } from '../sharpness/reading.js';
import { floatTensor, type Tensor } from '../tensor/tensor.js';
import { baseConfig, createBaseOptimizer, weightDecayOf, type BaseOptimizer } from './base.js';
import { checkHyper, resolveGroups, type ParamGroup, type ParamGroupInput, type Segment } from './groups.js';
import { type Batch, type PassCounters, Passes } from '../model/passes.js';
import { runAsync, runSync, type Work } from '../model/work.js';
import { StepWeights, Workspace, type DirectionSampler, type RuleResult } from './rules/context.js';
import { parseSharpness, ruleKinds, ruleOf, type BuiltRule, type SharpnessConfig } from './rules/index.js';
import { scheduleOf } from './schedule.js';
import { type ClipResult, GradientClipper } from './clip.js';
import { lossScaleConfig, LossScaler } from './loss-scale.js';
import { checkStateDict, OPTIMIZER_STATE_FORMAT, optimizerOptions, optimizerPrecision, type OptimizerOptions, type OptimizerStateDict, type StepResult } from './options.js';
export { OPTIMIZER_STATE_FORMAT, type OptimizerOptions, type OptimizerStateDict, type StepResult } from './options.js';

export class Optimizer {
  readonly sharpness?: SharpnessConfig;
  /** what StepResult.sharpness is for this rule (its name, and whether it estimates the measure or is the rule's finite-difference signal) */
  readonly reading?: Reading;
  readonly base: BaseOptimizer;
  readonly every: number;
  /** the schedules, applied to a group's current value at step t */
  private readonly lrAt: (base: number, t: number) => number;
  private readonly rhoAt: (base: number, t: number) => number;
  private readonly segments: Segment[];
  private readonly passes: Passes;
  private readonly counters: PassCounters = { forward: 0, backward: 0, hvp: 0 };
  private readonly workspace: Workspace;
  private readonly gen: Generator;
  private readonly sampler?: DirectionSampler;
  private readonly drawsPerStep: number = 0;
  private readonly rule?: BuiltRule['step'];
  private steps = 0;
  /** false for a rule without a radius (GNP): rho 0 then does not mean a plain step */
  private usesRho = true;
  /** batchNorm 'every-pass': the perturbed passes move BatchNorm's running statistics too */
  private readonly statsEveryPass: boolean;
  /** 'local' perturbations: the final gradient's allreduce */
  private readonly localReducer?: Reducer;
  /** clipGradNorm: the final gradient's clipping (optim/clip.ts) */
  private readonly clipper?: GradientClipper;
  /** loss scaling (optim/loss-scale.ts): on by default for an fp16 model */
  private readonly scaler?: LossScaler;

  constructor(
    readonly model: Model,
    options: OptimizerOptions,
  ) {
    modelArg('new Optimizer', 'model', model);
    check.object('new Optimizer', 'options', options, 'optimizer options { base, sharpness?, ... }');
    const o = parseOrThrow(optimizerOptions, options, 'optimizer options', 'options');
    const b = parseOrThrow(baseConfig, o.base, 'base optimizer config', 'base');
    const grouping = resolveGroups(model, o.groups as ParamGroupInput[], { lr: b.lr, weightDecay: weightDecayOf(b) });
    this.paramGroups = grouping.groups;
    this.segments = grouping.segments;
    this.base = createBaseOptimizer(b, model.params, grouping);
    this.every = o.every;
    this.lrAt = scheduleOf(o.lrSchedule, o.warmup);
    this.rhoAt = scheduleOf(o.rhoSchedule, o.rhoWarmup);
    this.workspace = new Workspace(model);
    this.passes = new Passes(model, this.counters, o.perturbation === 'synced' ? o.group : undefined, o.group);
    this.passes.optimizerStep = true;
    this.passes.precision = optimizerPrecision(model, o.precision);
    if (o.group && o.perturbation === 'local') this.localReducer = new Reducer(o.group);
    this.gen = generator(streamSeed(o.seed, 'directions'), model.device);
    this.statsEveryPass = o.batchNorm === 'every-pass';
    if (o.clipGradNorm !== undefined) this.clipper = new GradientClipper(o.clipGradNorm, grouping.segments);
    const scaling = o.lossScale ?? (this.passes.precision === 'fp16' ? lossScaleConfig.parse({}) : false);
    if (scaling !== false) {
      if (o.group && o.perturbation === 'local')
        throw new ConfigError('optimizer options', [{ path: 'options.lossScale', message: "loss scaling with perturbation 'local' is not supported: one rank's overflow would skip its step alone; use perturbation 'synced' (every pass all-reduced, so all ranks see the same Inf) or lossScale: false" }]);
      this.scaler = new LossScaler(scaling);
    }
    if (o.sharpness !== undefined) {
      const s = parseSharpness(o.sharpness);
      const rule = ruleOf(s.kind);
      this.sharpness = s;
      this.reading = rule.reading('estimator' in s ? s.estimator : 'finite-difference');
      // a rule without a radius (GNP): its steps are sharpness-aware whatever the rho schedule says
      this.usesRho = rule.radius;
      // group 0's rho is the rule's: live, like its lr
      if (rule.radius && 'rho' in s) this.paramGroups[0].rho = s.rho;
      this.groupRho = rule.groupRho === true;
      const groupRho = grouping.groups.slice(1).some((g) => g.rho !== undefined);
      if (groupRho && !rule.groupRho)
        throw new ConfigError(
          'optimizer options',
          `groups: rho per group is for rules with a per-coordinate perturbation (${ruleKinds().filter((k) => ruleOf(k).groupRho).join(', ')}); ${s.kind} divides by one rho² and draws u over all parameters, so a group's rho would change the measure itself. Set rho in sharpness, not in groups`,
        );
      const built = rule.build(s, { model, generator: this.gen, statsEveryPass: this.statsEveryPass, rhoScale: () => this.rhoScale() });
      this.rule = built.step;
      this.sampler = built.sampler;
      this.drawsPerStep = built.drawsPerStep ?? 0;
    }
    track(this);
  }

  /**
   * The parameter groups, as torch.optim's param_groups: the default group
   * first (the optimizer's own options), then the given ones. lr,
   * weightDecay and rho are live: a value set here is used from the next
   * step on, with the schedules applied to it (lr 0 freezes a group).
   */
  readonly paramGroups: ParamGroup[];
  /** paramGroups, by its earlier name */
  get groups(): ParamGroup[] {
    return this.paramGroups;
  }
  /** whether groups may perturb by their own rho (the rule's groupRho) */
  private groupRho = false;

  /**
   * SAM/ASAM with groups of their own rho: the per-coordinate factor
   * rho_group / rho of e = rho_group·(…), rebuilt when a group's rho
   * changes; undefined when every group perturbs by group 0's rho.
   */
  private rhoScale(): Tensor | undefined {
    const rho0 = this.paramGroups[0].rho ?? 0;
    const rhos = this.paramGroups.map((g, i) => (i === 0 || g.rho === undefined ? rho0 : g.rho));
    const key = rhos.join(',');
    if (key === this.scaleKey) return this.scale;
    this.scale?.dispose();
    this.scale = undefined;
    this.scaleKey = key;
    if (rho0 > 0 && rhos.some((r) => r !== rho0)) {
      const values = new Float64Array(this.model.numParams).fill(1);
      for (const seg of this.segments) values.fill(rhos[seg.group] / rho0, seg.offset, seg.offset + seg.numel);
      this.scale = persistent(() => floatTensor(this.model, values));
    }
    return this.scale;
  }
  private scale?: Tensor;
  private scaleKey?: string;

  /** The groups' live values checked before a step uses them. */
  private checkGroups(): void {
    this.paramGroups.forEach((g, i) => {
      checkHyper(`paramGroups[${i}].lr`, g.lr);
      checkHyper(`paramGroups[${i}].weightDecay`, g.weightDecay);
      if (g.rho !== undefined) checkHyper(`paramGroups[${i}].rho`, g.rho);
      if (i > 0 && g.rho !== undefined && !this.groupRho && this.sharpness)
        throw new ConfigError('parameter groups', [{ path: `paramGroups[${i}].rho`, message: `rho per group is for rules with a per-coordinate perturbation; ${this.sharpness.kind} takes one rho: set paramGroups[0].rho` }]);
    });
  }

  get stepCount(): number {
    return this.steps;
  }

  /** One optimizer step on a batch, or on micro-batches (gradient accumulation). */
  step(x: Tensor, y: Tensor): StepResult;
  step(batches: Batch[]): StepResult;
  step(a: Tensor | Batch[], b?: Tensor): StepResult {
    return runSync(this.stepWork(a, b));
  }

  /**
   * step() on libuv's thread pool: the event loop runs during the passes. The
   * same numbers as step(), bit for bit. Steps of one model run one after the
   * other (a second call waits for the first).
   */
  stepAsync(x: Tensor, y: Tensor): Promise<StepResult>;
  stepAsync(batches: Batch[]): Promise<StepResult>;
  stepAsync(a: Tensor | Batch[], b?: Tensor): Promise<StepResult> {
    return this.model.exclusive(() => runAsync(this.stepWork(a, b)));
  }

  /** step() as Work (model/work.ts), for composing it into longer work such as a training run. */
  *stepWork(a: Tensor | Batch[], b?: Tensor): Work<StepResult> {
    if (this.disposed) throw new UsamError('this optimizer was disposed; it cannot be used after dispose() (make a new one)');
    checkStepArguments(a, b);
    // A step that fails (NaN/Inf, a bad user function) changes nothing: the
    // parameters are restored by the step itself, and the BatchNorm
    // statistics, their counters and the direction generator here.
    // Only what exists is saved (a step is a hot path): no copies for a model
    // without BatchNorm; the generator marked natively (mark(), no Uint8Array
    // of its state), and only for a rule with directions.
    if (this.statistics === undefined) this.statistics = this.model.buffers().counterNames.length > 0 ? this.model.buffers() : null;
    const stats = this.statistics;
    const saved = stats ? { values: stats.values.clone(), counters: stats.counters.clone() } : null;
    if (this.sampler) this.gen.mark();
    if (this.scaler) this.passes.lossScale = this.scaler.scale;
    // an optimizer's own precision holds for its step's passes only, as torch.autocast around it
    const switched = this.passes.precision !== this.model.precision;
    if (switched) this.model.native.setPrecision(this.passes.precision);
    try {
      const r = yield* this.stepOnce(a, b);
      if (this.scaler) {
        this.scaler.stepped();
        r.lossScale = this.scaler.scale;
      }
      return r;
    } catch (e) {
      this.sampler?.abort();
      if (stats && saved) {
        ops.copy(stats.values, saved.values);
        ops.copy(stats.counters, saved.counters);
      }
      if (this.sampler) this.gen.rewind();
      // with loss scaling an overflow is expected now and then: the step is skipped (nothing changed) and the scale backs off
      if (this.scaler && e instanceof NonFiniteError) {
        this.scaler.skip();
        return this.skippedStep();
      }
      throw e;
    } finally {
      if (switched) this.model.native.setPrecision(this.model.precision);
      saved?.values.dispose();
      saved?.counters.dispose();
    }
  }

  /** What a skipped step reports: nothing was computed that counts, and stepCount did not advance. */
  private skippedStep(): StepResult {
    const t = this.steps;
    const nothing = { loss: NaN, sharpness: NaN, penalty: NaN, rho: 0, correct: null, count: 0, sharpnessAware: false, counters: { forward: 0, backward: 0, hvp: 0 } };
    return { step: t + 1, ...nothing, lr: this.lrAt(this.paramGroups[0].lr, t), skipped: true, lossScale: this.scaler!.scale };
  }

  /** The model's BatchNorm statistics and counters (live aliases), saved around each step; null without BatchNorm. */
  private statistics?: ReturnType<Model['buffers']> | null;

  private *stepOnce(a: Tensor | Batch[], b?: Tensor): Work<StepResult> {
    const batches = Array.isArray(a) ? a : [{ x: a, y: b! }];
    const t = this.steps;
    const before = { ...this.counters };
    this.passes.use(batches);
    this.checkGroups();
    const lrs = this.paramGroups.map((g) => this.lrAt(g.lr, t));
    const lr = lrs[0];
    const rho = this.rule && this.usesRho ? this.rhoAt(this.paramGroups[0].rho ?? 0, t) : 0;
    const g0 = this.workspace.get('unperturbed-grad');
    // rho 0 (e.g. the first step of a rho warm-up) means no perturbation: a plain step
    const sharpnessAware = this.rule !== undefined && t % this.every === 0 && (rho > 0 || !this.usesRho);
    if (sharpnessAware) this.sampler?.begin(this.drawsPerStep); // the first direction is drawn during the next pass
    const loss = yield* this.passes.lossAndGradWork(g0, true); // moves BatchNorm statistics (the only pass that does, unless batchNorm 'every-pass')
    const { correct, gradSquares: g0Squares } = this.passes;
    if (!Number.isFinite(loss)) throw new NonFiniteError(`step ${t + 1}: the loss L(w) is ${loss}; nothing was updated. Lower the learning rate or rho, or check the data.`, t + 1, 'loss', loss);
    const grad = g0; // the rules write the update over g0 once they no longer need it (one flat vector less)
    let result: RuleResult = { sharpness: NaN, penalty: NaN };
    // w, kept exact while params hold a perturbed w: the base step starts from it (restoring w in its own pass), a failure restores it
    const weights = new StepWeights(this.model.params, this.workspace);
    let reported: ReturnType<Optimizer['averageLocal']>, clip: ClipResult | undefined;
    try {
      if (sharpnessAware)
        result = yield* this.rule!({ model: this.model, passes: this.passes, step: t + 1, rho, get w0() { return weights.keep(); }, weights, g0, g0Squares, loss, grad, workspace: this.workspace, statsEveryPass: this.statsEveryPass });
      reported = { loss, correct, count: this.passes.count, sharpness: result.sharpness, penalty: result.penalty };
      if (this.localReducer) reported = this.averageLocal(grad, reported);
      // a plain step's gradient is its one pass's: that pass summed it as it wrote it
      const gradSum = sharpnessAware ? result.gradSum : (this.passes.gradSum ?? undefined);
      const finite = gradSum !== undefined && !this.localReducer ? Number.isFinite(gradSum) : ops.allFinite(grad);
      if (!finite)
        throw new NonFiniteError(`step ${t + 1}: the gradient holds NaN or Inf (loss ${loss}); nothing was updated. Lower the learning rate or rho, or check the data.`, t + 1, 'gradient', gradSum ?? NaN);
      // clipped once, the combined and averaged gradient, before weight decay and the update (optim/clip.ts)
      clip = this.clipper?.clip(grad);
      this.base.step(this.model.params, grad, lrs, this.paramGroups.map((g) => g.weightDecay), weights.perturbedFrom);
      weights.settle();
    } finally {
      weights.restore(); // after an error: w exactly, bit for bit
    }
    this.steps++;
    const counters = {
      forward: this.counters.forward - before.forward,
      backward: this.counters.backward - before.backward,
      hvp: this.counters.hvp - before.hvp,
    };
    const rounding = result.perturbationRounding !== undefined ? { perturbationRounding: result.perturbationRounding } : {};
    return { step: t + 1, ...reported, lr, rho, sharpnessAware, counters, ...(clip ? { gradNorm: clip.norm, clipped: clip.clipped } : {}), ...rounding };
  }

  /**
   * 'local' perturbations: grad ← the sample-weighted mean of the ranks'
   * final gradients, and the reported numbers as the same means, in one
   * allreduce.
   */
  private averageLocal(grad: Tensor, r: { loss: number; correct: number | null; count: number; sharpness: number; penalty: number }) {
    const n = r.count;
    ops.scale(grad, n);
    const [count, loss, correct, sharpness, penalty] = this.localReducer!.sum(grad, [n, n * r.loss, r.correct ?? -Infinity, n * r.sharpness, n * r.penalty]);
    ops.scale(grad, 1 / count);
    return { loss: loss / count, correct: Number.isFinite(correct) ? Math.round(correct) : null, count, sharpness: sharpness / count, penalty: penalty / count };
  }

  /** Totals since creation. */
  totals(): PassCounters {
    return { ...this.counters };
  }

  /**
   * Everything a resumed run needs to continue bit for bit, as copies
   * (PyTorch's optimizer.state_dict()): the base optimizer's buffers under
   * PyTorch's names, the step counts, the direction generator's state, and
   * the hyperparameters (param_groups) for reference.
   */
  stateDict(): OptimizerStateDict {
    const b = this.base.state();
    const state: Record<string, Float32Array | Float64Array> = {};
    for (const [name, t] of Object.entries(b.buffers)) state[name] = t.toArray() as Float32Array | Float64Array;
    const { kind: _kind, ...base } = this.base.config;
    return {
      format: OPTIMIZER_STATE_FORMAT,
      kind: b.kind,
      state,
      steps: this.steps,
      baseStep: b.step,
      generator: this.sampler ? this.gen.getState() : null,
      ...(this.scaler ? { lossScale: { ...this.scaler.state } } : {}),
      // the groups' live values (lr, weightDecay, rho), which loadStateDict adopts
      paramGroups: this.paramGroups.map((g, i) =>
        i === 0
          ? { ...base, lr: g.lr, weightDecay: g.weightDecay, ...(g.rho !== undefined ? { rho: g.rho } : {}), ...(this.sharpness ? { sharpness: { ...this.sharpness } } : {}), every: this.every, params: g.names }
          : { lr: g.lr, weightDecay: g.weightDecay, ...(g.rho !== undefined ? { rho: g.rho } : {}), params: g.names },
      ),
    };
  }

  /**
   * Restores stateDict()'s output: buffers, step counts and generator, after
   * checking that they fit this optimizer (base kind, buffer names and
   * lengths, dtype, the groups' parameters), and the groups' live lr,
   * weightDecay and rho, as PyTorch's load_state_dict adopts param_groups.
   */
  loadStateDict(sd: OptimizerStateDict): void {
    const b = this.base.state();
    const saved = checkStateDict(sd, { base: b, dtype: this.model.dtype, groups: this.paramGroups, drawsDirections: this.sampler !== undefined, scales: this.scaler !== undefined });
    // everything checked: now write
    for (const [name, t] of Object.entries(b.buffers)) {
      const src = floatTensor(this.model, sd.state[name]);
      ops.copy(t, src);
      src.dispose();
    }
    this.steps = sd.steps;
    this.base.restoreStep(sd.baseStep);
    // the live hyperparameters, as PyTorch's load_state_dict adopts param_groups (a state saved without rho keeps this one's)
    saved.forEach((g, i) => {
      const group = this.paramGroups[i];
      if (typeof g.lr === 'number') group.lr = g.lr;
      if (typeof g.weightDecay === 'number') group.weightDecay = g.weightDecay;
      if (typeof g.rho === 'number' && group.rho !== undefined) group.rho = g.rho;
    });
    if (this.sampler && sd.generator) this.gen.setState(sd.generator);
    if (this.scaler && sd.lossScale) this.scaler.state = { ...sd.lossScale };
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  /** `await using`: waits for the model's async work (its steps), then disposes the optimizer. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.model.idle();
    this.dispose();
  }

  private disposed = false;

  /** Frees the optimizer's buffers (not the model's); disposing twice is harmless. */
  dispose(): void {
    this.disposed = true;
    this.scale?.dispose();
    this.sampler?.dispose();
    this.workspace.dispose();
    this.passes.dispose();
    this.localReducer?.dispose();
    this.clipper?.dispose();
    this.base.dispose();
  }
}

/** step(x, y) or step([{x, y}, ...]): anything else is refused with the call shown. */
function checkStepArguments(a: unknown, b: unknown): void {
  const how = 'opt.step(x, y) with tensors (tensor(...), labels(...)), or opt.step([{ x, y }, ...]) for micro-batches';
  if (typeof a === 'function')
    throw new ConfigError('step', [{ path: 'step(closure)', message: `takes the batch, not a closure: ${how}. PyTorch's step(closure) re-evaluates the loss; this optimizer runs its own passes on the batch` }]);
  if (a === undefined) throw new ConfigError('step', [{ path: 'step()', message: `needs the batch: ${how}` }]);
  if (Array.isArray(a)) {
    if (a.length === 0) throw new ConfigError('step', [{ path: 'batches', message: `is empty: ${how}` }]);
    a.forEach((m, i) => {
      if (!m || typeof m !== 'object' || !isTensor((m as Batch).x) || !isTensor((m as Batch).y) || (m as Batch).x.disposed || (m as Batch).y.disposed)
        throw new ConfigError('step', [{ path: `batches[${i}]`, message: `must be { x, y } with tensors: ${how}` }]);
    });
    return;
  }
  if (!isTensor(a) || a.disposed) throw new check.ArgumentError('Optimizer.step', 'x', `must be a live tensor of inputs, got ${check.describeValue(a)}: ${how}`);
  if (!isTensor(b) || b.disposed) throw new check.ArgumentError('Optimizer.step', 'y', `must be a live tensor of targets, got ${check.describeValue(b)}: ${how}`);
}
