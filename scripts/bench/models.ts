// The benchmark models (tiny, MLP, CNN on 28×28 inputs; ResNet-18 on 32×32×3; batch 128),
// shared by the benchmarks and their PyTorch twins (scripts/bench/pytorch_models.py).
import { join } from 'node:path';
import { native } from '../../lib/native/load.js';
import { setThreads } from '../../lib/native/runtime.js';
import { option } from './args.js';
import { loadTorchScript, Model, type ModelOptions } from '../../lib/model/model.js';
import { cnn, mlp, resnet18 } from '../../lib/model/presets.js';
import type { ModelSpecInput } from '../../lib/model/spec.js';
import type { SharpnessConfigInput } from '../../lib/optim/rules/index.js';

export type BenchModel = 'tiny' | 'mlp' | 'mlp256' | 'cnn' | 'resnet18';

/**
 * Brought models: PyTorch modules (pytorch_models.py) that both sides run as
 * the same TorchScript file, written by `pytorch_models.py trace` into the
 * folder USAM_BENCH_TS_DIR; ours loads it with loadTorchScript.
 */
export type TorchScriptBenchModel = 'ts-mnist' | 'ts-resnet20' | 'ts-transformer' | 'ts-transformer-10m';
export const TORCHSCRIPT_INPUTS: Record<TorchScriptBenchModel, number[]> = {
  /** the paper's MNIST model: six Linear layers, the second applied twice */
  'ts-mnist': [1, 28, 28],
  /** PyHessian's CIFAR ResNet-20 shape */
  'ts-resnet20': [3, 32, 32],
  /** a transformer encoder block over 16 tokens of width 64 */
  'ts-transformer': [16, 64],
  /** six such blocks of width 384 over 16 tokens: 10.7M parameters (bench:scale) */
  'ts-transformer-10m': [16, 384],
};
export const isTorchScriptBenchModel = (name: string): name is TorchScriptBenchModel => name in TORCHSCRIPT_INPUTS;

/** A benchmark model by name (a brought one from its TorchScript file in USAM_BENCH_TS_DIR), and its input shape. */
export function makeBenchModel(name: string, options: ModelOptions): { model: Model; input: number[] } {
  if (isTorchScriptBenchModel(name)) return { model: loadTorchScript(join(process.env.USAM_BENCH_TS_DIR ?? '', `${name}.pt`), options), input: TORCHSCRIPT_INPUTS[name] };
  const { spec, input } = BENCH_MODELS[name as BenchModel];
  return { model: new Model(spec, options), input };
}

export const BENCH_MODELS: Record<BenchModel, { spec: ModelSpecInput; input: number[] }> = {
  tiny: { spec: mlp({ layers: [784, 32, 10], activation: 'tanh' }), input: [784] },
  mlp: { spec: mlp({ layers: [784, 128, 128, 128, 128, 128, 10], activation: 'relu' }), input: [784] },
  /** the MLP of the PyHessian comparison (bench:hessian) */
  mlp256: { spec: mlp({ layers: [784, 256, 128, 10], activation: 'relu' }), input: [784] },
  cnn: { spec: cnn({ input: [1, 28, 28], channels: [32, 64], hidden: 128, classes: 10 }), input: [1, 28, 28] },
  /** the CIFAR ResNet-18 of the paper (GPU check) */
  resnet18: { spec: resnet18({ classes: 10 }), input: [3, 32, 32] },
};

/** The rules and hyperparameters of the benchmark (pytorch_steps.py uses the same). */
export const BENCH_RULES: Record<string, SharpnessConfigInput | undefined> = {
  sgd: undefined,
  sam: { kind: 'sam', rho: 0.05 },
  'trace-sam': { kind: 'trace-sam', rho: 0.01, lambda: 1, samples: 1 },
  'det-sam': { kind: 'det-sam', rho: 1, lambda: 0.01, samples: 1, halfCube: 0.05 },
  'frob-sam': { kind: 'frob-sam', rho: 0.005, lambda: 0.001, samples: 2 },
};

/** Forward-backward passes of each benchmark rule's step (n + 1): the floor's divisor. */
export const BENCH_PASSES: Record<string, number> = { sgd: 1, sam: 2, 'trace-sam': 2, 'det-sam': 2, 'frob-sam': 3 };

/**
 * The median of xs and a distribution-free interval for it from two order
 * statistics: [x_(k), x_(n+1−k)] with the largest k whose coverage
 * 1 − 2·P(Binomial(n, ½) < k) is at least 95% (k = 1, min to max, where n is
 * too small for 95%; `coverage` says what it is). Used on per-round ratios:
 * the rounds of an alternating run are its independent repeats, and this
 * host's speed drifts by tens of percent between them.
 */
export function medianInterval(xs: number[]): { median: number; low: number; high: number; coverage: number } {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  // cdf[j] = P(B ≤ j), B ~ Binomial(n, 1/2)
  const cdf: number[] = [];
  for (let j = 0, c = 1, acc = 0; j <= n; j++, c = (c * (n - j + 1)) / j) cdf.push((acc += c / 2 ** n));
  // [x_(k), x_(n+1−k)] covers the median with probability 1 − 2·P(B ≤ k − 1)
  let k = 1;
  while (k + 1 <= (n + 1) / 2 && 1 - 2 * cdf[k] >= 0.95) k++;
  return { median: median(s), low: s[k - 1], high: s[n - k], coverage: 1 - 2 * cdf[k - 1] };
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Median times (ms) of fns run alternately, so that drift of the machine hits all alike. */
export function alternate(fns: (() => void)[], repeats: number, warmup = 3): number[] {
  const times: number[][] = fns.map(() => []);
  for (let r = 0; r < warmup + repeats; r++)
    fns.forEach((fn, i) => {
      const t0 = process.hrtime.bigint();
      fn();
      if (r >= warmup) times[i].push(Number(process.hrtime.bigint() - t0) / 1e6);
    });
  return times.map(median);
}

/**
 * An alternating micro-benchmark's common options (--models, --rounds,
 * --calls, --threads: one intra-op thread unless given), set and announced,
 * and its inputs' source: uniform draws in (−1, 1) from a fixed-seed
 * Lehmer generator, the same on every run.
 */
export function alternatingRun(defaults: { models: string; rounds: number; calls: number }) {
  const models = option('--models', defaults.models).split(',');
  const rounds = Number(option('--rounds', String(defaults.rounds)));
  const calls = Number(option('--calls', String(defaults.calls)));
  setThreads(Number(option('--threads', '1')));
  console.log(`LibTorch ${native().versions().torch}, ${native().versions().threads} intra-op thread(s); ${rounds} rounds × ${calls} calls of each`);
  let s = 1;
  const signed = () => 2 * ((s = (s * 16807) % 2147483647) / 2147483647) - 1;
  return { models, rounds, calls, signed };
}
