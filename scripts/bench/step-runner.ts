// One benchmark cell in its own process (so that its peak RSS is its own):
//   node scripts/run-ts.mjs scripts/bench/step-runner.ts MODEL OPTIMIZER STEPS
// prints {"medianMs", "forwardBackwardMs", "peakRssKb", "params"}.
import { Model } from '../../lib/model/model.js';
import { native } from '../../lib/native/load.js';
import { Optimizer } from '../../lib/optim/optimizer.js';
import type { SharpnessConfigInput } from '../../lib/sharpness/config.js';
import { labels, tensor } from '../../lib/tensor.js';
import { BENCH_MODELS, timeMs } from './models.js';

export const BENCH_RULES: Record<string, SharpnessConfigInput | undefined> = {
  sgd: undefined,
  sam: { kind: 'sam', rho: 0.05 },
  'trace-sam': { kind: 'trace-sam', rho: 0.01, lambda: 1, samples: 1 },
  'det-sam': { kind: 'det-sam', rho: 1, lambda: 0.01, samples: 1, halfCube: 0.05 },
  'frob-sam': { kind: 'frob-sam', rho: 0.005, lambda: 0.001, samples: 2 },
};

const [modelName, optimizer, stepsArg] = process.argv.slice(2) as ['tiny' | 'mlp' | 'cnn', string, string];
const { spec, input } = BENCH_MODELS[modelName];
const model = new Model(spec, { dtype: 'float32', seed: 0 });
const n = 128 * input.reduce((a, b) => a * b, 1);
let s = 1;
const gauss = () => {
  s = (s * 16807) % 2147483647;
  const u = s / 2147483647;
  s = (s * 16807) % 2147483647;
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * (s / 2147483647));
};
const x = tensor(Float32Array.from({ length: n }, gauss), [128, ...input]);
const y = labels(Array.from({ length: 128 }, (_, i) => (i * 7) % 10));
const opt = new Optimizer(model, { base: { kind: 'sgd', lr: 0.01, momentum: 0.9, weightDecay: 5e-4 }, sharpness: BENCH_RULES[optimizer], seed: 0 });
const steps = Number(stepsArg);
const medianMs = timeMs(() => opt.step(x, y), steps, 2);
const grad = model.zerosLikeParams();
const forwardBackwardMs = timeMs(() => model.native.lossAndGrad(x, y, grad, true), steps, 2);
console.log(
  JSON.stringify({ medianMs, forwardBackwardMs, peakRssKb: process.resourceUsage().maxRSS, params: model.numParams, threads: native().versions().threads }),
);
