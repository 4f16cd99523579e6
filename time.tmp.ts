import { Model } from './lib/model/model.js';
import { labels, tensor } from './lib/tensor.js';
import { BENCH_MODELS, median } from './scripts/bench/models.js';
for (const name of (process.argv[2] ?? 'cnn').split(',') as ('cnn'|'mlp')[]) {
const { spec, input } = BENCH_MODELS[name];
const model = new Model(spec, { dtype: 'float32', seed: 0 });
const n = 128 * input.reduce((a,b)=>a*b,1);
const x = tensor(Float32Array.from({ length: n }, (_, i) => Math.sin(i)), [128, ...input]);
const y = labels(Array.from({ length: 128 }, (_, i) => i % 10));
const v = model.zerosLikeParams(); const out = model.zerosLikeParams();
const g: number[] = [], h: number[] = [];
const reps = Number(process.argv[3] ?? 15);
for (let i = 0; i < reps + 2; i++) {
  let t = performance.now(); model.native.lossAndGrad(x, y, out, false); if (i > 1) g.push(performance.now() - t);
  t = performance.now(); model.native.hvp(x, y, v, out); if (i > 1) h.push(performance.now() - t);
}
console.log(name, 'grad', median(g).toFixed(1), 'hvp', median(h).toFixed(1), 'ratio', (median(h) / median(g)).toFixed(3));
}
