// npm run bench:third-order [-- --models small,tiny,mlp] [--rounds 15] [--calls 100] [--threads 1]
// The exact estimator's pass per sample (Model.quadraticFormGrad: q = uᵀHu
// and ∇q) with the gradient's graph kept in a cache, as a step's samples
// share it, against the same call building the graph itself, as every sample
// did before. One process, one intra-op thread unless --threads says
// otherwise; each round times `calls` calls of each, alternating call by
// call, and takes each one's median; kept/plain is the median of the
// per-round ratios with a distribution-free interval (models.ts
// medianInterval). 'small' is the readings test's MLP (6-8-3, tanh, float64,
// batch 24: 83 parameters, where autograd's bookkeeping is most of the
// time); the others are the benchmark's models in float32, batch 128.
import { hvpCache, Model } from '../../lib/model/model.js';
import { mlp } from '../../lib/model/presets.js';
import { labels, tensor } from '../../lib/tensor/tensor.js';
import { alternatingRun, makeBenchModel, median, medianInterval } from './models.js';

const { models, rounds, calls, signed } = alternatingRun({ models: 'small,tiny,mlp', rounds: 15, calls: 100 });
for (const name of models) {
  const small = name === 'small';
  const { model, input } = small
    ? { model: new Model(mlp({ layers: [6, 8, 3], activation: 'tanh' }), { dtype: 'float64', seed: 4 }), input: [6] }
    : makeBenchModel(name, { dtype: 'float32', seed: 0 });
  const dtype = small ? 'float64' : 'float32';
  const batch = small ? 24 : 128;
  const classes = small ? 3 : 10;
  const d = input.reduce((a, b) => a * b, 1);
  const values = (n: number) => {
    const v = Array.from({ length: n }, signed);
    return dtype === 'float64' ? Float64Array.from(v) : Float32Array.from(v);
  };
  const x = tensor(values(batch * d), [batch, ...input], { dtype });
  const y = labels(Array.from({ length: batch }, (_, i) => (i * 7) % classes));
  const u = tensor(values(model.numParams), [model.numParams], { dtype });
  const out = model.zerosLikeParams();
  const cache = hvpCache();
  const kept = () => model.native.quadraticFormGrad(x, y, u, out, cache);
  const plain = () => model.native.quadraticFormGrad(x, y, u, out);
  // the same bits either way: checked here too, so the two time the same work
  const a = plain(), b = kept();
  if (a !== b) throw new Error(`${name}: kept ${b} != plain ${a}`);
  for (let i = 0; i < 10; i++) [kept, plain].forEach((f) => f());
  const ratios: number[] = [];
  const keptMs: number[] = [], plainMs: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const t: number[][] = [[], []];
    for (let i = 0; i < calls; i++)
      [kept, plain].forEach((f, k) => {
        const t0 = process.hrtime.bigint();
        f();
        t[k].push(Number(process.hrtime.bigint() - t0) / 1e6);
      });
    keptMs.push(median(t[0]));
    plainMs.push(median(t[1]));
    ratios.push(median(t[0]) / median(t[1]));
  }
  const m = medianInterval(ratios);
  console.log(
    `${name} (${model.numParams} parameters, ${dtype}, batch ${batch}): kept ${median(keptMs).toFixed(3)} ms, plain ${median(plainMs).toFixed(3)} ms, ` +
      `kept/plain ${m.median.toFixed(3)} [${m.low.toFixed(3)}, ${m.high.toFixed(3)}] (${(100 * m.coverage).toFixed(1)}%); graph records ${cache.records}, replays ${cache.replays}`,
  );
  cache.dispose();
  model.dispose();
}
