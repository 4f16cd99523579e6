// Ready-made architectures, expanded into layer specs.
import * as check from '../arguments.js';
import { UsamError } from '../errors.js';
import type { LayerSpecInput, ModelSpecInput } from './spec.js';

export type Activation = 'relu' | 'tanh' | 'gelu' | 'softplus';

export interface MlpOptions {
  /** Layer widths, input first, classes last: [784, 128, 10]. */
  layers: number[];
  activation?: Activation;
  batchNorm?: boolean;
  dropout?: number;
  loss?: ModelSpecInput['loss'];
  /** the shape of one sample, e.g. [1, 28, 28] for images (the Flatten takes them as they are); default [layers[0]] */
  input?: number[];
}

/** An MLP in PyTorch's layout: nn.Sequential(Flatten, Linear, [BatchNorm1d,] activation, [Dropout,] ..., Linear). */
export function mlp(o: MlpOptions): ModelSpecInput {
  check.object('mlp', 'options', o, 'MLP options { layers: [inputs, ...hidden, outputs], ... }');
  check.numbers('mlp', 'options.layers', o.layers, { integer: true, min: 1 });
  if (o.layers.length < 2) throw new check.ArgumentError('mlp', 'options.layers', 'needs at least [inputs, outputs]');
  if (o.input !== undefined) check.numbers('mlp', 'options.input', o.input, { integer: true, min: 1 });
  const input = o.input ?? [o.layers[0]];
  if (input.reduce((a, b) => a * b, 1) !== o.layers[0])
    throw new UsamError(`mlp: input [${input.join(', ')}] has ${input.reduce((a, b) => a * b, 1)} values per sample but layers[0] is ${o.layers[0]}; make them agree`);
  // a Flatten first, as in PyTorch's nn.Sequential(nn.Flatten(), nn.Linear, ...): the
  // modules (and state_dict names) line up with that, and image batches go in as they are
  const out: LayerSpecInput[] = [{ type: 'flatten' }];
  for (let i = 0; i + 1 < o.layers.length; i++) {
    out.push({ type: 'linear', inFeatures: o.layers[i], outFeatures: o.layers[i + 1] });
    if (i + 2 < o.layers.length) {
      if (o.batchNorm) out.push({ type: 'batchnorm1d', numFeatures: o.layers[i + 1] });
      out.push({ type: o.activation ?? 'relu' });
      if (o.dropout) out.push({ type: 'dropout', p: o.dropout });
    }
  }
  return { input, layers: out, loss: o.loss };
}

export interface CnnOptions {
  input?: [number, number, number];
  channels?: number[];
  hidden?: number;
  classes?: number;
}

/** conv3x3-BN-ReLU-maxpool2 stages, then fc-ReLU-fc (the benchmark CNN by default). */
export function cnn(o: CnnOptions = {}): ModelSpecInput {
  check.options('cnn', 'options', o);
  if (o.input !== undefined) check.numbers('cnn', 'options.input', o.input, { integer: true, min: 1, length: 3 });
  if (o.channels !== undefined) check.numbers('cnn', 'options.channels', o.channels, { integer: true, min: 1 });
  const [c0, h0, w0] = o.input ?? [1, 28, 28];
  const channels = o.channels ?? [32, 64];
  const layers: LayerSpecInput[] = [];
  let c = c0, h = h0, w = w0;
  for (const next of channels) {
    layers.push(
      { type: 'conv2d', inChannels: c, outChannels: next, kernelSize: 3, padding: 1 },
      { type: 'batchnorm2d', numFeatures: next },
      { type: 'relu' },
      { type: 'maxpool2d', kernelSize: 2 },
    );
    c = next;
    h = Math.floor(h / 2);
    w = Math.floor(w / 2);
  }
  layers.push(
    { type: 'flatten' },
    { type: 'linear', inFeatures: c * h * w, outFeatures: o.hidden ?? 128 },
    { type: 'relu' },
    { type: 'linear', inFeatures: o.hidden ?? 128, outFeatures: o.classes ?? 10 },
  );
  return { input: [c0, h0, w0], layers };
}

function basicBlock(inC: number, outC: number, stride: number): LayerSpecInput[] {
  const body: LayerSpecInput[] = [
    { type: 'conv2d', inChannels: inC, outChannels: outC, kernelSize: 3, stride, padding: 1, bias: false },
    { type: 'batchnorm2d', numFeatures: outC },
    { type: 'relu' },
    { type: 'conv2d', inChannels: outC, outChannels: outC, kernelSize: 3, stride: 1, padding: 1, bias: false },
    { type: 'batchnorm2d', numFeatures: outC },
  ];
  const shortcut: LayerSpecInput[] =
    stride !== 1 || inC !== outC
      ? [
          { type: 'conv2d', inChannels: inC, outChannels: outC, kernelSize: 1, stride, bias: false },
          { type: 'batchnorm2d', numFeatures: outC },
        ]
      : [];
  return [{ type: 'residual', body, shortcut }, { type: 'relu' }];
}

/** The CIFAR ResNet-18 used in the paper (3x3 stem, no max-pool). */
export function resnet18(o: { classes?: number; input?: [number, number, number]; width?: number } = {}): ModelSpecInput {
  check.options('resnet18', 'options', o);
  if (o.input !== undefined) check.numbers('resnet18', 'options.input', o.input, { integer: true, min: 1, length: 3 });
  const [c0, h0, w0] = o.input ?? [3, 32, 32];
  const base = o.width ?? 64;
  const layers: LayerSpecInput[] = [
    { type: 'conv2d', inChannels: c0, outChannels: base, kernelSize: 3, padding: 1, bias: false },
    { type: 'batchnorm2d', numFeatures: base },
    { type: 'relu' },
  ];
  let c = base;
  [base, base * 2, base * 4, base * 8].forEach((outC, stage) => {
    layers.push(...basicBlock(c, outC, stage === 0 ? 1 : 2), ...basicBlock(outC, outC, 1));
    c = outC;
  });
  layers.push({ type: 'adaptiveavgpool2d', outputSize: 1 }, { type: 'flatten' }, { type: 'linear', inFeatures: c, outFeatures: o.classes ?? 10 });
  return { input: [c0, h0, w0], layers };
}
