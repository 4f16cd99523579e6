// The Gauss-Newton-type operators (ggn(), fisher()) against their
// definitions built with torch.func on the same model, batch and vector
// (test/pytorch/gauss_newton_twin.py): every layer type and loss of the HVP
// cases, training and evaluation mode, float64, 1e-10 relative. The GGN of a
// small model also as a whole matrix, against Jᵀ H_ℓ J from PyTorch's
// Jacobian and loss Hessian. Needs a Python with PyTorch 2.x
// (USAM_TEST_TORCH_PYTHONS, as CI sets it, or PYTHON); skipped without one.
import { beforeAll, describe, expect, it } from 'vitest';
import { fisher, ggn } from '../../lib/hessian/gauss-newton.js';
import type { Curvature } from '../../lib/hessian/hessian.js';
import type { Tensor } from '../../lib/tensor/tensor.js';
import { maxAbsDiff, randomVector, toNumbers, torchPython } from '../helpers.js';
import { hvpCases, preparedModel, runPythonTwin, twinInput } from '../model-cases.js';

const torch = torchPython();
const kinds = ['ggn', 'empirical-fisher', 'mc-fisher'] as const;
type Kind = (typeof kinds)[number];
// dropout in training mode draws its own mask on each side: nothing to compare
// the Monte-Carlo Fisher needs a likelihood: not NLL or Huber (refused: gauss-newton.test.ts)
const likelihood = (loss: string) => loss === 'cross-entropy' || loss === 'mse' || loss === 'bce-with-logits';
const runs = hvpCases
  .map((c) => ({ ...c, loss: c.make().spec.loss.type }))
  .flatMap((c) => [true, false].map((training) => ({ ...c, training })))
  .filter((c) => !(c.training && /dropout/.test(c.name)))
  .flatMap((c) => kinds.map((kind) => ({ ...c, kind })))
  .filter((c) => c.kind !== 'mc-fisher' || likelihood(c.loss));

function operatorOf(kind: Kind, ...args: Parameters<typeof ggn>): Curvature {
  if (kind === 'ggn') return ggn(...args);
  return fisher(args[0], args[1], { ...args[2], ...(kind === 'mc-fisher' ? { kind: 'mc', samples: 3, seed: 11 } : { kind: 'empirical' }) });
}

interface Result {
  name: string;
  product: number[];
  full: number[] | null;
}

const targetsOf = (t: Tensor) => ({
  shape: t.shape,
  data: t.dtype === 'int64' ? Array.from(t.toArray() as BigInt64Array, Number) : Array.from(toNumbers(t)),
  labels: t.dtype === 'int64',
});

describe.skipIf(!torch)(
  `GGN and Fisher products equal their torch.func definitions (PyTorch ${torch?.version ?? ''})${torch ? '' : ' (skipped: no Python with PyTorch 2.x in USAM_TEST_TORCH_PYTHONS or PYTHON)'}`,
  () => {
    const ours = new Map<string, Float64Array>();
    const theirs = new Map<string, Result>();
    const ids: string[] = [];
    let fullOurs: Float64Array | undefined;

    beforeAll(() => {
      const cases = [];
      for (const c of runs) {
        const { model, x, y } = preparedModel(c, c.training);
        const id = `${c.name} / training=${c.training} / ${c.kind}`;
        const v = randomVector(model.numParams, 78);
        const op = operatorOf(c.kind, model, { x, y }, { mode: c.training ? 'train' : 'eval' });
        ours.set(id, toNumbers(op.hvp(v)));
        ids.push(id);
        cases.push({
          ...twinInput(id, model, { x, y }, v, c.training),
          kind: c.kind,
          ...(c.kind === 'mc-fisher' ? { targets: op.operator.batches.map((b) => targetsOf(b.y)) } : {}),
        });
        op.dispose();
      }
      // the whole GGN of the smallest model with two layers, by P products
      const small = hvpCases.find((c) => /GELU/.test(c.name))!;
      const { model, x, y } = preparedModel(small, false);
      const g = ggn(model, { x, y });
      fullOurs = g.full().matrix;
      g.dispose();
      cases.push({ ...twinInput('full', model, { x, y }, randomVector(model.numParams, 79), false), kind: 'ggn', full: true });
      for (const t of runPythonTwin<Result>(torch!.python, 'gauss_newton_twin.py', cases)) theirs.set(t.name, t);
    }, 600_000);

    it('every loss and both modes are covered, each kind on many models (the Monte-Carlo Fisher where the loss is a likelihood)', () => {
      expect(ids.length).toBe(runs.length);
      expect(new Set(runs.map((c) => c.loss))).toEqual(new Set(['cross-entropy', 'nll', 'mse', 'bce-with-logits', 'huber']));
      for (const kind of kinds) expect(ids.filter((id) => id.endsWith(kind)).length).toBeGreaterThan(10);
    });

    it.each(runs.map((c) => `${c.name} / training=${c.training} / ${c.kind}`))('%s', (id) => {
      const a = ours.get(id)!;
      const t = theirs.get(id)!.product;
      const scale = Math.max(...t.map(Math.abs));
      if (/^NLL/.test(id) && id.endsWith('/ ggn')) {
        // NLL is linear in the outputs: ∂²L/∂z² = 0, so the GGN is exactly zero on both sides
        expect(scale).toBe(0);
        expect(Math.max(...Array.from(a, Math.abs))).toBe(0);
        return;
      }
      expect(scale).toBeGreaterThan(1e-6);
      expect(maxAbsDiff(a, t)).toBeLessThan(1e-10 * scale);
    });

    it('the full GGN of a small model equals Jᵀ H_ℓ J from PyTorch’s Jacobian and loss Hessian', () => {
      const t = theirs.get('full')!.full!;
      expect(fullOurs!.length).toBe(t.length);
      expect(maxAbsDiff(fullOurs!, t)).toBeLessThan(1e-10 * Math.max(...t.map(Math.abs)));
    });
  },
);
