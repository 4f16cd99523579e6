// The benchmark models (tiny, MLP, CNN on 28×28 inputs; ResNet-18 on 32×32×3; batch 128),
// shared by the benchmarks and their PyTorch twins (scripts/bench/pytorch_models.py).
import { cnn, mlp, resnet18 } from '../../lib/model/presets.js';
import type { ModelSpecInput } from '../../lib/model/spec.js';

export type BenchModel = 'tiny' | 'mlp' | 'mlp256' | 'cnn' | 'resnet18';

export const BENCH_MODELS: Record<BenchModel, { spec: ModelSpecInput; input: number[] }> = {
  tiny: { spec: mlp({ layers: [784, 32, 10], activation: 'tanh' }), input: [784] },
  mlp: { spec: mlp({ layers: [784, 128, 128, 128, 128, 128, 10], activation: 'relu' }), input: [784] },
  /** the MLP of the PyHessian comparison (bench:hessian) */
  mlp256: { spec: mlp({ layers: [784, 256, 128, 10], activation: 'relu' }), input: [784] },
  cnn: { spec: cnn({ input: [1, 28, 28], channels: [32, 64], hidden: 128, classes: 10 }), input: [1, 28, 28] },
  /** the CIFAR ResNet-18 of the paper (GPU check) */
  resnet18: { spec: resnet18({ classes: 10 }), input: [3, 32, 32] },
};

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
