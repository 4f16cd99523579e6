// The training configuration: one zod schema behind `usam train` flags, JSON
// config files and the TypeScript API, and the objects it builds.
import { z } from 'zod';
import { channelStats, cifar, count, type Dataset, fashionMnist, normalize, readIdxDataset, sampleSize, subset, synthetic, withLabelNoise } from '../data/dataset.js';
import { loadTorchScript, Model } from '../model/model.js';
import { cnn, mlp, resnet18 } from '../model/presets.js';
import { ConfigError, parseOrThrow } from '../errors.js';
import type { ModelSpecInput } from '../model/spec.js';
import { tensor } from '../tensor/tensor.js';
import type { OptimizerOptions } from '../optim/optimizer.js';
import { BASE_OPTIMIZERS, findRule, hasField, HYPER_FIELDS, isTrainable, rules, trainingDefaultsOf, type SharpnessConfigInput } from '../optim/rules/index.js';

/**
 * What `--optimizer` takes: the base optimizers, and every registered rule
 * with training defaults (lib/optim/rules/; 'rwp' and 'gnp' are the
 * controls, docs/reproduction.md). Read at parse time, so a rule registered
 * by a program is a training optimizer too.
 */
export const trainingOptimizers = (): string[] => [...BASE_OPTIMIZERS, ...rules().filter(isTrainable).map((r) => r.kind)];
const isBase = (name: string): name is (typeof BASE_OPTIMIZERS)[number] => (BASE_OPTIMIZERS as readonly string[]).includes(name);

const optimizerName = z
  .string()
  .superRefine((v, ctx) => {
    if (!trainingOptimizers().includes(v)) ctx.addIssue({ code: 'custom', message: `unknown optimizer '${v}'; use one of ${trainingOptimizers().join(', ')}` });
  })
  .default('frob-sam')
  .meta({ choices: trainingOptimizers });

export const trainConfig = z
  .object({
    model: z.enum(['mlp', 'tiny', 'cnn', 'resnet18']).default('mlp'),
    /** a TorchScript module (torch.jit.save) to train instead of `model`: forward maps the dataset's images to logits */
    torchscript: z.string().optional(),
    /** hidden widths of the MLP */
    hidden: z.array(z.number().int().positive()).default([128]),
    dataset: z.enum(['fashion-mnist', 'mnist', 'cifar10', 'cifar100', 'synthetic']).default('fashion-mnist'),
    dataDir: z.string().optional(),
    optimizer: optimizerName,
    /** base optimizer under a SAM-family rule */
    base: z.enum(['sgd', 'adam', 'adamw']).default('sgd'),
    lr: z.number().positive().default(0.05),
    momentum: z.number().min(0).default(0.9),
    weightDecay: z.number().min(0).default(5e-4),
    nesterov: z.boolean().default(false),
    rho: z.number().positive().optional(),
    lambda: z.number().finite().optional(),
    samples: z.number().int().positive().optional(),
    /** the universal-class rules' estimator (their training defaults differ per estimator: each rule's descriptor) */
    estimator: z.enum(['finite-difference', 'exact']).default('finite-difference'),
    directions: z.enum(['independent', 'antithetic']).default('independent'),
    halfCube: z.number().positive().optional(),
    eta: z.number().min(0).optional(),
    /** a sharpness-aware step every k steps */
    every: z.number().int().positive().default(1),
    epochs: z.number().int().positive().default(3),
    batchSize: z.number().int().positive().default(128),
    lrSchedule: z.enum(['constant', 'cosine', 'multistep']).default('cosine'),
    milestones: z.array(z.number().int().nonnegative()).default([]),
    gamma: z.number().positive().default(0.1),
    warmupSteps: z.number().int().nonnegative().default(0),
    rhoSchedule: z.enum(['constant', 'cosine']).default('constant'),
    labelNoise: z.number().min(0).max(1).default(0),
    subset: z.number().gt(0).max(1).default(1),
    /** the last N images of the training set held out as a validation split: never trained on, evaluated each epoch (hyperparameters are chosen on it, never on test) */
    validation: z.number().int().nonnegative().default(0),
    /** Hessian probes (trace, ‖H‖_F², λmax) every N epochs; 0: never */
    probeEvery: z.number().int().nonnegative().default(0),
    probeSamples: z.number().int().min(2).default(20),
    /** a line of steps.jsonl (mean loss and the rule's per-step reading, lr, rho) every k steps; 0: none */
    stepLogEvery: z.number().int().nonnegative().default(10),
    /** data-parallel training: this many processes on this machine (usam train starts them; torchrun's variables work too) */
    nproc: z.number().int().positive().default(1),
    /** data-parallel SAM-family steps: 'synced' (every pass all-reduced: what one process computes on the global batch) or 'local' (each rank perturbs with its own shard, as in the SAM paper) */
    perturbation: z.enum(['synced', 'local']).default('synced'),
    /** BatchNorm running statistics in a sharpness-aware step: moved once (by the unperturbed pass) or at every pass, as the paper's reference code */
    batchNorm: z.enum(['once', 'every-pass']).default('once'),
    /** clip each step's final gradient to this global norm (torch.nn.utils.clip_grad_norm_; after the rule and the data-parallel average, before weight decay) */
    clipGradNorm: z.number().positive().optional(),
    device: z.string().default('cpu'),
    dtype: z.enum(['float32', 'float64']).default('float32'),
    /** mixed precision: 'bf16' / 'fp16' take the Linear/Conv2d products (a TorchScript module: its forward under autocast) of the training and evaluation passes in bfloat16 / float16 (float32 models; ModelOptions.precision; fp16 with loss scaling) */
    precision: z.enum(['fp32', 'bf16', 'fp16']).default('fp32'),
    seed: z.number().int().nonnegative().default(0),
    threads: z.number().int().positive().optional(),
    /** stop when the mean training loss of the last 50 steps exceeds this many times that of the first 50; 0: never */
    divergence: z.number().min(0).default(10),
    /** the run's folder; default: a new one, runs/<date>-<optimizer>-<n>, with runs/latest linked to it */
    out: z.string().optional(),
  })
  .strict();

export type TrainConfigInput = z.input<typeof trainConfig>;
export type TrainConfig = z.output<typeof trainConfig>;

export function parseTrainConfig(raw: unknown): TrainConfig {
  return parseOrThrow(trainConfig, raw, 'training config');
}

/**
 * The sharpness config of a training config: the rule's fields the config
 * sets, the rule's training defaults for the rest (its descriptor's, per
 * estimator: `usam reproduce --sweep` chose them, docs/reproduction.md).
 */
export function sharpnessOf(c: TrainConfig): SharpnessConfigInput | undefined {
  if (isBase(c.optimizer)) return undefined;
  const rule = findRule(c.optimizer);
  if (!rule) throw new ConfigError('training config', [{ path: 'optimizer', message: `unknown optimizer '${c.optimizer}'; use one of ${trainingOptimizers().join(', ')}` }]);
  const estimator = hasField(rule, 'estimator') ? c.estimator : 'finite-difference';
  const defaults = trainingDefaultsOf(rule.kind, estimator) ?? {};
  const out: Record<string, unknown> = { kind: rule.kind };
  for (const field of HYPER_FIELDS) {
    const value = c[field] ?? defaults[field];
    if (hasField(rule, field) && value !== undefined) out[field] = value;
  }
  if (hasField(rule, 'estimator')) out.estimator = c.estimator;
  if (hasField(rule, 'directions')) out.directions = c.directions;
  return out as SharpnessConfigInput;
}

export function optimizerOptionsOf(c: TrainConfig, stepsPerEpoch: number): OptimizerOptions {
  const baseKind = c.optimizer === 'adam' || c.optimizer === 'adamw' ? c.optimizer : c.base;
  const base =
    baseKind === 'sgd'
      ? ({ kind: 'sgd', lr: c.lr, momentum: c.momentum, weightDecay: c.weightDecay, nesterov: c.nesterov } as const)
      : ({ kind: baseKind, lr: c.lr, weightDecay: c.weightDecay } as const);
  const total = c.epochs * stepsPerEpoch;
  const lrSchedule =
    c.lrSchedule === 'cosine'
      ? ({ kind: 'cosine', total } as const)
      : c.lrSchedule === 'multistep'
        ? ({ kind: 'multistep', milestones: c.milestones.map((e) => e * stepsPerEpoch), gamma: c.gamma } as const)
        : ({ kind: 'constant' } as const);
  return {
    base,
    sharpness: sharpnessOf(c),
    every: c.every,
    seed: c.seed,
    lrSchedule,
    rhoSchedule: c.rhoSchedule === 'cosine' ? { kind: 'cosine', total } : { kind: 'constant' },
    warmup: { steps: c.warmupSteps },
    batchNorm: c.batchNorm,
    ...(c.clipGradNorm !== undefined ? { clipGradNorm: c.clipGradNorm } : {}),
  };
}

/** Samples [from, to) of a dataset (views, no copy). */
function slice(d: Dataset, from: number, to: number): Dataset {
  const n = sampleSize(d);
  return { ...d, x: d.x.subarray(from * n, to * n), y: d.y.subarray(from, to) };
}

export function datasetsOf(c: TrainConfig): { train: Dataset; test: Dataset; validation?: Dataset; flipped: number } {
  let train: Dataset, test: Dataset;
  switch (c.dataset) {
    case 'fashion-mnist':
      train = fashionMnist('train', c.dataDir);
      test = fashionMnist('test', c.dataDir);
      break;
    case 'mnist':
      if (!c.dataDir) throw new ConfigError('training config', 'dataset mnist needs --data-dir (a folder with the MNIST IDX files)');
      train = readIdxDataset(c.dataDir, 'train', 'mnist');
      test = readIdxDataset(c.dataDir, 'test', 'mnist');
      break;
    case 'cifar10':
    case 'cifar100':
      if (!c.dataDir) throw new ConfigError('training config', `dataset ${c.dataset} needs --data-dir (a folder with the CIFAR binary files)`);
      train = cifar(c.dataset, 'train', c.dataDir);
      test = cifar(c.dataset, 'test', c.dataDir);
      break;
    case 'synthetic':
      // the same class means (from the seed), different samples
      train = synthetic({ count: 2048, shape: [1, 28, 28], classes: 10, seed: c.seed, noise: 2, split: 'train' });
      test = synthetic({ count: 512, shape: [1, 28, 28], classes: 10, seed: c.seed, noise: 2, split: 'test' });
      break;
  }
  let validation: Dataset | undefined;
  if (c.validation > 0) {
    const n = count(train);
    if (c.validation >= n) throw new ConfigError('training config', `validation: ${c.validation} held-out images leave none of the ${n} training images to train on; hold out fewer`);
    validation = slice(train, n - c.validation, n);
    train = slice(train, 0, n - c.validation);
  }
  // normalised by the statistics of the images trained on
  const stats = channelStats(train);
  train = normalize(subset(train, c.subset), stats);
  test = normalize(test, stats);
  if (validation) validation = normalize(validation, stats);
  let flipped = 0;
  if (c.labelNoise > 0) {
    const r = withLabelNoise(train, c.labelNoise, c.seed);
    train = r.dataset;
    flipped = r.flipped.length;
  }
  return { train, test, ...(validation ? { validation } : {}), flipped };
}

/** The run's model: the TorchScript module of `torchscript`, or the preset `model` for the data. */
export function modelOf(c: TrainConfig, d: Dataset): Model {
  const options = { dtype: c.dtype, device: c.device, seed: c.seed, precision: c.precision };
  if (!c.torchscript) return new Model(modelSpecOf(c, d), options);
  const model = loadTorchScript(c.torchscript, options);
  // a module made for other images fails here, once, with the dataset's shape named (not in the first step's TorchScript traceback)
  const x = tensor(d.x.subarray(0, 2 * sampleSize(d)), [2, ...d.shape], { dtype: c.dtype, device: c.device });
  try {
    model.forward(x).dispose();
  } catch (e) {
    model.dispose();
    const first = (e as Error).message.split('\n').find((l) => /Error|shape|size|dimension/i.test(l)) ?? (e as Error).message.split('\n')[0];
    throw new ConfigError('training config', [
      { path: 'torchscript', message: `${c.torchscript} does not take this dataset's images: its forward on a batch of shape [2, ${d.shape.join(', ')}] (${c.dataset}) failed: ${first.trim()}` },
    ]);
  } finally {
    x.dispose();
  }
  return model;
}

export function modelSpecOf(c: TrainConfig, d: Dataset): ModelSpecInput {
  const [ch, h, w] = d.shape.length === 3 ? d.shape : [1, 1, d.shape[0]];
  const features = ch * h * w;
  // the MLPs begin with a Flatten: they take the images as they are
  const flat = (spec: ModelSpecInput): ModelSpecInput => ({ ...spec, input: d.shape });
  switch (c.model) {
    case 'mlp':
      return flat(mlp({ layers: [features, ...c.hidden, d.classes], activation: 'relu' }));
    case 'tiny':
      return flat(mlp({ layers: [features, 32, d.classes], activation: 'tanh' }));
    case 'cnn':
      return cnn({ input: [ch, h, w], classes: d.classes });
    case 'resnet18':
      return resnet18({ input: [ch, h, w], classes: d.classes });
  }
}
