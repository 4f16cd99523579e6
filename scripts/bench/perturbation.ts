// npm run bench:perturbation [-- --models tiny,mlp] [--rounds 15] [--calls 60] [--threads 1]
// A step's first perturbation, params ← w + rho·u with the slope ⟨g0, u⟩,
// where w must be kept for the base step: a copy of w then a shift from the
// copy (`copy+shift`, what the steps did before), against one shift over
// params that keeps w in the same pass (`kept shift`, ops.shiftDot's keep,
// what they do now). Each timed call follows a forward-backward pass of the
// model on its benchmark batch, as in a step, so the vectors are where a
// step finds them (not hot in the cache); the pass and the restore of w
// after each call are not timed. One process, one intra-op thread unless
// --threads says otherwise; the two alternate call by call; kept/copy is
// the median of the per-round ratios of medians with a distribution-free
// interval (models.ts medianInterval). Both give the same bits (checked).
import { ops } from '../../lib/tensor/ops.js';
import { labels, tensor, toFloatArray } from '../../lib/tensor/tensor.js';
import { alternatingRun, makeBenchModel, median, medianInterval } from './models.js';

const { models, rounds, calls, signed } = alternatingRun({ models: 'tiny,mlp', rounds: 15, calls: 60 });
const values = (n: number) => Float32Array.from({ length: n }, signed);
for (const name of models) {
  const { model, input } = makeBenchModel(name, { dtype: 'float32', seed: 0 });
  const batch = 128;
  const x = tensor(values(batch * input.reduce((a, b) => a * b, 1)), [batch, ...input]);
  const y = labels(Array.from({ length: batch }, (_, i) => (i * 7) % 10));
  const P = model.numParams;
  const u = tensor(values(P), [P]);
  const [g0, saved, w] = [0, 1, 2].map(() => model.zerosLikeParams());
  ops.copy(w, model.params);
  const rho = 0.015;
  const copyShift = () => {
    ops.copy(saved, model.params);
    return ops.shiftDot(model.params, saved, rho, u, g0);
  };
  const keptShift = () => ops.shiftDot(model.params, model.params, rho, u, g0, saved);
  // the same bits and the same slope either way
  model.native.lossAndGrad(x, y, g0, true);
  const results = [copyShift, keptShift].map((f) => {
    const slope = f();
    const out = { slope, params: Array.from(toFloatArray(model.params)), saved: Array.from(toFloatArray(saved)) };
    ops.copy(model.params, w);
    return out;
  });
  if (JSON.stringify(results[0]) !== JSON.stringify(results[1])) throw new Error(`${name}: the kept shift differs from copy+shift`);
  const timed = (f: () => number) => {
    model.native.lossAndGrad(x, y, g0, true);
    const t0 = process.hrtime.bigint();
    f();
    const dt = Number(process.hrtime.bigint() - t0) / 1e3;
    ops.copy(model.params, w);
    return dt;
  };
  for (let i = 0; i < 5; i++) [copyShift, keptShift].forEach(timed);
  const ratios: number[] = [];
  const us: number[][] = [[], []];
  for (let r = 0; r < rounds; r++) {
    const t: number[][] = [[], []];
    for (let i = 0; i < calls; i++) [copyShift, keptShift].forEach((f, k) => t[k].push(timed(f)));
    us[0].push(median(t[0]));
    us[1].push(median(t[1]));
    ratios.push(median(t[1]) / median(t[0]));
  }
  const m = medianInterval(ratios);
  console.log(
    `${name} (${P} parameters, float32, batch ${batch}): copy+shift ${median(us[0]).toFixed(1)} µs, kept shift ${median(us[1]).toFixed(1)} µs, ` +
      `kept/copy ${m.median.toFixed(3)} [${m.low.toFixed(3)}, ${m.high.toFixed(3)}] (${(100 * m.coverage).toFixed(1)}%)`,
  );
  for (const t of [u, g0, saved, w, x, y]) t.dispose();
  model.dispose();
}
