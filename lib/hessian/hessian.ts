// The Hessian probe API: hessian(model, data, {mode}) returns an object whose
// probes all run on native HVPs and report the HVPs they used. Results are
// plain JSON-serialisable objects.
import { parseOrThrow, UsamError } from '../errors.js';
import * as check from '../arguments.js';
import { isTensor, type Model } from '../model/model.js';
import type { CurvatureMethod, HvpMethod } from '../native/binding.js';
import { ops } from '../tensor/ops.js';
import type { Batch } from '../model/passes.js';
import { sampleInto } from '../random.js';
import { track } from '../tensor/scope.js';
import { runAsync, runSync, type Work } from '../model/work.js';
import { DEFAULT_HALF_CUBE, measure, type UserSampler } from '../sharpness/config.js';
import { resolveScalar, type ScalarFunction, type ScalarPresetName } from '../sharpness/functions.js';
import { type Tensor, tensorArg } from '../tensor/tensor.js';
import { eigenvalues, type EigenOptions, type EigenResult, type Which } from './eigen.js';
import { type Estimate, frobeniusSquared, hutchinson, hutchPlusPlus, quadrature, type QuadratureRun, spectralSum } from './estimators.js';
import { symmetricEigen } from './linalg.js';
import type { LanczosMemoryOptions } from './lanczos.js';
import { CurvatureOperator } from './operator.js';
import { operatorArgs, type OperatorOptions } from './operator-args.js';
import { extent } from '../extent.js';

/** hessian()'s options: those of every operator (OperatorOptions) and how its products are computed. */
export interface HessianOptions extends OperatorOptions {
  /** how each HVP is computed (default 'forward-over-reverse'; 'double-backward' is LibTorch's autograd) */
  hvpMethod?: HvpMethod;
  /**
   * how quadratic forms uᵀHu (trace, quadraticForm, sharpness) are computed:
   * 'forward-over-forward' (default) pushes second-order jets through the
   * layers, with no reverse pass (about half an HVP's matrix work); an HVP
   * method takes ⟨u, Hu⟩ from that HVP (the default with hvpMethod
   * 'double-backward' and for TorchScript models).
   */
  curvatureMethod?: CurvatureMethod;
}

export { FULL_HESSIAN_LIMIT, type FullHessian } from './full.js';
import { fullMatrix, type FullHessian } from './full.js';

export type SharpnessProbe =
  | { measure: 'trace' | 'frobenius' | 'det'; samples?: number; halfCube?: number; seed?: number }
  | {
      psi: ScalarPresetName | ScalarFunction;
      phi: ScalarPresetName | ScalarFunction;
      mu?: 'gaussian' | 'rademacher' | 'sphere' | 'cube' | UserSampler;
      halfCube?: number;
      samples?: number;
      seed?: number;
    };

/** Hutchinson or Hutch++ (`block`: vectors per HVP pass, the same estimate). */
export type TraceOptions = { method?: 'hutchinson' | 'hutch++'; samples?: number; seed?: number; block?: number };
export type FrobeniusOptions = { samples?: number; seed?: number; block?: number };
/** SLQ: `runs` Lanczos runs of `steps` steps; `block`: that many runs in lockstep, one block HVP per step (the same runs). */
export type DensityOptions = { steps?: number; runs?: number; seed?: number; gridPoints?: number; sigma?: number; block?: number } & LanczosMemoryOptions;
export type LogAbsDetOptions = { damping: number; steps?: number; runs?: number; seed?: number; block?: number } & LanczosMemoryOptions;

export function hessian(model: Model, data: Batch | Iterable<Batch>, options?: Partial<HessianOptions>): Curvature {
  const a = operatorArgs('hessian', model, data, options);
  const o = a.options as Partial<HessianOptions>;
  if (o.hvpMethod !== undefined && o.hvpMethod !== 'forward-over-reverse' && o.hvpMethod !== 'double-backward')
    throw new UsamError(`hessian: options.hvpMethod is '${String(o.hvpMethod)}'; use 'forward-over-reverse' or 'double-backward'`);
  const curvatureMethods = ['forward-over-forward', 'forward-over-reverse', 'double-backward'];
  if (o.curvatureMethod !== undefined && !curvatureMethods.includes(o.curvatureMethod))
    throw new UsamError(`hessian: options.curvatureMethod is '${String(o.curvatureMethod)}'; use ${curvatureMethods.map((m) => `'${m}'`).join(', ')}`);
  return new Curvature(new CurvatureOperator(model, a.batches, { ...a.operator, method: o.hvpMethod, curvatureMethod: o.curvatureMethod }));
}

/**
 * The probes of one curvature operator (hessian(), ggn(), fisher()): HVPs
 * (or G·v), quadratic forms, eigenvalues, trace, ‖·‖_F², spectral density,
 * log|det|, the full matrix, sharpness measures. Exported as Hessian too.
 */
export class Curvature {
  constructor(readonly operator: CurvatureOperator) {
    check.instanceOf('new Curvature', 'operator', operator, CurvatureOperator, 'a CurvatureOperator (make one with hessian(), ggn() or fisher())');
    track(this);
  }

  /** Dimension of the (restricted) Hessian. */
  get size(): number {
    return this.operator.size;
  }
  /** HVPs used by all probes so far. */
  get hvps(): number {
    return this.operator.hvps;
  }

  /** v as a flat tensor restricted to the operator's subspace (a copy: the caller's v is left alone). */
  private restricted(v: Tensor | ArrayLike<number>, fn: string, name: string): Tensor {
    if (isTensor(v)) tensorArg(fn, name, v);
    else check.values(fn, name, v);
    return this.operator.restrict(isTensor(v) ? v.clone() : this.operator.fromValues(v));
  }

  /** H v (a new flat tensor). */
  *hvpWork(v: Tensor | ArrayLike<number>): Work<Tensor> {
    const u = this.restricted(v, 'Hessian.hvp', 'v');
    const out = (yield* this.operator.applyWork(u, this.operator.zeros()));
    u.dispose();
    return out;
  }

  /** uᵀ H u (of the restricted u), from a curvature pass. */
  *quadraticFormWork(u: Tensor | ArrayLike<number>): Work<number> {
    const r = this.restricted(u, 'Hessian.quadraticForm', 'u');
    try {
      return yield* this.curvatureOf(r);
    } finally {
      r.dispose();
    }
  }

  // uᵀHu of a restricted flat u.
  private *curvatureOf(u: Tensor): Work<number> {
    return (yield* this.operator.curvatureWork(u))[0];
  }

  *eigenvaluesWork<W extends Which = 'largest'>(options: EigenOptions & { which?: W } = {}): Work<EigenResult<W>> {
    check.options('Hessian.eigenvalues', 'options', options);
    return (yield* eigenvalues(this.operator, options)) as EigenResult<W>;
  }

  /** `block`: Hutchinson vectors per HVP pass (the same estimate; bench:hessian measures what it costs or saves) */
  *traceWork(o: TraceOptions = {}): Work<Estimate> {
    check.options('Hessian.trace', 'options', o);
    if (o.method !== undefined && o.method !== 'hutchinson' && o.method !== 'hutch++') throw new UsamError(`trace: options.method is '${String(o.method)}'; use 'hutchinson' or 'hutch++'`);
    const samples = o.samples ?? 100;
    return o.method === 'hutch++' ? yield* hutchPlusPlus(this.operator, samples, o.seed ?? 0, o.block ?? 1) : yield* hutchinson(this.operator, samples, o.seed ?? 0, o.block ?? 1);
  }

  *frobeniusSquaredWork(o: FrobeniusOptions = {}): Work<Estimate> {
    check.options('Hessian.frobeniusSquared', 'options', o);
    return yield* frobeniusSquared(this.operator, o.samples ?? 100, o.seed ?? 0, o.block ?? 1);
  }

  /**
   * Spectral density by SLQ: the quadrature nodes and weights of each run
   * (weights sum to 1 per run), and a gaussian-smoothed density on a grid.
   */
  *densityWork(o: DensityOptions = {}) {
    check.options('Hessian.density', 'options', o);
    const q = yield* quadrature(this.operator, o.steps ?? 80, o.runs ?? 5, o.seed ?? 0, o, o.block ?? 1);
    const all = q.runs.flatMap((r) => r.nodes);
    const { min: lo, max: hi } = extent(all);
    const span = Math.max(hi - lo, 1e-12);
    const sigma = o.sigma ?? span / 100;
    const points = o.gridPoints ?? 400;
    const grid = Array.from({ length: points }, (_, i) => lo - 0.05 * span + (1.1 * span * i) / (points - 1));
    const density = grid.map((x) => {
      let s = 0;
      for (const r of q.runs) r.nodes.forEach((t, j) => (s += r.weights[j] * Math.exp(-((x - t) ** 2) / (2 * sigma * sigma))));
      return s / (q.runs.length * sigma * Math.sqrt(2 * Math.PI));
    });
    const { reorthogonalization, vectorBytes, note } = q;
    return { runs: q.runs as QuadratureRun[], grid, density, sigma, size: this.size, hvps: q.hvps, reorthogonalization, vectorBytes, ...(note ? { note } : {}) };
  }

  /** Σ log(|λ_i| + damping) by SLQ (the Hessian of a network is singular: undamped log|det| is −∞). */
  *logAbsDetWork(o: LogAbsDetOptions) {
    check.object('Hessian.logAbsDet', 'options', o);
    if (!(o.damping > 0))
      throw new check.ArgumentError('Hessian.logAbsDet', 'options.damping', `must be > 0, got ${check.describeValue(o.damping)} (Σ log(|λ| + damping); a network Hessian has exact zero eigenvalues)`);
    const r = yield* spectralSum(this.operator, (l) => Math.log(Math.abs(l) + o.damping), o.steps ?? 100, o.runs ?? 10, o.seed ?? 0, o, o.block ?? 1);
    return { damping: o.damping, ...r };
  }

  /** The full (restricted) Hessian, symmetrised, from `size` HVPs; refused above `maxSize` rows. */
  *fullWork(o: { maxSize?: number } = {}): Work<FullHessian> {
    check.options('Hessian.full', 'options', o);
    return yield* fullMatrix(this.operator, this.size, o.maxSize);
  }

  /** Exact spectral quantities from full(): eigenvalues, trace, ‖H‖_F², extremes, Σ log(|λ| + damping). */
  *spectrumWork(o: { damping?: number; maxSize?: number } = {}) {
    check.options('Hessian.spectrum', 'options', o);
    const f = yield* this.fullWork(o);
    const { values } = symmetricEigen(f.matrix, f.size);
    let trace = 0, frob = 0;
    for (let i = 0; i < f.size; i++) trace += f.matrix[i * f.size + i];
    for (const h of f.matrix) frob += h * h;
    const damping = o.damping;
    return {
      eigenvalues: Array.from(values),
      trace,
      frobeniusSquared: frob,
      maxEigenvalue: values[f.size - 1],
      minEigenvalue: values[0],
      ...(damping !== undefined ? { damping, logAbsDetDamped: values.reduce((s, l) => s + Math.log(Math.abs(l) + damping), 0) } : {}),
      hvps: f.hvps,
    };
  }

  /**
   * S = phi(mean_i psi(u_iᵀ H u_i)) with exact quadratic forms (math §1), or a
   * named measure: trace (tr H), frobenius (½·SampleVar(uᵀHu) = ‖H‖_F²),
   * det (the Det-SAM measure with its cube).
   */
  *sharpnessWork(config: SharpnessProbe): Work<{ estimate: number; standardError?: number; samples: number; hvps: number }> {
    check.object('Hessian.sharpness', 'config', config);
    const samples = config.samples ?? 100;
    check.number('Hessian.sharpness', 'config.samples', samples, { integer: true, min: 2 });
    let psi: ScalarFunction, phi: ScalarFunction, mu: NonNullable<Extract<SharpnessProbe, { psi: unknown }>['mu']>;
    let frobenius = false;
    if ('measure' in config) {
      check.oneOf('Hessian.sharpness', 'config.measure', config.measure, ['trace', 'frobenius', 'det'] as const);
      if (config.measure === 'det') {
        psi = resolveScalar('exp-neg-half');
        phi = resolveScalar('inverse-square');
        mu = 'cube';
      } else {
        psi = phi = resolveScalar('identity');
        mu = 'gaussian';
        frobenius = config.measure === 'frobenius';
      }
    } else {
      if (config.psi === undefined || config.phi === undefined)
        throw new check.ArgumentError('Hessian.sharpness', 'config', "needs a named measure { measure: 'trace' | 'frobenius' | 'det' } or the functions { psi, phi, mu? }");
      psi = resolveScalar(config.psi);
      phi = resolveScalar(config.phi);
      mu = parseOrThrow(measure, config.mu ?? 'gaussian', 'sharpness probe', 'config.mu');
    }
    const op = this.operator;
    const gen = op.newGenerator(config.seed ?? 0);
    const before = op.hvps;
    const u = op.zeros();
    const q: number[] = [];
    for (let i = 0; i < samples; i++) {
      if (typeof mu === 'function') {
        const t = op.fromValues(mu(op.model.numParams));
        ops.copy(u, t);
        t.dispose();
      } else sampleInto(gen, mu, u, config.halfCube ?? DEFAULT_HALF_CUBE);
      op.restrict(u);
      q.push(yield* this.curvatureOf(u));
    }
    u.dispose();
    const n = q.length;
    const mean = q.reduce((a, b) => a + b, 0) / n;
    if (frobenius) {
      const v = q.reduce((s, x) => s + (x - mean) ** 2, 0) / (n - 1);
      return { estimate: v / 2, samples: n, hvps: op.hvps - before };
    }
    const vals = q.map((x) => psi.f(x));
    const m = vals.reduce((a, b) => a + b, 0) / n;
    const sd = Math.sqrt(vals.reduce((s, x) => s + (x - m) ** 2, 0) / (n - 1) / n);
    // delta method: SE(phi(m)) ≈ |phi'(m)|·SE(m)
    return { estimate: phi.f(m), standardError: Math.abs(phi.df(m)) * sd, samples: n, hvps: op.hvps - before };
  }

  // The probes: each written once as Work (model/work.ts), run at once or,
  // as its …Async twin, on libuv's thread pool with the event loop running
  // between HVPs; one model's async work runs one call at a time.
  private runAsync<T>(work: Work<T>): Promise<T> {
    return this.operator.model.exclusive(() => runAsync(work));
  }
  hvp(v: Tensor | ArrayLike<number>) {
    return runSync(this.hvpWork(v));
  }
  hvpAsync(v: Tensor | ArrayLike<number>) {
    return this.runAsync(this.hvpWork(v));
  }
  quadraticForm(u: Tensor | ArrayLike<number>) {
    return runSync(this.quadraticFormWork(u));
  }
  quadraticFormAsync(u: Tensor | ArrayLike<number>) {
    return this.runAsync(this.quadraticFormWork(u));
  }
  eigenvalues<W extends Which = 'largest'>(options: EigenOptions & { which?: W } = {}) {
    return runSync(this.eigenvaluesWork<W>(options));
  }
  eigenvaluesAsync<W extends Which = 'largest'>(options: EigenOptions & { which?: W } = {}) {
    return this.runAsync(this.eigenvaluesWork<W>(options));
  }
  trace(o: TraceOptions = {}) {
    return runSync(this.traceWork(o));
  }
  traceAsync(o: TraceOptions = {}) {
    return this.runAsync(this.traceWork(o));
  }
  frobeniusSquared(o: FrobeniusOptions = {}) {
    return runSync(this.frobeniusSquaredWork(o));
  }
  frobeniusSquaredAsync(o: FrobeniusOptions = {}) {
    return this.runAsync(this.frobeniusSquaredWork(o));
  }
  density(o: DensityOptions = {}) {
    return runSync(this.densityWork(o));
  }
  densityAsync(o: DensityOptions = {}) {
    return this.runAsync(this.densityWork(o));
  }
  logAbsDet(o: LogAbsDetOptions) {
    return runSync(this.logAbsDetWork(o));
  }
  logAbsDetAsync(o: LogAbsDetOptions) {
    return this.runAsync(this.logAbsDetWork(o));
  }
  full(o: { maxSize?: number } = {}) {
    return runSync(this.fullWork(o));
  }
  fullAsync(o: { maxSize?: number } = {}) {
    return this.runAsync(this.fullWork(o));
  }
  spectrum(o: { damping?: number; maxSize?: number } = {}) {
    return runSync(this.spectrumWork(o));
  }
  spectrumAsync(o: { damping?: number; maxSize?: number } = {}) {
    return this.runAsync(this.spectrumWork(o));
  }
  sharpness(config: SharpnessProbe) {
    return runSync(this.sharpnessWork(config));
  }
  sharpnessAsync(config: SharpnessProbe) {
    return this.runAsync(this.sharpnessWork(config));
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  /** `await using`: waits for the model's async work (its probes), then disposes the operator. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.operator.model.idle();
    this.dispose();
  }

  /** Frees the operator's buffers (not the model); disposing twice is harmless. */
  dispose(): void {
    this.operator.dispose();
  }
}


/** The probes' class under its first name: hessian() returns one. */
export { Curvature as Hessian };
