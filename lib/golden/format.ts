// The golden file formats of math.md §8 (produced by the paper's reference
// code), validated with zod, and the MLP they describe.
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { Model } from '../model/model.js';
import { mlp } from '../model/presets.js';
import { ConfigError, formatIssues, UsamError } from '../errors.js';
import { labels, tensor, type Tensor } from '../tensor/tensor.js';

const vec = z.array(z.number());
const goldenModel = z.object({
  kind: z.literal('mlp'),
  layers: z.array(z.number().int().positive()).min(2),
  activation: z.enum(['tanh', 'relu', 'gelu']),
});
const batch = {
  model: goldenModel,
  loss: z.literal('cross_entropy'),
  dtype: z.literal('float64'),
  x: z.array(vec).min(1),
  y: z.array(z.number().int().nonnegative()),
  paramShapes: z.array(z.array(z.number().int())).optional(),
};

export const trainingGolden = z.object({
  format: z.literal('usam-golden/1'),
  name: z.string(),
  seed: z.number().optional(),
  ...batch,
  base: z.object({
    kind: z.literal('sgd'),
    lr: z.number(),
    momentum: z.number().default(0),
    weightDecay: z.number().default(0),
    nesterov: z.boolean().default(false),
    dampening: z.number().default(0),
  }),
  optimizer: z.object({
    /** a registered rule's kind (lib/optim/rules/) */
    kind: z.string(),
    rho: z.number(),
    lambda: z.number().optional(),
    samples: z.number().int().optional(),
    halfCube: z.number().optional(),
    eta: z.number().optional(),
  }),
  params0: vec,
  steps: z.array(z.object({ loss: z.number(), directions: z.array(vec), params: vec })).min(1),
});

export const hessianGolden = z.object({
  format: z.literal('usam-hessian-golden/1'),
  ...batch,
  params: vec,
  numParams: z.number().int(),
  loss_value: z.number(),
  eigenvalues: vec,
  trace: z.number(),
  frobeniusSquared: z.number(),
  maxEigenvalue: z.number(),
  minEigenvalue: z.number(),
  damping: z.number().positive(),
  logAbsDetDamped: z.number(),
  hvpProbe: z.object({ v: vec, Hv: vec }),
});

export type TrainingGolden = z.output<typeof trainingGolden>;
export type HessianGolden = z.output<typeof hessianGolden>;

export function readGolden<S extends z.ZodType>(schema: S, file: string): z.output<S> {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new UsamError(`${file}: cannot read a golden file: ${(e as Error).message}`);
  }
  const r = schema.safeParse(raw);
  if (!r.success) throw new ConfigError('golden file', `${file}: not a valid golden file:\n${formatIssues(r.error)}`);
  return r.data;
}

/** The float64 MLP, batch and parameters of a golden case, on the CPU. */
export function goldenSetup(g: { model: z.output<typeof goldenModel>; x: number[][]; y: number[] }, params: number[]) {
  const model = new Model(mlp({ layers: g.model.layers, activation: g.model.activation }), { dtype: 'float64' });
  if (params.length !== model.numParams)
    throw new UsamError(`golden params hold ${params.length} values but the MLP ${JSON.stringify(g.model.layers)} has ${model.numParams}`);
  model.setParams(params);
  const inputs = g.model.layers[0];
  const x: Tensor = tensor(Float64Array.from(g.x.flat()), [g.x.length, inputs], { dtype: 'float64' });
  const y: Tensor = labels(g.y);
  return { model, x, y };
}
