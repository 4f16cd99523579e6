// Run directories like `usam train --probe-every 1` writes (config.json,
// metrics.jsonl, steps.jsonl), made up here so the report's tests need no
// training: SGD, SAM, Trace-SAM and Frob-SAM, 3 epochs, with rule estimates
// of the sizes real runs have (0.04, 100, 1e5).
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** `epochs` per run, each optimizer once per seed (folders `sgd-s0`, `sgd-s1`, ... when there are several seeds), optionally without probes in metrics.jsonl. */
export function writeFakeRuns(root: string, o: { epochs?: number; seeds?: number[]; probes?: boolean; optimizers?: string[] } = {}): string[] {
  const { epochs = 3, seeds = [0], probes = true } = o;
  const rules: [string, number, number | null][] = [
    ['sgd', 0, null],
    ['sam', 0.05, 0.04],
    ['trace-sam', 0.002, 150],
    ['frob-sam', 0.005, 1e5],
  ];
  return rules.filter(([optimizer]) => !o.optimizers || o.optimizers.includes(optimizer)).flatMap(([optimizer, rho, estimate], k) => seeds.map((seed) => {
    const dir = join(root, seeds.length > 1 ? `${optimizer}-s${seed}` : optimizer);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ model: 'mlp', dataset: 'fashion-mnist', optimizer, lr: 0.05, epochs, batchSize: 128, seed, out: dir }));
    const metrics = [], steps = [];
    const jitter = 1 + 0.02 * seed;
    for (let epoch = 0; epoch < epochs; epoch++) {
      for (let i = 1; i <= 10; i++) {
        const step = epoch * 100 + 10 * i;
        steps.push({ epoch, step, progress: step / 100, steps: 10, loss: 0.3 + 2 / (1 + step / 10) + 0.01 * k, sharpness: estimate === null ? null : estimate * (1 + 0.3 * Math.sin(step + k)), lr: 0.05, rho });
      }
      const grid = Array.from({ length: 120 }, (_, i) => -1 + (i * (9 + k)) / 119);
      const lmax = 6 + k;
      const values = grid.map((x) => 8 * Math.exp(-(x * x) / 0.02) + 1e-4 * Math.exp(-((x - lmax) ** 2) / 0.05) + 1e-6);
      metrics.push({
        epoch,
        step: 100 * (epoch + 1),
        trainLoss: 0.5 - 0.1 * epoch + 0.01 * k,
        trainAccuracy: 0.82 + 0.03 * epoch,
        sharpness: estimate,
        test: { loss: (0.42 - 0.04 * epoch + 0.005 * k) * jitter, top1: 0.855 + 0.01 * epoch + 0.002 * k, top5: 0.997, count: 10000 },
        lr: 0.05,
        rho,
        seconds: 2 + k,
        stepsPerSecond: 50,
        ...(probes ? { probe: { trace: 80 + 5 * k - epoch, traceStandardError: 4, frobeniusSquared: 250 - 20 * k, maxEigenvalue: lmax, logAbsDet: -6.9e5 + 1e4 * k, logAbsDetDamping: 1e-3, density: { grid, values }, hvps: 200 } } : {}),
      });
    }
    writeFileSync(join(dir, 'metrics.jsonl'), metrics.map((m) => JSON.stringify(m) + '\n').join(''));
    writeFileSync(join(dir, 'steps.jsonl'), steps.map((m) => JSON.stringify(m) + '\n').join(''));
    return dir;
  }));
}

/** A probe.json as `usam probe` writes it (the fields the report reads), after `epoch` epochs. */
export function writeFakeProbeFile(dir: string, epoch: number, k = 0, o: { curvature?: boolean } = {}): void {
  const grid = Array.from({ length: 60 }, (_, i) => -1 + (i * 8) / 59);
  // usam probe --compare ggn --landscape eigenvectors: angles that grow with i, a bowl tilted by k
  const axis = Array.from({ length: 11 }, (_, i) => -1 + i / 5);
  const curvature = o.curvature
    ? {
        comparison: { against: 'ggn', k: 10, angles: axis.slice(1).map((_, i) => 0.05 * (i + 1) * (1 + 0.1 * k)), overlap: 0.8 - 0.05 * k },
        landscape: { alphas: axis, betas: axis, loss: axis.map((b) => axis.map((a) => 0.3 + 3 * a * a + b * b + 0.2 * k * a)), center: 0.3, directions: 'eigenvectors', eigenvalues: [6, 2] },
      }
    : {};
  const values = grid.map((x) => 8 * Math.exp(-(x * x) / 0.02) + 1e-4 * Math.exp(-((x - 6) ** 2) / 0.05) + 1e-6);
  writeFileSync(
    join(dir, 'probe.json'),
    JSON.stringify({ format: 'usam-probe/1', run: dir, checkpoint: { epoch, step: 100 * epoch }, trace: 91.25 + k, traceStandardError: 3, frobeniusSquared: 321.5 + k, frobeniusStandardError: 9, maxEigenvalue: 6.125 + k, minEigenvalue: -0.75, logAbsDet: -654321 + k, logAbsDetDamping: 1e-3, density: { grid, values }, samplesUsed: 1024, loss: 0.3, hvps: 300, options: { split: 'train', batches: 4, batchSize: 256, mode: 'eval' }, ...curvature }),
  );
}
