// Checkpoints: parameters, BatchNorm buffers and optimizer buffers as named
// tensors in safetensors (parameter names as PyTorch's state_dict), and in
// its metadata the training config, the position in training and every RNG
// state, so that a resumed run continues bit for bit.
import * as check from '../arguments.js';
import { UsamError } from '../errors.js';
import { type Model, modelArg } from '../model/model.js';
import { ops } from '../tensor/ops.js';
import { OPTIMIZER_STATE_FORMAT, Optimizer, type OptimizerStateDict } from '../optim/optimizer.js';
import type { Tensor } from '../tensor/tensor.js';
import { readSafetensors, type StData, stTensor, type StTensor, writeSafetensors } from '../safetensors.js';
import { floatTensor, tensor } from '../tensor/tensor.js';

export const CHECKPOINT_FORMAT = 'usam-checkpoint/1';

/** Where training stands: the next batch to run is `batch` of `epoch`. */
export interface Progress {
  epoch: number;
  batch: number;
  globalStep: number;
  /** running sums of the unfinished epoch, so its metrics come out the same after a resume */
  lossSum: number;
  sharpnessSum: number;
  sharpnessCount: number;
  steps: number;
  /** correctly classified / seen training samples of the unfinished epoch */
  correct: number;
  seen: number;
  /** mean training loss of the run's first DIVERGENCE_WINDOW steps (the divergence check's yardstick) */
  startLoss?: number;
  /** with clipGradNorm: Σ of the unfinished epoch's pre-clip gradient norms, and its clipped steps */
  gradNormSum?: number;
  clippedSteps?: number;
  /** with fp16 loss scaling: the unfinished epoch's skipped steps */
  skippedSteps?: number;
}

const OPTIMIZER_BUFFERS: Record<string, string[]> = { sgd: ['momentum_buffer'], adam: ['exp_avg', 'exp_avg_sq'], adamw: ['exp_avg', 'exp_avg_sq'] };

const b64 = (a: Uint8Array) => Buffer.from(a).toString('base64');
const unb64 = (s: string) => new Uint8Array(Buffer.from(s, 'base64'));

function flatArray(t: Tensor): Float32Array | Float64Array {
  return t.toArray() as Float32Array | Float64Array;
}

export function saveCheckpoint(file: string, model: Model, optimizer: Optimizer, config: unknown, progress: Progress): void {
  check.string('saveCheckpoint', 'file', file, 'a file name');
  modelArg('saveCheckpoint', 'model', model);
  check.instanceOf('saveCheckpoint', 'optimizer', optimizer, Optimizer, 'the Optimizer of the model');
  if (optimizer.model !== model) throw new check.ArgumentError('saveCheckpoint', 'optimizer', 'steps another model; give the optimizer of `model`');
  check.object('saveCheckpoint', 'config', config as object, 'the run\'s config (an object; {} when there is none)');
  check.object('saveCheckpoint', 'progress', progress, 'the run\'s progress { epoch, batch, globalStep, ... }');
  for (const k of ['epoch', 'batch', 'globalStep', 'steps'] as const) check.number('saveCheckpoint', `progress.${k}`, progress[k], { integer: true, min: 0 });
  const tensors: Record<string, StTensor> = {};
  const params = flatArray(model.params);
  for (const p of model.paramInfo()) tensors[p.name] = stTensor(params.slice(p.offset, p.offset + p.numel), p.shape);
  const { values, info, counters, counterNames } = model.buffers();
  const buffers = flatArray(values);
  for (const b of info) tensors[b.name] = stTensor(buffers.slice(b.offset, b.offset + b.numel), b.shape);
  const counts = counters.toArray() as BigInt64Array;
  counterNames.forEach((n, i) => (tensors[n] = stTensor(counts.slice(i, i + 1), [])));
  const o = optimizer.stateDict();
  for (const [name, values] of Object.entries(o.state)) tensors[`optimizer.${name}`] = stTensor(values, [values.length]);
  const metadata = {
    format: CHECKPOINT_FORMAT,
    config: JSON.stringify(config),
    progress: JSON.stringify(progress),
    optimizer: JSON.stringify({ kind: o.kind, steps: o.steps, baseStep: o.baseStep, generator: o.generator ? b64(o.generator) : null, paramGroups: o.paramGroups, ...(o.lossScale ? { lossScale: o.lossScale } : {}) }),
    modelRng: b64(model.native.getRngState()),
    dtype: model.dtype,
  };
  // the checksum lets loading refuse a file damaged after it was written
  writeSafetensors(file, tensors, metadata, { checksum: true });
}

export interface LoadedCheckpoint {
  config: unknown;
  progress: Progress;
  /** Writes the checkpoint's state into a model and optimizer built from `config`. */
  restore(model: Model, optimizer: Optimizer): void;
  /** Writes only the model's part (parameters, BatchNorm statistics and counts): for analysis, e.g. `usam probe`. */
  restoreModel(model: Model): void;
}

export function loadCheckpoint(file: string): LoadedCheckpoint {
  check.string('loadCheckpoint', 'file', file, 'a checkpoint file name');
  const { tensors, metadata } = readSafetensors(file);
  if (metadata.format !== CHECKPOINT_FORMAT) throw new UsamError(`${file}: not a universal-sam checkpoint (format '${metadata.format ?? 'none'}')`);
  const parse = (key: string) => {
    try {
      return JSON.parse(metadata[key]);
    } catch {
      throw new UsamError(`${file}: metadata '${key}' is missing or corrupt`);
    }
  };
  const config = parse('config');
  const progress = parse('progress') as Progress;
  const opt = parse('optimizer') as { kind: string; steps: number; baseStep: number; generator: string | null; paramGroups?: Record<string, unknown>[]; lossScale?: OptimizerStateDict['lossScale'] };
  const need = (name: string, numel: number): StData => {
    const t = tensors[name];
    if (!t) throw new UsamError(`${file}: tensor '${name}' is missing`);
    if (t.data.length !== numel) throw new UsamError(`${file}: tensor '${name}' has ${t.data.length} values, the model needs ${numel}`);
    return t.data;
  };
  const restoreModel = (model: Model) => {
    const fill = (target: Tensor, parts: { name: string; offset: number; numel: number }[]) => {
      const values = model.dtype === 'float64' ? new Float64Array(target.numel) : new Float32Array(target.numel);
      for (const p of parts) values.set(need(p.name, p.numel) as Float32Array | Float64Array, p.offset);
      const t = floatTensor(model, values);
      ops.copy(target, t);
      t.dispose();
    };
    fill(model.params, model.paramInfo());
    const { values, info, counters, counterNames } = model.buffers();
    if (values.numel > 0) fill(values, info);
    if (counterNames.length > 0) {
      const counts = BigInt64Array.from(counterNames, (n) => (need(n, 1) as BigInt64Array)[0]);
      const t = tensor(counts, [counts.length], { dtype: 'int64', device: model.device });
      ops.copy(counters, t);
      t.dispose();
    }
  };
  return {
    config,
    progress,
    restoreModel,
    restore(model, optimizer) {
      restoreModel(model);
      if (opt.kind !== optimizer.base.config.kind) throw new UsamError(`${file}: the checkpoint's optimizer is ${opt.kind}, not ${optimizer.base.config.kind}`);
      const names = OPTIMIZER_BUFFERS[opt.kind];
      const state = Object.fromEntries(names.map((n) => [n, need(`optimizer.${n}`, model.numParams) as Float32Array | Float64Array]));
      try {
        optimizer.loadStateDict({
          format: OPTIMIZER_STATE_FORMAT,
          kind: opt.kind,
          state,
          steps: opt.steps,
          baseStep: opt.baseStep,
          generator: opt.generator === null ? null : unb64(opt.generator),
          ...(opt.lossScale ? { lossScale: opt.lossScale } : {}),
          // the groups' live lr, weightDecay, rho (checkpoints written before they were saved have none: the optimizer's own stay)
          paramGroups: Array.isArray(opt.paramGroups) ? opt.paramGroups : [],
        });
      } catch (e) {
        throw new UsamError(`${file}: ${(e as Error).message}`);
      }
      model.native.setRngState(unb64(metadata.modelRng));
    },
  };
}
