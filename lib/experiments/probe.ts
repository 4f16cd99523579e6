// Hessian probes of a saved run (`usam probe RUN_DIR`): the run's model at
// its checkpoint, on a chosen split and number of batches, through the same
// probe suite the Trainer runs each epoch (λmax and λmin, trace, ‖H‖_F², the
// damped log|det|, the SLQ density), written as JSON and as an HTML page.
import { existsSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { z } from 'zod';
import { DataLoader } from '../data/loader.js';
import { type Curvature, hessian } from '../hessian/hessian.js';
import { compareSubspaces, type SubspaceComparison } from '../hessian/compare.js';
import { fisher, ggn } from '../hessian/gauss-newton.js';
import { type Landscape, lossLandscape } from '../hessian/landscape.js';
import { landscapeChart } from '../report/heatmap.js';
import { type ProbeName, type ProbeSuiteResult, probeSuiteWork } from '../hessian/suite.js';
import type { Batch } from '../model/passes.js';
import type { Model } from '../model/model.js';
import { parseOrThrow, UsamError } from '../errors.js';
import { runSync } from '../model/work.js';
import { streamSeed } from '../random.js';
import { densityChart, densityPoints, esc } from '../report/charts.js';
import { loadCheckpoint } from '../train/checkpoint.js';
import { datasetsOf, modelOf, parseTrainConfig, type TrainConfig } from '../train/config.js';
import { htmlPage } from '../report/page.js';
import { fmt } from '../report/report.js';
import { CHECKPOINT_FILE } from '../train/trainer.js';
import { setThreads, versions } from '../native/runtime.js';

export const PROBE_FORMAT = 'usam-probe/1';

export const probeConfig = z
  .object({
    /** the data the Hessian is of: the run's training split (as trained: subset, label noise), its test split, or its held-out validation split */
    split: z.enum(['train', 'test', 'validation']).default('train'),
    /** how many batches, from the split's start, in order */
    batches: z.number().int().positive().default(4),
    batchSize: z.number().int().positive().default(256),
    /** BatchNorm and dropout: running statistics and no dropout ('eval', as evaluated) or batch statistics ('train') */
    mode: z.enum(['eval', 'train']).default('eval'),
    /** Hutchinson samples for the trace and ‖H‖_F² */
    samples: z.number().int().min(2).default(50),
    /** Lanczos steps and runs of the SLQ density and log|det| */
    slqSteps: z.number().int().min(2).default(40),
    slqRuns: z.number().int().positive().default(2),
    /** δ of Σ log(|λ| + δ) */
    damping: z.number().positive().default(1e-3),
    seed: z.number().int().nonnegative().default(0),
    threads: z.number().int().positive().optional(),
    /** for a TorchScript file (not a run directory): the data, normalised as 'usam train' does, and the dtype */
    dataset: z.enum(['fashion-mnist', 'mnist', 'cifar10', 'cifar100', 'synthetic']).optional(),
    dataDir: z.string().optional(),
    dtype: z.enum(['float32', 'float64']).optional(),
    /** for a TorchScript file: weights to load first (a safetensors state dict, PyTorch's names) */
    stateDict: z.string().optional(),
    /**
     * compare the Hessian's top eigenspace with another operator's on the same
     * batches: 'ggn', 'empirical-fisher', 'mc-fisher' (of the same weights), or
     * the folder of another run of the same model (its checkpoint's Hessian)
     */
    compare: z.string().min(1).optional(),
    /** the dimension of the compared eigenspaces */
    compareK: z.number().int().positive().default(10),
    /** the loss on a plane through the weights: along the Hessian's top two eigenvectors, or two filter-normalised random directions */
    landscape: z.enum(['eigenvectors', 'random']).optional(),
    /** grid points per axis (odd) and the half-width of α, β */
    landscapePoints: z.number().int().min(3).max(401).default(21),
    landscapeRange: z.number().positive().default(1),
    /** where to write the JSON and the page (default RUN_DIR/probe.json, RUN_DIR/probe.html) */
    json: z.string().optional(),
    html: z.string().optional(),
  })
  .strict();

export type ProbeConfigInput = z.input<typeof probeConfig>;
export type ProbeConfig = z.output<typeof probeConfig>;

export interface ProbeReport extends ProbeSuiteResult {
  format: typeof PROBE_FORMAT;
  run: string;
  /** where the checkpoint was: epochs done and the global step (null: a TorchScript file) */
  checkpoint: { epoch: number; step: number } | null;
  model: string;
  optimizer: string;
  dataset: string;
  params: number;
  options: Omit<ProbeConfig, 'json' | 'html' | 'dataset' | 'dataDir' | 'dtype'>;
  /** samples the Hessian is over, and the mean loss on them */
  samplesUsed: number;
  loss: number;
  /** the HVP caches: bytes in all and per batch */
  cacheBytes: number;
  cacheBytesPerBatch: number[];
  seconds: number;
  /** per probe: HVPs and seconds */
  timings: { probe: ProbeName; hvps: number; seconds: number }[];
  /** with --landscape: L(w + αd₁ + βd₂) on a grid */
  landscape?: Landscape & { seconds: number };
  /** with --compare: the principal angles between the top-k eigenspaces of this Hessian (a) and the other operator (b) */
  comparison?: SubspaceComparison & { against: string; seconds: number };
  libtorch: string;
}

export function parseProbeConfig(raw: unknown): ProbeConfig {
  return parseOrThrow(probeConfig, raw, 'probe options');
}

/** What a probe target resolves to: the run's config, and how to put the weights into its model. */
function probeTarget(target: string, o: ProbeConfig): { config: TrainConfig; restore: (m: Model) => void; checkpoint: ProbeReport['checkpoint'] } {
  const path = resolve(target);
  if (!existsSync(path)) throw new UsamError(`${path} does not exist; give the folder of a 'usam train' run (its --out) or a TorchScript file (torch.jit.save)`);
  const fileOnly = (['dataset', 'dataDir', 'dtype', 'stateDict'] as const).filter((k) => o[k] !== undefined);
  if (statSync(path).isDirectory()) {
    const file = join(path, CHECKPOINT_FILE);
    if (!existsSync(file)) throw new UsamError(`${path} holds no ${CHECKPOINT_FILE}; give the folder of a 'usam train' run (its --out)`);
    if (fileOnly.length > 0)
      throw new UsamError(`${fileOnly.map((k) => `--${k.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase())}`).join(', ')}: only for a TorchScript file; a run directory is probed on its own data, dtype and checkpoint`);
    const loaded = loadCheckpoint(file);
    return {
      config: parseTrainConfig({ ...(loaded.config as object), out: path }),
      restore: (m) => loaded.restoreModel(m),
      checkpoint: { epoch: loaded.progress.epoch, step: loaded.progress.globalStep },
    };
  }
  const config = parseTrainConfig({ torchscript: path, dataset: o.dataset ?? 'fashion-mnist', dataDir: o.dataDir, dtype: o.dtype ?? 'float32', out: dirname(path) });
  const restore = (m: Model) => {
    if (o.stateDict === undefined) return;
    try {
      m.loadStateDict(o.stateDict);
    } catch (e) {
      throw new UsamError(`--state-dict ${(e as Error).message}\n(the model is ${config.dtype}: --dtype float32|float64 chooses it)`);
    }
  };
  return { config, restore, checkpoint: null };
}

/**
 * Probes the run saved in `target` (a 'usam train' folder), or a TorchScript
 * file with its data named in the options; `onProgress` hears about each probe.
 */
export function probeRun(target: string, input: ProbeConfigInput = {}, onProgress?: (line: string) => void): ProbeReport {
  const o = parseProbeConfig(input);
  const dir = resolve(target);
  const { config, restore, checkpoint } = probeTarget(target, o);
  if (o.threads) setThreads(o.threads);
  const data = datasetsOf(config);
  const split = o.split === 'train' ? data.train : o.split === 'test' ? data.test : data.validation;
  if (!split) throw new UsamError(`split 'validation': the run holds out no validation images (train it with --validation N)`);
  const model = modelOf(config, data.train);
  const batches: Batch[] = [];
  let h: ReturnType<typeof hessian> | undefined;
  try {
    restore(model);
    const loader = new DataLoader(split, { batchSize: o.batchSize, dtype: config.dtype, device: config.device });
    const count = Math.min(o.batches, loader.length);
    for (let b = 0; b < count; b++) batches.push(loader.batch(0, b));
    const samplesUsed = batches.reduce((a, b) => a + b.x.shape[0], 0);
    model.train(o.mode === 'train');
    const loss = batches.reduce((a, b) => a + model.native.loss(b.x, b.y, false) * b.x.shape[0], 0) / samplesUsed;
    h = hessian(model, batches, { mode: o.mode });
    const started = Date.now();
    const timings: ProbeReport['timings'] = [];
    const seed = (k: number) => streamSeed(o.seed, 'probes', 2 ** 42 + k);
    onProgress?.(`probing ${config.torchscript ?? config.model} (${model.numParams} parameters) on ${count} ${o.split} batch${count > 1 ? 'es' : ''} of ${o.batchSize} (${samplesUsed} samples), ${o.mode} mode`);
    const r = runSync(
      probeSuiteWork(h, {
        samples: o.samples,
        seeds: { trace: seed(0), frobenius: seed(1), eigen: seed(2), density: seed(3), logAbsDet: seed(4) },
        smallest: true,
        eigenTol: 1e-4,
        eigenMaxIter: 100,
        slqSteps: o.slqSteps,
        slqRuns: o.slqRuns,
        gridPoints: 200,
        logAbsDetDamping: o.damping,
        onProbe: (probe, hvps, seconds) => {
          timings.push({ probe, hvps, seconds });
          onProgress?.(`${probe}: ${hvps} HVPs in ${seconds.toFixed(1)} s`);
        },
      }),
    );
    const cache = h.operator.cacheInfo();
    const comparison = o.compare === undefined ? undefined : compareWith(o.compare, h, { config, train: data.train, batches, mode: o.mode, k: o.compareK, seed: seed(5), o }, onProgress);
    let landscape: ProbeReport['landscape'];
    if (o.landscape) {
      const at = Date.now();
      onProgress?.(`landscape: ${o.landscapePoints}×${o.landscapePoints} points along ${o.landscape === 'random' ? 'two filter-normalised random directions' : "the Hessian's top two eigenvectors"}`);
      landscape = { ...lossLandscape(model, batches, { mode: o.mode, directions: o.landscape, points: o.landscapePoints, range: o.landscapeRange, seed: seed(6) }), seconds: (Date.now() - at) / 1000 };
    }
    return {
      format: PROBE_FORMAT,
      run: dir,
      checkpoint,
      model: config.torchscript ?? config.model,
      optimizer: checkpoint ? config.optimizer : 'none',
      dataset: config.dataset,
      params: model.numParams,
      options: {
        ...{ split: o.split, batches: count, batchSize: o.batchSize, mode: o.mode, samples: o.samples },
        ...{ slqSteps: o.slqSteps, slqRuns: o.slqRuns, damping: o.damping, seed: o.seed, threads: o.threads, compareK: o.compareK },
        ...(o.stateDict ? { stateDict: resolve(o.stateDict) } : {}),
        ...(o.compare ? { compare: o.compare } : {}),
        ...{ landscapePoints: o.landscapePoints, landscapeRange: o.landscapeRange, ...(o.landscape ? { landscape: o.landscape } : {}) },
      },
      samplesUsed,
      loss,
      ...r,
      cacheBytes: cache.bytes,
      cacheBytesPerBatch: cache.perBatch,
      seconds: (Date.now() - started) / 1000,
      timings,
      ...(comparison ? { comparison } : {}),
      ...(landscape ? { landscape } : {}),
      libtorch: versions().torch,
    };
  } finally {
    h?.dispose();
    for (const b of batches) {
      b.x.dispose();
      b.y.dispose();
    }
    model.dispose();
  }
}

const OPERATORS = ['ggn', 'empirical-fisher', 'mc-fisher'] as const;

// --compare: the other operator on the same batches (a kind of the same
// weights, or the Hessian of another run's checkpoint), its top-k eigenspace
// against the Hessian's
function compareWith(
  against: string,
  h: Curvature,
  c: { config: TrainConfig; train: Parameters<typeof modelOf>[1]; batches: Batch[]; mode: 'train' | 'eval'; k: number; seed: number; o: ProbeConfig },
  onProgress?: (line: string) => void,
): ProbeReport['comparison'] {
  const started = Date.now();
  const model = h.operator.model;
  let other: Model | undefined;
  let b: Curvature | undefined;
  try {
    if ((OPERATORS as readonly string[]).includes(against)) {
      b = against === 'ggn' ? ggn(model, c.batches, { mode: c.mode }) : fisher(model, c.batches, { mode: c.mode, kind: against === 'mc-fisher' ? 'mc' : 'empirical', ...(against === 'mc-fisher' ? { seed: c.seed } : {}) });
    } else {
      if (!existsSync(against) || !statSync(against).isDirectory())
        throw new UsamError(`--compare ${against}: give 'ggn', 'empirical-fisher', 'mc-fisher' or the folder of another 'usam train' run of the same model`);
      const target = probeTarget(against, { ...c.o, dataset: undefined, dataDir: undefined, dtype: undefined, stateDict: undefined });
      const mine = `${c.config.torchscript ?? c.config.model} in ${c.config.dtype}`, theirs = `${target.config.torchscript ?? target.config.model} in ${target.config.dtype}`;
      other = modelOf(target.config, c.train);
      if (mine !== theirs || other.numParams !== model.numParams)
        throw new UsamError(`--compare ${against}: its model is ${theirs} (${other.numParams} parameters), this one ${mine} (${model.numParams}); compare runs of the same model`);
      target.restore(other);
      b = hessian(other, c.batches, { mode: c.mode });
    }
    onProgress?.(`compare: the top ${c.k} eigenspaces of the Hessian and of ${against}`);
    const r = compareSubspaces(h, b, { k: Math.min(c.k, model.numParams), tol: 1e-4, seed: c.seed });
    onProgress?.(`compare: overlap ${r.overlap.toPrecision(4)}, ${r.hvps} products in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    return { against, ...r, seconds: (Date.now() - started) / 1000 };
  } finally {
    b?.dispose();
    other?.dispose();
  }
}

/** The probe's HTML page: the numbers, and the spectral density with λmin and λmax marked. */
export function renderProbePage(r: ProbeReport): string {
  const title = `Hessian probe: ${r.model}${r.checkpoint ? `, ${r.optimizer}` : ''}, ${r.dataset}`;
  const rows: [string, string][] = [
    ['λmax (Lanczos)', fmt(r.maxEigenvalue)],
    ['λmin (Lanczos)', r.minEigenvalue === undefined ? '—' : fmt(r.minEigenvalue)],
    ['tr H (Hutchinson)', `${fmt(r.trace)} ± ${fmt(r.traceStandardError)}`],
    ['‖H‖_F² (Hutchinson)', `${fmt(r.frobeniusSquared)} ± ${fmt(r.frobeniusStandardError)}`],
    [`Σ log(|λ| + ${r.logAbsDetDamping}) (SLQ)`, fmt(r.logAbsDet)],
    ['loss on these samples', fmt(r.loss)],
    ['HVPs', String(r.hvps)],
    ['seconds', r.seconds.toFixed(1)],
  ];
  const chart = densityChart(
    `${r.options.slqRuns} run${r.options.slqRuns > 1 ? 's' : ''} of ${r.options.slqSteps} Lanczos steps, Gaussian smoothing; clipped at 10⁻⁷ of its peak`,
    [
      {
        name: `density; λmin ${fmt(r.minEigenvalue ?? NaN)}, λmax ${fmt(r.maxEigenvalue)}`,
        style: 0,
        thin: true,
        points: densityPoints(r.density),
        marks: [r.maxEigenvalue, ...(r.minEigenvalue === undefined ? [] : [r.minEigenvalue])],
      },
    ],
  );
  const o = r.options;
  return htmlPage(
    title,
    `<h1>${esc(title)}</h1>
<p class="note">${esc(r.run)}${r.checkpoint ? ` after epoch ${r.checkpoint.epoch}, step ${r.checkpoint.step}` : ''}: the Hessian of the mean loss over ${r.samplesUsed} ${o.split} samples (${o.batches} batch${o.batches === 1 ? "" : "es"} of ${o.batchSize}), ${o.mode} mode, ${r.params} parameters; seed ${o.seed}, LibTorch ${esc(r.libtorch)}.</p>
<table class="summary">${rows.map(([k, v]) => `<tr><th>${esc(k)}</th><td class="num">${esc(v)}</td></tr>`).join('\n')}</table>
<h2>Spectral density</h2>
<p class="note">A log density axis shows both the bulk near 0 and the outliers; dashed marks: λmin and λmax by Lanczos.</p>
<div class="charts">${chart}</div>${r.landscape ? landscapeSection(r.landscape) : ''}${r.comparison ? comparisonSection(r.comparison) : ''}`,
  );
}

function landscapeSection(l: NonNullable<ProbeReport['landscape']>): string {
  const chart = landscapeChart(l);
  return `
<h2>Loss landscape</h2>
<p class="note">${l.alphas.length} × ${l.betas.length} points, ${l.passes} forward passes, ${l.seconds.toFixed(1)} s; ‖d₁‖ ${esc(fmt(l.norms[0]))}, ‖d₂‖ ${esc(fmt(l.norms[1]))}, cos(d₁, d₂) ${esc(l.cosine.toFixed(3))}.</p>
<div class="charts">${chart}</div>`;
}

function comparisonSection(c: NonNullable<ProbeReport['comparison']>): string {
  const rows = c.angles.map((angle, i) => `<tr><td class="num">${i + 1}</td><td class="num">${esc(fmt(c.a.values[i]))}</td><td class="num">${esc(fmt(c.b.values[i]))}</td><td class="num">${((angle * 180) / Math.PI).toFixed(2)}°</td></tr>`);
  return `
<h2>Top-${c.k} eigenspaces: the Hessian against ${esc(c.against)}</h2>
<p class="note">Principal angles between the two ${c.k}-dimensional eigenspaces (Lanczos vectors), ascending; overlap ‖Q_Aᵀ Q_B‖_F²/k = ${esc(c.overlap.toPrecision(4))} (1: the same subspace, 0: orthogonal). ${c.hvps} products, ${c.seconds.toFixed(1)} s.</p>
<table class="summary"><tr><th>i</th><th>λ_i (Hessian)</th><th>λ_i (${esc(c.against)})</th><th>θ_i</th></tr>
${rows.join('\n')}</table>`;
}
