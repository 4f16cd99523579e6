// Ours in the Hessian-vector product comparison, as a persistent process:
//   node scripts/run-ts.mjs scripts/bench/hessian-runner.ts MODEL BATCH DIR
// Sets one thread, builds MODEL (eval mode) with seed 0 (a brought ts- model:
// loads its TorchScript file) on the first BATCH Fashion-MNIST training images
// (models of another input shape: a seeded gaussian batch), and writes to DIR what the PyTorch peer
// (pytorch_hessian.py) loads: params.f32 (in paramInfo order, PyTorch's
// named_parameters order), x.f32, y.i32, v.f32 (a seeded gaussian vector) and
// hv.f32 (our H v) and q.f64 (our vᵀHv). Then, one command a line, each
// answered with a JSON list of K times (ms) of one HVP of the batch:
//   probe K  -> with the batch's HVP cache (recorded before the first timing)
//   curvature K -> one vᵀHv as the trace probe takes it: second-order jets
//               forward, with the batch's curvature cache
//   plain K  -> recomputing everything (no cache)
//   graph K  -> double backward through the gradient's kept graph (cached)
//   block B K -> K times of one cached HVP pass over a block of B vectors
//   cblock B K -> the same for one curvature pass over B vectors
//   info     -> {"peakRssKb", "threads", "torch", "params", "cacheBytes"}
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fashionMnist, sampleSize } from '../../lib/data/dataset.js';
import { hvpCache } from '../../lib/model/model.js';
import { native } from '../../lib/native/load.js';
import { generator } from '../../lib/random.js';
import { labels, tensor } from '../../lib/tensor/tensor.js';
import { makeBenchModel } from './models.js';

const [modelName, batchArg, dir] = process.argv.slice(2) as [string, string, string];
const batchSize = Number(batchArg);
native().setThreads(1);
const { model, input } = makeBenchModel(modelName, { dtype: 'float32', seed: 0 });
model.train(false);
const data = fashionMnist('train');
const perSample = input.reduce((a, b) => a * b, 1);
const images = perSample === sampleSize(data);
const xs = images ? data.x.slice(0, batchSize * perSample) : new Float32Array(batchSize * perSample);
if (!images) generator(11).gaussian(tensor(xs, [xs.length]));
const ys = images ? Int32Array.from(data.y.subarray(0, batchSize)) : Int32Array.from({ length: batchSize }, (_, i) => (i * 7) % 10);
const x = tensor(xs, [batchSize, ...input]);
const y = labels(ys);
const v = model.zerosLikeParams();
generator(7).gaussian(v);
const out = model.zerosLikeParams();
const probeCache = hvpCache();
const graphCache = hvpCache();
const curvatureCache = hvpCache();
const q = native().Tensor.zeros([1], 'float32', 'cpu');
model.native.curvature(x, y, v, q, undefined, curvatureCache);
model.hvp(x, y, v, out, { cache: probeCache });
model.hvp(x, y, v, out, { method: 'double-backward', cache: graphCache });
model.hvp(x, y, v, out, { cache: probeCache });

const bytes = (a: Float32Array | Int32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
writeFileSync(join(dir, 'params.f32'), bytes(model.getParams() as Float32Array));
writeFileSync(join(dir, 'x.f32'), bytes(xs));
writeFileSync(join(dir, 'y.i32'), bytes(ys));
writeFileSync(join(dir, 'v.f32'), bytes(v.toArray() as Float32Array));
writeFileSync(join(dir, 'hv.f32'), bytes(out.toArray() as Float32Array));
const ourQ = Float64Array.of((q.toArray() as Float32Array)[0]);
writeFileSync(join(dir, 'q.f64'), Buffer.from(ourQ.buffer));

const times = (fn: () => void, k: number) =>
  Array.from({ length: k }, () => {
    const t = process.hrtime.bigint();
    fn();
    return Number(process.hrtime.bigint() - t) / 1e6;
  });
const runs: Record<string, () => void> = {
  probe: () => model.native.hvp(x, y, v, out, undefined, probeCache),
  plain: () => model.native.hvp(x, y, v, out),
  graph: () => model.native.hvp(x, y, v, out, 'double-backward', graphCache),
  curvature: () => model.native.curvature(x, y, v, q, undefined, curvatureCache),
};
const blocks = new Map<number, { v: ReturnType<typeof tensor>; out: ReturnType<typeof tensor>; q: ReturnType<typeof tensor> }>();
function blockOf(size: number) {
  if (!blocks.has(size)) {
    const v = native().Tensor.zeros([size, model.numParams], 'float32', 'cpu');
    generator(size).gaussian(v);
    blocks.set(size, { v, out: native().Tensor.zeros([size, model.numParams], 'float32', 'cpu'), q: native().Tensor.zeros([size], 'float32', 'cpu') });
  }
  return blocks.get(size)!;
}
console.log(JSON.stringify({ ready: true }));
for await (const line of createInterface({ input: process.stdin })) {
  const [cmd, k, k2] = line.split(' ');
  if (runs[cmd]) console.log(JSON.stringify(times(runs[cmd], Number(k))));
  else if (cmd === 'block') {
    const b = blockOf(Number(k));
    console.log(JSON.stringify(times(() => model.native.hvp(x, y, b.v, b.out, undefined, probeCache), Number(k2))));
  } else if (cmd === 'cblock') {
    const b = blockOf(Number(k));
    console.log(JSON.stringify(times(() => model.native.curvature(x, y, b.v, b.q, undefined, curvatureCache), Number(k2))));
  }
  else if (cmd === 'info')
    console.log(
      JSON.stringify({
        peakRssKb: process.resourceUsage().maxRSS,
        threads: native().versions().threads,
        torch: native().versions().torch,
        params: model.numParams,
        cacheBytes: probeCache.bytes,
      }),
    );
  else break;
}
