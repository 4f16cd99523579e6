// Replays a training golden file (math.md §8): the same MLP, batch, base
// optimizer and SAM-family rule, with the file's directions u_i fed through
// a user sampler; compares the loss before each step and the parameters
// after it.
import { Optimizer } from '../optim/optimizer.js';
import { ConfigError, UsamError } from '../errors.js';
import { hasField, HYPER_FIELDS, ruleOf, type SharpnessConfigInput } from '../optim/rules/index.js';
import { goldenSetup, readGolden, trainingGolden, type TrainingGolden } from './format.js';

export interface ReplayResult {
  file: string;
  name: string;
  maxAbsDiff: number;
  steps: number;
}

export function sharpnessOfGolden(g: TrainingGolden, sampler: (p: number) => ArrayLike<number>): SharpnessConfigInput {
  const o = g.optimizer;
  const rule = ruleOf(o.kind, 'optimizer.kind');
  const config: Record<string, unknown> = { kind: o.kind };
  for (const field of HYPER_FIELDS) {
    if (!hasField(rule, field)) continue;
    // the reference's runs set every hyperparameter: a missing one is a damaged file, not a default
    if (o[field] === undefined && field !== 'halfCube') throw new ConfigError('golden file', [{ path: `optimizer.${field}`, message: `is required for kind ${o.kind}` }]);
    if (o[field] !== undefined) config[field] = o[field];
  }
  // the file's directions u_i, fed through a user sampler
  if (hasField(rule, 'mu')) config.mu = sampler;
  return config as SharpnessConfigInput;
}

export function replayGolden(file: string): ReplayResult {
  const g = readGolden(trainingGolden, file);
  const { model, x, y } = goldenSetup(g, g.params0);
  const directions = g.steps.flatMap((s) => s.directions);
  let next = 0;
  const sampler = (p: number) => {
    if (next >= directions.length) throw new UsamError(`${file}: the rule asked for more directions than the file holds (${directions.length})`);
    const u = directions[next++];
    if (u.length !== p) throw new UsamError(`${file}: a direction has ${u.length} entries, the model has ${p} parameters`);
    return u;
  };
  const opt = new Optimizer(model, { base: g.base, sharpness: sharpnessOfGolden(g, sampler) });
  let maxAbsDiff = 0;
  for (const s of g.steps) {
    const r = opt.step(x, y);
    maxAbsDiff = Math.max(maxAbsDiff, Math.abs(r.loss - s.loss));
    const params = model.getParams();
    for (let i = 0; i < params.length; i++) maxAbsDiff = Math.max(maxAbsDiff, Math.abs(params[i] - s.params[i]));
  }
  if (next !== directions.length) throw new UsamError(`${file}: the rule used ${next} directions, the file holds ${directions.length}`);
  opt.dispose();
  model.dispose();
  return { file, name: g.name, maxAbsDiff, steps: g.steps.length };
}
