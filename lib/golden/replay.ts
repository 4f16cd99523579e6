// Replays a training golden file (math.md §8): the same MLP, batch, base
// optimizer and SAM-family rule, with the file's directions u_i fed through
// a user sampler; compares the loss before each step and the parameters
// after it.
import { Optimizer } from '../optim/optimizer.js';
import type { SharpnessConfigInput } from '../sharpness/config.js';
import { goldenSetup, readGolden, trainingGolden, type TrainingGolden } from './format.js';

export interface ReplayResult {
  file: string;
  name: string;
  maxAbsDiff: number;
  steps: number;
}

export function sharpnessOfGolden(g: TrainingGolden, sampler: (p: number) => ArrayLike<number>): SharpnessConfigInput {
  const o = g.optimizer;
  const need = (field: 'lambda' | 'samples' | 'halfCube' | 'eta') => {
    const v = o[field];
    if (v === undefined) throw new Error(`optimizer.${field} is required for kind ${o.kind}`);
    return v;
  };
  switch (o.kind) {
    case 'sam':
      return { kind: 'sam', rho: o.rho };
    case 'asam':
      return { kind: 'asam', rho: o.rho, eta: need('eta') };
    case 'frob-sam':
      return { kind: 'frob-sam', rho: o.rho, lambda: need('lambda'), samples: need('samples'), mu: sampler };
    case 'trace-sam':
      return { kind: 'trace-sam', rho: o.rho, lambda: need('lambda'), samples: need('samples'), mu: sampler };
    case 'det-sam':
      return { kind: 'det-sam', rho: o.rho, lambda: need('lambda'), samples: need('samples'), halfCube: o.halfCube, mu: sampler };
  }
}

export function replayGolden(file: string): ReplayResult {
  const g = readGolden(trainingGolden, file);
  const { model, x, y } = goldenSetup(g, g.params0);
  const directions = g.steps.flatMap((s) => s.directions);
  let next = 0;
  const sampler = (p: number) => {
    if (next >= directions.length) throw new Error(`${file}: the rule asked for more directions than the file holds (${directions.length})`);
    const u = directions[next++];
    if (u.length !== p) throw new Error(`${file}: a direction has ${u.length} entries, the model has ${p} parameters`);
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
  if (next !== directions.length) throw new Error(`${file}: the rule used ${next} directions, the file holds ${directions.length}`);
  opt.dispose();
  model.dispose();
  return { file, name: g.name, maxAbsDiff, steps: g.steps.length };
}
