// TypeScript types of the raw addon surface (native/addon.cc registers it).
// Only lib/ wrappers use these directly.

export type DType = 'float32' | 'float64' | 'int64';
export type FloatDType = 'float32' | 'float64';
export type Device = 'cpu' | 'cuda' | `cuda:${number}`;
export type FloatArray = Float32Array | Float64Array;
/** How a gradient is taken: by the layers' own first-order reverse rules (no autograd graph; linear, activation, dropout, flatten, identity and residual layers, the model's own precision, no loss scale) or by autograd; left out, the rules wherever they apply. */
export type GradMethod = 'rules' | 'autograd';
/**
 * How an HVP is computed: 'forward-over-reverse' (default; hand-written
 * tangent rules per layer, about 2/3 of the matrix work of double backward)
 * or 'double-backward' (LibTorch's autograd differentiating the gradient).
 */
export type HvpMethod = 'forward-over-reverse' | 'double-backward';
/** How vᵀHv is taken: second-order jets pushed forward (no reverse pass), or ⟨v, Hv⟩ from an HVP. */
export type CurvatureMethod = 'forward-over-forward' | HvpMethod;
/** The Gauss-Newton-type curvatures: Jᵀ M J with the loss's Hessian in the outputs (GGN) or the per-sample gradients' second moment (Fisher). */
export type GaussNewtonKind = 'ggn' | 'empirical-fisher' | 'mc-fisher';

export interface NativeTensor {
  readonly shape: number[];
  readonly dtype: DType | 'uint8';
  readonly device: string;
  readonly numel: number;
  readonly disposed: boolean;
  toArray(): Float32Array | Float64Array | BigInt64Array | Uint8Array;
  /** frees the tensor's memory now; disposing twice is harmless */
  dispose(): void;
  /** elements [start, start + length) of a 1-D tensor, as a view that writes through */
  narrow(start: number, length: number): NativeTensor;
  /** the same elements under another shape, sharing memory (a contiguous tensor only) */
  view(shape: number[]): NativeTensor;
  /**
   * writes `data` into this tensor in place (exactly numel values, converted to its dtype and
   * device; floats for float tensors, integers for int64) and returns this tensor
   */
  copyFrom(data: Float32Array | Float64Array | Int32Array | BigInt64Array): NativeTensor;
  /** the same, for `using` */
  [Symbol.dispose](): void;
  clone(): NativeTensor;
  to(device: string, dtype?: DType): NativeTensor;
  item(): number;
}

export interface NativeTensorStatic {
  fromArray(data: Float32Array | Float64Array | Int32Array | BigInt64Array, shape: number[], dtype: DType, device: string): NativeTensor;
  zeros(shape: number[], dtype: DType, device: string): NativeTensor;
  /** scope bookkeeping (lib/scope.ts): tensors made between begin and end are disposed at the end unless kept (null: all kept) */
  beginScope(): void;
  endScope(keep: NativeTensor[] | null): void;
  /** while on, tensors made belong to no scope (what the library's objects own) */
  persistent(on: boolean): void;
}

export interface SlotInfo {
  name: string;
  shape: number[];
  offset: number;
  numel: number;
}

/** The products of a model's training and evaluation passes: float32 as is, or bfloat16 (mixed precision). */
export type Precision = 'fp32' | 'bf16' | 'fp16';

export interface NativeModel {
  readonly numParams: number;
  readonly dtype: FloatDType;
  readonly device: string;
  readonly training: boolean;
  paramInfo(): SlotInfo[];
  bufferInfo(): { buffers: SlotInfo[]; counters: string[] };
  params(): NativeTensor;
  buffers(): NativeTensor;
  counters(): NativeTensor;
  setTraining(training: boolean): void;
  /** 'bf16' / 'fp16': Linear and Conv2d products of the once-differentiated passes in bfloat16 / float16 (float32 models; TorchScript under LibTorch's autocast) */
  setPrecision(precision: Precision): void;
  forward(x: NativeTensor): NativeTensor;
  loss(x: NativeTensor, y: NativeTensor, updateStats?: boolean): number;
  lossAndGrad(x: NativeTensor, y: NativeTensor, grad: NativeTensor, updateStats: boolean, lossScale?: number, method?: GradMethod): number;
  /** BatchNorm statistics over several passes, applied to the running statistics once (commit) or not at all (discard). */
  beginStats(): void;
  commitStats(): void;
  discardStats(): void;
  /** data-parallel: the gathered statistics as float64 sums [n, Σx, Σx²] per BatchNorm layer; poolStats takes them summed over the ranks */
  statsSums(): NativeTensor;
  poolStats(sums: NativeTensor): void;
  /** correctly classified samples of the last lossAndGrad (cross-entropy), −1 otherwise */
  readonly lastCorrect: number;
  /** Σ of the last lossAndGrad's gradient as written (before a loss scale's division), computed by its copy on the CPU; null where not (CUDA). Finite exactly when every entry is. */
  readonly lastGradSum: number | null;
  /** Σ of the squares of the last lossAndGrad's gradient (its squared norm, in double), or null where lastGradSum is */
  readonly lastGradSquares: number | null;
  /** the method lossAndGrad takes when none is given (at loss scale 1): 'rules' where the layers' rules apply, else 'autograd' */
  readonly gradMethod: GradMethod;
  /**
   * with `cache`, what does not depend on v is computed once per batch and parameters and reused;
   * v and out may be blocks [K, P] of K directions (one pass with the tangents batched)
   */
  hvp(x: NativeTensor, y: NativeTensor, v: NativeTensor, out: NativeTensor, method?: HvpMethod, cache?: NativeHvpCache): number;
  /**
   * vᵀHv into `out` ([1] for a flat v, [K] for a block [K, P]); 'forward-over-forward' (the default
   * for layer models) pushes second-order jets through the layers and runs no reverse pass
   */
  curvature(x: NativeTensor, y: NativeTensor, v: NativeTensor, out: NativeTensor, method?: CurvatureMethod, cache?: NativeHvpCache): number;
  /**
   * G·v into `out` for a Gauss-Newton-type `kind` (v, out flat or blocks [K, P]; with `cache` as hvp's);
   * 'mc-fisher' takes y as targets drawn by fisherTargets
   */
  gaussNewton(x: NativeTensor, y: NativeTensor, v: NativeTensor, out: NativeTensor, kind: GaussNewtonKind, cache?: NativeHvpCache): number;
  gaussNewtonAsync(x: NativeTensor, y: NativeTensor, v: NativeTensor, out: NativeTensor, kind: GaussNewtonKind, cache?: NativeHvpCache): Promise<number>;
  /**
   * targets drawn from the model's predictive distribution at `outputs`, one set per leading row of `noise`:
   * cross-entropy labels (noise uniform [M, N]), BCE 0/1 (uniform [M, ...outputs]), MSE outputs + √(d/2)·noise (normal [M, ...outputs])
   */
  fisherTargets(outputs: NativeTensor, noise: NativeTensor): NativeTensor;
  /** the Async twins run on libuv's thread pool; the model refuses other calls until they settle */
  forwardAsync(x: NativeTensor): Promise<NativeTensor>;
  lossAndGradAsync(x: NativeTensor, y: NativeTensor, grad: NativeTensor, updateStats: boolean, lossScale?: number, method?: GradMethod): Promise<number>;
  hvpAsync(x: NativeTensor, y: NativeTensor, v: NativeTensor, out: NativeTensor, method?: HvpMethod, cache?: NativeHvpCache): Promise<number>;
  curvatureAsync(x: NativeTensor, y: NativeTensor, v: NativeTensor, out: NativeTensor, method?: CurvatureMethod, cache?: NativeHvpCache): Promise<number>;
  quadraticFormGradAsync(x: NativeTensor, y: NativeTensor, v: NativeTensor, out: NativeTensor, cache?: NativeHvpCache): Promise<number>;
  quadraticFormGrad(x: NativeTensor, y: NativeTensor, v: NativeTensor, out: NativeTensor, cache?: NativeHvpCache): number;
  getRngState(): Uint8Array;
  setRngState(state: Uint8Array): void;
  dispose(): void;
}

/**
 * What HVPs on one batch can reuse: the first HVP records what does not depend on v (the
 * activations and the loss gradient at every layer, or for 'double-backward' the gradient with
 * its graph), later ones replay it. Any other model, batch, mode, method or an in-place change of
 * the parameters, buffers or batch makes the next HVP record afresh.
 */
export interface NativeHvpCache {
  /** bytes held (the graph's saved tensors of 'double-backward' are not counted) */
  readonly bytes: number;
  /** HVPs that recorded, and HVPs that replayed */
  readonly records: number;
  readonly replays: number;
  readonly disposed: boolean;
  clear(): void;
  dispose(): void;
  [Symbol.dispose](): void;
}

export interface NativeModelOptions {
  dtype: FloatDType;
  device: string;
  /** seeds of the initialisation and dropout streams (lib/random.ts streamSeed) */
  initSeed: number;
  dropoutSeed: number;
}

export interface NativeGenerator {
  readonly device: string;
  gaussian(out: NativeTensor): void;
  rademacher(out: NativeTensor): void;
  sphere(out: NativeTensor): void;
  uniform(out: NativeTensor, low: number, high: number): void;
  /** Draws into `out` on a background thread; `out` must not be read before wait(). */
  fillAsync(out: NativeTensor, kind: 'gaussian' | 'rademacher' | 'sphere' | 'uniform', low?: number, high?: number): void;
  wait(): void;
  randperm(n: number): Int32Array;
  getState(): Uint8Array;
  setState(state: Uint8Array): void;
  /** Keeps a copy of the state natively (no array), for rewind(): cheaper than getState() on a hot path. */
  mark(): void;
  /** Returns to the state of the last mark(); refused before any mark(). */
  rewind(): void;
}

export interface NativeOps {
  axpy(y: NativeTensor, a: number, x: NativeTensor): void;
  scale(x: NativeTensor, a: number): void;
  addScalar(x: NativeTensor, c: number): void;
  fill(x: NativeTensor, value: number): void;
  dot(a: NativeTensor, b: NativeTensor): number;
  norm(x: NativeTensor): number;
  sum(x: NativeTensor): number;
  copy(dst: NativeTensor, src: NativeTensor): void;
  abs(dst: NativeTensor, src: NativeTensor): void;
  mul(dst: NativeTensor, a: NativeTensor, b: NativeTensor): void;
  /** dst = Σ c_i·t_i in one fused pass; returns the sum of dst (NaN/±Inf when any element is) */
  combine(dst: NativeTensor, coefficients: number[], tensors: NativeTensor[]): number;
  /** dst = base + scale·dir, returns ⟨probe, dir⟩ (accumulated in double; 0 without a probe), one pass; dst may alias base only; with `keep`, keep = base in the same pass */
  shiftDot(dst: NativeTensor, base: NativeTensor, scale: number, dir: NativeTensor, probe?: NativeTensor, keep?: NativeTensor): number;
  allFinite(x: NativeTensor): boolean;
}

export interface SgdStepOptions {
  lr: number;
  momentum: number;
  dampening: number;
  weightDecay: number;
  nesterov: boolean;
  first: boolean;
}

export interface AdamStepOptions {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  decoupled: boolean;
  step: number;
}

export interface NativeOptim {
  /** `from`: the weights the step starts from (param's layout), written as param's new value in the same pass; default param itself */
  sgdStep(param: NativeTensor, grad: NativeTensor, momentumBuffer: NativeTensor, options: SgdStepOptions, from?: NativeTensor): void;
  adamStep(param: NativeTensor, grad: NativeTensor, expAvg: NativeTensor, expAvgSq: NativeTensor, options: AdamStepOptions, from?: NativeTensor): void;
}

export interface NativeProcessGroupOptions {
  rank: number;
  worldSize: number;
  host: string;
  port: number;
  timeoutMs: number;
  /** host the TCPStore (default: rank 0) */
  server?: boolean;
  /** keys under this prefix (torchrun's agent store) */
  prefix?: string;
  /** 'gloo' (CPU tensors, default) or 'nccl' (CUDA tensors; CUDA builds with NCCL) */
  backend?: 'gloo' | 'nccl';
  /** meet through a c10d FileStore at this path instead of the TCPStore (host, port, server, prefix unused) */
  storeFile?: string;
  /** Gloo listens on this address, or on this interface's */
  glooHost?: string;
  glooInterface?: string;
  /** "name=value;..." shared by the run's ranks: checked against rank 0's at rendezvous (a rank that differs refuses itself; rank 0 checks every rank) */
  fingerprint?: string;
}

export interface NativeProcessGroup {
  readonly rank: number;
  readonly worldSize: number;
  readonly backend: string;
  /** how allreduces travel: 'shared memory', 'gloo' (with the reason when a store-file group has no shared memory), or 'nccl' */
  readonly transport: string;
  allreduce(t: NativeTensor, op?: 'sum' | 'avg' | 'max' | 'min'): void;
  broadcast(t: NativeTensor, root?: number): void;
  barrier(): void;
  dispose(): void;
}

export interface NativeVersions {
  addon: string;
  flavour: 'cpu' | 'cuda';
  torch: string;
  cudaAvailable: boolean;
  cudaDeviceCount: number;
  threads: number;
  /** OpenBLAS's threads where the process has OpenBLAS (Debian's LibTorch 1.13), else 0; setThreads sets both */
  blasThreads: number;
  /** freed tensor memory is kept for reuse (glibc malloc tuned at load; USAM_MALLOC_TUNING=0 turns it off) */
  mallocTuned: boolean;
  /** intra-op threads set at load (one per usable core, as PyTorch does); 0 when OMP_NUM_THREADS / MKL_NUM_THREADS decided */
  defaultThreads: number;
  /** c10d backends of this build for data-parallel training: 'gloo', 'gloo,nccl', or '' (built without Gloo's headers) */
  distributed: string;
  /** what the binary was built against, as JSON (readBuildInfo in ./libtorch.mjs reads the same from the file) */
  build: string;
  /** the LibTorch file this process really loaded (libtorch_cpu) */
  torchLibrary: string;
  /**
   * who multiplies float32 Linear layers on the CPU now: 'onednn' (oneDNN's sgemm, called directly: builds against a 1.x
   * LibTorch with the system's libdnnl, or any build with USAM_DNNL_SGEMM=1 and Debian's libdnnl2 installed while it
   * runs one intra-op thread) or 'libtorch' (at::mm, LibTorch's BLAS)
   */
  sgemm: 'onednn' | 'libtorch';
  /**
   * the loop the fused vector ops' double sums take (a gradient's Σ and ‖g‖², dot, norm, combine, shiftDot): 'avx2' where
   * the CPU has it, else 'portable'; the same bits either way (USAM_PORTABLE_SUMS=1 forces 'portable')
   */
  fusedSums: 'avx2' | 'portable';
}

export interface NativeLinalg {
  /** Eigenvalues (ascending) and optionally eigenvectors (column j of the row-major result) of a symmetric n×n float64 matrix, by LAPACK; reads the lower triangle. */
  symmetricEigen(a: Float64Array, n: number, wantVectors: boolean): { values: Float64Array; vectors?: Float64Array };
}

export interface Addon {
  Tensor: NativeTensorStatic & (new (...args: never[]) => NativeTensor);
  Model: new (spec: object, options: NativeModelOptions) => NativeModel;
  Generator: new (seed: number, device?: string) => NativeGenerator;
  HvpCache: new () => NativeHvpCache;
  ProcessGroup: new (options: NativeProcessGroupOptions) => NativeProcessGroup;
  ops: NativeOps;
  optim: NativeOptim;
  linalg: NativeLinalg;
  versions(): NativeVersions;
  /** live JavaScript-held tensors, and the C heap by glibc's mallinfo2 (absent elsewhere) */
  /** malloc_trim: whole free pages glibc kept go back to the system; true when some were (glibc only) */
  trimMemory(): boolean;
  memory(): { liveTensors: number; liveTensorBytes: number; mallocInUse?: number; mallocFree?: number; mallocMmapped?: number };
  setThreads(n: number): void;
  /** LibTorch's CPU allocations counted while on: `true` starts (calls nest), `false` ends; the totals since counting first began */
  allocationCounter(on: boolean): { count: number; bytes: number };
  /** the class the addon makes its errors of (NativeError, lib/errors.ts); load.ts sets it once */
  setErrorClass(errorClass: new (message: string) => Error): void;
}
