// npm run readings [-- --steps 40 --epochs 3 --out FILE.json]
// What each rule's per-step reading (StepResult.sharpness) is worth on the
// default MLP at the shipped training defaults: the trained weights of
// `usam train`'s defaults (3 epochs of Frob-SAM on Fashion-MNIST), one fixed
// batch of the first 128 training images, and K steps of each rule whose
// update is undone after each step (the weights stay put; the directions are
// fresh every step). The readings are set beside the probe of the same
// measure on the same batch (exact quadratic forms by HVPs, many samples),
// in float32 as users train, and then for the finite-difference rules in
// float64 over a range of rho, to show where the reading meets the probe.
// Prints a markdown table (docs/readings.md quotes it) and writes the JSON.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DataLoader } from '../lib/data/loader.js';
import { hessian, type SharpnessProbe } from '../lib/hessian/hessian.js';
import { Model } from '../lib/model/model.js';
import { ops } from '../lib/tensor/ops.js';
import { Optimizer } from '../lib/optim/optimizer.js';
import { readingOf } from '../lib/optim/rules/index.js';
import { datasetsOf, modelSpecOf, parseTrainConfig, sharpnessOf, type TrainConfigInput } from '../lib/train/config.js';
import { Trainer } from '../lib/train/trainer.js';
import { option } from './bench/args.js';

const K = Number(option('--steps', '40'));
const epochs = Number(option('--epochs', '3'));
const outFile = option('--out', '');
const probeSamples = Number(option('--probe-samples', '400'));

interface Arm {
  optimizer: 'sam' | 'asam' | 'trace-sam' | 'det-sam' | 'frob-sam';
  estimator: 'finite-difference' | 'exact';
}
const arms: Arm[] = [
  { optimizer: 'sam', estimator: 'finite-difference' },
  { optimizer: 'asam', estimator: 'finite-difference' },
  { optimizer: 'trace-sam', estimator: 'finite-difference' },
  { optimizer: 'trace-sam', estimator: 'exact' },
  { optimizer: 'det-sam', estimator: 'finite-difference' },
  { optimizer: 'det-sam', estimator: 'exact' },
  { optimizer: 'frob-sam', estimator: 'finite-difference' },
  { optimizer: 'frob-sam', estimator: 'exact' },
];

function summary(xs: number[]) {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  const mean = s.reduce((a, b) => a + b, 0) / n;
  const sd = Math.sqrt(s.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1));
  const q = (p: number) => s[Math.min(n - 1, Math.max(0, Math.round(p * (n - 1))))];
  return { n, mean, standardError: sd / Math.sqrt(n), median: q(0.5), p10: q(0.1), p90: q(0.9), min: s[0], max: s[n - 1] };
}

/** The probe of the measure a rule's reading is named for, on the same batch (exact quadratic forms). */
function probeOf(arm: Arm, halfCube: number | undefined): SharpnessProbe | undefined {
  if (arm.optimizer === 'trace-sam') return { measure: 'trace', samples: probeSamples, seed: 11 };
  if (arm.optimizer === 'frob-sam') return { measure: 'frobenius', samples: probeSamples, seed: 12 };
  if (arm.optimizer === 'det-sam') return { measure: 'det', halfCube, samples: probeSamples, seed: 13 };
  return undefined;
}

/** K steps' readings at fixed weights: each step's update is undone. */
function readings(model: Model, batch: { x: ReturnType<typeof model.zerosLikeParams>; y: ReturnType<typeof model.zerosLikeParams> }, sharpness: ReturnType<typeof sharpnessOf>, seed: number): number[] {
  const opt = new Optimizer(model, { base: { kind: 'sgd', lr: 1e-3 }, sharpness, seed });
  const w = model.params.clone();
  const out: number[] = [];
  for (let k = 0; k < K; k++) {
    out.push(opt.step(batch.x, batch.y).sharpness);
    ops.copy(model.params, w);
  }
  opt.dispose();
  w.dispose();
  return out;
}

const base: TrainConfigInput = { epochs, seed: 0, probeEvery: 0, stepLogEvery: 0 };
const dir = mkdtempSync(join(tmpdir(), 'usam-readings-'));
const t0 = Date.now();
const trainer = new Trainer({ ...base, out: dir });
trainer.run();
const config = parseTrainConfig({ ...base, out: dir });
const data = datasetsOf(config);
const loader = new DataLoader(data.train, { batchSize: 128, shuffle: false });
const batch = loader.batch(0, 0);
console.error(`trained ${epochs} epochs (${((Date.now() - t0) / 1000).toFixed(0)} s); readings on the first 128 training images, ${K} steps each`);

const results: Record<string, unknown>[] = [];
// ‖g0‖² on the batch: the size of the first-order term the readings take out
const g = trainer.model.lossAndGrad(batch.x, batch.y);
const gradNormSquared = ops.dot(g.grad, g.grad);
g.grad.dispose();
console.error(`‖g0‖² on the batch: ${gradNormSquared.toPrecision(4)}`);
for (const dtype of ['float32', 'float64'] as const) {
  const model = new Model(modelSpecOf(config, data.train), { dtype });
  model.setParams(Float64Array.from(trainer.model.getParams()));
  const x = dtype === 'float64' ? batch.x.to('cpu', dtype) : batch.x;
  const b = { x, y: batch.y };
  const h = hessian(model, b, { mode: 'eval' });
  for (const arm of arms) {
    const cfg = parseTrainConfig({ ...base, optimizer: arm.optimizer, estimator: arm.estimator, out: dir });
    const defaults = sharpnessOf(cfg)! as { rho: number; halfCube?: number };
    // float32: the shipped defaults; float64: a range of rho for the finite-difference rules
    const rhos = dtype === 'float32' ? [defaults.rho] : arm.estimator === 'exact' || arm.optimizer === 'sam' || arm.optimizer === 'asam' ? [] : [defaults.rho, defaults.rho / 10, defaults.rho / 100];
    const probeConfig = probeOf(arm, defaults.halfCube);
    const probe = probeConfig ? h.sharpness(probeConfig) : undefined;
    for (const rho of rhos) {
      const s = { ...defaults, rho };
      const r = summary(readings(model, b, s as never, 7));
      const reading = readingOf(arm.optimizer, arm.estimator);
      const row = { dtype, optimizer: arm.optimizer, estimator: arm.estimator, rho, label: reading?.name, reading: r, probe: probe ? { estimate: probe.estimate, standardError: probe.standardError } : null };
      results.push(row);
      console.error(JSON.stringify(row));
    }
  }
  if (x !== batch.x) x.dispose();
  h.dispose?.();
  model.dispose();
}
rmSync(dir, { recursive: true, force: true });

const fmt = (v: number) => (Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-2 && v !== 0) ? v.toExponential(2) : v.toPrecision(4));
console.log(`‖g0‖² on the batch: ${gradNormSquared.toPrecision(4)}\n`);
console.log('dtype | rule | estimator | ρ | reading: mean ± se | median | 10–90% | min – max | probe of the measure ± se | mean / probe');
console.log('---|---|---|---|---|---|---|---|---|---');
for (const r of results as { dtype: string; optimizer: string; estimator: string; rho: number; reading: ReturnType<typeof summary>; probe: { estimate: number; standardError?: number } | null }[]) {
  const p = r.probe;
  console.log(
    `${r.dtype} | ${r.optimizer} | ${r.estimator} | ${r.rho} | ${fmt(r.reading.mean)} ± ${fmt(r.reading.standardError)} | ${fmt(r.reading.median)} | ${fmt(r.reading.p10)} – ${fmt(r.reading.p90)} | ${fmt(r.reading.min)} – ${fmt(r.reading.max)} | ${p ? `${fmt(p.estimate)} ± ${fmt(p.standardError ?? NaN)}` : '—'} | ${p ? (r.reading.mean / p.estimate).toFixed(3) : '—'}`,
  );
}
if (outFile) writeFileSync(outFile, JSON.stringify({ steps: K, epochs, probeSamples, gradNormSquared, results }, null, 1) + '\n');
