// Max pooling by native/pooling.cc's kernels (first-order passes, HVP and jet
// rules; passes differentiated twice keep ATen's) against PyTorch's
// semantics: the first maximum of a window in row-major order wins, a NaN
// wins over any number and a later NaN over an earlier one. Values against
// a reference written here; ties, where the routing of the gradient decides
// which input gets it, against PyTorch itself (float64, when a torch Python
// is at hand) and float32 (the vector loop) against float64 (the scalar one).
import { describe, expect, it } from 'vitest';
import { Model } from '../../lib/model/model.js';
import type { LayerSpecInput } from '../../lib/model/spec.js';
import { labels, tensor } from '../../lib/tensor/tensor.js';
import { maxAbsDiff, toNumbers, torchPython } from '../helpers.js';
import { runPythonTwin, twinInput } from '../model-cases.js';

/** PyTorch's max_pool2d (dilation 1, floor mode) on [N, C, H, W] values. */
function referencePool(x: number[], [N, C, H, W]: number[], k: number, s: number, p: number): number[] {
  const OH = Math.floor((H + 2 * p - k) / s) + 1, OW = Math.floor((W + 2 * p - k) / s) + 1;
  const out: number[] = [];
  for (let plane = 0; plane < N * C; plane++)
    for (let oh = 0; oh < OH; oh++)
      for (let ow = 0; ow < OW; ow++) {
        let m = -Infinity;
        for (let ih = Math.max(0, oh * s - p); ih < Math.min(oh * s - p + k, H); ih++)
          for (let iw = Math.max(0, ow * s - p); iw < Math.min(ow * s - p + k, W); iw++) {
            const v = x[plane * H * W + ih * W + iw];
            if (v > m || Number.isNaN(v)) m = v;
          }
        out.push(m);
      }
  return out;
}

/** Values with ties, NaN and −∞ in some windows, from a seeded stream. */
function awkwardValues(n: number, seed: number): number[] {
  let s = seed;
  return Array.from({ length: n }, () => {
    s = (s * 16807) % 2147483647;
    const r = s % 100;
    return r === 0 ? NaN : r === 1 ? -Infinity : r % 7; // small integers: ties in most windows
  });
}

describe('max pooling kernels', () => {
  const shapes: [number[], number, number, number][] = [
    [[2, 3, 10, 10], 2, 2, 0], // the vector loop (4 outputs at a time) and one tail column
    [[2, 2, 9, 7], 2, 2, 0], // odd sizes: the last row and column unused
    [[1, 2, 8, 16], 2, 2, 0], // no tail
    [[2, 2, 9, 9], 3, 2, 1], // the general loop, with padding
    [[1, 1, 6, 6], 3, 3, 0],
  ];
  for (const dtype of ['float32', 'float64'] as const)
    for (const [shape, k, s, p] of shapes)
      it(`${dtype} ${shape.join('×')}, kernel ${k}, stride ${s}, padding ${p}: PyTorch's values, NaN and −∞ included`, () => {
        const [N, C, H, W] = shape;
        // a depthwise 1×1 convolution of weight 1 first (a model needs parameters): the values pass unchanged
        const identity: LayerSpecInput = { type: 'conv2d', inChannels: C, outChannels: C, kernelSize: 1, groups: C, bias: false };
        const model = new Model({ input: [C, H, W], layers: [identity, { type: 'maxpool2d', kernelSize: k, stride: s, padding: p }, { type: 'flatten' }], loss: { type: 'mse' } }, { dtype });
        model.setParams(new Array(C).fill(1));
        const values = awkwardValues(N * C * H * W, 7 + H * W);
        for (let r = 0; r < 3; r++) for (let c = 0; c < 3; c++) values[r * W + c] = -Infinity; // a window of −∞ alone: its first position wins
        values[3] = NaN; // and a NaN in a window of its own
        const y = toNumbers(model.forward(tensor(values, shape, { dtype })));
        const expected = referencePool(values, shape, k, s, p);
        expect(y.length).toBe(expected.length);
        expect(expected.some(Number.isNaN)).toBe(true);
        expect(expected[0]).toBe(-Infinity);
        for (let i = 0; i < y.length; i++) expect(Object.is(y[i], expected[i]) || (Number.isNaN(y[i]) && Number.isNaN(expected[i]))).toBe(true);
        model.dispose();
      });

  // A linear layer over each image row, with a 0/1 weight pattern, over
  // small integers: its outputs are exact in float32 too (a 3×3 convolution's
  // need not be: oneDNN may take a Winograd transform) and tie in many
  // windows, and which tied position a window's gradient goes to changes the
  // layer's weight gradient (the positions are different output columns).
  const layers: LayerSpecInput[] = [
    { type: 'linear', inFeatures: 10, outFeatures: 10, bias: false },
    { type: 'maxpool2d', kernelSize: 2 },
    { type: 'flatten' },
    { type: 'linear', inFeatures: 5 * 5, outFeatures: 3 },
  ];
  function tieCase(dtype: 'float32' | 'float64') {
    const model = new Model({ input: [1, 10, 10], layers }, { dtype });
    const P = model.numParams, rowWeights = 10 * 10;
    // the same parameters in both precisions (binary fractions: exact in float32)
    model.setParams(Array.from({ length: P }, (_, i) => (i < rowWeights ? ((i * 7) % 3 === 0 ? 1 : 0) : ((i * 5) % 17) / 16 - 0.5)));
    let s = 11;
    const x = tensor(Array.from({ length: 6 * 100 }, () => ((s = (s * 16807) % 2147483647) % 3)), [6, 1, 10, 10], { dtype });
    const y = labels([0, 1, 2, 0, 1, 2]);
    expect(P).toBe(rowWeights + 25 * 3 + 3);
    return { model, x, y };
  }

  it('ties: the float32 vector loop routes the gradient as the float64 loop does', () => {
    const a = tieCase('float32'), b = tieCase('float64');
    const g32 = toNumbers(a.model.lossAndGrad(a.x, a.y).grad), g64 = toNumbers(b.model.lossAndGrad(b.x, b.y).grad);
    const scale = Math.max(...g64.map(Math.abs));
    // a window routed to another tied position would move a convolution weight's gradient by O(scale)
    expect(maxAbsDiff(g32, g64)).toBeLessThan(1e-5 * scale);
    a.model.dispose();
    b.model.dispose();
  });

  const torch = torchPython();
  it.skipIf(!torch)(`ties: the gradient and H v equal PyTorch's (float64)${torch ? '' : ' (skipped: no Python with PyTorch 2.x)'}`, () => {
    const { model, x, y } = tieCase('float64');
    const v = tensor(Array.from({ length: model.numParams }, (_, i) => Math.sin(i + 1)), [model.numParams], { dtype: 'float64' });
    const grad = toNumbers(model.lossAndGrad(x, y, { updateStats: false }).grad);
    const hv = toNumbers(model.hvp(x, y, v));
    const [t] = runPythonTwin<{ loss: number; grad: number[]; doubleBackward: number[] }>(torch!.python, 'twin.py', [twinInput('ties', model, { x, y }, v, true)]);
    expect(maxAbsDiff(grad, t.grad)).toBeLessThan(1e-12 * Math.max(...t.grad.map(Math.abs)));
    expect(maxAbsDiff(hv, t.doubleBackward)).toBeLessThan(1e-12 * Math.max(...t.doubleBackward.map(Math.abs)));
    model.dispose();
  });
});
