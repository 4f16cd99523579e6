// Evaluation: the mean loss (cross-entropy of the logits, or NLL of
// log-probabilities: the model's own loss, without label smoothing), top-1
// and top-5 accuracy of a model on a class-label dataset, in eval mode, from
// the outputs of one forward pass per batch. With
// a process group each rank evaluates its contiguous share of the samples and
// one allreduce sums the counts: every rank gets the whole set's numbers.
import * as check from '../arguments.js';
import { UsamError } from '../errors.js';
import { DataLoader, shareRange } from '../data/loader.js';
import { count, datasetArg, sampleSize, type Dataset } from '../data/dataset.js';
import type { ProcessGroup } from '../distributed.js';
import { type Model, modelArg } from '../model/model.js';
import { takesLabels, type LossType } from '../model/spec.js';
import { one, runAsync, runSync, type Work } from '../model/work.js';
import { tensor } from '../tensor/tensor.js';

export interface Evaluation {
  loss: number;
  top1: number;
  top5: number;
  count: number;
}

/** The arguments of evaluate() and evaluateAsync(), checked. */
function evaluateArgs(fn: string, model: Model, data: Dataset, batchSize: number): void {
  modelArg(fn, 'model', model);
  datasetArg(fn, 'data', data);
  check.number(fn, 'batchSize', batchSize, { integer: true, min: 1 });
}

export function evaluate(model: Model, data: Dataset, batchSize = 1000): Evaluation {
  evaluateArgs('evaluate', model, data, batchSize);
  return runSync(evaluateWork(model, data, batchSize));
}

/** evaluate() with each batch's forward pass on libuv's thread pool: the same numbers. */
export function evaluateAsync(model: Model, data: Dataset, batchSize = 1000): Promise<Evaluation> {
  try {
    evaluateArgs('evaluateAsync', model, data, batchSize);
  } catch (e) {
    return Promise.reject(e);
  }
  return model.exclusive(() => runAsync(evaluateWork(model, data, batchSize)));
}

/** This rank's contiguous share of the samples. */
function shareOf(data: Dataset, group: ProcessGroup): Dataset {
  const [lo, hi] = shareRange(count(data), group);
  return { ...data, x: data.x.subarray(lo * sampleSize(data), hi * sampleSize(data)), y: data.y.subarray(lo, hi) };
}

/** evaluate() as Work, for composing (a training run); with `group`, sharded over its ranks. */
export function* evaluateWork(model: Model, data: Dataset, batchSize = 1000, group?: ProcessGroup): Work<Evaluation> {
  const lossType: LossType = model.spec.loss?.type ?? 'cross-entropy';
  if (!takesLabels(lossType))
    throw new UsamError(
      `evaluate: the model's loss is '${lossType}', which takes float targets of the output's shape, but a dataset holds int class labels; ` +
        `evaluate() needs a classification loss ('cross-entropy' or 'nll')`,
    );
  const nll = lossType === 'nll'; // the outputs are log-probabilities already
  const wasTraining = model.training;
  model.eval();
  const mine = group ? shareOf(data, group) : data;
  let loss = 0, top1 = 0, top5 = 0, n = 0;
  try {
    const loader = count(mine) > 0 ? new DataLoader(mine, { batchSize, dtype: model.dtype, device: model.device }) : undefined;
    for (const { x, y } of loader?.epoch(0) ?? []) {
      const out = yield* one({ sync: () => model.native.forward(x), async: () => model.native.forwardAsync(x) });
      const logits = out.toArray() as Float32Array | Float64Array;
      const labels = y.toArray() as BigInt64Array;
      const classes = out.shape[1];
      for (let i = 0; i < labels.length; i++) {
        const row = logits.subarray(i * classes, (i + 1) * classes);
        const label = Number(labels[i]);
        if (nll) {
          loss -= row[label];
        } else {
          let max = -Infinity;
          for (const v of row) max = Math.max(max, v);
          let sum = 0;
          for (const v of row) sum += Math.exp(v - max);
          loss += Math.log(sum) + max - row[label];
        }
        let above = 0; // classes scored above the true one
        for (const v of row) if (v > row[label]) above++;
        if (above === 0) top1++;
        if (above < 5) top5++;
      }
      n += labels.length;
      for (const t of [x, y, out]) t.dispose();
    }
  } finally {
    model.train(wasTraining);
  }
  if (group) {
    // NCCL reduces device tensors: the sums travel on the model's device
    const sums = tensor(Float64Array.of(loss, top1, top5, n), [4], { device: model.device });
    try {
      group.allreduce(sums, 'sum');
      [loss, top1, top5, n] = Array.from(sums.toArray() as Float64Array);
    } finally {
      sums.dispose();
    }
  }
  return { loss: loss / n, top1: top1 / n, top5: top5 / n, count: n };
}
