// npm run bench:gradient [-- --models tiny,mlp,mlp256] [--rounds 9] [--calls 300]
// One forward-backward (Model.lossAndGrad) by the layers' own first-order
// rules against the same pass by autograd, on the benchmark's models (batch
// 128, float32) in one process: each round times `calls` calls of each
// method, alternating call by call, and takes each method's median; the
// ratio rules/autograd is the median of the per-round ratios with a
// distribution-free interval (models.ts medianInterval). Threads: the
// process's (OMP_NUM_THREADS=1 for the docs' numbers).
import { labels, tensor } from '../../lib/tensor/tensor.js';
import { flag, option } from './args.js';
import { makeBenchModel, median, medianInterval } from './models.js';
import type { GradMethod } from '../../lib/native/binding.js';
import { native } from '../../lib/native/load.js';

const models = option('--models', 'tiny,mlp,mlp256').split(',');
const rounds = Number(option('--rounds', '9'));
const calls = Number(option('--calls', '300'));
const json = flag('--json');
const methods: GradMethod[] = ['rules', 'autograd'];

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
}
if (json) console.log(JSON.stringify(rows));
