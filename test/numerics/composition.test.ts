// The composition matrix of #28, one process: every rule × precision
// {fp32, bf16, fp16} × micro-batches {1, 4} × BatchNorm {none, once,
// every-pass} × clipping {off, on}, covered pairwise (every pair of levels of
// any two factors meets in some cell: a greedy covering design, 21+ cells
// instead of 252). Each cell takes one step of a float32 model in its
// precision and compares the update with a float64 reference of the same
// step (the same weights, batches and options; the rules that draw
// directions get the same ones through a user sampler, since the built-in
// generator draws float32 and float64 tensors differently from one seed, so
// the two differ by rounding alone). The bound, relative to the update's norm, is 50 units of roundoff
// of the type the products are taken in (float32 2⁻²⁴, bfloat16 2⁻⁹,
// float16 2⁻¹¹) per gradient pass the step combines (its backward passes per
// micro-batch: SGD 1, SAM and one-sample Trace/Det-SAM 2, Frob-SAM with two
// samples 3), since each pass brings its own rounding into the update. (A
// first version bounded every rule by 50 units; two float32
// finite-difference cells measured 5.4e-6 (Det-SAM) and 3.4e-6 (Frob-SAM)
// against its 3.0e-6, which is what the per-pass count accounts for.)
// Combinations that cannot hold are refused, by name, where the docs say so. Data-parallel cells are in
// test/integration/distributed-train.test.ts (synced ranks against one
// process, with clipping) and distributed.test.ts.
import { describe, expect, it } from 'vitest';
import { type Batch, labels, mlp, Model, Optimizer, type OptimizerOptions, type SharpnessConfigInput, synthetic, tensor, UNIT_ROUNDOFF, UsamError } from '../../lib/index.js';
import { relativeError, rng } from '../helpers.js';

// rho above bf16's finite-difference floor for this small model's large
// weights (‖w‖ ≈ 5.9 over 412–460 parameters; docs/models.md): the estimated
// rounding of the perturbation, √(2/3)·2⁻⁸·‖w‖/(rho·‖u‖), is ≈ 0.03–0.04
const RULES: Record<string, SharpnessConfigInput | undefined> = {
  sgd: undefined,
  sam: { kind: 'sam', rho: 0.05 },
  asam: { kind: 'asam', rho: 0.5 },
  'trace-sam': { kind: 'trace-sam', rho: 0.05, lambda: 1, samples: 1 },
  'det-sam': { kind: 'det-sam', rho: 1, lambda: 1, samples: 1, halfCube: 0.04 },
  'frob-sam': { kind: 'frob-sam', rho: 0.05, lambda: 0.003, samples: 2 },
  exact: { kind: 'trace-sam', rho: 0.015, lambda: 1, samples: 2, estimator: 'exact' },
};
const FACTORS = {
  rule: Object.keys(RULES),
  precision: ['fp32', 'bf16', 'fp16'] as const,
  micro: [1, 4],
  batchNorm: ['none', 'once', 'every-pass'] as const,
  clip: [false, true],
};
type Cell = { rule: string; precision: (typeof FACTORS.precision)[number]; micro: number; batchNorm: (typeof FACTORS.batchNorm)[number]; clip: boolean };

/** A greedy pairwise covering design over FACTORS (deterministic). */
function pairwise(): Cell[] {
  const names = Object.keys(FACTORS) as (keyof typeof FACTORS)[];
  const all: Cell[] = [{} as Cell];
  for (const n of names) all.splice(0, all.length, ...all.flatMap((c) => (FACTORS[n] as readonly unknown[]).map((v) => ({ ...c, [n]: v }) as Cell)));
  const pairsOf = (c: Cell) => names.flatMap((a, i) => names.slice(i + 1).map((b) => `${a}=${String(c[a])}|${b}=${String(c[b])}`));
  const uncovered = new Set(all.flatMap(pairsOf));
  const cells: Cell[] = [];
  while (uncovered.size > 0) {
    let best = all[0], gain = -1;
    for (const c of all) {
      const g = pairsOf(c).filter((p) => uncovered.has(p)).length;
      if (g > gain) (best = c), (gain = g);
    }
    cells.push(best);
    for (const p of pairsOf(best)) uncovered.delete(p);
  }
  return cells;
}

const data = synthetic({ count: 64, shape: [12], classes: 4, seed: 3 });
const batches = (micro: number, dtype: 'float32' | 'float64'): Batch[] => {
  const size = 64 / micro;
  return Array.from({ length: micro }, (_, k) => ({
    x: tensor(dtype === 'float64' ? Float64Array.from(data.x.subarray(k * size * 12, (k + 1) * size * 12)) : data.x.slice(k * size * 12, (k + 1) * size * 12), [size, 12], { dtype }),
    y: labels(data.y.subarray(k * size, (k + 1) * size)),
  }));
};

/**
 * Directions from a seeded stream, uniform on [−a, a]^P (a: the rule's
 * halfCube, Det-SAM's cube; else 1): the same sequence for each optimizer
 * given a fresh sampler.
 */
const sampler = (a = 1) => {
  const r = rng(11);
  return (p: number) => Float64Array.from({ length: p }, () => a * (2 * r() - 1));
};

/** Why a cell is refused, where the docs say it is; undefined where it must run. */
function refusal(c: Cell, fp16: boolean): RegExp | undefined {
  if (c.precision === 'fp16' && !fp16) return /precision 'fp16': LibTorch \d+\.\d+ has no float16/;
  if (c.rule === 'exact' && c.batchNorm === 'every-pass') return /every-pass/;
  if (c.rule === 'exact' && c.precision !== 'fp32') return /run in float32, and the step's precision is/;
  return undefined;
}

let fp16 = true;
try {
  new Model(mlp({ layers: [2, 2] }), { precision: 'fp16' }).dispose();
} catch {
  fp16 = false;
}

describe('the composition matrix (one process), pairwise, against float64', () => {
  const cells = pairwise();

  it('the design covers every pair of levels', () => {
    expect(cells.length).toBeGreaterThanOrEqual(21);
    expect(cells.length).toBeLessThan(40);
  });

  it.each(cells.map((c) => [`${c.rule} ${c.precision} micro-batches ${c.micro} BatchNorm ${c.batchNorm} clip ${c.clip ? 'on' : 'off'}`, c] as const))('%s', (_, c) => {
    const spec = mlp({ layers: [12, 24, 4], batchNorm: c.batchNorm !== 'none' });
    const rule = RULES[c.rule];
    const options = (clip?: number): OptimizerOptions => ({
      base: { kind: 'sgd', lr: 0.1, momentum: 0.9, weightDecay: 5e-4 },
      sharpness: rule && 'samples' in rule ? { ...rule, mu: sampler('halfCube' in rule ? rule.halfCube : 1) } : rule,
      seed: 7,
      ...(c.batchNorm === 'every-pass' ? { batchNorm: 'every-pass' as const } : {}),
      ...(clip !== undefined ? { clipGradNorm: clip } : {}),
    });
    const expected = refusal(c, fp16);
    let model: Model | undefined;
    try {
      model = new Model(spec, { seed: 2, precision: c.precision });
      const reference = new Model(spec, { seed: 2, dtype: 'float64' });
      reference.setParams(model.getParams());
      const w0 = reference.getParams();
      // clipping: a maxNorm a quarter of the reference's gradient norm, so every cell clips
      let clip: number | undefined;
      if (c.clip) {
        const probe = new Model(spec, { seed: 2, dtype: 'float64' });
        probe.setParams(w0);
        clip = new Optimizer(probe, options(1e9)).step(batches(c.micro, 'float64')).gradNorm! / 4;
      }
      const ref = new Optimizer(reference, options(clip)).step(batches(c.micro, 'float64'));
      const r = new Optimizer(model, options(clip)).step(batches(c.micro, 'float32'));
      expect(expected, `expected a refusal matching ${expected}`).toBeUndefined();
      expect(r.skipped).toBeFalsy();
      if (c.clip) expect(r.clipped && ref.clipped).toBe(true);
      // the update's relative error: Δw of the cell against Δw of the reference
      const updateOf = (w: ArrayLike<number>) => Float64Array.from(w, (v, i) => v - w0[i]);
      const passes = ref.counters.backward / c.micro;
      expect(relativeError(updateOf(model.getParams()), updateOf(reference.getParams()))).toBeLessThan(50 * passes * UNIT_ROUNDOFF[c.precision]);
    } catch (e) {
      // only the library's refusal counts (an assertion's message quotes the pattern and would match it)
      if (!expected || !(e instanceof UsamError) || !expected.test(e.message)) throw e;
    }
  });
});
