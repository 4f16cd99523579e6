// The trainer: epochs over a shuffled loader with any optimizer of the
// family, evaluation, optional Hessian probes, metrics as JSON lines, and a
// checkpoint at every epoch end and whenever it is asked to stop — from
// which a resumed run continues bit for bit.
import * as check from '../arguments.js';
import { ConfigError, DivergenceError, UsamError } from '../errors.js';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync, accessSync, constants, appendFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { count, type Dataset } from '../data/dataset.js';
import { BatchTensors, DataLoader } from '../data/loader.js';
import { hessian } from '../hessian/hessian.js';
import { probeSuiteWork } from '../hessian/suite.js';
import { Model } from '../model/model.js';
import { runAsync, runSync, type Work } from '../model/work.js';
import { Optimizer } from '../optim/optimizer.js';
import { ProcessGroup } from '../distributed.js';
import { persistent } from '../tensor/scope.js';
import { tensor, type Tensor } from '../tensor/tensor.js';
import { streamSeed } from '../random.js';
import { loadCheckpoint, type Progress, saveCheckpoint } from './checkpoint.js';
import { datasetsOf, modelOf, optimizerOptionsOf, parseTrainConfig, type TrainConfig, type TrainConfigInput } from './config.js';
import { resumedConfig, type ResumeInput } from './resume.js';
export { RESUME_OVERRIDES, type ResumeInput } from './resume.js';
import { evaluateWork, type Evaluation } from './evaluate.js';
import { checkEvents, type StepInfo, type TrainEvents } from './events.js';
import { writeAtomic } from '../safetensors.js';
import { checkWritable, CHECKPOINT_FILE, CONFIG_FILE, DEFAULT_RUNS_ROOT, LATEST_LINK, metricsBefore, newRunFolder, METRICS_FILE, STEPS_FILE, trimStepLog, type EpochMetrics, type StepLogLine } from './run-folder.js';
export { CHECKPOINT_FILE, CONFIG_FILE, METRICS_FILE, STEPS_FILE, type EpochMetrics, type StepLogLine } from './run-folder.js';
export type { StepInfo, TrainEvents } from './events.js';
import { setThreads, trimMemory } from '../native/runtime.js';

export interface TrainResult {
  stopped: boolean;
  out: string;
  checkpoint: string;
  metrics: EpochMetrics[];
  progress: Progress;
}

/** Buffered step-log lines are appended at most this often (and before every checkpoint). */
const STEP_LOG_FLUSH_MS = 500;
/** Steps whose mean training loss the divergence check compares. */
export const DIVERGENCE_WINDOW = 50;

export class Trainer {
  readonly config: TrainConfig;
  readonly out: string;
  readonly model: Model;
  readonly optimizer: Optimizer;
  readonly loader: DataLoader;
  readonly data: { train: Dataset; test: Dataset; validation?: Dataset; flipped: number };
  // The batch tensors the steps refill: a new pair per step, freed between
  // the step's own temporaries, left holes in the C heap that glibc never
  // reused (+12% RSS over 20,000 steps; docs/benchmarks.md).
  private readonly batches: BatchTensors;
  private progress: Progress = { epoch: 0, batch: 0, globalStep: 0, lossSum: 0, sharpnessSum: 0, sharpnessCount: 0, steps: 0, correct: 0, seen: 0 };

  /** Rank 0 of a data-parallel run (or a single process): the one that writes files. */
  readonly writer: boolean;
  readonly group?: ProcessGroup;

  /**
   * A new run (out must not hold one), or with `resume` the run saved in
   * `out`. With a process group, this process is one rank of a data-parallel
   * run: it trains on its shard of every global batch (config.batchSize),
   * all ranks step together, and rank 0 alone writes the run's files.
   */
  constructor(config: TrainConfigInput | ResumeInput, options: { group?: ProcessGroup } = {}) {
    check.object('new Trainer', 'config', config, 'a training config { optimizer, epochs, ... } or { resume: folder }');
    check.options('new Trainer', 'options', options);
    if (options.group !== undefined) check.instanceOf('new Trainer', 'options.group', options.group, ProcessGroup, 'a ProcessGroup');
    this.group = options.group;
    this.writer = !this.group || this.group.rank === 0;
    const resuming = 'resume' in config;
    const parsed = resuming ? undefined : parseTrainConfig(config);
    // no out: a new folder of its own, made once nothing can fail on bad input
    let out = resuming ? resolve(config.resume) : parsed!.out === undefined ? undefined : resolve(parsed!.out);
    let loaded: ReturnType<typeof loadCheckpoint> | undefined;
    if (resuming) {
      const file = join(out!, CHECKPOINT_FILE);
      if (!existsSync(file))
        throw new ConfigError('resume', [{ path: 'resume', message: `${out} holds no run to resume (no ${CHECKPOINT_FILE}${existsSync(out!) ? '' : '; the folder does not exist'})` }]);
      loaded = loadCheckpoint(file);
    }
    this.config = loaded ? resumedConfig(loaded.config, out!, config as ResumeInput, loaded.progress.epoch) : parsed!;
    // the world size is the group's (torchrun's launch says nothing of --nproc)
    if (this.group && this.config.nproc !== this.group.worldSize) this.config = { ...this.config, nproc: this.group.worldSize };
    if (!resuming && out !== undefined && existsSync(join(out, CHECKPOINT_FILE)))
      throw new UsamError(`${out} already holds a run (${CHECKPOINT_FILE}); resume it with --resume ${out}, or choose another --out`);
    if (this.config.threads) setThreads(this.config.threads);
    // everything that can fail on bad input fails before anything is written
    this.data = datasetsOf(this.config);
    this.model = modelOf(this.config, this.data.train);
    const g = this.group;
    this.loader = new DataLoader(this.data.train, {
      ...(g ? { shard: { rank: g.rank, worldSize: g.worldSize } } : {}),
      batchSize: this.config.batchSize,
      shuffle: true,
      seed: this.config.seed,
      augment: this.config.dataset.startsWith('cifar') ? 'crop-flip' : undefined,
      dtype: this.config.dtype,
      device: this.config.device,
    });
    this.batches = new BatchTensors(this.loader);
    this.optimizer = new Optimizer(this.model, {
      ...optimizerOptionsOf(this.config, this.loader.length),
      ...(g ? { group: g, perturbation: this.config.perturbation } : {}),
    });
    if (loaded) {
      loaded.restore(this.model, this.optimizer);
      this.progress = { ...loaded.progress, correct: loaded.progress.correct ?? 0, seen: loaded.progress.seen ?? 0 };
    }
    if (g) {
      // every rank starts from rank 0's weights (the same seed makes them equal already; this makes sure)
      g.broadcast(this.model.params, 0);
      const b = this.model.buffers();
      if (b.values.numel > 0) g.broadcast(b.values, 0);
    }
    if (out === undefined) {
      out = this.writer ? newRunFolder(DEFAULT_RUNS_ROOT, this.config.optimizer) : resolve(DEFAULT_RUNS_ROOT, LATEST_LINK); // only rank 0 writes
      this.config = { ...this.config, out };
    }
    this.out = out;
    if (loaded && this.writer && this.config.epochs !== (loaded.config as { epochs?: number }).epochs)
      writeAtomic(join(out, CONFIG_FILE), [Buffer.from(JSON.stringify(this.config, null, 2) + '\n')]); // the run's config now says its new length
    if (!loaded && this.writer) {
      const created = !existsSync(out);
      checkWritable(out);
      try {
        writeAtomic(join(out, CONFIG_FILE), [Buffer.from(JSON.stringify(this.config, null, 2) + '\n')]);
      } catch (e) {
        if (created) rmSync(out, { recursive: true, force: true });
        throw new UsamError(`cannot write to ${out}: ${(e as Error).message}`);
      }
    }
  }

  get checkpointFile(): string {
    return join(this.out, CHECKPOINT_FILE);
  }

  private save(): void {
    if (!this.writer) return;
    saveCheckpoint(this.checkpointFile, this.model, this.optimizer, this.config, this.progress);
  }

  /**
   * Stops a run whose training loss has grown far past where it started
   * (config.divergence × the mean of the first DIVERGENCE_WINDOW steps,
   * compared with the mean of the last DIVERGENCE_WINDOW): a loss that only
   * grows wastes the rest of the run, though each step is finite.
   */
  private checkDivergence(recent: number[], loss: number, rho: number): void {
    const c = this.config;
    const p = this.progress;
    recent.push(loss);
    if (recent.length > DIVERGENCE_WINDOW) recent.shift();
    if (p.startLoss === undefined) {
      if (recent.length === DIVERGENCE_WINDOW) p.startLoss = recent.reduce((a, b) => a + b, 0) / DIVERGENCE_WINDOW;
      return;
    }
    if (c.divergence === 0 || recent.length < DIVERGENCE_WINDOW) return;
    const mean = recent.reduce((a, b) => a + b, 0) / DIVERGENCE_WINDOW;
    if (mean > c.divergence * p.startLoss) {
      const lambda = this.optimizer.sharpness && 'lambda' in this.optimizer.sharpness ? `, --lambda ${this.optimizer.sharpness.lambda}` : '';
      throw new DivergenceError(
        `training diverged in epoch ${p.epoch + 1}, at step ${p.globalStep}: the mean training loss of the last ${DIVERGENCE_WINDOW} steps is ` +
          `${mean.toPrecision(4)}, ${(mean / p.startLoss).toPrecision(3)}× that of the first ${DIVERGENCE_WINDOW} (${p.startLoss.toPrecision(4)}; ` +
          `the limit is --divergence ${c.divergence}, 0 turns the check off). Lower --lr ${c.lr}${rho > 0 ? `, --rho ${rho}` : ''}${lambda}. ` +
          `The last checkpoint (${this.checkpointFile}) holds the run before it.`,
        p.epoch + 1,
        p.globalStep,
        mean / p.startLoss,
        c.divergence,
      );
    }
  }

  // A stop asked of any rank stops them all at the same step (one tiny allreduce per step when data-parallel).
  private stopFlag?: Tensor;
  private stopRequested(events: TrainEvents): boolean {
    const asked = events.shouldStop?.() ?? false;
    if (!this.group) return asked;
    this.stopFlag ??= persistent(() => tensor(new Float64Array([0]), [1], { dtype: 'float64', device: this.config.device }));
    this.stopFlag.copyFrom(new Float64Array([asked ? 1 : 0]));
    this.group.allreduce(this.stopFlag, 'max');
    return (this.stopFlag.toArray() as Float64Array)[0] > 0;
  }

  /** Runs (or continues) the training to its last epoch; blocks the event loop (see runAsync). */
  run(events: TrainEvents = {}): TrainResult {
    checkEvents('Trainer.run', events);
    return runSync(this.runWork(events));
  }

  /**
   * run() with every pass on libuv's thread pool: the event loop keeps
   * running (a server answering while it trains); the same run bit for bit.
   */
  runAsync(events: TrainEvents = {}): Promise<TrainResult> {
    try {
      checkEvents('Trainer.runAsync', events);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.model.exclusive(() => runAsync(this.runWork(events)));
  }

  private *runWork(events: TrainEvents): Work<TrainResult> {
    const c = this.config;
    const metrics = this.writer ? metricsBefore(this.out, this.progress.epoch) : [];
    if (this.writer) trimStepLog(this.out, this.progress.globalStep);
    const p = this.progress;
    const recent: number[] = [];
    // the step log: window sums since the last line, lines buffered in memory
    const logEvery = c.stepLogEvery;
    const win = { steps: 0, loss: 0, sharpness: 0, sharpnessCount: 0, gradNorm: 0, rounding: -1 };
    const clipping = c.clipGradNorm !== undefined;
    let buffered: string[] = [];
    let lastFlush = Date.now();
    const flushSteps = () => {
      if (buffered.length > 0 && this.writer) appendFileSync(join(this.out, STEPS_FILE), buffered.join(''));
      buffered = [];
      lastFlush = Date.now();
    };
    const started = Date.now();
    let stepsThisRun = 0;
    while (p.epoch < c.epochs) {
      const epochStart = Date.now();
      const order = this.loader.order(p.epoch);
      this.model.train();
      let last = { lr: 0, rho: 0 };
      for (; p.batch < this.loader.length; p.batch++) {
        if (this.stopRequested(events)) {
          flushSteps();
          this.save();
          return { stopped: true, out: this.out, checkpoint: this.checkpointFile, metrics, progress: { ...p } };
        }
        const { x, y } = this.batches.next(p.epoch, p.batch, order);
        let r;
        try {
          r = yield* this.optimizer.stepWork(x, y);
        } catch (e) {
          // where in the run, in front of the step's own message; the error keeps its class (NonFiniteError, ...)
          const where = `epoch ${p.epoch + 1}, batch ${p.batch + 1} of ${this.loader.length}: `;
          if (e instanceof UsamError) {
            e.message = where + e.message;
            throw e;
          }
          throw new UsamError(where + (e as Error).message, { cause: e });
        }
        if (r.skipped) {
          // fp16 loss scaling met Inf/NaN: the batch is spent, the step was not taken (its scale backed off)
          p.skippedSteps = (p.skippedSteps ?? 0) + 1;
          continue;
        }
        p.globalStep++;
        p.steps++;
        p.lossSum += r.loss;
        if (r.correct !== null) {
          p.correct += r.correct;
          p.seen += r.count;
        }
        if (Number.isFinite(r.sharpness)) {
          p.sharpnessSum += r.sharpness;
          p.sharpnessCount++;
        }
        if (r.gradNorm !== undefined) {
          p.gradNormSum = (p.gradNormSum ?? 0) + r.gradNorm;
          p.clippedSteps = (p.clippedSteps ?? 0) + (r.clipped ? 1 : 0);
          win.gradNorm += r.gradNorm;
        }
        stepsThisRun++;
        last = { lr: r.lr, rho: r.rho };
        if (logEvery > 0) {
          win.steps++;
          win.loss += r.loss;
          if (r.perturbationRounding !== undefined) win.rounding = Math.max(win.rounding, r.perturbationRounding);
          if (Number.isFinite(r.sharpness)) {
            win.sharpness += r.sharpness;
            win.sharpnessCount++;
          }
          if (p.globalStep % logEvery === 0 || p.batch + 1 === this.loader.length) {
            const line: StepLogLine = {
              epoch: p.epoch + 1,
              step: p.globalStep,
              progress: p.epoch + (p.batch + 1) / this.loader.length,
              steps: win.steps,
              loss: win.loss / win.steps,
              sharpness: win.sharpnessCount > 0 ? win.sharpness / win.sharpnessCount : null,
              lr: r.lr,
              rho: r.rho,
              ...(clipping ? { gradNorm: win.gradNorm / win.steps } : {}),
              ...(win.rounding >= 0 ? { perturbationRounding: win.rounding } : {}),
            };
            buffered.push(JSON.stringify(line) + '\n');
            Object.assign(win, { steps: 0, loss: 0, sharpness: 0, sharpnessCount: 0, gradNorm: 0, rounding: -1 });
            if (Date.now() - lastFlush >= STEP_LOG_FLUSH_MS) flushSteps();
          }
        }
        this.checkDivergence(recent, r.loss, r.rho);
        events.onStep?.({
          epoch: p.epoch + 1,
          batch: p.batch + 1,
          batches: this.loader.length,
          epochs: c.epochs,
          loss: r.loss,
          accuracy: p.seen > 0 ? p.correct / p.seen : null,
          stepsPerSecond: stepsThisRun / Math.max((Date.now() - started) / 1000, 1e-9),
        });
      }
      // a TorchScript module's BatchNorm moves its statistics by each rank's own shard: evaluate and save
      // their mean (the library's layers pool them across the ranks at every step: nothing to do)
      const stats = this.group && this.model.torchscript !== undefined ? this.model.buffers() : undefined;
      if (stats && stats.values.numel > 0) this.group!.allreduce(stats.values, 'avg');
      const m: EpochMetrics = {
        epoch: p.epoch + 1,
        step: p.globalStep,
        trainLoss: p.lossSum / Math.max(p.steps, 1),
        trainAccuracy: p.seen > 0 ? p.correct / p.seen : null,
        sharpness: p.sharpnessCount > 0 ? p.sharpnessSum / p.sharpnessCount : null,
        ...(p.sharpnessCount > 0 && this.optimizer.reading ? { sharpnessReading: this.optimizer.reading.name } : {}),
        test: yield* evaluateWork(this.model, this.data.test, 1000, this.group),
        ...(this.data.validation ? { validation: yield* evaluateWork(this.model, this.data.validation, 1000, this.group) } : {}),
        lr: last.lr,
        rho: last.rho,
        ...(clipping ? { gradNorm: (p.gradNormSum ?? 0) / Math.max(p.steps, 1), clipped: (p.clippedSteps ?? 0) / Math.max(p.steps, 1) } : {}),
        ...(p.skippedSteps ? { skippedSteps: p.skippedSteps } : {}),
        seconds: (Date.now() - epochStart) / 1000,
        stepsPerSecond: p.steps / Math.max((Date.now() - epochStart) / 1000, 1e-9),
      };
      if (c.probeEvery > 0 && (p.epoch + 1) % c.probeEvery === 0) m.probe = yield* this.probe(p.epoch);
      Object.assign(p, { epoch: p.epoch + 1, batch: 0, lossSum: 0, sharpnessSum: 0, sharpnessCount: 0, steps: 0, correct: 0, seen: 0, ...(clipping ? { gradNormSum: 0, clippedSteps: 0 } : {}), skippedSteps: 0 });
      // The line first, then the checkpoint that records the epoch as done: a
      // crash between them leaves an older checkpoint, and resuming from it
      // drops the line and redoes the epoch; the other order lost the line.
      flushSteps();
      if (this.writer) appendFileSync(join(this.out, METRICS_FILE), JSON.stringify(m) + '\n');
      metrics.push(m);
      this.save();
      // give back the free pages the C heap kept over the epoch (evaluation,
      // probes and checkpoint buffers come and go once per epoch)
      trimMemory();
      events.onEpoch?.(m);
    }
    return { stopped: false, out: this.out, checkpoint: this.checkpointFile, metrics, progress: { ...p } };
  }

  /**
   * Trace, ‖H‖_F² and λmax of the training loss on a fixed probe batch (eval
   * mode); data-parallel, each rank holds its part of the batch and every HVP
   * is all-reduced (the numbers one process gets, at 1/N of the work each).
   */
  private *probe(epoch: number): Work<NonNullable<EpochMetrics['probe']>> {
    const g = this.group;
    const batch = new DataLoader(this.data.train, {
      batchSize: Math.min(256, count(this.data.train)),
      dropLast: true,
      dtype: this.config.dtype,
      device: this.config.device,
      ...(g ? { shard: { rank: g.rank, worldSize: g.worldSize } } : {}),
    }).batch(0, 0);
    const h = hessian(this.model, batch, { mode: 'eval', ...(g ? { group: g } : {}) });
    try {
      // one probe stream per (epoch, estimator): no estimator reuses another's
      // vectors; log|det| has its own, far from the 4·epoch + k of the others
      const seed = (k: number) => streamSeed(this.config.seed, 'probes', 4 * epoch + k);
      const r = yield* probeSuiteWork(h, {
        samples: this.config.probeSamples,
        seeds: { trace: seed(0), frobenius: seed(1), eigen: seed(2), density: seed(3), logAbsDet: streamSeed(this.config.seed, 'probes', 2 ** 40 + epoch) },
      });
      return {
        trace: r.trace,
        traceStandardError: r.traceStandardError,
        frobeniusSquared: r.frobeniusSquared,
        maxEigenvalue: r.maxEigenvalue,
        logAbsDet: r.logAbsDet,
        logAbsDetDamping: r.logAbsDetDamping,
        density: r.density,
        hvps: h.hvps,
      };
    } finally {
      h.dispose();
      batch.x.dispose();
      batch.y.dispose();
    }
  }

  dispose(): void {
    this.stopFlag?.dispose();
    this.batches.dispose();
    this.optimizer.dispose();
    this.model.dispose();
  }
}
