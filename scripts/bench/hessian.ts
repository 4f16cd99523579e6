// npm run bench:lanczos [-- --json] [-- --probe-at 100,469] [-- --seeds K]
// On the MLP and the CNN of the step benchmark (batch 128, Fashion-MNIST),
// trained by plain SGD (lr 0.05) and probed at the steps of --probe-at
// (default: after 100 steps and after one epoch, 469 steps), so that the
// Hessians are those of models in training, not at initialisation:
//  - HVPs that Lanczos and power iteration need to reach 1e-3 relative error
//    on the top eigenvalue, the median over --seeds start vectors (default 5)
//    (target: Lanczos ≤ 1/3 of power iteration), with λ2/λ1, which decides
//    how fast power iteration can be (its error falls like (λ2/λ1)^(2k));
//  - at the last probe, the time of one HVP over the time of one gradient,
//    both on the same batch, timed alternately (median of 20 each; target
//    ≤ 2.5×), for the default forward-over-reverse HVP and for double backward.
// --timing-only [--models resnet18] [--device cuda]: only the timing, on a
// seeded random batch (the GPU check: scripts/gpu-check.sh).
import { count, type Dataset, fashionMnist, sampleSize, synthetic } from '../../lib/data/dataset.js';
import { hessian } from '../../lib/hessian/hessian.js';
import { Model } from '../../lib/model/model.js';
import type { HvpMethod } from '../../lib/native/binding.js';
import { native } from '../../lib/native/load.js';
import { labels, type Tensor, tensor } from '../../lib/tensor/tensor.js';
import { alternate, BENCH_MODELS, type BenchModel, median } from './models.js';
import { flag, option } from './args.js';

const json = flag('--json');
const timingOnly = flag('--timing-only');
const probeAt = option('--probe-at', '100,469').split(',').map(Number);
const seeds = Number(option('--seeds', '5'));
const models = option('--models', 'mlp,cnn').split(',') as BenchModel[];
const device = option('--device', 'cpu');
const batchSize = 128;
const fashion = timingOnly ? undefined : fashionMnist('train');

/** Batch `index` of the data, in the model's input shape. */
function batch(data: Dataset, index: number, input: number[]) {
  const size = sampleSize(data);
  const from = (index * batchSize) % Math.max(1, count(data) - batchSize);
  return {
    x: tensor(data.x.slice(from * size, (from + batchSize) * size), [batchSize, ...input], { device }),
    y: labels(Array.from(data.y.subarray(from, from + batchSize)), { device }),
  };
}

const rows: Record<string, unknown>[] = [];

/** One gradient, one HVP by each method, alternately on the same batch. */
function timeHvp(name: string, model: Model, probe: { x: Tensor; y: Tensor }, step: number) {
  const v = model.zerosLikeParams();
  native().ops.fill(v, 1e-2);
  const out = model.zerosLikeParams();
  const hvp = (method: HvpMethod) => () => model.native.hvp(probe.x, probe.y, v, out, method);
  const [gradMs, hvpMs, doubleBackwardMs] = alternate(
    [() => model.native.lossAndGrad(probe.x, probe.y, out, false), hvp('forward-over-reverse'), hvp('double-backward')],
    20,
  );
  rows.push({
    kind: 'time',
    model: name,
    step,
    params: model.numParams,
    gradMs,
    hvpMs,
    hvpOverGrad: hvpMs / gradMs,
    doubleBackwardOverGrad: doubleBackwardMs / gradMs,
  });
}

for (const name of models) {
  const { spec, input } = BENCH_MODELS[name];
  const model = new Model(spec, { dtype: 'float32', seed: 0, device });
  if (!fashion) {
    timeHvp(name, model, batch(synthetic({ count: batchSize, shape: input, classes: 10, seed: 1 }), 0, input), 0);
    continue;
  }
  const grad = model.zerosLikeParams();
  let step = 0;
  let probe = batch(fashion, 0, input);
  for (const until of probeAt) {
    for (; step < until; step++) {
      const b = batch(fashion, step, input);
      model.native.lossAndGrad(b.x, b.y, grad, true);
      native().ops.axpy(model.params, -0.05, grad);
    }
    probe = batch(fashion, step, input);
    const h = hessian(model, probe, { mode: 'train' });
    const [l1, l2] = h.eigenvalues({ k: 2, tol: 1e-7, maxIter: 300 }).largest!;
    const target = (e: number[]) => Math.abs(e[e.length - 1] - l1) <= 1e-3 * Math.abs(l1);
    const lanczos: number[] = [], power: number[] = [];
    for (let seed = 1; seed <= seeds; seed++) {
      lanczos.push(h.eigenvalues({ k: 1, tol: 1e-12, maxIter: 300, stop: target, seed }).hvps);
      power.push(h.eigenvalues({ k: 1, method: 'power', tol: 1e-12, maxIter: 3000, stop: target, seed }).hvps);
    }
    rows.push({
      kind: 'eigen',
      model: name,
      step,
      topEigenvalue: l1,
      secondOverTop: l2 / l1,
      lanczosHvps: median(lanczos),
      powerHvps: median(power),
      lanczosOverPower: median(lanczos) / median(power),
      lanczosBySeed: lanczos,
      powerBySeed: power,
    });
  }
  timeHvp(name, model, probe, step);
}
const versions = native().versions();
if (json) for (const r of rows) console.log(JSON.stringify({ ...r, threads: versions.threads, mallocTuned: versions.mallocTuned }));
else {
  const f = (r: Record<string, unknown>, k: string, d: number) => (r[k] as number).toFixed(d);
  const data = fashion ? `SGD on Fashion-MNIST, ${seeds} seeds` : 'a synthetic batch, timing only';
  console.log(`threads: ${versions.threads}, LibTorch ${versions.torch}, malloc tuned: ${versions.mallocTuned}; ${data}`);
  if (fashion) console.log('model  step  λmax      λ2/λ1   Lanczos HVPs  power HVPs  ratio (≤0.33)');
  for (const r of rows.filter((r) => r.kind === 'eigen'))
    console.log(
      `${String(r.model).padEnd(6)} ${String(r.step).padEnd(5)} ${f(r, 'topEigenvalue', 4).padEnd(9)} ${f(r, 'secondOverTop', 3).padEnd(7)} ${String(r.lanczosHvps).padEnd(13)} ${String(r.powerHvps).padEnd(11)} ${f(r, 'lanczosOverPower', 3)}`,
    );
  console.log('model  step  params   grad ms  HVP ms  HVP/grad (≤2.5)  double-backward/grad');
  for (const r of rows.filter((r) => r.kind === 'time'))
    console.log(
      `${String(r.model).padEnd(6)} ${String(r.step).padEnd(5)} ${String(r.params).padEnd(8)} ${f(r, 'gradMs', 2).padEnd(8)} ${f(r, 'hvpMs', 2).padEnd(7)} ${f(r, 'hvpOverGrad', 2).padEnd(16)} ${f(r, 'doubleBackwardOverGrad', 2)}`,
    );
}
