// The sharpness-aware optimizer: one step = the unperturbed pass, the rule
// of the configured SAM-family member, exact restoration of w, and the base
// optimizer's update. Tensors stay native; this file only decides.
import { z } from 'zod';
import type { Model } from '../model/model.js';
import { ProcessGroup, Reducer } from '../distributed.js';
import { ConfigError, NonFiniteError, parseOrThrow } from '../errors.js';
import { ops } from '../tensor/ops.js';
import { generator, streamSeed, type Generator } from '../random.js';
import { persistent, track } from '../tensor/scope.js';
import type { Reading } from '../sharpness/reading.js';
import { floatTensor, type Tensor } from '../tensor/tensor.js';
import { baseConfig, createBaseOptimizer, weightDecayOf, type BaseConfigInput, type BaseOptimizer } from './base.js';
import { resolveGroups, type ParamGroup, type ParamGroupInput } from './groups.js';
import { type Batch, type PassCounters, Passes } from '../model/passes.js';
import { runAsync, runSync, type Work } from '../model/work.js';
import { Workspace, type DirectionSampler, type RuleResult } from './rules/context.js';
import { parseSharpness, ruleKinds, ruleOf, type BuiltRule, type SharpnessConfig, type SharpnessConfigInput } from './rules/index.js';
import { schedule, scheduleConfig, warmupConfig } from './schedule.js';

const optimizerOptions = z
  .object({
    base: z.unknown(),
    sharpness: z.unknown().optional(),
    /** a sharpness-aware step every k steps, plain base steps between */
    every: z.number().int().positive().default(1),
    /** parameter groups (torch.optim's param_groups): their own lr, weightDecay, rho (SAM/ASAM) */
    groups: z.array(z.unknown()).default([]),
    /** seeds the directions u ~ mu (their own stream: streamSeed(seed, 'directions')) */
    seed: z.number().int().nonnegative().default(0),
    lrSchedule: scheduleConfig.default({ kind: 'constant' }),
    rhoSchedule: scheduleConfig.default({ kind: 'constant' }),
    warmup: warmupConfig.default({ steps: 0, startFactor: 0 }),
    rhoWarmup: warmupConfig.default({ steps: 0, startFactor: 0 }),
    group: z.instanceof(ProcessGroup, { message: 'must be a ProcessGroup (processGroupFromEnv() or new ProcessGroup({...}))' }).optional(),
    /** with a group: 'synced' (every pass all-reduced) or 'local' (each rank perturbs with its own shard; only the final gradients are averaged) */
    perturbation: z.enum(['synced', 'local']).default('synced'),
    batchNorm: z.enum(['once', 'every-pass'], { message: "batchNorm must be 'once' (the default) or 'every-pass' (the reference code's behaviour)" }).default('once'),
  })
  .strict();

export interface OptimizerOptions {
  base: BaseConfigInput;
  sharpness?: SharpnessConfigInput;
  every?: number;
  /** parameter groups: `[noWeightDecay(model)]`, `[{params: /^0\./, lr: 0.01}]`, ... (optim/groups.ts) */
  groups?: ParamGroupInput[];
  seed?: number;
  lrSchedule?: z.input<typeof scheduleConfig>;
  rhoSchedule?: z.input<typeof scheduleConfig>;
  /** linear learning-rate warm-up over the first steps */
  warmup?: z.input<typeof warmupConfig>;
  /** linear rho warm-up over the first steps */
  rhoWarmup?: z.input<typeof warmupConfig>;
  /**
   * data-parallel: each rank steps on its shard of the global batch, and every
   * pass (unperturbed, perturbed, HVP) is all-reduced, so the ranks compute
   * what one process computes on the whole batch (synced perturbations). The
   * ranks must start from the same parameters and seed.
   */
  group?: ProcessGroup;
  /**
   * 'local' (with a group): each rank runs the rule on its own shard (its own
   * ascent gradient and perturbed losses: the SAM paper's m-sharpness) and
   * only the final gradients are averaged, weighted by sample count.
   */
  perturbation?: 'synced' | 'local';
  /**
   * When BatchNorm's running statistics move during a sharpness-aware step:
   * 'once' (default), by the unperturbed pass only; 'every-pass', by every
   * forward-backward pass of the step, the perturbed ones too, in order, as
   * the paper's reference code does (its closures run in train mode), so
   * they move n + 1 times a step. Every pass normalises by its own batch
   * statistics either way. The exact estimator has no perturbed passes and
   * refuses 'every-pass'.
   */
  batchNorm?: 'once' | 'every-pass';
}

export interface StepResult {
  step: number;
  /** L(w) before the step (mean over the micro-batches) */
  loss: number;
  /** the rule's per-step reading (math.md §2a; `optimizer.reading` names it: an estimate of the measure, or the finite-difference signal at radius rho); NaN on plain steps */
  sharpness: number;
  /** the lambda-weighted term of F(w); NaN on plain steps */
  penalty: number;
  lr: number;
  rho: number;
  /** correctly classified samples at w (the unperturbed pass), null without class labels */
  correct: number | null;
  /** samples in the step */
  count: number;
  sharpnessAware: boolean;
  counters: PassCounters;
}

export const OPTIMIZER_STATE_FORMAT = 'universal-sam-optimizer/1';

/** Optimizer.stateDict()'s result: plain data (typed arrays), like PyTorch's state_dict(). */
export interface OptimizerStateDict {
  format: typeof OPTIMIZER_STATE_FORMAT;
  /** the base optimizer: 'sgd', 'adam' or 'adamw' */
  kind: string;
  /** the base optimizer's buffers over the flat parameter vector, by PyTorch's names */
  state: Record<string, Float32Array | Float64Array>;
  /** optimizer steps taken (the schedules' time) */
  steps: number;
  /** the base optimizer's own step count (Adam's bias correction) */
  baseStep: number;
  /** the direction generator's state; null for rules that draw no directions */
  generator: Uint8Array | null;
  /** the hyperparameters the optimizer was made with (one group), for reference */
  paramGroups: Record<string, unknown>[];
}

export class Optimizer {
  readonly sharpness?: SharpnessConfig;
  /** what StepResult.sharpness is for this rule (its name, and whether it estimates the measure or is the rule's finite-difference signal) */
  readonly reading?: Reading;
  readonly base: BaseOptimizer;
  readonly every: number;
  private readonly lr: (t: number) => number;
  private readonly rho: (t: number) => number;
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

  constructor(
    readonly model: Model,
    options: OptimizerOptions,
  ) {
    const o = parseOrThrow(optimizerOptions, options, 'optimizer options');
    const b = parseOrThrow(baseConfig, o.base, 'base optimizer config', 'base');
    const grouping = resolveGroups(model, o.groups as ParamGroupInput[], { lr: b.lr, weightDecay: weightDecayOf(b) });
    this.groups = grouping.groups;
    this.base = createBaseOptimizer(b, model.params, grouping);
    this.every = o.every;
    this.lr = schedule(b.lr, o.lrSchedule, o.warmup);
    this.workspace = new Workspace(model);
    this.passes = new Passes(model, this.counters, o.perturbation === 'synced' ? o.group : undefined, o.group);
    if (o.group && o.perturbation === 'local') this.localReducer = new Reducer(o.group);
    this.gen = generator(streamSeed(o.seed, 'directions'), model.device);
    this.statsEveryPass = o.batchNorm === 'every-pass';
    if (o.sharpness !== undefined) {
      const s = parseSharpness(o.sharpness);
      const rule = ruleOf(s.kind);
      this.sharpness = s;
      this.reading = rule.reading('estimator' in s ? s.estimator : 'finite-difference');
      // a rule without a radius (GNP): its steps are sharpness-aware whatever the rho schedule says
      this.usesRho = rule.radius;
      this.rho = rule.radius && 'rho' in s ? schedule(s.rho, o.rhoSchedule, o.rhoWarmup) : () => 0;
      const groupRho = grouping.groups.some((g) => g.rho !== undefined);
      if (groupRho && !rule.groupRho)
        throw new ConfigError(
          'optimizer options',
          `groups: rho per group is for rules with a per-coordinate perturbation (${ruleKinds().filter((k) => ruleOf(k).groupRho).join(', ')}); ${s.kind} divides by one rho² and draws u over all parameters, so a group's rho would change the measure itself. Set rho in sharpness, not in groups`,
        );
      // e = rho_group·(…) on each group: a per-coordinate factor rho_group / rho
      const rhoScale = groupRho && 'rho' in s ? this.rhoScale(grouping, s.rho) : undefined;
      const built = rule.build(s, { model, generator: this.gen, statsEveryPass: this.statsEveryPass, rhoScale });
      this.rule = built.step;
      this.sampler = built.sampler;
      this.drawsPerStep = built.drawsPerStep ?? 0;
    } else {
      this.rho = () => 0;
    }
    track(this);
  }

  /** The parameter groups: the default group first (the optimizer's own options), then the given ones. */
  readonly groups: ParamGroup[];

  private rhoScale(grouping: ReturnType<typeof resolveGroups>, rho: number): Tensor {
    const values = new Float64Array(this.model.numParams).fill(1);
    for (const seg of grouping.segments) {
      const g = grouping.groups[seg.group];
      if (g.rho !== undefined) values.fill(g.rho / rho, seg.offset, seg.offset + seg.numel);
    }
    const t = persistent(() => floatTensor(this.model, values));
    this.owned.push(t);
    return t;
  }
  private readonly owned: Tensor[] = [];

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
    if (this.disposed) throw new Error('this optimizer was disposed; it cannot be used after dispose() (make a new one)');
    // A step that fails (NaN/Inf, a bad user function) changes nothing: the
    // parameters are restored by the step itself, and the BatchNorm
    // statistics, their counters and the direction generator here.
    // Only what exists is saved: no copies for a model without BatchNorm, no
    // generator state for a rule without directions (a step is a hot path).
    if (this.statistics === undefined) this.statistics = this.model.buffers().counterNames.length > 0 ? this.model.buffers() : null;
    const stats = this.statistics;
    const saved = stats ? { values: stats.values.clone(), counters: stats.counters.clone() } : null;
    const generator = this.sampler ? this.gen.getState() : null;
    try {
      return yield* this.stepOnce(a, b);
    } catch (e) {
      this.sampler?.abort();
      if (stats && saved) {
        ops.copy(stats.values, saved.values);
        ops.copy(stats.counters, saved.counters);
      }
      if (generator) this.gen.setState(generator);
      throw e;
    } finally {
      saved?.values.dispose();
      saved?.counters.dispose();
    }
  }

  /** The model's BatchNorm statistics and counters (live aliases), saved around each step; null without BatchNorm. */
  private statistics?: ReturnType<Model['buffers']> | null;

  private *stepOnce(a: Tensor | Batch[], b?: Tensor): Work<StepResult> {
    const batches = Array.isArray(a) ? a : [{ x: a, y: b! }];
    const t = this.steps;
    const before = { ...this.counters };
    this.passes.use(batches);
    const lr = this.lr(t);
    const rho = this.rho(t);
    const g0 = this.workspace.get('unperturbed-grad');
    // rho 0 (e.g. the first step of a rho warm-up) means no perturbation: a plain step
    const sharpnessAware = this.rule !== undefined && t % this.every === 0 && (rho > 0 || !this.usesRho);
    if (sharpnessAware) this.sampler?.begin(this.drawsPerStep); // the first direction is drawn during the next pass
    const loss = yield* this.passes.lossAndGradWork(g0, true); // moves BatchNorm statistics (the only pass that does, unless batchNorm 'every-pass')
    const correct = this.passes.correct;
    if (!Number.isFinite(loss)) throw new NonFiniteError(`step ${t}: the loss L(w) is ${loss}; nothing was updated. Lower the learning rate or rho, or check the data.`, t, 'loss', loss);
    const grad = g0;
    let result: RuleResult = { sharpness: NaN, penalty: NaN };
    if (sharpnessAware) {
      const w0 = this.workspace.get('saved-params');
      ops.copy(w0, this.model.params);
      // the rules write the update over g0 once they no longer need it (one flat vector less)
      try {
        result = yield* this.rule!({ model: this.model, passes: this.passes, step: t, rho, w0, g0, loss, grad, workspace: this.workspace, statsEveryPass: this.statsEveryPass });
      } finally {
        ops.copy(this.model.params, w0); // w exactly, bit for bit, before the base step (and after an error)
      }
    }
    let reported = { loss, correct, count: this.passes.count, sharpness: result.sharpness, penalty: result.penalty };
    if (this.localReducer) reported = this.averageLocal(grad, reported);
    const finite = result.gradSum !== undefined && !this.localReducer ? Number.isFinite(result.gradSum) : ops.allFinite(grad);
    if (!finite)
      throw new NonFiniteError(`step ${t}: the gradient holds NaN or Inf (loss ${loss}); nothing was updated. Lower the learning rate or rho, or check the data.`, t, 'gradient', result.gradSum ?? NaN);
    this.base.step(this.model.params, grad, lr);
    this.steps++;
    const counters = {
      forward: this.counters.forward - before.forward,
      backward: this.counters.backward - before.backward,
      hvp: this.counters.hvp - before.hvp,
    };
    return { step: t, ...reported, lr, rho, sharpnessAware, counters };
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
      paramGroups: this.groups.map((g, i) =>
        i === 0 ? { ...base, ...(this.sharpness ? { sharpness: { ...this.sharpness } } : {}), every: this.every, params: g.names } : (({ names, ...rest }) => ({ ...rest, params: names }))(g),
      ),
    };
  }

  /**
   * Restores stateDict()'s output: buffers, step counts and generator, after
   * checking that they fit this optimizer (base kind, buffer names and
   * lengths, dtype). The hyperparameters stay those this optimizer was made
   * with (unlike PyTorch, which adopts the saved param_groups): a resumed run
   * may change its learning rate on purpose.
   */
  loadStateDict(sd: OptimizerStateDict): void {
    const where = 'loadStateDict';
    if (!sd || typeof sd !== 'object' || sd.format !== OPTIMIZER_STATE_FORMAT)
      throw new ConfigError(where, `${where}: not an optimizer state dict (format must be '${OPTIMIZER_STATE_FORMAT}', got ${JSON.stringify((sd as { format?: unknown })?.format)})`);
    const b = this.base.state();
    if (sd.kind !== b.kind) throw new ConfigError(where, `${where}: the state is of a ${sd.kind} optimizer, this one is ${b.kind}; make the optimizer with base.kind '${sd.kind}'`);
    const want = Object.keys(b.buffers).sort().join(', ');
    const have = Object.keys(sd.state ?? {}).sort().join(', ');
    if (want !== have) throw new ConfigError(where, `${where}: state holds buffers [${have}], a ${b.kind} optimizer needs [${want}]`);
    for (const [name, t] of Object.entries(b.buffers)) {
      const v = sd.state[name];
      const arrayOk = this.model.dtype === 'float64' ? v instanceof Float64Array : v instanceof Float32Array;
      if (!arrayOk) throw new ConfigError(where, `${where}: state.${name} must be a ${this.model.dtype === 'float64' ? 'Float64Array' : 'Float32Array'} (the model is ${this.model.dtype})`);
      if (v.length !== t.numel) throw new ConfigError(where, `${where}: state.${name} has ${v.length} values, the model has ${t.numel} parameters`);
    }
    for (const [field, value] of [['steps', sd.steps], ['baseStep', sd.baseStep]] as const)
      if (!Number.isSafeInteger(value) || value < 0) throw new ConfigError(where, `${where}: ${field} must be a non-negative integer, got ${value}`);
    if (this.sampler && !(sd.generator instanceof Uint8Array))
      throw new ConfigError(where, `${where}: this optimizer draws directions and needs the generator state (a Uint8Array); the state has ${sd.generator === null ? 'none (saved by a rule without directions)' : typeof sd.generator}`);
    // everything checked: now write
    for (const [name, t] of Object.entries(b.buffers)) {
      const src = floatTensor(this.model, sd.state[name]);
      ops.copy(t, src);
      src.dispose();
    }
    this.steps = sd.steps;
    this.base.restoreStep(sd.baseStep);
    if (this.sampler && sd.generator) this.gen.setState(sd.generator);
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
    for (const t of this.owned) t.dispose();
    this.sampler?.dispose();
    this.workspace.dispose();
    this.passes.dispose();
    this.localReducer?.dispose();
    this.base.dispose();
  }
}
