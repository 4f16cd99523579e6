// npm run bench:gradient [-- --models tiny,mlp,mlp256] [--rounds 9] [--calls 300] [--optimizers sgd,sam,...] [--threads 1] [--json]
// One forward-backward (Model.lossAndGrad) by the layers' own first-order
// rules against the same pass by autograd, on the benchmark's models (batch
// 128, float32) in one process: each round times `calls` calls of each
// method, alternating call by call, and takes each method's median; the
// ratio rules/autograd is the median of the per-round ratios with a
// distribution-free interval (models.ts medianInterval). Then whole optimizer
// steps (the benchmark's rules and hyperparameters): two identical models
// and optimizers, one of whose models takes every pass by autograd (its
// native lossAndGrad called with method 'autograd'), stepped alternately.
// One intra-op thread unless --threads says otherwise.
import { labels, tensor } from '../../lib/tensor/tensor.js';
import { flag, option } from './args.js';
import { BENCH_RULES, makeBenchModel, median, medianInterval } from './models.js';
import { Optimizer } from '../../lib/optim/optimizer.js';
import type { GradMethod } from '../../lib/native/binding.js';
import { native } from '../../lib/native/load.js';
import { setThreads } from '../../lib/native/runtime.js';

const models = option('--models', 'tiny,mlp,mlp256').split(',');
const rounds = Number(option('--rounds', '9'));
const calls = Number(option('--calls', '300'));
const json = flag('--json');
const optimizers = option('--optimizers', 'sgd,sam,trace-sam,det-sam,frob-sam').split(',');
const stepsPerRound = Math.max(1, Math.round(calls / 10));
const methods: GradMethod[] = ['rules', 'autograd'];

setThreads(Number(option('--threads', '1')));
const rows = [];
if (!json) console.log(`LibTorch ${native().versions().torch}, ${native().versions().threads} intra-op thread(s)`);
for (const name of models) {
  const { model, input } = makeBenchModel(name, { dtype: 'float32', seed: 0 });
  const d = input.reduce((a, b) => a * b, 1);
  let s = 1;
  const uniform = () => (s = (s * 16807) % 2147483647) / 2147483647;
  const x = tensor(Float32Array.from({ length: 128 * d }, () => 2 * uniform() - 1), [128, ...input]);
  const y = labels(Array.from({ length: 128 }, (_, i) => (i * 7) % 10));
  const grad = model.zerosLikeParams();
  const pass = (method: GradMethod) => model.native.lossAndGrad(x, y, grad, true, undefined, method);
  for (let i = 0; i < 50; i++) methods.forEach(pass);
  const perRound: Record<GradMethod, number[]> = { rules: [], autograd: [] };
  const ratios: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const times: Record<GradMethod, number[]> = { rules: [], autograd: [] };
    for (let c = 0; c < calls; c++)
      for (const method of c % 2 ? [...methods].reverse() : methods) {
        const t0 = process.hrtime.bigint();
        pass(method);
        times[method].push(Number(process.hrtime.bigint() - t0) / 1e3);
      }
    for (const m of methods) perRound[m].push(median(times[m]));
    ratios.push(median(times.rules) / median(times.autograd));
  }
  const ratio = medianInterval(ratios);
  const row = { model: name, params: model.numParams, rulesUs: median(perRound.rules), autogradUs: median(perRound.autograd), ratio };
  rows.push(row);
  if (!json)
    console.log(
      `${name.padEnd(7)} ${String(model.numParams).padStart(7)} parameters: rules ${row.rulesUs.toFixed(1)} µs, autograd ${row.autogradUs.toFixed(1)} µs, ` +
        `rules/autograd ${ratio.median.toFixed(3)} [${ratio.low.toFixed(3)}, ${ratio.high.toFixed(3)}] (${(100 * ratio.coverage).toFixed(1)}%, ${rounds} rounds × ${calls} calls)`,
    );
  grad.dispose();
  model.dispose();

  for (const rule of optimizers) {
    const arms = methods.map((method) => {
      const m = makeBenchModel(name, { dtype: 'float32', seed: 0 }).model;
      if (method === 'autograd') {
        const nat = m.native as unknown as Record<string, (...a: unknown[]) => unknown>;
        const original = nat.lossAndGrad.bind(m.native);
        // every pass of this arm's steps by autograd (the optimizer reaches the model only through these)
        Object.defineProperty(nat, 'lossAndGrad', { configurable: true, value: (...a: unknown[]) => original(a[0], a[1], a[2], a[3], a[4], 'autograd') });
      }
      return { method, model: m, opt: new Optimizer(m, { base: { kind: 'sgd', lr: 0.01, momentum: 0.9, weightDecay: 5e-4 }, sharpness: BENCH_RULES[rule], seed: 0 }) };
    });
    for (let i = 0; i < 3; i++) for (const a of arms) a.opt.step(x, y);
    const stepRatios: number[] = [];
    const stepMedians: Record<GradMethod, number[]> = { rules: [], autograd: [] };
    for (let r = 0; r < rounds; r++) {
      const times: Record<GradMethod, number[]> = { rules: [], autograd: [] };
      for (let c = 0; c < stepsPerRound; c++)
        for (const a of c % 2 ? [...arms].reverse() : arms) {
          const t0 = process.hrtime.bigint();
          a.opt.step(x, y);
          times[a.method].push(Number(process.hrtime.bigint() - t0) / 1e6);
        }
      for (const m of methods) stepMedians[m].push(median(times[m]));
      stepRatios.push(median(times.rules) / median(times.autograd));
    }
    const stepRatio = medianInterval(stepRatios);
    const stepRow = { model: name, rule, rulesMs: median(stepMedians.rules), autogradMs: median(stepMedians.autograd), ratio: stepRatio };
    rows.push(stepRow);
    if (!json)
      console.log(
        `  step ${rule.padEnd(10)} rules ${stepRow.rulesMs.toFixed(3)} ms, autograd ${stepRow.autogradMs.toFixed(3)} ms, ` +
          `rules/autograd ${stepRatio.median.toFixed(3)} [${stepRatio.low.toFixed(3)}, ${stepRatio.high.toFixed(3)}] (${rounds} rounds × ${stepsPerRound} steps)`,
      );
    for (const a of arms) {
      a.opt.dispose();
      a.model.dispose();
    }
  }
}
if (json) console.log(JSON.stringify(rows));
