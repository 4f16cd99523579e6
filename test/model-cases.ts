// Small float64 models that between them hold every layer type, with a batch
// each: the cases of the derivative checks (test/numerics/derivatives.test.ts) and of
// the cross-check against PyTorch (test/numerics/pytorch-twin.test.ts).
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import type { Model } from '../lib/model/model.js';
import type { ModelSpecInput } from '../lib/model/spec.js';
import { cnn, mlp } from '../lib/model/presets.js';
import { tensor, type Tensor } from '../lib/tensor/tensor.js';
import { float64Model, randomBatch, repoRoot, rng, toNumbers } from './helpers.js';

export interface ModelCase {
  name: string;
  make: () => Model;
  batch: () => { x: Tensor; y: Tensor };
}

/** The model with every parameter moved by 0.3·sin(i): normalisation weights away from 1, biases from 0. */
function shifted(m: Model): Model {
  m.setParams(m.getParams().map((w, i) => w + 0.3 * Math.sin(i)));
  return m;
}

export const derivativeCases: ModelCase[] = [
  {
    name: 'MLP with BatchNorm (train mode)',
    make: () => float64Model(mlp({ layers: [5, 8, 7, 3], activation: 'tanh', batchNorm: true }), 3),
    batch: () => randomBatch([12, 5], 3, 11),
  },
  {
    name: 'small CNN (conv, BN, relu, maxpool, fc)',
    make: () => float64Model(cnn({ input: [2, 6, 6], channels: [3, 4], hidden: 6, classes: 3 }), 4),
    batch: () => randomBatch([6, 2, 6, 6], 3, 12),
  },
  {
    name: 'GELU / softplus MLP with label smoothing',
    make: () =>
      float64Model(
        {
          input: [4],
          layers: [
            { type: 'linear', inFeatures: 4, outFeatures: 6 },
            { type: 'gelu' },
            { type: 'linear', inFeatures: 6, outFeatures: 5 },
            { type: 'softplus', beta: 2 },
            { type: 'linear', inFeatures: 5, outFeatures: 3 },
          ],
          loss: { type: 'cross-entropy', labelSmoothing: 0.1 },
        },
        5,
      ),
    batch: () => randomBatch([9, 4], 3, 13),
  },
  {
    name: 'SiLU, sigmoid, leaky ReLU and identity',
    make: () =>
      float64Model(
        {
          input: [4],
          layers: [
            { type: 'linear', inFeatures: 4, outFeatures: 6 },
            { type: 'silu' },
            { type: 'linear', inFeatures: 6, outFeatures: 5 },
            { type: 'sigmoid' },
            { type: 'identity' },
            { type: 'linear', inFeatures: 5, outFeatures: 5 },
            { type: 'leakyrelu', negativeSlope: 0.2 },
            { type: 'linear', inFeatures: 5, outFeatures: 3 },
          ],
        },
        7,
      ),
    batch: () => randomBatch([9, 4], 3, 17),
  },
  {
    name: 'LayerNorm over one and two dims, with and without affine',
    // γ and β moved away from 1 and 0
    make: () =>
      shifted(
        float64Model({
          input: [3, 4],
          layers: [
            { type: 'layernorm', normalizedShape: [3, 4], elementwiseAffine: false },
            { type: 'linear', inFeatures: 4, outFeatures: 5 },
            { type: 'layernorm', normalizedShape: 5, eps: 1e-3 },
            { type: 'gelu' },
            { type: 'flatten' },
            { type: 'linear', inFeatures: 15, outFeatures: 6 },
            { type: 'layernorm', normalizedShape: [6] },
            { type: 'linear', inFeatures: 6, outFeatures: 3 },
          ],
        }, 11),
      ),
    batch: () => randomBatch([7, 3, 4], 3, 20),
  },
  {
    name: 'embedding, LayerNorm and an MLP block over a sequence',
    make: () =>
      float64Model(
        {
          input: [5],
          layers: [
            { type: 'embedding', numEmbeddings: 7, embeddingDim: 4 },
            { type: 'layernorm', normalizedShape: 4 },
            { type: 'linear', inFeatures: 4, outFeatures: 8 },
            { type: 'gelu' },
            { type: 'linear', inFeatures: 8, outFeatures: 4 },
            { type: 'flatten' },
            { type: 'linear', inFeatures: 20, outFeatures: 3 },
          ],
        },
        12,
      ),
    batch: () => {
      const r = rng(21);
      return { x: tensor(BigInt64Array.from({ length: 30 }, () => BigInt(Math.floor(r() * 7))), [6, 5], { dtype: 'int64' }), y: randomBatch([6, 1], 3, 22).y };
    },
  },
  {
    name: 'grouped and dilated convolutions',
    make: () =>
      float64Model(
        {
          input: [4, 9, 9],
          layers: [
            { type: 'conv2d', inChannels: 4, outChannels: 6, kernelSize: 3, groups: 2, padding: 1 },
            { type: 'tanh' },
            { type: 'conv2d', inChannels: 6, outChannels: 6, kernelSize: 3, dilation: 2, stride: 2, groups: 3, bias: false }, // 9×9 → 3×3
            { type: 'softplus' },
            { type: 'conv2d', inChannels: 6, outChannels: 4, kernelSize: 2, dilation: [1, 2] }, // 3×3 → 2×1
            { type: 'flatten' },
            { type: 'linear', inFeatures: 8, outFeatures: 3 },
          ],
        },
        9,
      ),
    batch: () => randomBatch([5, 4, 9, 9], 3, 18),
  },
  {
    name: 'NLL on the outputs of a tanh / softplus MLP',
    // no log-softmax layer: NLL reads the outputs as log-probabilities as they are, −mean_i out[i, y_i]
    make: () =>
      float64Model(
        {
          input: [4],
          layers: [
            { type: 'linear', inFeatures: 4, outFeatures: 6 },
            { type: 'tanh' },
            { type: 'linear', inFeatures: 6, outFeatures: 5 },
            { type: 'softplus' },
            { type: 'linear', inFeatures: 5, outFeatures: 3 },
          ],
          loss: { type: 'nll' },
        },
        13,
      ),
    batch: () => randomBatch([9, 4], 3, 23),
  },
  {
    name: 'BCE with logits on 0/1 and soft targets (GELU MLP)',
    make: () =>
      float64Model(
        {
          input: [4],
          layers: [
            { type: 'linear', inFeatures: 4, outFeatures: 6 },
            { type: 'gelu' },
            { type: 'linear', inFeatures: 6, outFeatures: 5 },
            { type: 'tanh' },
            { type: 'linear', inFeatures: 5, outFeatures: 3 },
          ],
          loss: { type: 'bce-with-logits' },
        },
        14,
      ),
    // every third target 0 or 1, the others probabilities in (0.05, 0.95)
    batch: () => floatTargetBatch([8, 4], [8, 3], 24, (i) => (i % 3 === 0 ? i % 2 : 0.5 + 0.45 * Math.sin(i))),
  },
  {
    name: 'Huber (delta 0.5), residuals on both sides of the kink (CNN with BatchNorm)',
    make: () => float64Model({ ...cnn({ input: [2, 6, 6], channels: [3, 4], hidden: 6, classes: 3 }), loss: { type: 'huber', delta: 0.5 } }, 15),
    batch: () => floatTargetBatch([6, 2, 6, 6], [6, 3], 25, (i) => 1.5 * Math.sin(1.7 * i)),
  },
  {
    name: 'residual CNN (stride-2 and bias-free convs, avg/adaptive pools, MSE)',
    make: () => float64Model(residualSpec(false), 6),
    batch: () => regressionBatch(),
  },
];

/**
 * Every layer type in one model: BatchNorm without affine on the raw input,
 * convs with stride 2 and without bias, residual blocks with and without a
 * shortcut, average and (non-global) adaptive pooling, dropout, MSE loss.
 */
function residualSpec(dropout: boolean): ModelSpecInput {
  const conv = (i: number, o: number, k: number, extra: object = {}) =>
    ({ type: 'conv2d', inChannels: i, outChannels: o, kernelSize: k, ...extra }) as const;
  return {
    input: [2, 8, 8],
    layers: [
      { type: 'batchnorm2d', numFeatures: 2, affine: false },
      conv(2, 3, 3, { stride: 2, padding: 1 }),
      { type: 'residual', body: [conv(3, 3, 3, { padding: 1, bias: false }), { type: 'batchnorm2d', numFeatures: 3 }, { type: 'relu' }] },
      {
        type: 'residual',
        body: [conv(3, 4, 1, { stride: 2 }), { type: 'tanh' }],
        shortcut: [{ type: 'avgpool2d', kernelSize: 2 }, conv(3, 4, 1, { bias: false })],
      },
      { type: 'adaptiveavgpool2d', outputSize: [2, 1] },
      { type: 'flatten' },
      ...(dropout ? [{ type: 'dropout', p: 0.3 } as const] : []),
      { type: 'linear', inFeatures: 8, outFeatures: 3 },
    ],
    loss: { type: 'mse' },
  };
}

/** Random inputs of `shape` and float64 targets of `target`'s shape, the i-th (row-major) target(i). */
function floatTargetBatch(shape: number[], target: number[], seed: number, value: (i: number) => number) {
  const { x } = randomBatch(shape, 1, seed);
  const n = target.reduce((a, b) => a * b, 1);
  return { x, y: tensor(Float64Array.from({ length: n }, (_, i) => value(i)), target, { dtype: 'float64' }) };
}

function regressionBatch() {
  const { x } = randomBatch([5, 2, 8, 8], 3, 14);
  const y = tensor(Float64Array.from({ length: 15 }, (_, i) => Math.sin(i)), [5, 3], { dtype: 'float64' });
  return { x, y };
}

/**
 * Huber exactly at its kink, where finite differences do not apply (not a derivative case): zero
 * weights make the outputs the bias exactly, so r = z − t is exactly δ in column 0 and −δ in column 1
 * (ℓ'' = 0 there, as in PyTorch's autograd: |r| < δ, strictly), inside in column 2, outside in column 3.
 */
export const huberKinkCase: ModelCase = {
  name: 'Huber at its kink: residuals of exactly ±delta, inside and outside',
  make: () => {
    const m = float64Model({ input: [2], layers: [{ type: 'linear', inFeatures: 2, outFeatures: 4 }], loss: { type: 'huber', delta: 0.5 } }, 16);
    m.setParams([0, 0, 0, 0, 0, 0, 0, 0, 0.25, -0.125, 0.125, 2]);
    return m;
  },
  batch: () => floatTargetBatch([5, 2], [5, 4], 26, (i) => [-0.25, 0.375, 0, 0][i % 4]),
};

/** The derivative cases, and models with dropout, BatchNorm1d over [N, C, L], tanh-GELU and softplus past its threshold, and Huber at its kink. */
export const hvpCases: ModelCase[] = [
...derivativeCases,
  huberKinkCase,
  { name: 'residual CNN with dropout', make: () => float64Model(residualSpec(true), 6), batch: regressionBatch },
  {
    name: 'CNN with dropout2d',
    make: () =>
      float64Model(
        {
          input: [2, 6, 6],
          layers: [
            { type: 'conv2d', inChannels: 2, outChannels: 4, kernelSize: 3 },
            { type: 'dropout2d', p: 0.5 },
            { type: 'relu' },
            { type: 'flatten' },
            { type: 'linear', inFeatures: 64, outFeatures: 3 },
          ],
        },
        10,
      ),
    batch: () => randomBatch([6, 2, 6, 6], 3, 19),
  },
  {
    name: 'BatchNorm1d over [N, C, L] inputs',
    make: () =>
      float64Model(
        {
          input: [3, 4],
          layers: [
            { type: 'batchnorm1d', numFeatures: 3 },
            { type: 'flatten' },
            { type: 'linear', inFeatures: 12, outFeatures: 5 },
            { type: 'batchnorm1d', numFeatures: 5, affine: false },
            { type: 'softplus' },
            { type: 'linear', inFeatures: 5, outFeatures: 3 },
          ],
        },
        8,
      ),
    batch: () => randomBatch([7, 3, 4], 3, 16),
  },
  {
    name: 'tanh-GELU and a softplus past its threshold',
    make: () =>
      float64Model(
        {
          input: [4],
          layers: [
            { type: 'linear', inFeatures: 4, outFeatures: 6 },
            { type: 'gelu', approximate: 'tanh' },
            { type: 'linear', inFeatures: 6, outFeatures: 5 },
            { type: 'softplus', beta: 2, threshold: 0.5 },
            { type: 'linear', inFeatures: 5, outFeatures: 3 },
          ],
        },
        7,
      ),
    batch: () => randomBatch([9, 4], 3, 15),
  },
];

/**
 * A case as test/pytorch/twin.py reads it (and gauss_newton_twin.py): the
 * spec, mode, batch, parameters and buffers by name, and the direction v.
 */
export function twinInput(name: string, model: Model, batch: { x: Tensor; y: Tensor }, v: Tensor, training: boolean) {
  const { x, y } = batch;
  const flat = toNumbers(model.params);
  const vFlat = toNumbers(v);
  const buffers = model.buffers();
  const bufFlat = toNumbers(buffers.values);
  const labels = y.dtype === 'int64';
  return {
    name,
    spec: model.spec,
    training,
    x: { shape: x.shape, data: x.dtype === 'int64' ? Array.from(x.toArray() as BigInt64Array, Number) : Array.from(toNumbers(x)) },
    y: { shape: y.shape, data: labels ? Array.from(y.toArray() as BigInt64Array, Number) : Array.from(toNumbers(y)), labels },
    params: model.paramInfo().map((p) => ({ name: p.name, shape: p.shape, data: Array.from(flat.subarray(p.offset, p.offset + p.numel)) })),
    buffers: buffers.info.map((b) => ({ name: b.name, shape: b.shape, data: Array.from(bufFlat.subarray(b.offset, b.offset + b.numel)) })),
    v: model.paramInfo().map((p) => ({ name: p.name, data: Array.from(vFlat.subarray(p.offset, p.offset + p.numel)) })),
  };
}

/** The case's model and batch in `training` mode; for eval mode the running statistics are first moved off their initial values. */
export function preparedModel(c: ModelCase, training: boolean) {
  const model = c.make();
  const { x, y } = c.batch();
  if (!training) {
    model.train(true);
    for (let i = 0; i < 2; i++) model.lossAndGrad(x, y, { updateStats: true });
  }
  model.train(training);
  return { model, x, y };
}

/** Runs test/pytorch/`script` on the cases (JSON on its standard input) and returns its JSON results. */
export function runPythonTwin<T>(python: string, script: string, cases: unknown[], env: Record<string, string> = {}): T[] {
  const r = spawnSync(python, [join(repoRoot, 'test', 'pytorch', script)], {
    input: JSON.stringify(cases),
    encoding: 'utf8',
    maxBuffer: 256 << 20,
    env: { ...process.env, OMP_NUM_THREADS: '1', ...env },
  });
  if (r.status !== 0) throw new Error(`test/pytorch/${script} failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as T[];
}
