// Does bf16 train as well as float32? (#28; docs/models.md, Mixed precision.)
// Trains `usam train`'s default run (MLP 784-128-10, Frob-SAM at its
// training defaults, Fashion-MNIST, 3 epochs, cosine schedule) once in fp32
// and once in bf16 per seed, same seed on both sides (same initial weights,
// batch order and directions), and tests the paired difference of the final
// test top-1: mean with its 95% t interval, and the equivalence test for a
// margin of ±0.5 pt (two one-sided t tests at 5%, i.e. the 90% interval lies
// inside the margin). One claim, so no multiplicity correction. The
// hyperparameters are the library's training defaults (chosen on validation
// splits in docs/reproduction.md), not tuned here; the seeds are fresh ones.
// --optimizer sgd gives the control: does bf16 move SGD's accuracy alike?
//   node scripts/run-ts.mjs scripts/precision-accuracy.ts [--seeds 7301-7310] [--optimizer frob-sam] [--out DIR]
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pairedTTest } from '../lib/experiments/statistics.js';

const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const [first, last] = arg('--seeds', '7301-7310').split('-').map(Number);
const seeds = Array.from({ length: last - first + 1 }, (_, i) => first + i);
const out = arg('--out', mkdtempSync(join(tmpdir(), 'usam-precision-')));
const optimizer = arg('--optimizer', 'frob-sam');
const margin = 0.5;

function train(precision: string, seed: number): Promise<number> {
  const dir = join(out, `${precision}-${seed}`);
  const args = ['scripts/usam.mjs', 'train', '--optimizer', optimizer, '--precision', precision, '--seed', String(seed), '--threads', '1', '--quiet', '--out', dir];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'inherit'] });
    child.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`usam ${args.slice(1).join(' ')} exited with ${code}`));
      const lines = readFileSync(join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n');
      resolve(100 * (JSON.parse(lines[lines.length - 1]) as { test: { top1: number } }).test.top1);
    });
  });
}

const fp32: number[] = [];
const bf16: number[] = [];
for (const seed of seeds) {
  // the pair of a seed runs side by side, one thread each (this machine has two cores)
  const [a, b] = await Promise.all([train('fp32', seed), train('bf16', seed)]);
  fp32.push(a);
  bf16.push(b);
  console.log(`seed ${seed}: test top-1 fp32 ${a.toFixed(2)}  bf16 ${b.toFixed(2)}  bf16 − fp32 ${(b - a).toFixed(2)} pt`);
}
const t95 = pairedTTest(bf16, fp32, 0.05);
const t90 = pairedTTest(bf16, fp32, 0.1);
const mean = (v: number[]) => v.reduce((s, x) => s + x, 0) / v.length;
console.log(`\n${optimizer}, ${seeds.length} seeds (${first}–${last}); runs in ${out}`);
console.log(`mean test top-1: fp32 ${mean(fp32).toFixed(2)}, bf16 ${mean(bf16).toFixed(2)}`);
console.log(`bf16 − fp32: ${t95.mean.toFixed(3)} pt, 95% CI [${t95.low.toFixed(3)}, ${t95.high.toFixed(3)}], t(${t95.df}) = ${t95.t.toFixed(2)}, p = ${t95.p.toFixed(3)}`);
const equivalent = t90.low > -margin && t90.high < margin;
console.log(`equivalence within ±${margin} pt (TOST at 5%: 90% CI [${t90.low.toFixed(3)}, ${t90.high.toFixed(3)}]): ${equivalent ? 'shown' : 'not shown'}`);
