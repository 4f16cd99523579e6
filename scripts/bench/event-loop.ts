// npm run bench:event-loop
// Does the event loop keep running during long calls? On the benchmark CNN
// (batch 128, Fashion-MNIST), five SAM steps and one Lanczos probe (top
// eigenvalue, eval mode) run twice in one process: synchronously, then
// awaited (stepAsync, eigenvaluesAsync). A 5 ms setInterval records the
// largest gap between its ticks beyond 5 ms (the lag a server would see) and
// how often it fired. Target for the awaited run: max lag < 40 ms. The
// awaited results must equal the synchronous ones exactly (checked here too).
import { fashionMnist } from '../../lib/data/dataset.js';
import { DataLoader } from '../../lib/data/loader.js';
import { hessian } from '../../lib/hessian/hessian.js';
import { Model } from '../../lib/model/model.js';
import { Optimizer } from '../../lib/optim/optimizer.js';
import { BENCH_MODELS } from './models.js';

const { spec } = BENCH_MODELS.cnn;
const loader = new DataLoader(fashionMnist('train'), { batchSize: 128, shuffle: true, seed: 0 });
const order = loader.order(0);
const batches = [0, 1, 2, 3, 4].map((b) => loader.batch(0, b, order));
const options = { base: { kind: 'sgd' as const, lr: 0.05, momentum: 0.9 }, sharpness: { kind: 'sam' as const, rho: 0.05 } };

async function measured<T>(work: () => Promise<T> | T) {
  let last = performance.now();
  let maxGap = 0;
  let ticks = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    maxGap = Math.max(maxGap, now - last);
    last = now;
    ticks++;
  }, 5);
  const t0 = performance.now();
  const result = await work();
  // the gap up to the end counts too (a run that never yields has one gap)
  await new Promise((r) => setTimeout(r, 0));
  maxGap = Math.max(maxGap, performance.now() - last);
  clearInterval(timer);
  return { result, ms: performance.now() - t0, lag: Math.max(0, maxGap - 5), ticks };
}

function setup() {
  const model = new Model(spec, { seed: 0 });
  return { model, opt: new Optimizer(model, options) };
}

const s = setup();
const sync = await measured(() => {
  const losses = batches.map((b) => s.opt.step(b.x, b.y).loss);
  const top = hessian(s.model, batches[0], { mode: 'eval' }).eigenvalues({ k: 1, tol: 1e-4 }).largest![0];
  return { losses, top };
});
const a = setup();
const awaited = await measured(async () => {
  const losses: number[] = [];
  for (const b of batches) losses.push((await a.opt.stepAsync(b.x, b.y)).loss);
  const top = (await hessian(a.model, batches[0], { mode: 'eval' }).eigenvaluesAsync({ k: 1, tol: 1e-4 })).largest![0];
  return { losses, top };
});
const same = JSON.stringify(sync.result) === JSON.stringify(awaited.result);
console.log('5 SAM steps + 1 Lanczos probe, benchmark CNN, batch 128 | wall ms | max event-loop lag ms | 5 ms ticks');
console.log(`synchronous | ${sync.ms.toFixed(0)} | ${sync.lag.toFixed(1)} | ${sync.ticks}`);
console.log(`awaited (Async twins) | ${awaited.ms.toFixed(0)} | ${awaited.lag.toFixed(1)} | ${awaited.ticks}`);
console.log(`results equal bit for bit: ${same}; target max lag < 40 ms: ${awaited.lag < 40 ? 'met' : 'NOT met'}`);
if (!same) process.exitCode = 1;
