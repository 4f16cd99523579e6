// Model specs: what a user writes (scalars or pairs, defaults) is validated
// with zod and normalised into the exact form the native builder reads.
import { z } from 'zod';
import { parseOrThrow } from '../errors.js';

const posInt = z.number().int().positive();
const nonNegInt = z.number().int().nonnegative();
/** A size given as n or [h, w]; normalised to [h, w]. */
const pair = (inner: z.ZodNumber) => z.union([inner, z.tuple([inner, inner])]).transform((v) => (Array.isArray(v) ? v : [v, v]));

const linear = z.object({ type: z.literal('linear'), inFeatures: posInt, outFeatures: posInt, bias: z.boolean().default(true) }).strict();
const conv2d = z
  .object({
    type: z.literal('conv2d'),
    inChannels: posInt,
    outChannels: posInt,
    kernelSize: pair(posInt),
    stride: pair(posInt).prefault(1),
    padding: pair(nonNegInt).prefault(0),
    dilation: pair(posInt).prefault(1),
    /** grouped convolution: inChannels and outChannels split into this many groups (PyTorch's groups) */
    groups: posInt.default(1),
    bias: z.boolean().default(true),
  })
  .strict()
  .refine((c) => c.inChannels % c.groups === 0 && c.outChannels % c.groups === 0, {
    message: 'groups must divide both inChannels and outChannels',
    path: ['groups'],
  });
const batchnorm = (type: 'batchnorm1d' | 'batchnorm2d') =>
  z
    .object({
      type: z.literal(type),
      numFeatures: posInt,
      eps: z.number().positive().default(1e-5),
      momentum: z.number().min(0).max(1).default(0.1),
      affine: z.boolean().default(true),
    })
    .strict();
/** PyTorch's nn.LayerNorm: each sample normalised over its last dims (normalizedShape) */
const layernorm = z
  .object({
    type: z.literal('layernorm'),
    normalizedShape: z.union([posInt, z.array(posInt).min(1)]).transform((v) => (Array.isArray(v) ? v : [v])),
    eps: z.number().positive().default(1e-5),
    elementwiseAffine: z.boolean().default(true),
  })
  .strict();
/** PyTorch's nn.Embedding: the first layer, reading int64 indices */
const embedding = z.object({ type: z.literal('embedding'), numEmbeddings: posInt, embeddingDim: posInt }).strict();
const simple = (type: 'relu' | 'tanh' | 'flatten' | 'silu' | 'sigmoid' | 'identity') => z.object({ type: z.literal(type) }).strict();
/** PyTorch's nn.LeakyReLU: x for x > 0, negativeSlope·x otherwise */
const leakyrelu = z.object({ type: z.literal('leakyrelu'), negativeSlope: z.number().finite().default(0.01) }).strict();
const gelu = z.object({ type: z.literal('gelu'), approximate: z.enum(['none', 'tanh']).default('none') }).strict();
const softplus = z.object({ type: z.literal('softplus'), beta: z.number().positive().default(1), threshold: z.number().default(20) }).strict();
const pool = (type: 'maxpool2d' | 'avgpool2d') =>
  z
    .object({ type: z.literal(type), kernelSize: pair(posInt), stride: pair(posInt).optional(), padding: pair(nonNegInt).prefault(0) })
    .strict()
    .transform((l) => ({ ...l, stride: l.stride ?? l.kernelSize }));
const adaptive = z.object({ type: z.literal('adaptiveavgpool2d'), outputSize: pair(posInt) }).strict();
const dropout = z.object({ type: z.literal('dropout'), p: z.number().min(0).lt(1).default(0.5) }).strict();
/** PyTorch's nn.Dropout2d: whole channels of [N, C, H, W] dropped together */
const dropout2d = z.object({ type: z.literal('dropout2d'), p: z.number().min(0).lt(1).default(0.5) }).strict();

export type LayerSpecInput =
  | z.input<typeof linear>
  | z.input<typeof conv2d>
  | z.input<ReturnType<typeof batchnorm>>
  | z.input<ReturnType<typeof simple>>
  | z.input<typeof gelu>
  | z.input<typeof softplus>
  | z.input<typeof layernorm>
  | z.input<typeof embedding>
  | z.input<typeof leakyrelu>
  | z.input<ReturnType<typeof pool>>
  | z.input<typeof adaptive>
  | z.input<typeof dropout>
  | z.input<typeof dropout2d>
  | { type: 'residual'; body: LayerSpecInput[]; shortcut?: LayerSpecInput[] };

const residual: z.ZodType<unknown> = z.lazy(() =>
  z.object({ type: z.literal('residual'), body: z.array(layer).min(1), shortcut: z.array(layer).default([]) }).strict(),
);

export const layer: z.ZodType<unknown> = z.discriminatedUnion('type', [
  linear,
  conv2d,
  batchnorm('batchnorm1d'),
  batchnorm('batchnorm2d'),
  layernorm,
  embedding,
  simple('relu'),
  simple('tanh'),
  simple('flatten'),
  simple('silu'),
  simple('sigmoid'),
  simple('identity'),
  leakyrelu,
  gelu,
  softplus,
  pool('maxpool2d'),
  pool('avgpool2d'),
  adaptive,
  dropout,
  dropout2d,
  residual as never,
]);

/**
 * The loss, with PyTorch's semantics and mean reduction: 'cross-entropy' (nn.CrossEntropyLoss on logits) and
 * 'nll' (nn.NLLLoss on log-probabilities) take int64 class labels [batch]; 'mse' (nn.MSELoss),
 * 'bce-with-logits' (nn.BCEWithLogitsLoss) and 'huber' (nn.HuberLoss; SmoothL1Loss(beta) is HuberLoss(beta)/beta)
 * take float targets of the output's shape.
 */
export const lossSpec = z.discriminatedUnion('type', [
  z.object({ type: z.literal('cross-entropy'), labelSmoothing: z.number().min(0).max(1).default(0) }).strict(),
  z.object({ type: z.literal('mse') }).strict(),
  z.object({ type: z.literal('nll') }).strict(),
  z.object({ type: z.literal('bce-with-logits') }).strict(),
  z.object({ type: z.literal('huber'), delta: z.number().positive().finite().default(1) }).strict(),
]);

export type LossType = z.output<typeof lossSpec>['type'];
/** Whether a loss takes int64 class labels (cross-entropy, nll) rather than float targets of the output's shape. */
export const takesLabels = (type: LossType): boolean => type === 'cross-entropy' || type === 'nll';

export const modelSpec = z
  .object({
    input: z.array(posInt).min(1),
    layers: z.array(layer).min(1),
    loss: lossSpec.default({ type: 'cross-entropy', labelSmoothing: 0 }),
  })
  .strict();

export type ModelSpecInput = { input: number[]; layers: LayerSpecInput[]; loss?: z.input<typeof lossSpec> };
export type ModelSpec = z.output<typeof modelSpec>;

/** Validates a spec; the error names each wrong field by its path. */
export function parseModelSpec(spec: unknown): ModelSpec {
  return parseOrThrow(modelSpec, spec, 'model spec');
}

/**
 * Whether train and eval mode compute different functions: BatchNorm (batch
 * vs running statistics) or dropout (p > 0) anywhere, residual bodies and
 * shortcuts included.
 */
export function modeMatters(spec: ModelSpec): boolean {
  const walk = (layers: unknown[]): boolean =>
    layers.some((l) => {
      const layer = l as { type: string; p?: number; body?: unknown[]; shortcut?: unknown[] };
      if (layer.type === 'batchnorm1d' || layer.type === 'batchnorm2d') return true;
      if (layer.type === 'dropout' || layer.type === 'dropout2d') return (layer.p ?? 0.5) > 0;
      if (layer.type === 'residual') return walk(layer.body ?? []) || walk(layer.shortcut ?? []);
      return false;
    });
  return walk(spec.layers);
}
