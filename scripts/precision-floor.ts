// The finite-difference floor of the reduced precisions (docs/models.md, "The
// finite-difference floor"): one step of Trace-, Det- and Frob-SAM from the
// same weights and batch, in float32 and in bf16 (and fp16 where LibTorch has
// float16 products on the CPU), at the rule's training rho and at rho/2,
// rho/4, ... until the step is refused; five direction seeds each. Prints the
// library's estimate of the perturbation's rounding error,
// E = √(2/3)·u_p·‖w‖/(rho·‖u‖) (lib/optim/rules/context.ts), next to the
// measured relative error of the step's reading and of its update against
// float32 (medians over the seeds), and the refusal below the floor.
//   node scripts/run-ts.mjs scripts/precision-floor.ts
import { Model, mlp, tensor, labels, synthetic, Optimizer, trainingDefaultsOf, UsamError } from '../lib/index.js';
import { UNIT_ROUNDOFF } from '../lib/model/model.js';
import { MAX_PERTURBATION_ROUNDING } from '../lib/optim/rules/context.js';

const d = synthetic({ count: 128, shape: [1, 28, 28], classes: 10, seed: 1 });
const x = tensor(d.x, [128, 1, 28, 28]);
const y = labels(d.y);
const spec = mlp({ layers: [784, 128, 10], input: [1, 28, 28] });
const median = (v: number[]) => [...v].sort((a, b) => a - b)[v.length >> 1];
const relative = (a: Float32Array, b: Float32Array) => {
  let dd = 0, nn = 0;
  for (let i = 0; i < a.length; i++) {
    dd += (a[i] - b[i]) ** 2;
    nn += b[i] ** 2;
  }
  return Math.sqrt(dd / nn);
};
let fp16 = true;
try {
  new Model(spec, { precision: 'fp16' }).dispose();
} catch {
  fp16 = false; // Debian's LibTorch 1.13 has no float16 products on the CPU
}
const reduced = fp16 ? (['bf16', 'fp16'] as const) : (['bf16'] as const);

// One step per direction seed: the reading and the update (w1 − w0), or the refusal's message.
function steps(kind: string, h: Record<string, number>, precision: 'fp32' | 'bf16' | 'fp16') {
  const out = { reading: [] as number[], update: [] as Float32Array[], refused: undefined as string | undefined, estimate: NaN };
  for (let seed = 0; seed < 5; seed++) {
    const m = new Model(spec, { seed: 3, precision });
    const opt = new Optimizer(m, { base: { kind: 'sgd', lr: 1 }, sharpness: { kind, ...h } as never, seed, lossScale: false });
    const w0 = m.getParams() as Float32Array;
    // ‖u‖ as drawn: gaussian √P, Det-SAM's cube halfCube·√(P/3)
    const u = kind === 'det-sam' ? h.halfCube * Math.sqrt(m.numParams / 3) : Math.sqrt(m.numParams);
    out.estimate = (Math.sqrt(2 / 3) * UNIT_ROUNDOFF[precision] * Math.hypot(...w0)) / (h.rho * u);
    try {
      const r = opt.step(x, y);
      out.reading.push(r.sharpness);
      out.update.push((m.getParams() as Float32Array).map((v, i) => v - w0[i]));
    } catch (e) {
      if (!(e instanceof UsamError)) throw e;
      out.refused = e.message;
    }
    opt.dispose();
    m.dispose();
    if (out.refused) break;
  }
  return out;
}

console.log(`refused above an estimated perturbation rounding error E of ${MAX_PERTURBATION_ROUNDING}; MLP 784-128-10, batch 128, 5 direction seeds, medians\n`);
console.log('rule       precision  rho         E          reading err  update err   update err / E');
for (const kind of ['trace-sam', 'det-sam', 'frob-sam'] as const) {
  const defaults = { ...trainingDefaultsOf(kind)! } as Record<string, number>;
  for (const precision of reduced) {
    for (let factor = 1; ; factor /= 2) {
      const h = { ...defaults, rho: defaults.rho * factor };
      const exact = steps(kind, h, 'fp32');
      const low = steps(kind, h, precision);
      const head = `${kind.padEnd(10)} ${precision.padEnd(10)} ${h.rho.toExponential(2).padEnd(11)} ${low.estimate.toExponential(2).padEnd(10)}`;
      if (low.refused) {
        console.log(`${head} refused: ${low.refused.slice(0, 160)}…`);
        break;
      }
      const reading = median(low.reading.map((r, i) => Math.abs(r - exact.reading[i]) / Math.abs(exact.reading[i])));
      const update = median(low.update.map((u, i) => relative(u, exact.update[i])));
      console.log(`${head} ${reading.toExponential(2).padEnd(12)} ${update.toExponential(2).padEnd(12)} ${(update / low.estimate).toFixed(2)}`);
      if (factor < 1 / 512) break;
    }
  }
}
