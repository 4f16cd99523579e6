// npm run bench:soak [-- --steps 20000] [-- --hvps 2000] [-- --epochs 0] [-- --no-trim] [-- --new-batches] [-- --verbose] [-- --gc]
// Memory over long runs: the resident set size (RSS) sampled while
//  - `--steps` Frob-SAM steps (the CLI's defaults: lr 0.05, momentum 0.9,
//    rho 0.005, lambda 0.001, 2 directions) run on the default MLP
//    (784-128-10) over Fashion-MNIST batches of 128, epoch after epoch;
//  - `--hvps` HVPs run on the benchmark CNN (eval mode, one batch of 128);
//  - `--epochs` epochs of the Trainer (`usam train` with its defaults, probes
//    and a checkpoint every epoch) run, sampled after each epoch.
// The step loop refills one pair of batch tensors per batch size
// (BatchTensors), as the Trainer does (--new-batches: a new pair per step,
// to see what that costs), and gives the C heap's free pages back once per epoch
// (native().trimMemory(), as the Trainer does; --no-trim to see without),
// and is sampled then, at each epoch's end; the HVP loop trims every 100
// HVPs and is sampled 20 times.
// Each phase prints its samples and the growth from the end of its warm-up
// (the first 10% of the phase) to its end, and its peak over that warm-up
// value; flat means within 5%.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fashionMnist } from '../../lib/data/dataset.js';
import { BatchTensors, DataLoader } from '../../lib/data/loader.js';
import { hessian } from '../../lib/hessian/hessian.js';
import { Model } from '../../lib/model/model.js';
import { native } from '../../lib/native/load.js';
import { Optimizer } from '../../lib/optim/optimizer.js';
import { tensor, labels } from '../../lib/tensor/tensor.js';
import { modelSpecOf, parseTrainConfig } from '../../lib/train/config.js';
import { Trainer } from '../../lib/train/trainer.js';
import { BENCH_MODELS } from './models.js';
import { flag, option } from './args.js';

const steps = Number(option('--steps', '20000'));
const hvps = Number(option('--hvps', '2000'));
const epochs = Number(option('--epochs', '0'));
// --gc (with node --expose-gc): a full collection every 100 units, to tell
// memory the garbage collector has not reclaimed yet from memory kept
const forceGc = flag('--gc');
const verbose = flag('--verbose');
// --no-trim: leave the C heap's free pages with glibc (the trainer and this loop give them back once per epoch)
const trim = !flag('--no-trim');
const newBatches = flag('--new-batches');
const mb = () => process.memoryUsage.rss() / 2 ** 20;

// Flat: the end within ±5% of the warm-up value and no sample more than 5%
// above it. An RSS that ends more than 5% below is reported as such: memory
// given back (garbage collection of JavaScript-side buffers), not a leak.
function verdict(growth: number, peakRatio: number): string {
  if (growth > 5 || peakRatio > 1.05) return 'GROWS (more than 5% over warm-up)';
  if (growth < -5) return `does not grow: ends ${(-growth).toFixed(1)}% below warm-up, never more than 5% above`;
  return 'flat (within 5%)';
}

/** Runs `count` units of work, sampling RSS `samples` times; prints and returns the verdict. */
function soak(name: string, count: number, work: (i: number) => void, sampleAfter?: (i: number) => boolean) {
  const every = Math.max(1, Math.floor(count / 20));
  const sampled = sampleAfter ?? ((i: number) => (i + 1) % every === 0);
  const rss: { at: number; mb: number }[] = [];
  const started = Date.now();
  const gc = (globalThis as { gc?: () => void }).gc;
  for (let i = 0; i < count; i++) {
    work(i);
    if (gc && forceGc && (i + 1) % 100 === 0) gc();
    if (sampled(i) || i + 1 === count) {
      rss.push({ at: i + 1, mb: mb() });
      if (verbose) {
        const m = process.memoryUsage();
        const n = native().memory();
        const MB = (b = 0) => (b / 2 ** 20).toFixed(0);
        console.log(
          `  ${i + 1}: rss ${MB(m.rss)} | V8 heap ${MB(m.heapUsed)}, external ${MB(m.external)} | C heap in use ${MB(n.mallocInUse)}, free kept ${MB(n.mallocFree)} | live tensors ${n.liveTensors} (${MB(n.liveTensorBytes)}) MB`,
        );
      }
    }
  }
  const warm = rss.find((s) => s.at >= count / 10) ?? rss[0];
  const end = rss[rss.length - 1];
  const peak = Math.max(...rss.filter((s) => s.at >= warm.at).map((s) => s.mb));
  const growth = (end.mb / warm.mb - 1) * 100;
  console.log(`\n${name}: ${count} in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  console.log(rss.map((s) => `${s.at}:${s.mb.toFixed(0)}`).join(' '));
  console.log(
    `RSS after warm-up (${warm.at}) ${warm.mb.toFixed(1)} MB, at the end ${end.mb.toFixed(1)} MB: ${growth >= 0 ? '+' : ''}${growth.toFixed(2)}%, ` +
      `peak ${((peak / warm.mb - 1) * 100).toFixed(2)}% over warm-up — ${verdict(growth, peak / warm.mb)}`,
  );
  return { growth, warm: warm.mb, end: end.mb, peak };
}

console.log(`universal-sam soak, node ${process.version}, RSS at start ${mb().toFixed(1)} MB`);
const train = fashionMnist('train');

if (steps > 0) {
  const model = new Model(modelSpecOf(parseTrainConfig({}), train), { seed: 0 }); // the CLI's default MLP
  const opt = new Optimizer(model, {
    base: { kind: 'sgd', lr: 0.05, momentum: 0.9, weightDecay: 5e-4 },
    sharpness: { kind: 'frob-sam', rho: 0.005, lambda: 0.001, samples: 2 },
    seed: 0,
  });
  const loader = new DataLoader(train, { batchSize: 128, shuffle: true, seed: 0 });
  let order = loader.order(0);
  const kept = new BatchTensors(loader);
  soak(`Frob-SAM steps, MLP 784-128-10, batch 128${newBatches ? ', a new batch tensor pair per step' : ''}`, steps, (i) => {
    const epoch = Math.floor(i / loader.length), b = i % loader.length;
    if (b === 0) order = loader.order(epoch);
    if (newBatches) {
      const { x, y } = loader.batch(epoch, b, order);
      opt.step(x, y);
      x.dispose();
      y.dispose();
    } else {
      const { x, y } = kept.next(epoch, b, order);
      opt.step(x, y);
    }
    if (trim && b === loader.length - 1) native().trimMemory(); // as the Trainer does after each epoch
  }, (i) => i % loader.length === loader.length - 1); // sampled at each epoch's end, as the Trainer's memory would be seen
  kept.dispose();
  model.dispose();
}

if (hvps > 0) {
  const { spec, input } = BENCH_MODELS.cnn;
  const model = new Model(spec, { seed: 0 });
  const size = input.reduce((a, b) => a * b, 1);
  const x = tensor(train.x.slice(0, 128 * size), [128, ...input]);
  const y = labels(Array.from(train.y.subarray(0, 128)));
  const h = hessian(model, { x, y }, { mode: 'eval' });
  const v = model.zerosLikeParams();
  h.operator.random(h.operator.newGenerator(0), 'gaussian', v);
  soak('HVPs, benchmark CNN, eval mode, batch 128', hvps, (i) => {
    h.hvp(v).dispose();
    if (trim && i % 100 === 99) native().trimMemory(); // a long custom loop gives the free pages back now and then
  });
  h.dispose();
  model.dispose();
}

if (epochs > 0) {
  const out = mkdtempSync(join(tmpdir(), 'usam-soak-'));
  try {
    const trainer = new Trainer({ out: join(out, 'run'), epochs, probeEvery: 1 });
    const rss: number[] = [];
    trainer.run({ onEpoch: () => rss.push(mb()) });
    const warm = rss[Math.min(rss.length - 1, Math.max(1, Math.floor(epochs / 10)))];
    const end = rss[rss.length - 1];
    console.log(`\nTrainer (usam train defaults + probes and a checkpoint every epoch), ${epochs} epochs`);
    console.log(rss.map((r, i) => `${i + 1}:${r.toFixed(0)}`).join(' '));
    const warmAt = Math.min(rss.length - 1, Math.max(1, Math.floor(epochs / 10)));
    const peak = Math.max(...rss.slice(warmAt));
    const growth = (end / warm - 1) * 100;
    console.log(
      `RSS after epoch ${warmAt + 1} ${warm.toFixed(1)} MB, at the end ${end.toFixed(1)} MB: ${growth.toFixed(2)}%, ` +
        `${((end - warm) / Math.max(1, rss.length - 1 - warmAt)).toFixed(2)} MB per epoch, peak ${((peak / warm - 1) * 100).toFixed(2)}% over it — ${verdict(growth, peak / warm)}`,
    );
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}
