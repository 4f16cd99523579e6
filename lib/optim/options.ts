// What an Optimizer is made with (its options, validated by zod), what a
// step returns, and its state as plain data (stateDict()).
import { z } from 'zod';
import { ConfigError } from '../errors.js';
import { ProcessGroup } from '../distributed.js';
import type { Model } from '../model/model.js';
import type { Batch, PassCounters } from '../model/passes.js';
import type { Precision } from '../native/binding.js';
import type { BaseConfigInput } from './base.js';
import { checkHyper, type ParamGroup, type ParamGroupInput } from './groups.js';
import type { SharpnessConfigInput } from './rules/index.js';
import { scheduleConfig, warmupConfig } from './schedule.js';
import { clipConfig, type ClipInput } from './clip.js';
import { lossScaleConfig, type LossScaleInput, type LossScaleState } from './loss-scale.js';

export const optimizerOptions = z
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
    clipGradNorm: clipConfig.optional(),
    lossScale: lossScaleConfig.optional(),
    precision: z.enum(['fp32', 'bf16', 'fp16']).optional(),
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
  /**
   * Gradient clipping, as torch.nn.utils.clip_grad_norm_: the step's final
   * gradient g becomes g · min(1, maxNorm / (‖g‖ + 1e-6)). Applied once per
   * step, after the rule has combined its passes and after data-parallel
   * averaging, before weight decay and the base optimizer's update. A number
   * is the global maxNorm; `{ maxNorm, perGroup: true }` clips each
   * parameter group by its own norm. StepResult.gradNorm reports the norm
   * before clipping.
   */
  clipGradNorm?: ClipInput;
  /**
   * Dynamic loss scaling (GradScaler's policy, optim/loss-scale.ts): on by
   * default for a model of precision 'fp16', off otherwise; `false` turns it
   * off, an object sets `init` (2¹⁶), `growthFactor` (2), `backoffFactor`
   * (0.5) and `growthInterval` (2000). A step whose passes meet Inf/NaN is
   * skipped (StepResult.skipped; nothing changes, stepCount does not advance)
   * and the scale backs off.
   */
  lossScale?: LossScaleInput;
  /**
   * The precision of this optimizer's passes, as torch.autocast around the
   * training step (ModelOptions.precision says what each precision does):
   * default the model's. A 'bf16' or 'fp16' optimizer of a float32 ('fp32')
   * model runs its steps' passes in the reduced type and leaves the model's
   * own passes (loss, forward, evaluation, the probes) in float32; a model
   * made with a reduced precision takes no other.
   */
  precision?: 'fp32' | 'bf16' | 'fp16';
}

export interface StepResult {
  /** the step's number, counting from 1 (the first step is step 1; opt.stepCount after it) */
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
  /** with clipGradNorm: the final gradient's norm before clipping (over all parameters) */
  gradNorm?: number;
  /** with clipGradNorm: whether the step's gradient was scaled down */
  clipped?: boolean;
  /** with loss scaling: true when a pass met Inf/NaN and the step was skipped (nothing changed) */
  skipped?: boolean;
  /** with loss scaling: the scale after this step */
  lossScale?: number;
  /**
   * in reduced precision, for the rules built on differences (Trace/Det/
   * Frob-SAM, the universal class): the estimated relative rounding error
   * of the perturbation the passes saw, √(2/3)·u_p·‖w‖/(rho·‖u‖), the
   * largest over the step's draws (docs/models.md, "The finite-difference
   * floor"; above 0.05 the step is refused)
   */
  perturbationRounding?: number;
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
  /** the loss scaler's state, with loss scaling */
  lossScale?: LossScaleState;
}

/**
 * loadStateDict's checks, before anything is written: the state fits the
 * optimizer (base kind, buffer names and lengths, dtype, the groups'
 * parameters, the generator and loss scale it needs). Returns the saved
 * groups (empty for a state saved before groups were live).
 */
export function checkStateDict(
  sd: OptimizerStateDict,
  o: { base: { kind: string; buffers: Record<string, { numel: number }> }; dtype: string; groups: ParamGroup[]; drawsDirections: boolean; scales: boolean },
): Record<string, unknown>[] {
  const where = 'loadStateDict';
  const b = o.base;
  if (!sd || typeof sd !== 'object' || sd.format !== OPTIMIZER_STATE_FORMAT)
    throw new ConfigError(where, `${where}: not an optimizer state dict (format must be '${OPTIMIZER_STATE_FORMAT}', got ${JSON.stringify((sd as { format?: unknown })?.format)})`);
  if (sd.kind !== b.kind) throw new ConfigError(where, `${where}: the state is of a ${sd.kind} optimizer, this one is ${b.kind}; make the optimizer with base.kind '${sd.kind}'`);
  const want = Object.keys(b.buffers).sort().join(', ');
  const have = Object.keys(sd.state ?? {}).sort().join(', ');
  if (want !== have) throw new ConfigError(where, `${where}: state holds buffers [${have}], a ${b.kind} optimizer needs [${want}]`);
  for (const [name, t] of Object.entries(b.buffers)) {
    const v = sd.state[name];
    const arrayOk = o.dtype === 'float64' ? v instanceof Float64Array : v instanceof Float32Array;
    if (!arrayOk) throw new ConfigError(where, `${where}: state.${name} must be a ${o.dtype === 'float64' ? 'Float64Array' : 'Float32Array'} (the model is ${o.dtype})`);
    if (v.length !== t.numel) throw new ConfigError(where, `${where}: state.${name} has ${v.length} values, the model has ${t.numel} parameters`);
  }
  for (const [field, value] of [['steps', sd.steps], ['baseStep', sd.baseStep]] as const)
    if (!Number.isSafeInteger(value) || value < 0) throw new ConfigError(where, `${where}: ${field} must be a non-negative integer, got ${value}`);
  const saved = Array.isArray(sd.paramGroups) ? sd.paramGroups : [];
  const names = (g: Record<string, unknown>) => (Array.isArray(g?.params) ? (g.params as string[]).join(',') : '');
  // a state without groups (saved before they were live) keeps this optimizer's values
  if (saved.length > 0 && (saved.length !== o.groups.length || saved.some((g, i) => names(g) !== o.groups[i].names.join(','))))
    throw new ConfigError(where, `${where}: the state's paramGroups (${saved.length}) do not hold the parameters of this optimizer's ${o.groups.length} group(s); make the optimizer with the same groups`);
  saved.forEach((g, i) => {
    for (const field of ['lr', 'weightDecay', 'rho'] as const) if (g[field] !== undefined) checkHyper(`${where}: paramGroups[${i}].${field}`, g[field]);
  });
  if (o.drawsDirections && !(sd.generator instanceof Uint8Array))
    throw new ConfigError(where, `${where}: this optimizer draws directions and needs the generator state (a Uint8Array); the state has ${sd.generator === null ? 'none (saved by a rule without directions)' : typeof sd.generator}`);
  const ls = sd.lossScale;
  if (o.scales && ls !== undefined && !(ls && ls.scale > 0 && Number.isFinite(ls.scale) && Number.isSafeInteger(ls.goodSteps) && ls.goodSteps >= 0 && Number.isSafeInteger(ls.skipped) && ls.skipped >= 0))
    throw new ConfigError(where, `${where}: lossScale must be { scale > 0, goodSteps ≥ 0, skipped ≥ 0 }, got ${JSON.stringify(ls)}`);
  return saved;
}

/**
 * The precision of an optimizer's passes (OptimizerOptions.precision): the
 * model's by default; another only for a float32 ('fp32') model, tried on
 * the model's device here (a float64 model, or a LibTorch without those
 * products, is refused now rather than at the first step).
 */
export function optimizerPrecision(model: Model, requested: Precision | undefined): Precision {
  if (requested === undefined || requested === model.precision) return model.precision;
  const refuse = (message: string) => new ConfigError('optimizer options', [{ path: 'options.precision', message }]);
  if (model.precision !== 'fp32')
    throw refuse(`the model was made with precision '${model.precision}', which its passes keep; an optimizer sets its own precision only for a model of precision 'fp32' (make the model with precision 'fp32', or leave options.precision out)`);
  try {
    model.native.setPrecision(requested);
  } catch (e) {
    throw refuse((e as Error).message);
  } finally {
    model.native.setPrecision('fp32');
  }
  return requested;
}
