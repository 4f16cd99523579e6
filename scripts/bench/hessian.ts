// npm run bench:hessian [-- --json]
// On the MLP and the CNN of the benchmark (batch 128, 28×28 inputs):
//  - HVPs that Lanczos and power iteration need to reach 1e-3 relative error
//    on the top eigenvalue (target: Lanczos ≤ 1/3 of power iteration);
//  - the time of one HVP over the time of one gradient (target ≤ 2.5×).
import { hessian } from '../../lib/hessian/hessian.js';
import { Model } from '../../lib/model/model.js';
import { native } from '../../lib/native/load.js';
import { labels, tensor } from '../../lib/tensor.js';
import { BENCH_MODELS, timeMs } from './models.js';

const json = process.argv.includes('--json');
const rows: Record<string, unknown>[] = [];
for (const name of ['mlp', 'cnn'] as const) {
  const { spec, input } = BENCH_MODELS[name];
  const model = new Model(spec, { dtype: 'float32', seed: 0 });
  const batch = 128;
  const n = batch * input.reduce((a, b) => a * b, 1);
  let s = 12345;
  const rand = () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648) * 2 - 1;
  const x = tensor(Float32Array.from({ length: n }, rand), [batch, ...input]);
  const y = labels(Array.from({ length: batch }, (_, i) => i % 10));
  // a few plain SGD steps so that the Hessian is not the one at initialisation
  const grad = model.zerosLikeParams();
  for (let i = 0; i < 20; i++) {
    model.native.lossAndGrad(x, y, grad, true);
    native().ops.axpy(model.params, -0.05, grad);
  }
  const h = hessian(model, { x, y }, { mode: 'train' });
  const reference = h.eigenvalues({ k: 1, tol: 1e-7, maxIter: 300 }).largest![0];
  const target = (e: number[]) => Math.abs(e[e.length - 1] - reference) <= 1e-3 * Math.abs(reference);
  const lanczos = h.eigenvalues({ k: 1, tol: 1e-12, maxIter: 300, stop: target, seed: 1 });
  const power = h.eigenvalues({ k: 1, method: 'power', tol: 1e-12, maxIter: 3000, stop: target, seed: 1 });
  const v = model.zerosLikeParams();
  native().ops.fill(v, 1e-2);
  const out = model.zerosLikeParams();
  const gradMs = timeMs(() => model.native.lossAndGrad(x, y, out, false), 20);
  const hvpMs = timeMs(() => model.native.hvp(x, y, v, out), 20);
  rows.push({
    model: name,
    params: model.numParams,
    topEigenvalue: reference,
    lanczosHvps: lanczos.hvps,
    powerHvps: power.hvps,
    lanczosOverPower: lanczos.hvps / power.hvps,
    gradMs,
    hvpMs,
    hvpOverGrad: hvpMs / gradMs,
  });
}
if (json) for (const r of rows) console.log(JSON.stringify(r));
else {
  console.log(`threads: ${native().versions().threads}, LibTorch ${native().versions().torch}`);
  console.log('model  params   λmax       Lanczos HVPs  power HVPs  ratio (≤0.33)  grad ms  HVP ms  HVP/grad (≤2.5)');
  for (const r of rows)
    console.log(
      `${String(r.model).padEnd(6)} ${String(r.params).padEnd(8)} ${(r.topEigenvalue as number).toFixed(4).padEnd(10)} ${String(r.lanczosHvps).padEnd(13)} ${String(r.powerHvps).padEnd(11)} ${(r.lanczosOverPower as number).toFixed(3).padEnd(14)} ${(r.gradMs as number).toFixed(2).padEnd(8)} ${(r.hvpMs as number).toFixed(2).padEnd(7)} ${(r.hvpOverGrad as number).toFixed(2)}`,
    );
}
