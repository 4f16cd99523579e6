// Our losses, gradients and Hessian-vector products (hand-written
// forward-over-reverse rules per layer, and double backward) against
// PyTorch's own autograd on the same model, batch and vector: PyTorch's
// double backward, and its forward-mode AD through the backward pass
// (torch.func.jvp of torch.func.grad, which PyTorch 2.x supports). Every
// layer type and loss, training and evaluation mode, float64. Needs a Python with PyTorch 2.x (USAM_TEST_TORCH_PYTHONS, as CI
// sets it, or PYTHON); reported as skipped without one.
import { beforeAll, describe, expect, it } from 'vitest';
import { toNumbers, maxAbsDiff, randomVector, torchPython } from '../helpers.js';
import { hvpCases, preparedModel, runPythonTwin, twinInput } from '../model-cases.js';


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
        const { model, x, y } = preparedModel({ name, make, batch }, training);
        const v = randomVector(model.numParams, 77);
        const state = model.native.getRngState();
        const forwardOverReverse = toNumbers(model.hvp(x, y, v));
        model.native.setRngState(state);
        const doubleBackward = toNumbers(model.hvp(x, y, v, undefined, { method: 'double-backward' }));
        const grad = toNumbers(model.lossAndGrad(x, y, { updateStats: false }).grad);
        ours.set(id, { loss: model.loss(x, y), grad, forwardOverReverse, doubleBackward });
        return twinInput(id, model, { x, y }, v, training);
      });
      for (const t of runPythonTwin<TwinResult>(torch!.python, 'twin.py', cases)) theirs.set(t.name, t);
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
