// The precision floor of the finite-difference rules in bf16 (docs/models.md,
// Mixed precision): one step of Trace-, Det- and Frob-SAM from the same
// weights and batch, in float32 and in bf16, at the rule's training rho and
// at rho/10, five direction seeds each; prints each rule's per-step reading
// and the relative difference of the reading and of the update (bf16 against
// float32, medians over the seeds).
//   node scripts/run-ts.mjs scripts/precision-floor.ts
import { Model, mlp, tensor, labels, synthetic, Optimizer, trainingDefaultsOf } from '../lib/index.js';
const d = synthetic({ count: 128, shape: [1, 28, 28], classes: 10, seed: 1 });
const x = tensor(d.x, [128, 1, 28, 28]); const y = labels(d.y);
const spec = mlp({ layers: [784, 128, 10], input: [1, 28, 28] });
for (const kind of ['trace-sam', 'det-sam', 'frob-sam'] as const) {
  for (const scaleRho of [1, 0.1]) {
    const h = { ...trainingDefaultsOf(kind)! } as Record<string, number>; h.rho *= scaleRho;
    const res: Record<string, { reading: number[]; update: Float32Array[] }> = {};
    for (const precision of ['fp32', 'bf16'] as const) {
      res[precision] = { reading: [], update: [] };
      for (let seed = 0; seed < 5; seed++) {
        const m = new Model(spec, { seed: 3, precision });
        const opt = new Optimizer(m, { base: { kind: 'sgd', lr: 1 }, sharpness: { kind, ...h } as never, seed });
        const w0 = m.getParams(); const r = opt.step(x, y); const w1 = m.getParams() as Float32Array;
        res[precision].reading.push(r.sharpness); res[precision].update.push(w1.map((v, i) => v - w0[i]));
      }
    }
    const rel = (a: Float32Array, b: Float32Array) => { let dd = 0, n = 0; for (let i = 0; i < a.length; i++) { dd += (a[i] - b[i]) ** 2; n += b[i] ** 2; } return Math.sqrt(dd / n); };
    const updErr = res.bf16.update.map((u, i) => rel(u, res.fp32.update[i]));
    const readErr = res.bf16.reading.map((r, i) => Math.abs(r - res.fp32.reading[i]) / Math.abs(res.fp32.reading[i]));
    console.log(kind, 'rho', h.rho, 'reading fp32', res.fp32.reading.map((v) => v.toFixed(2)).join(' '), '| bf16', res.bf16.reading.map((v) => v.toFixed(2)).join(' '));
    console.log('   rel reading err median', readErr.sort((a, b) => a - b)[2].toExponential(2), 'rel update err median', updErr.sort((a, b) => a - b)[2].toExponential(2));
  }
}
