// npm run official-mnist -- --repo CLONE --pyhessian CLONE --python VENV_PYTHON [--seeds 0,1,2 --epochs 20 --out docs/official-mnist]
// The reference's own cheapest experiment, side by side: its README's MNIST
// Frob-SAM command (SimpleNet: 6 Linear layers with fc2 applied twice and a
// log_softmax output; SGD momentum 0.9, lr 0.001 constant, weight decay 0,
// batch 128, 20 epochs; Frob-SAM rho 0.01, lambda 0.005, 2 samples; ‖H‖_F² each
// epoch as the mean of 100 ‖Hv‖², v gaussian, on the first 1,280 training
// images) and the same with plain SGD, run by the reference code itself
// (scripts/official/run_official.py over a clone of dbahri/universal_sam,
// never copied here) and by this library on the same model (the reference's
// own initial weights, exported to TorchScript per seed), on the same data
// (Fashion-MNIST standing in for MNIST, with the reference's normalisation
// (x − 0.1307)/0.3081) and hyperparameters. One thread each, one run at a
// time. Results go to OUT/results.json after every run (a rerun skips the
// runs it holds), then OUT/../official-mnist.md's table and OUT/chart.html.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { normalize, readIdxDataset, FASHION_MNIST_DIR, type Dataset } from '../lib/data/dataset.js';
import { DataLoader } from '../lib/data/loader.js';
import { hessian } from '../lib/hessian/hessian.js';
import { loadTorchScript } from '../lib/model/model.js';
import { native } from '../lib/native/load.js';
import { Optimizer } from '../lib/optim/optimizer.js';
import { evaluate } from '../lib/train/evaluate.js';
import { lineChart, type Series } from '../lib/report/charts.js';
import { htmlPage } from '../lib/report/page.js';
import { pairedTTest } from '../lib/experiments/statistics.js';
import { option } from './bench/args.js';

const repo = option('--repo', process.env.USAM_OFFICIAL_REPO ?? '');
const pyhessian = option('--pyhessian', process.env.USAM_PYHESSIAN ?? '');
const python = option('--python', process.env.PYTHON ?? 'python3');
const seeds = option('--seeds', '0,1,2').split(',').map(Number);
const epochs = Number(option('--epochs', '20'));
const out = resolve(option('--out', 'docs/official-mnist'));
const dataDir = option('--data-dir', FASHION_MNIST_DIR);
if (!repo || !pyhessian) {
  console.error('official-mnist: give --repo (a clone of dbahri/universal_sam) and --pyhessian (a clone of amirgholami/PyHessian); skipped');
  process.exit(2);
}

const ARMS = {
  sgd: { official: ['--opt', 'sgd'], sharpness: undefined },
  'frob-sam': {
    official: ['--opt', 'frosam-sgd', '--isam_rho', '0.01', '--isam_lam', '0.005', '--isam_n_samples', '2'],
    sharpness: { kind: 'frob-sam', rho: 0.01, lambda: 0.005, samples: 2 } as const,
  },
} as const;
type Arm = keyof typeof ARMS;
const common = (seed: number) => ['--model', 'simple_mnist', '--dataset', 'MNIST_base', '--lr', '0.001', '--lr_scheduler', 'Constant', '--epochs', String(epochs), '--seed', String(seed), '--weight_decay', '0', '--hessian_n_samples', '1280', '--hessian_every_n_epochs', '1', '--hessian_calc_frobenius', '--num_workers', '0'];

interface EpochRow { epoch: number; top1: number; trainLoss: number; frobeniusSquared: number; frobeniusStandardError: number; seconds?: number }
interface Run { implementation: 'official' | 'ours'; arm: Arm; seed: number; epochs: EpochRow[]; seconds: number }

mkdirSync(out, { recursive: true });
const resultsFile = join(out, 'results.json');
const saved: { runs: Run[]; meta?: Record<string, unknown> } = existsSync(resultsFile) ? JSON.parse(readFileSync(resultsFile, 'utf8')) : { runs: [] };
const has = (i: string, arm: Arm, seed: number) => saved.runs.some((r) => r.implementation === i && r.arm === arm && r.seed === seed && r.epochs.length === epochs);
const save = () => writeFileSync(resultsFile, JSON.stringify(saved, null, 1) + '\n');
const work = mkdtempSync(join(tmpdir(), 'usam-official-mnist-'));

function py(args: string[]): void {
  const r = spawnSync(python, [resolve('scripts/official/run_official.py'), '--repo', repo, '--pyhessian', pyhessian, ...args], { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: '1' }, maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`run_official.py ${args.join(' ')} failed:\n${r.stderr.slice(-3000)}`);
}

// the reference's data, normalised as its MNIST_base does
const fixed = { mean: [0.1307], std: [0.3081] };
const train = normalize(readIdxDataset(dataDir, 'train', 'fashion-mnist'), fixed);
const test = normalize(readIdxDataset(dataDir, 'test', 'fashion-mnist'), fixed);
const first = (d: Dataset, n: number): Dataset => ({ ...d, x: d.x.subarray(0, n * 784), y: d.y.subarray(0, n) });
native().setThreads(1);

function ours(arm: Arm, seed: number, init: string): Run {
  const t0 = Date.now();
  const model = loadTorchScript(init, { dtype: 'float32', seed });
  const loader = new DataLoader(train, { batchSize: 128, shuffle: true, seed, dropLast: true }); // the reference drops the last batch
  const probeLoader = new DataLoader(first(train, 1280), { batchSize: 128 });
  const probeBatches = Array.from({ length: probeLoader.length }, (_, i) => probeLoader.batch(0, i));
  const opt = new Optimizer(model, { base: { kind: 'sgd', lr: 0.001, momentum: 0.9, weightDecay: 0 }, sharpness: ARMS[arm].sharpness, seed });
  const rows: EpochRow[] = [];
  for (let e = 0; e < epochs; e++) {
    const te = Date.now();
    let loss = 0, steps = 0;
    model.train(true);
    for (const b of loader.epoch(e)) {
      loss += opt.step(b.x, b.y).loss;
      steps++;
    }
    model.train(false);
    const ev = evaluate(model, test);
    const h = hessian(model, probeBatches, { mode: 'eval', cache: false });
    const f = h.frobeniusSquared({ samples: 100, seed: 1000 * seed + e });
    h.dispose();
    rows.push({ epoch: e + 1, top1: ev.top1, trainLoss: loss / steps, frobeniusSquared: f.estimate, frobeniusStandardError: f.standardError, seconds: (Date.now() - te) / 1000 });
    console.error(`ours ${arm} seed ${seed} epoch ${e + 1}: top-1 ${(100 * ev.top1).toFixed(2)}%, train loss ${(loss / steps).toFixed(4)}, ‖H‖_F² ${f.estimate.toPrecision(4)}`);
  }
  opt.dispose();
  model.dispose();
  return { implementation: 'ours', arm, seed, epochs: rows, seconds: (Date.now() - t0) / 1000 };
}

for (const seed of seeds)
  for (const arm of Object.keys(ARMS) as Arm[]) {
    const args = [...common(seed), ...ARMS[arm].official];
    if (!has('official', arm, seed)) {
      const t0 = Date.now();
      const file = join(work, `official-${arm}-${seed}.json`);
      py(['--data', dataDir, '--out', file, '--', ...args]);
      const r = JSON.parse(readFileSync(file, 'utf8')) as { torch: string; epochs: EpochRow[] };
      saved.runs.push({ implementation: 'official', arm, seed, epochs: r.epochs, seconds: (Date.now() - t0) / 1000 });
      saved.meta = { ...saved.meta, officialTorch: r.torch };
      save();
      console.error(`official ${arm} seed ${seed}: ${((Date.now() - t0) / 1000).toFixed(0)} s, top-1 ${(100 * r.epochs.at(-1)!.top1).toFixed(2)}%`);
    }
    if (!has('ours', arm, seed)) {
      const init = join(work, `init-${seed}.pt`);
      if (!existsSync(init)) py(['--export-init', init, '--', ...args]);
      saved.runs.push(ours(arm, seed, init));
      save();
    }
  }

// ---- the table, the chart
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const sd = (xs: number[]) => Math.sqrt(xs.reduce((a, b) => a + (b - mean(xs)) ** 2, 0) / Math.max(xs.length - 1, 1));
const pick = (i: string, arm: Arm) => saved.runs.filter((r) => r.implementation === i && r.arm === arm && seeds.includes(r.seed));
const cell = (runs: Run[], e: number, f: (r: EpochRow) => number, digits: number) => {
  const xs = runs.map((r) => f(r.epochs[e - 1]));
  return `${mean(xs).toFixed(digits)} ± ${sd(xs).toFixed(digits)}`;
};
const lines = [`epoch | arm | official top-1 (%) | ours top-1 (%) | official train loss | ours train loss | official ‖H‖_F² | ours ‖H‖_F²`, '---|---|---|---|---|---|---|---'];
for (const e of [1, 2, 5, 10, 15, 20].filter((e) => e <= epochs))
  for (const arm of Object.keys(ARMS) as Arm[]) {
    const [o, u] = [pick('official', arm), pick('ours', arm)];
    lines.push(`${e} | ${arm} | ${cell(o, e, (r) => 100 * r.top1, 2)} | ${cell(u, e, (r) => 100 * r.top1, 2)} | ${cell(o, e, (r) => r.trainLoss, 4)} | ${cell(u, e, (r) => r.trainLoss, 4)} | ${cell(o, e, (r) => r.frobeniusSquared, 2)} | ${cell(u, e, (r) => r.frobeniusSquared, 2)}`);
  }
// agreement at the last epoch: ours − official, paired by seed (the same seed gives both the same initial weights)
lines.push('', `epoch ${epochs}, ours − official paired by seed | arm | mean Δ [95% CI] | p (paired t)`, '---|---|---|---');
for (const [name, f, scale] of [['test top-1 (pt)', (r: EpochRow) => r.top1, 100], ['train loss', (r: EpochRow) => r.trainLoss, 1], ['‖H‖_F²', (r: EpochRow) => r.frobeniusSquared, 1]] as const)
  for (const arm of Object.keys(ARMS) as Arm[]) {
    const bySeed = (i: string) => seeds.map((sd) => saved.runs.find((r) => r.implementation === i && r.arm === arm && r.seed === sd)).map((r) => (r ? scale * f(r.epochs[epochs - 1]) : NaN));
    const t = pairedTTest(bySeed('ours'), bySeed('official'));
    lines.push(`${name} | ${arm} | ${t.mean.toPrecision(3)} [${t.low.toPrecision(3)}, ${t.high.toPrecision(3)}] | ${t.p.toFixed(3)}`);
  }
console.log(lines.join('\n'));
const style = (i: string, arm: Arm) => (arm === 'sgd' ? 0 : 1) + (i === 'official' ? 0 : 2);
const chart = (title: string, f: (r: EpochRow) => number, subtitle: string) =>
  lineChart({
    title,
    subtitle,
    xLabel: 'epoch',
    xEpochs: epochs,
    width: 560,
    series: (['official', 'ours'] as const).flatMap((i) =>
      (Object.keys(ARMS) as Arm[]).map((arm): Series => {
        const runs = pick(i, arm);
        return { name: `${i} ${arm} (${runs.length} seeds)`, style: style(i, arm), points: Array.from({ length: epochs }, (_, k) => [k + 1, mean(runs.map((r) => f(r.epochs[k])))] as [number, number]) };
      }),
    ),
  });
const charts = [
  ['top1', chart('test top-1', (r) => r.top1, 'mean over seeds')],
  ['train-loss', chart('training loss', (r) => r.trainLoss, 'mean of L(w) over the epoch’s steps')],
  ['frobenius', chart('‖H‖_F²', (r) => r.frobeniusSquared, 'mean of 100 ‖Hv‖², v gaussian, first 1,280 training images')],
] as const;
// each chart as an SVG file (docs/official-mnist.md shows them) and all on one page
for (const [name, svg] of charts) writeFileSync(join(out, `${name}.svg`), svg + '\n');
writeFileSync(join(out, 'chart.html'), htmlPage('The reference’s MNIST Frob-SAM experiment, official code and universal-sam', charts.map(([, svg]) => svg).join('\n')));
