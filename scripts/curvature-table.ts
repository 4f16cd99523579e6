// npm run curvature-table [-- --run DIR] [-- --epochs 3] [-- --batches 4]
// The Hessian, the GGN and the empirical Fisher of the default MLP of `usam
// train` (784-128-10, ReLU; Frob-SAM on SGD, 3 epochs, as `usam train` with
// no flags, but in float64), trained on Fashion-MNIST into DIR (or DIR's
// checkpoint when it has one), on the first --batches training batches of
// 256: the top 10 eigenvalues of each (Lanczos, with measured residuals),
// the GGN's and the Fisher's smallest, the Hessian's smallest, and the
// principal angles between the top-10 eigenspaces. Prints a markdown table
// (docs/curvature.md) and the JSON.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { DataLoader } from '../lib/data/loader.js';
import { compareSubspaces } from '../lib/hessian/compare.js';
import { fisher, ggn } from '../lib/hessian/gauss-newton.js';
import { hessian } from '../lib/hessian/hessian.js';
import { setThreads, versions } from '../lib/native/runtime.js';
import { loadCheckpoint } from '../lib/train/checkpoint.js';
import { datasetsOf, modelOf, parseTrainConfig } from '../lib/train/config.js';
import { Trainer } from '../lib/train/trainer.js';
import { option } from './bench/args.js';

const run = option('--run', '/tmp/usam-default-mlp-f64');
const epochs = Number(option('--epochs', '3'));
const batchesWanted = Number(option('--batches', '4'));
setThreads(Number(option('--threads', '2')));
const k = 10;

const started = Date.now();
if (!existsSync(join(run, 'checkpoint.safetensors'))) {
  const t = new Trainer({ dataset: 'fashion-mnist', epochs, dtype: 'float64', out: run });
  t.run();
  t.dispose();
}
const loaded = loadCheckpoint(join(run, 'checkpoint.safetensors'));
const config = parseTrainConfig({ ...(loaded.config as object), out: run });
const data = datasetsOf(config);
const model = modelOf(config, data.train);
loaded.restoreModel(model);
const loader = new DataLoader(data.train, { batchSize: 256, dtype: 'float64' });
const batches = Array.from({ length: batchesWanted }, (_, b) => loader.batch(0, b));
const trainedSeconds = (Date.now() - started) / 1000;

const ops = { hessian: hessian(model, batches), ggn: ggn(model, batches), 'empirical Fisher': fisher(model, batches, { kind: 'empirical' }) };
const spectra: Record<string, { top: number[]; topResiduals: number[]; smallest: number; smallestResidual: number; hvps: number; seconds: number }> = {};
for (const [name, op] of Object.entries(ops)) {
  const t = Date.now();
  const r = op.eigenvalues({ k, which: 'both', tol: 1e-6, maxIter: 300 });
  spectra[name] = { top: r.largest, topResiduals: r.largestResiduals, smallest: r.smallest[0], smallestResidual: r.smallestResiduals[0], hvps: r.hvps, seconds: (Date.now() - t) / 1000 };
}
const angles = {
  'hessian–ggn': compareSubspaces(ops.hessian, ops.ggn, { k, tol: 1e-6 }),
  'hessian–empirical Fisher': compareSubspaces(ops.hessian, ops['empirical Fisher'], { k, tol: 1e-6 }),
  'ggn–empirical Fisher': compareSubspaces(ops.ggn, ops['empirical Fisher'], { k, tol: 1e-6 }),
};
const g = (v: number) => v.toPrecision(4);
console.log(`default MLP (${model.numParams} parameters, float64), ${run} after ${loaded.progress.epoch} epochs; ${batches.length} × 256 training images, eval mode; LibTorch ${versions().torch}; ${trainedSeconds.toFixed(0)} s to train/load\n`);
console.log(`| i | λ_i Hessian | λ_i GGN | λ_i empirical Fisher |\n|---|---|---|---|`);
for (let i = 0; i < k; i++) console.log(`| ${i + 1} | ${g(spectra.hessian.top[i])} | ${g(spectra.ggn.top[i])} | ${g(spectra['empirical Fisher'].top[i])} |`);
console.log(`| smallest | ${g(spectra.hessian.smallest)} | ${g(spectra.ggn.smallest)} | ${g(spectra['empirical Fisher'].smallest)} |`);
console.log(`| largest residual ‖Ax − θx‖ of the top 10 | ${Math.max(...spectra.hessian.topResiduals).toExponential(1)} | ${Math.max(...spectra.ggn.topResiduals).toExponential(1)} | ${Math.max(...spectra['empirical Fisher'].topResiduals).toExponential(1)} |`);
console.log(`| products, seconds | ${spectra.hessian.hvps}, ${spectra.hessian.seconds.toFixed(1)} | ${spectra.ggn.hvps}, ${spectra.ggn.seconds.toFixed(1)} | ${spectra['empirical Fisher'].hvps}, ${spectra['empirical Fisher'].seconds.toFixed(1)} |\n`);
console.log(`| top-10 eigenspaces | overlap ‖Q_AᵀQ_B‖_F²/10 | principal angles (degrees) |\n|---|---|---|`);
for (const [pair, c] of Object.entries(angles)) console.log(`| ${pair} | ${c.overlap.toFixed(3)} | ${c.angles.map((a) => ((a * 180) / Math.PI).toFixed(1)).join(', ')} |`);
console.log(JSON.stringify({ params: model.numParams, epochs: loaded.progress.epoch, batches: batches.length, spectra, angles: Object.fromEntries(Object.entries(angles).map(([p, c]) => [p, { overlap: c.overlap, angles: c.angles }])) }));
