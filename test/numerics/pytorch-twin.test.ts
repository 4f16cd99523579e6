// Our losses, gradients and Hessian-vector products (hand-written
// forward-over-reverse rules per layer, and double backward) against
// PyTorch's own autograd on the same model, batch and vector: PyTorch's
// double backward, and its forward-mode AD through the backward pass
// (torch.func.jvp of torch.func.grad, which PyTorch 2.x supports). Every
// layer type and loss, training and evaluation mode, float64. Needs a Python with PyTorch 2.x (USAM_TEST_TORCH_PYTHONS, as CI
// sets it, or PYTHON); reported as skipped without one.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { toNumbers, maxAbsDiff, randomVector, repoRoot, torchPython } from '../helpers.js';
import { hvpCases } from '../model-cases.js';


interface TwinResult {
  name: string;
  loss: number;
  grad: number[];
  torch: string;
  doubleBackward: number[];
  forwardOverReverse: number[] | null;
  forwardOverReverseError: string | null;
}

const torch = torchPython();
const modes = [true, false];
// dropout in training mode draws its own mask on each side: nothing to compare
const runs = hvpCases.flatMap((c) => modes.map((training) => ({ ...c, training }))).filter((c) => !(c.training && /dropout/.test(c.name)));

describe.skipIf(!torch)(
  `HVPs equal PyTorch ${torch?.version ?? ''}'s autograd on the same model${torch ? '' : ' (skipped: no Python with PyTorch 2.x in USAM_TEST_TORCH_PYTHONS or PYTHON)'}`,
  () => {
    const ours = new Map<string, { loss: number; grad: Float64Array; forwardOverReverse: Float64Array; doubleBackward: Float64Array }>();
    const theirs = new Map<string, TwinResult>();

    beforeAll(() => {
      const cases = runs.map(({ name, make, batch, training }) => {
        const id = `${name} / training=${training}`;
        const model = make();
        const { x, y } = batch();
        if (!training) {
          // move the running statistics off their initial values first
          model.train(true);
          for (let i = 0; i < 2; i++) model.lossAndGrad(x, y, { updateStats: true });
        }
        model.train(training);
        const v = randomVector(model.numParams, 77);
        const state = model.native.getRngState();
        const forwardOverReverse = toNumbers(model.hvp(x, y, v));
        model.native.setRngState(state);
        const doubleBackward = toNumbers(model.hvp(x, y, v, undefined, { method: 'double-backward' }));
        const grad = toNumbers(model.lossAndGrad(x, y, { updateStats: false }).grad);
        ours.set(id, { loss: model.loss(x, y), grad, forwardOverReverse, doubleBackward });
        const flat = toNumbers(model.params);
        const vFlat = toNumbers(v);
        const buffers = model.buffers();
        const bufFlat = toNumbers(buffers.values);
        const labels = y.dtype === 'int64';
        return {
          name: id,
          spec: model.spec,
          training,
          x: { shape: x.shape, data: x.dtype === 'int64' ? Array.from(x.toArray() as BigInt64Array, Number) : Array.from(toNumbers(x)) },
          y: { shape: y.shape, data: labels ? Array.from(y.toArray() as BigInt64Array, Number) : Array.from(toNumbers(y)), labels },
          params: model.paramInfo().map((p) => ({ name: p.name, shape: p.shape, data: Array.from(flat.subarray(p.offset, p.offset + p.numel)) })),
          buffers: buffers.info.map((b) => ({ name: b.name, shape: b.shape, data: Array.from(bufFlat.subarray(b.offset, b.offset + b.numel)) })),
          v: model.paramInfo().map((p) => ({ name: p.name, data: Array.from(vFlat.subarray(p.offset, p.offset + p.numel)) })),
        };
      });
      const r = spawnSync(torch!.python, [join(repoRoot, 'test/pytorch/twin.py')], {
        input: JSON.stringify(cases),
        encoding: 'utf8',
        maxBuffer: 256 << 20,
        env: { ...process.env, OMP_NUM_THREADS: '1' },
      });
      if (r.status !== 0) throw new Error(`test/pytorch/twin.py failed: ${r.stderr}`);
      for (const t of JSON.parse(r.stdout) as TwinResult[]) theirs.set(t.name, t);
    }, 300_000);

    it.each(runs.map((c) => `${c.name} / training=${c.training}`))('%s', (id) => {
      const a = ours.get(id)!;
      const t = theirs.get(id)!;
      expect(Math.abs(a.loss - t.loss)).toBeLessThan(1e-13 * Math.max(1, Math.abs(t.loss)));
      expect(maxAbsDiff(a.grad, t.grad)).toBeLessThan(1e-12 * Math.max(...t.grad.map(Math.abs)));
      const scale = Math.max(...t.doubleBackward.map(Math.abs));
      expect(scale).toBeGreaterThan(1e-3);
      // ours (both methods) against PyTorch's double backward
      expect(maxAbsDiff(a.forwardOverReverse, t.doubleBackward)).toBeLessThan(1e-12 * scale);
      expect(maxAbsDiff(a.doubleBackward, t.doubleBackward)).toBeLessThan(1e-12 * scale);
      // and against PyTorch's forward-mode AD through its backward pass
      expect(t.forwardOverReverseError).toBeNull();
      expect(maxAbsDiff(a.forwardOverReverse, t.forwardOverReverse!)).toBeLessThan(1e-12 * scale);
    });
  },
);
