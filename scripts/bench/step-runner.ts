// One benchmark cell in its own process (so that its peak RSS is its own):
//   node scripts/run-ts.mjs scripts/bench/step-runner.ts MODEL OPTIMIZER [DEVICE] [PRECISION]
// then the protocol of pytorch_steps.py on standard input:
//   step K -> JSON list of K step times (ms); fb K -> K forward-backward times;
//   pairs K -> {"step": [...], "fb": [...]}: K steps and K passes taking turns
//     (step, pass, step, ...), so that a step and the passes it is compared
//     with see the same phase of the host (the floor ours/((n+1)·fb));
//   info -> {"peakRssKb", "threads", "params", "torch", "torchLibrary", "sgemm"}
import { createInterface } from 'node:readline';
import { native } from '../../lib/native/load.js';
import { Optimizer } from '../../lib/optim/optimizer.js';
import { labels, tensor } from '../../lib/tensor/tensor.js';
import { BENCH_RULES, makeBenchModel } from './models.js';

const [modelName, optimizer, device = 'cpu', precision = 'fp32'] = process.argv.slice(2) as [string, string, string?, ('fp32' | 'bf16')?];
// a brought model (ts-...) is the TorchScript file the PyTorch peer runs too
const { model, input } = makeBenchModel(modelName, { dtype: 'float32', seed: 0, device, precision });
const n = 128 * input.reduce((a, b) => a * b, 1);
let s = 1;
const uniform = () => (s = (s * 16807) % 2147483647) / 2147483647;
const x = tensor(Float32Array.from({ length: n }, () => Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform())), [128, ...input], { device });
const y = labels(Array.from({ length: 128 }, (_, i) => (i * 7) % 10), { device });
const opt = new Optimizer(model, { base: { kind: 'sgd', lr: 0.01, momentum: 0.9, weightDecay: 5e-4 }, sharpness: BENCH_RULES[optimizer], seed: 0 });
const grad = model.zerosLikeParams();
// on CUDA, a reduction read back to the host waits for the queued kernels
const sync = device === 'cpu' ? () => {} : () => void native().ops.sum(model.params);
const times = (fn: () => void, k: number) =>
  Array.from({ length: k }, () => {
    const t = process.hrtime.bigint();
    fn();
    sync();
    return Number(process.hrtime.bigint() - t) / 1e6;
  });
const fb = () => void model.native.lossAndGrad(x, y, grad, true);
for (let i = 0; i < 2; i++) opt.step(x, y); // warm-up
console.log(JSON.stringify({ ready: true }));
for await (const line of createInterface({ input: process.stdin })) {
  const [cmd, k] = line.split(' ');
  if (cmd === 'step') console.log(JSON.stringify(times(() => opt.step(x, y), Number(k))));
  else if (cmd === 'fb') console.log(JSON.stringify(times(fb, Number(k))));
  else if (cmd === 'pairs') {
    const pairs = Array.from({ length: Number(k) }, () => [times(() => opt.step(x, y), 1)[0], times(fb, 1)[0]]);
    console.log(JSON.stringify({ step: pairs.map((p) => p[0]), fb: pairs.map((p) => p[1]) }));
  }
  else if (cmd === 'info')
    console.log(JSON.stringify({ peakRssKb: process.resourceUsage().maxRSS, threads: native().versions().threads, params: model.numParams, torch: native().versions().torch, torchLibrary: native().versions().torchLibrary, sgemm: native().versions().sgemm }));
  else break;
}
