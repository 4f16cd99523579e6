// CUDA: tensors, models, optimizers and probes on the GPU agree with the CPU
// (float64). Run by scripts/gpu-check.sh on a CUDA build; on a CPU build or a
// machine without a GPU the whole file is reported as skipped (USAM_REQUIRE_CUDA=1
// turns that into a failure).
import { describe, expect, it } from 'vitest';
import { freePort, ProcessGroup } from '../../lib/distributed.js';
import { hessian } from '../../lib/hessian/hessian.js';
import { Model } from '../../lib/model/model.js';
import { cnn, mlp } from '../../lib/model/presets.js';
import { native } from '../../lib/native/load.js';
import { Optimizer } from '../../lib/optim/optimizer.js';
import { generator } from '../../lib/random.js';
import { tensor, zeros } from '../../lib/tensor/tensor.js';
import { maxAbsDiff, randomBatch, rng, toNumbers } from '../helpers.js';

const v = native().versions();
const hasCuda = v.cudaAvailable && v.cudaDeviceCount > 0;

describe('CUDA availability', () => {
  it(`the ${v.flavour} flavour with ${v.cudaDeviceCount} CUDA device(s) accepts or refuses 'cuda' accordingly`, () => {
    if (process.env.USAM_REQUIRE_CUDA) expect(hasCuda).toBe(true);
    expect(JSON.parse(v.build).flavour).toBe(v.flavour);
    if (v.flavour === 'cpu') expect(v.cudaAvailable).toBe(false);
    if (hasCuda) expect(zeros([2], { device: 'cuda' }).device).toBe('cuda:0');
    else {
      const why = v.flavour === 'cpu' ? /is 'cuda' but this build of universal-sam is the CPU flavour/ : /is 'cuda' but no CUDA device is available; use 'cpu'/;
      expect(() => zeros([2], { device: 'cuda' })).toThrow(why);
      expect(() => new Model(mlp({ layers: [3, 2] }), { device: 'cuda' })).toThrow(why);
    }
  });
});

describe.skipIf(!hasCuda)('on CUDA (skipped: no CUDA device in this build or machine)', () => {
  it('tensors round-trip and refuse devices that do not exist', () => {
    const t = tensor(new Float64Array([1, 2, 3]), [3], { device: 'cuda' });
    expect(t.device).toBe('cuda:0');
    expect(Array.from(t.toArray() as Float64Array)).toEqual([1, 2, 3]);
    expect(() => zeros([1], { device: 'cuda:99' })).toThrow(/only \d+ CUDA device/);
    t.copyFrom(new Float32Array([4, 5, 6])); // from host memory, converted, in place on the device
    expect([t.device, Array.from(t.toArray() as Float64Array)]).toEqual(['cuda:0', [4, 5, 6]]);
  });

  for (const [name, spec, shape] of [
    ['MLP', mlp({ layers: [5, 7, 3], activation: 'tanh', batchNorm: true }), [9, 5]],
    ['CNN', cnn({ input: [1, 8, 8], channels: [3], hidden: 5, classes: 3 }), [6, 1, 8, 8]],
  ] as const) {
    it(`${name}: loss, gradient, HVP and third-order gradient equal the CPU (float64)`, () => {
      const cpu = new Model(spec, { dtype: 'float64', seed: 2 });
      const gpu = new Model(spec, { dtype: 'float64', seed: 2, device: 'cuda' });
      gpu.setParams(cpu.getParams());
      const { x, y } = randomBatch([...shape], 3, 4);
      const [xg, yg] = [x.to('cuda'), y.to('cuda')];
      const a = cpu.lossAndGrad(x, y), b = gpu.lossAndGrad(xg, yg);
      expect(Math.abs(a.loss - b.loss)).toBeLessThan(1e-12);
      expect(maxAbsDiff(toNumbers(a.grad), toNumbers(b.grad))).toBeLessThan(1e-12);
      const r = rng(5);
      const vv = Float64Array.from({ length: cpu.numParams }, () => r() - 0.5);
      // forward-over-reverse on the GPU runs BatchNorm's composite tangent
      // rules, on the CPU the fused kernels; double backward is a third way
      for (const training of [true, false]) {
        cpu.train(training);
        gpu.train(training);
        const vg = tensor(vv, undefined, { device: 'cuda' });
        const hv = toNumbers(cpu.hvp(x, y, tensor(vv))), hvg = toNumbers(gpu.hvp(xg, yg, vg));
        expect(maxAbsDiff(hv, hvg), `training=${training}`).toBeLessThan(1e-10);
        expect(maxAbsDiff(hv, toNumbers(gpu.hvp(xg, yg, vg, undefined, { method: 'double-backward' }))), `training=${training}`).toBeLessThan(1e-10);
      }
      cpu.train(true);
      gpu.train(true);
      const q = cpu.quadraticFormGrad(x, y, tensor(vv)), qg = gpu.quadraticFormGrad(xg, yg, tensor(vv, undefined, { device: 'cuda' }));
      expect(Math.abs(q.q - qg.q)).toBeLessThan(1e-10);
      expect(maxAbsDiff(toNumbers(q.grad), toNumbers(qg.grad))).toBeLessThan(1e-9);
    });
  }

  it('every optimizer of the family steps the same on CUDA as on the CPU (same directions)', () => {
    const spec = mlp({ layers: [5, 7, 3], activation: 'gelu' });
    const { x, y } = randomBatch([8, 5], 3, 6);
    for (const kind of ['sam', 'asam', 'trace-sam', 'det-sam', 'frob-sam'] as const) {
      const run = (device: string) => {
        const m = new Model(spec, { dtype: 'float64', seed: 1, device });
        let k = 0;
        const mu = (p: number) => {
          const r = rng(100 + k++);
          return Float64Array.from({ length: p }, () => r() - 0.5);
        };
        const sharpness = kind === 'sam' || kind === 'asam' ? { kind, rho: 0.05 } : { kind, rho: 0.05, lambda: 0.1, samples: 2, mu };
        const o = new Optimizer(m, { base: { kind: 'sgd', lr: 0.1, momentum: 0.9 }, sharpness: sharpness as never });
        for (let i = 0; i < 3; i++) o.step(device === 'cpu' ? x : x.to(device), device === 'cpu' ? y : y.to(device));
        return m.getParams();
      };
      expect(maxAbsDiff(run('cpu'), run('cuda')), kind).toBeLessThan(1e-10);
    }
  });

  it('samplers draw on the GPU; probes agree with the CPU', () => {
    const g = generator(3, 'cuda');
    const u = zeros([1000], { dtype: 'float64', device: 'cuda' });
    g.gaussian(u);
    g.fillAsync(u, 'sphere');
    g.wait();
    expect(native().ops.norm(u)).toBeCloseTo(1, 10);
    const spec = mlp({ layers: [4, 6, 3], activation: 'tanh' });
    const cpu = new Model(spec, { dtype: 'float64', seed: 3 });
    const gpu = new Model(spec, { dtype: 'float64', seed: 3, device: 'cuda' });
    gpu.setParams(cpu.getParams());
    const { x, y } = randomBatch([10, 4], 3, 8);
    const a = hessian(cpu, { x, y }, { mode: 'eval' }).spectrum();
    const b = hessian(gpu, { x: x.to('cuda'), y: y.to('cuda') }, { mode: 'eval' }).spectrum();
    expect(Math.abs(a.trace - b.trace)).toBeLessThan(1e-10);
    expect(Math.abs(a.maxEigenvalue - b.maxEigenvalue)).toBeLessThan(1e-10);
  });
});

describe.skipIf(!hasCuda || !native().versions().distributed.includes('nccl'))('NCCL process group on CUDA (skipped: no CUDA device, or a build without NCCL)', () => {
  it('a one-rank NCCL group all-reduces and broadcasts CUDA tensors and refuses CPU ones', async () => {
    const port = await freePort();
    const g = new ProcessGroup({ rank: 0, worldSize: 1, masterPort: port, timeoutMs: 30_000, backend: 'nccl' });
    expect(g.backend).toBe('nccl');
    const t = tensor(new Float64Array([1, 2, 3]), [3], { dtype: 'float64', device: 'cuda' });
    g.allreduce(t, 'avg');
    g.broadcast(t, 0);
    expect(Array.from(t.toArray() as Float64Array)).toEqual([1, 2, 3]);
    expect(() => g.allreduce(tensor(new Float64Array([1]), [1], { dtype: 'float64' }))).toThrow(/NCCL runs on CUDA tensors/);
    g.dispose();
  });
});
