// The arguments every curvature operator takes (hessian(), ggn(), fisher()):
// the data, the mode, the modules, the cache, the process group and the
// precision, checked once here.
import { UsamError } from '../errors.js';
import * as check from '../arguments.js';
import { type Model, modelArg } from '../model/model.js';
import { modeMatters } from '../model/spec.js';
import type { Batch } from '../model/passes.js';
import type { ProcessGroup } from '../distributed.js';
import { type CurvatureOperatorOptions, DEFAULT_HVP_CACHE_BYTES, type StreamedData } from './operator.js';

export interface OperatorOptions {
  /**
   * BatchNorm/dropout behaviour of the passes: batch statistics ('train') or
   * running ones ('eval'). Default 'eval'; required for a model with
   * BatchNorm or dropout, where the two are different functions.
   */
  mode: 'train' | 'eval';
  /** restrict every probe to the parameters of these modules (names as in paramInfo(), e.g. '0', '3.body.1') */
  modules?: string[];
  /**
   * Reuse, from one product to the next, what does not depend on v (per
   * batch; see CurvatureOperator): true (default) with at most
   * DEFAULT_HVP_CACHE_BYTES over all batches, `{maxBytes}` to choose the
   * limit, false to recompute every product in full. With dropout in 'train'
   * mode a cached batch keeps one mask for all its products (one fixed
   * operator); uncached, every product draws new masks.
   */
  cache?: boolean | { maxBytes: number };
  /**
   * data-parallel probes: each rank holds its shard of the data, every
   * product is all-reduced (one collective per product), and every rank gets
   * the results one process gets on all the data. The ranks must call the
   * same probes with the same seeds.
   */
  group?: ProcessGroup;
  /**
   * the precision of the probes' products: 'fp32', whatever the model's
   * training precision (a bf16 or fp16 model's probes equal its float32
   * twin's bit for bit). 'bf16' and 'fp16' are refused: an HVP's products
   * rounded to 8 (11) significant bits err by about 1e-2 (1e-3) relative,
   * and Lanczos, SLQ and Hutchinson build on hundreds of them.
   */
  precision?: 'fp32';
  /**
   * data a DataLoader: make its batches for each product, one at a time, and
   * dispose each after its pass, so the probe holds one batch instead of all
   * (no product caches: every product recomputes its passes; not with a
   * process group)
   */
  stream?: boolean;
}

function isBatch(d: unknown): d is Batch {
  return typeof d === 'object' && d !== null && 'x' in d && 'y' in d;
}

/** The checked batches and the operator's options; `options` is the caller's object, checked to be one. */
export function operatorArgs(
  fn: string,
  model: Model,
  data: Batch | Iterable<Batch>,
  options: Partial<OperatorOptions> | undefined,
): { batches: Batch[]; operator: CurvatureOperatorOptions; options: Partial<OperatorOptions> } {
  modelArg(fn, 'model', model);
  options = check.options(fn, 'options', options);
  if (!isBatch(data) && (typeof data !== 'object' || data === null || typeof (data as Iterable<Batch>)[Symbol.iterator] !== 'function'))
    throw new check.ArgumentError(fn, 'data', `must be a batch { x, y } or an array (iterable) of them, got ${check.describeValue(data)}`);
  // eval by default, as PyHessian does; where BatchNorm or dropout make the
  // two modes different functions, the choice is the caller's to make
  if (options.mode === undefined && model.torchscript !== undefined)
    throw new UsamError(`${fn}: a TorchScript model may hold BatchNorm or dropout that this library cannot see; pass options.mode: 'eval' or 'train'`);
  if (options.mode === undefined && modeMatters(model.spec))
    throw new UsamError(
      `${fn}: this model has BatchNorm or dropout, so train and eval mode give different ${fn === 'hessian' ? 'Hessians' : 'operators'}; pass options.mode: 'eval' (running statistics, no dropout: the model as evaluated) or 'train' (batch statistics and dropout masks: the model as trained)`,
    );
  if (options.precision !== undefined && options.precision !== 'fp32')
    throw new check.ArgumentError(
      fn,
      'options.precision',
      `is ${check.describeValue(options.precision)}: the ${fn === 'hessian' ? 'Hessian' : 'curvature'} probes run in float32 only (a reduced-precision product errs by about its unit roundoff relative, 2⁻⁸ for bf16, and the probes build on hundreds of products). Leave it out or pass 'fp32'; a bf16 or fp16 model's probes run in float32 by themselves`,
    );
  const mode = options.mode ?? 'eval';
  if (mode !== 'train' && mode !== 'eval') throw new UsamError(`${fn}: options.mode is '${String(mode)}'; use 'train' or 'eval'`);
  if (options.stream !== undefined) check.boolean(fn, 'options.stream', options.stream);
  if (options.stream) {
    const loader = data as Partial<StreamedData>;
    if (typeof loader.batch !== 'function' || typeof loader.batchLength !== 'function' || typeof loader.length !== 'number')
      throw new check.ArgumentError(fn, 'data', 'must be a DataLoader with options.stream (its batches are made for each product); pass the batches without stream');
    if (options.group) throw new check.ArgumentError(fn, 'options.group', 'is not taken with options.stream; shard the data and leave stream out');
    if (options.cache !== undefined && options.cache !== false)
      throw new check.ArgumentError(fn, 'options.cache', 'must be left out (or false) with options.stream: a streamed batch is made anew for every product, so nothing can be cached');
    if (loader.length === 0) throw new UsamError(`${fn}: the data has no batches`);
    return { batches: [], options, operator: { training: mode === 'train', modules: options.modules, cacheBytes: 0, stream: loader as StreamedData } };
  }
  const batches = isBatch(data) ? [data] : Array.from(data);
  if (batches.length === 0) throw new UsamError(`${fn}: the data has no batches`);
  batches.forEach((b, i) => {
    if (!isBatch(b)) throw new check.ArgumentError(fn, `data[${i}]`, `must be a batch { x, y }, got ${check.describeValue(b)}`);
  });
  const cache = options.cache ?? true;
  let cacheBytes: number;
  if (typeof cache === 'boolean') cacheBytes = cache ? DEFAULT_HVP_CACHE_BYTES : 0;
  else if (typeof cache === 'object' && cache !== null && Number.isFinite(cache.maxBytes) && cache.maxBytes >= 0) cacheBytes = cache.maxBytes;
  else throw new UsamError(`${fn}: options.cache must be true, false or {maxBytes: a number ≥ 0}, got ${JSON.stringify(cache)}`);
  return { batches, options, operator: { training: mode === 'train', modules: options.modules, cacheBytes, group: options.group } };
}
