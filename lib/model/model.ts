// A model: the native network plus its flat parameter vector. Everything a
// SAM-family rule needs is a call over flat vectors: loss, gradient, HVP,
// and the gradient of uᵀHu (a third derivative).
import { UsamError } from '../errors.js';
import type { CurvatureMethod, FloatDType, GradMethod, HvpMethod, NativeHvpCache, NativeModel, Precision, SlotInfo } from '../native/binding.js';
import { native } from '../native/load.js';
import { streamSeed } from '../random.js';
import * as check from '../arguments.js';
import { floatTensor, optionalTensorArg, type Tensor, tensorArg, toFloatArray } from '../tensor/tensor.js';
import { type ModelSpec, type ModelSpecInput, parseModelSpec } from './spec.js';
import { persistent, track } from '../tensor/scope.js';
import type { StTensor } from '../safetensors.js';
import { loadStateDict, type LoadStateDictOptions, saveStateDict, type StateDictSource, stateDictOf } from './state-dict.js';

/** What a model's HVPs on one batch reuse (see NativeHvpCache); pass it as hvp()'s `cache`. */
export type HvpCache = NativeHvpCache;

/** A new, empty HVP cache, disposed with the scope it is made in (or by dispose()). */
export function hvpCache(): HvpCache {
  return track(newHvpCache());
}

/** A new HVP cache its maker disposes (not tracked by scopes). */
export const newHvpCache = (): HvpCache => new (native().HvpCache)();

export interface ModelOptions {
  dtype?: FloatDType;
  device?: string;
  /** Seeds parameter initialisation and dropout masks (two independent streams derived from it). */
  seed?: number;
  /**
   * Mixed precision, in the manner of torch.autocast: 'bf16' takes the
   * products of Linear and Conv2d layers in bfloat16 (operands rounded; the
   * activations stay bfloat16 through BatchNorm, activations and pooling, as
   * under autocast) in the passes that are differentiated once (lossAndGrad,
   * loss, forward: training steps and evaluation); the parameters,
   * gradients, optimizer state, BatchNorm's statistics and the loss stay
   * float32. HVPs, curvature jets and double backward (the Hessian
   * probes, the exact estimator) always run in float32. A float32 model; a
   * TorchScript model runs its forward under LibTorch's autocast instead. 'fp16' does the same in float16, where
   * LibTorch has float16 products on the device; its gradients need loss
   * scaling, which an Optimizer of an fp16 model does by default (its
   * `lossScale` option). Default 'fp32'.
   */
  precision?: Precision;
}

/**
 * The unit roundoff of each precision's products (half the spacing of
 * representable numbers at 1: 2⁻ᵖ for p significand bits): bfloat16 keeps 8
 * bits, float16 11, float32 24. The bounds of the precision tests and the
 * finite-difference floor are stated in these units.
 */
export const UNIT_ROUNDOFF: Readonly<Record<Precision, number>> = { fp32: 2 ** -24, bf16: 2 ** -8, fp16: 2 ** -11 };

export interface LossAndGrad {
  loss: number;
  grad: Tensor;
}

/** A module saved by torch.jit.save, and the loss on its outputs (default cross-entropy). */
export interface TorchScriptSource {
  torchscript: string;
  loss?: ModelSpec['loss'];
}

/** lossAndGrad's options: `out` receives the gradient; `method` as GradMethod says. */
export interface GradOptions {
  updateStats?: boolean;
  out?: Tensor;
  method?: GradMethod;
}

/** `{ updateStats?, out?, method? }` of lossAndGrad, checked. */
function gradOptions(fn: string, options: GradOptions | undefined) {
  const o = check.options(fn, 'options', options);
  if (o.updateStats !== undefined) check.boolean(fn, 'options.updateStats', o.updateStats);
  optionalTensorArg(fn, 'options.out', o.out);
  if (o.method !== undefined) check.string(fn, 'options.method', o.method);
  return o;
}

/** v, out and `{ method?, cache? }` of the HVP and curvature calls, checked before anything reads them. */
function hvpArgs<O extends { method?: string; cache?: HvpCache }>(fn: string, v: Tensor, out: Tensor | undefined, options: O | undefined, vName = 'v'): O {
  tensorArg(fn, vName, v);
  optionalTensorArg(fn, 'out', out);
  const o = check.options(fn, 'options', options);
  if (o.method !== undefined) check.string(fn, 'options.method', o.method);
  return o;
}

export class Model {
  /** the layers (empty for a TorchScript model: see `torchscript`) */
  readonly spec: ModelSpec;
  /** the TorchScript file the model was loaded from, if it was */
  readonly torchscript?: string;
  readonly native: NativeModel;
  /** The flat parameter vector itself (not a copy): writes change the model. */
  readonly params: Tensor;
  readonly numParams: number;
  readonly dtype: FloatDType;
  readonly device: string;
  /** the products of its training and evaluation passes: 'fp32', 'bf16' or 'fp16' (ModelOptions.precision) */
  readonly precision: Precision;

  constructor(spec: ModelSpecInput | ModelSpec | TorchScriptSource, options?: ModelOptions) {
    check.object('new Model', 'spec', spec);
    options = check.options('new Model', 'options', options);
    const script = 'torchscript' in spec ? spec : undefined;
    if (script) check.string('new Model', 'spec.torchscript', script.torchscript, 'a TorchScript file name');
    this.spec = script ? ({ input: [], layers: [], loss: script.loss } as unknown as ModelSpec) : parseModelSpec(spec as ModelSpecInput);
    this.torchscript = script?.torchscript;
    const seed = options.seed ?? 0;
    check.number('new Model', 'options.seed', seed, { integer: true, min: 0, max: Number.MAX_SAFE_INTEGER });
    this.native = new (native().Model)(script ? { torchscript: script.torchscript, loss: script.loss } : this.spec, {
      dtype: options.dtype ?? 'float32',
      device: options.device ?? 'cpu',
      initSeed: streamSeed(seed, 'init'),
      dropoutSeed: streamSeed(seed, 'dropout'),
    });
    this.precision = options.precision === undefined ? 'fp32' : check.oneOf('new Model', 'options.precision', options.precision, ['fp32', 'bf16', 'fp16'] as const);
    if (this.precision !== 'fp32') this.native.setPrecision(this.precision);
    this.params = persistent(() => this.native.params()); // the model's own alias, outside every scope()
    this.numParams = this.native.numParams;
    this.dtype = this.native.dtype;
    this.device = this.native.device;
    track(this);
  }

  /** Names, shapes and offsets of the parameters in the flat vector (PyTorch order). */
  paramInfo(): SlotInfo[] {
    return this.native.paramInfo();
  }

  get training(): boolean {
    return this.native.training;
  }
  /** How lossAndGrad takes a gradient when no method is given: 'rules' where every layer has one (in the model's own precision), else 'autograd'. */
  get gradMethod(): GradMethod {
    return this.native.gradMethod;
  }
  train(on = true): this {
    this.native.setTraining(check.boolean('Model.train', 'on', on));
    return this;
  }
  eval(): this {
    return this.train(false);
  }

  /** A copy of the flat parameters. */
  getParams(): Float32Array | Float64Array {
    return toFloatArray(this.params);
  }

  /** Overwrites the flat parameters from values or a flat tensor. */
  setParams(values: ArrayLike<number> | Tensor): void {
    if (isTensor(values)) {
      native().ops.copy(this.params, tensorArg('Model.setParams', 'values', values));
      return;
    }
    check.values('Model.setParams', 'values', values);
    if (values.length !== this.numParams)
      throw new check.ArgumentError('Model.setParams', 'values', `has ${values.length} values; the model has ${this.numParams} parameters`);
    const t = floatTensor(this, values);
    native().ops.copy(this.params, t);
    t.dispose();
  }

  /** A zero flat vector like the parameters (same size, dtype, device). */
  zerosLikeParams(): Tensor {
    this.alive('zerosLikeParams');
    return native().Tensor.zeros([this.numParams], this.dtype, this.device);
  }

  /** Parameters and buffers under PyTorch's state_dict names and shapes (copies). */
  stateDict(): Record<string, StTensor> {
    return stateDictOf(this);
  }

  /**
   * Loads a PyTorch-style state dict: a safetensors file (e.g. written by
   * safetensors.torch.save_file(module.state_dict(), ...)) or an object of
   * typed arrays. Names and shapes are checked first, with an error listing
   * what is missing, extra or mis-shaped; floats of the other dtype only with
   * {convertDType: true}.
   */
  loadStateDict(source: StateDictSource, options?: LoadStateDictOptions): void {
    loadStateDict(this, source, check.options('Model.loadStateDict', 'options', options));
  }

  /** Writes stateDict() as a safetensors file that safetensors.torch.load_file reads. */
  saveStateDict(file: string): void {
    saveStateDict(this, check.string('Model.saveStateDict', 'file', file, 'a file name'));
  }

  /** zeros of v's shape: a flat vector, or a block [K, P] of them */
  private zerosLike(v: Tensor): Tensor {
    return v.shape.length === 2 ? native().Tensor.zeros(v.shape, this.dtype, this.device) : this.zerosLikeParams();
  }

  forward(x: Tensor): Tensor {
    return this.native.forward(x);
  }

  /** Mean loss of a batch, without gradient. */
  loss(x: Tensor, y: Tensor): number {
    return this.native.loss(x, y, false);
  }

  /**
   * L(w) and ∇L(w) of a batch. `updateStats: false` leaves BatchNorm running
   * statistics untouched (perturbed passes); `out` receives the gradient.
   * `method`: 'rules' (the layers' own reverse rules, no autograd graph) or
   * 'autograd'; left out, the rules wherever they apply (docs/models.md).
   */
  lossAndGrad(x: Tensor, y: Tensor, options?: GradOptions): LossAndGrad {
    const o = gradOptions('Model.lossAndGrad', options);
    const grad = o.out ?? this.zerosLikeParams();
    const loss = this.native.lossAndGrad(x, y, grad, o.updateStats ?? true, undefined, o.method);
    return { loss, grad };
  }

  /**
   * H v of the batch's mean loss (BatchNorm statistics untouched); by
   * forward-over-reverse unless `method` says 'double-backward'. `out` may be v.
   * With `cache` (hvpCache()), what does not depend on v is computed by the
   * first HVP on this batch and parameters and reused by the next ones.
   * v may be a block [K, P] of K directions: H applied to each row in one
   * pass, the tangents batched (double backward runs them one by one).
   */
  hvp(x: Tensor, y: Tensor, v: Tensor, out?: Tensor, options?: { method?: HvpMethod; cache?: HvpCache }): Tensor {
    const o = hvpArgs('Model.hvp', v, out, options);
    const result = out ?? this.zerosLike(v);
    this.native.hvp(x, y, v, result, o.method, o.cache);
    return result;
  }

  /**
   * vᵀHv of the batch's mean loss for a flat v (the curvature along v, times
   * ‖v‖²). By default second-order jets are pushed forward through the
   * layers (d²L(w + t v)/dt² at t = 0): no reverse pass and about half an
   * HVP's matrix work, which is all a Hutchinson trace needs.
   * 'forward-over-reverse' and 'double-backward' take ⟨v, Hv⟩ from that HVP
   * instead (TorchScript models: double backward). `cache` as for hvp(); a
   * cache serves one method at a time.
   */
  curvature(x: Tensor, y: Tensor, v: Tensor, options?: { method?: CurvatureMethod; cache?: HvpCache }): number {
    options = hvpArgs('Model.curvature', v, undefined, options);
    if (v.shape.length !== 1) throw new UsamError(`curvature: v must be a flat vector [${this.numParams}], got shape [${v.shape.join(', ')}]; for a block use curvatures()`);
    return this.curvatureRows(x, y, v, 1, options)[0];
  }

  /** vᵀHv for each row of a block V [K, P], in one pass with the tangents batched. */
  curvatures(x: Tensor, y: Tensor, V: Tensor, options?: { method?: CurvatureMethod; cache?: HvpCache }): number[] {
    options = hvpArgs('Model.curvatures', V, undefined, options, 'V');
    if (V.shape.length !== 2 || V.shape[1] !== this.numParams)
      throw new check.ArgumentError('Model.curvatures', 'V', `must be a block [K, ${this.numParams}] of flat vectors, got shape [${V.shape.join(', ')}]; for one vector use curvature()`);
    return this.curvatureRows(x, y, V, V.shape[0], options);
  }

  private curvatureRows(x: Tensor, y: Tensor, v: Tensor, K: number, options: { method?: CurvatureMethod; cache?: HvpCache }): number[] {
    const out = native().Tensor.zeros([K], this.dtype, this.device);
    try {
      this.native.curvature(x, y, v, out, options.method, options.cache);
      return Array.from(toFloatArray(out));
    } finally {
      out.dispose();
    }
  }

  /** q = vᵀHv and ∇_w(vᵀHv), a third derivative; `cache` keeps the gradient's graph for the next v (the same bits). */
  quadraticFormGrad(x: Tensor, y: Tensor, v: Tensor, out?: Tensor, options?: { cache?: HvpCache }): { q: number; grad: Tensor } {
    const o = hvpArgs('Model.quadraticFormGrad', v, out, options);
    const grad = out ?? this.zerosLikeParams();
    const q = this.native.quadraticFormGrad(x, y, v, grad, o.cache);
    return { q, grad };
  }

  /**
   * Runs `fn` (async work on this model) after the model's earlier async
   * work has settled: one model's Async calls run one after the other, never
   * at the same time; different models run concurrently.
   */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    check.func('Model.exclusive', 'fn', fn, 'a function returning a Promise (the async work to run on this model)');
    this.alive('exclusive');
    const call = (): Promise<T> => {
      try {
        return Promise.resolve(fn());
      } catch (e) {
        return Promise.reject(e);
      }
    };
    // idle: start now (the native call is under way when this returns); else after the last one
    const run = this.tail ? this.tail.then(call, call) : call();
    const tail: Promise<void> = run.then(
      () => undefined,
      () => undefined,
    );
    this.tail = tail;
    void tail.then(() => {
      if (this.tail === tail) this.tail = undefined;
    });
    return run;
  }
  private tail?: Promise<void>;

  /** Settles when the model's queued async work has (with or without errors). */
  idle(): Promise<void> {
    return this.tail ?? Promise.resolve();
  }

  /** `await using`: waits for the model's async work, then disposes it. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.idle();
    this.dispose();
  }

  /** lossAndGrad on libuv's thread pool (the event loop runs meanwhile); the same numbers. */
  lossAndGradAsync(x: Tensor, y: Tensor, options?: GradOptions): Promise<LossAndGrad> {
    const o = gradOptions('Model.lossAndGradAsync', options);
    return this.exclusive(async () => {
      const grad = o.out ?? this.zerosLikeParams();
      const loss = await this.native.lossAndGradAsync(x, y, grad, o.updateStats ?? true, undefined, o.method);
      return { loss, grad };
    });
  }

  /** H v on libuv's thread pool; the same numbers as hvp(). */
  hvpAsync(x: Tensor, y: Tensor, v: Tensor, out?: Tensor, options?: { method?: HvpMethod; cache?: HvpCache }): Promise<Tensor> {
    const o = hvpArgs('Model.hvpAsync', v, out, options);
    return this.exclusive(async () => {
      const hv = out ?? this.zerosLike(v);
      await this.native.hvpAsync(x, y, v, hv, o.method, o.cache);
      return hv;
    });
  }

  /** The model's outputs on libuv's thread pool. */
  forwardAsync(x: Tensor): Promise<Tensor> {
    return this.exclusive(() => this.native.forwardAsync(x));
  }

  /** BatchNorm running statistics as one flat vector (an alias), and their names. */
  buffers(): { values: Tensor; info: SlotInfo[]; counters: Tensor; counterNames: string[] } {
    // made once and owned by the model (disposed with it): a fresh pair of
    // views per call, left to the garbage collector, piled up in a training
    // loop, whose finalizers only run when the event loop turns
    if (!this.bufferViews) {
      const info = this.native.bufferInfo();
      this.bufferViews = persistent(() => ({ values: this.native.buffers(), info: info.buffers, counters: this.native.counters(), counterNames: info.counters }));
    }
    return this.bufferViews;
  }
  private bufferViews?: { values: Tensor; info: SlotInfo[]; counters: Tensor; counterNames: string[] };

  [Symbol.dispose](): void {
    this.dispose();
  }

  private alive(method: string): void {
    if (this.params.disposed) throw new UsamError(`Model.${method}: this model was disposed; it cannot be used after dispose()`);
  }

  /** Frees the native network and the model's own tensors; disposing twice is harmless. */
  dispose(): void {
    // the network first: while an async call runs it refuses, and nothing is disposed
    this.native.dispose();
    this.bufferViews?.values.dispose();
    this.bufferViews?.counters.dispose();
    this.bufferViews = undefined;
    this.params.dispose();
  }
}

/**
 * A model from a module saved by torch.jit.save (scripted or traced) whose
 * forward maps a batch to logits (or to what `loss` takes). Its parameters and
 * buffers move into the model's flat storage, converted to `dtype`; every rule,
 * the probes and the state dicts work on it. HVPs run by double backward (the
 * hand-written forward-over-reverse rules are this library's layers' own).
 */
export function loadTorchScript(file: string, options?: ModelOptions & { loss?: ModelSpec['loss'] }): Model {
  check.string('loadTorchScript', 'file', file, 'a TorchScript file name (torch.jit.save)');
  const { loss, ...rest } = check.options('loadTorchScript', 'options', options);
  return new Model({ torchscript: file, loss }, rest);
}

/** A live Model for a door's argument `name`. */
export function modelArg(fn: string, name: string, v: unknown): Model {
  return check.instanceOf(fn, name, v, Model, 'a Model (new Model(mlp(...)), loadTorchScript(...))', (m) => m.params.disposed);
}

export function isTensor(v: unknown): v is Tensor {
  return typeof v === 'object' && v !== null && v instanceof (native().Tensor as unknown as new () => object);
}
