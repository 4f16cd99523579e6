// A run's folder: what the Trainer writes there (config.json, metrics.jsonl,
// steps.jsonl, checkpoint.safetensors), the records of its JSON lines, and
// how a resumed run drops lines written after its checkpoint.
import { UsamError } from '../errors.js';
import { accessSync, constants, existsSync, lstatSync, mkdirSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Evaluation } from './evaluate.js';

export const CHECKPOINT_FILE = 'checkpoint.safetensors';
export const METRICS_FILE = 'metrics.jsonl';
export const STEPS_FILE = 'steps.jsonl';
export const CONFIG_FILE = 'config.json';

export function checkWritable(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true });
    accessSync(dir, constants.W_OK);
  } catch (e) {
    throw new UsamError(`output directory ${dir} is not writable (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); choose another --out`);
  }
}

export interface EpochMetrics {
  epoch: number;
  step: number;
  trainLoss: number;
  /** accuracy on the training batches, at the weights of each step (before its update) */
  trainAccuracy: number | null;
  /** mean per-step reading of the rule (what it is: `sharpnessReading`); null for plain steps */
  sharpness: number | null;
  /** the name of that reading (lib/sharpness/reading.ts; docs/readings.md says how it compares with the probes) */
  sharpnessReading?: string;
  test: Evaluation;
  /** the held-out part of the training set (config.validation), when there is one */
  validation?: Evaluation;
  lr: number;
  rho: number;
  /** with clipGradNorm: the mean norm of the steps' final gradients before clipping */
  gradNorm?: number;
  /** with clipGradNorm: the fraction of the epoch's steps whose gradient was clipped */
  clipped?: number;
  /** with fp16 loss scaling: steps skipped for Inf/NaN in the epoch (absent when none) */
  skippedSteps?: number;
  seconds: number;
  stepsPerSecond: number;
  probe?: {
    trace: number;
    traceStandardError: number;
    frobeniusSquared: number;
    maxEigenvalue: number;
    /** Σ log(|λ| + damping) by SLQ (runs without it predate the field) */
    logAbsDet?: number;
    logAbsDetDamping?: number;
    density?: { grid: number[]; values: number[] };
    hvps: number;
  };
}

/**
 * One line of steps.jsonl, written every config.stepLogEvery steps (and at
 * each epoch's last step): the mean over the `steps` steps since the previous
 * line (a window mean, not an exponential average, so a line means the same
 * after a resume).
 */
export interface StepLogLine {
  epoch: number;
  /** global step count after the line's last step */
  step: number;
  /** epochs done, fractional: step / steps per epoch */
  progress: number;
  /** steps the means are over */
  steps: number;
  /** mean training loss L(w) over those steps */
  loss: number;
  /** mean of the rule's per-step reading (lib/sharpness/reading.ts) over its sharpness-aware steps among them; null for plain steps (SGD, Adam) */
  sharpness: number | null;
  lr: number;
  rho: number;
  /** with clipGradNorm: the mean pre-clip gradient norm over those steps */
  gradNorm?: number;
  /** a difference rule in bf16/fp16: the largest StepResult.perturbationRounding over those steps (docs/models.md, the finite-difference floor) */
  perturbationRounding?: number;
}

/**
 * Whether a run's lines number epochs from 0, as versions before 0.2 wrote
 * them (every number a person reads now counts from 1: the first epoch is
 * epoch 1, the first step step 1). A file counts from 0 when a line says
 * epoch 0.
 */
export const countsFromZero = (lines: { epoch: number }[]): boolean => lines.some((l) => l.epoch === 0);

/** The lines numbered from 1, whichever way the file counted. */
export function numberedFromOne<T extends { epoch: number }>(lines: T[]): T[] {
  return countsFromZero(lines) ? lines.map((l) => ({ ...l, epoch: l.epoch + 1 })) : lines;
}

/** metrics.jsonl's lines of the epochs before `epoch` (a resumed run drops lines past its checkpoint, rewriting the file). */
export function metricsBefore(out: string, epoch: number): EpochMetrics[] {
  const file = join(out, METRICS_FILE);
  if (!existsSync(file)) return [];
  const lines = readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as EpochMetrics);
  const fromZero = countsFromZero(lines);
  const kept = lines.filter((m) => (fromZero ? m.epoch + 1 : m.epoch) <= epoch);
  if (kept.length !== lines.length) writeFileSync(file, kept.map((m) => JSON.stringify(m) + '\n').join(''));
  return kept;
}

/** Drops steps.jsonl's lines past `globalStep` (written after the checkpoint, before a crash) and a torn last line. */
export function trimStepLog(out: string, globalStep: number): void {
  const file = join(out, STEPS_FILE);
  if (!existsSync(file)) return;
  const lines = readFileSync(file, 'utf8').split('\n').filter(Boolean);
  const kept = lines.filter((l) => {
    try {
      return (JSON.parse(l) as StepLogLine).step <= globalStep;
    } catch {
      return false;
    }
  });
  if (kept.length !== lines.length) writeFileSync(file, kept.map((l) => l + '\n').join(''));
}

/** Where runs without an out folder go (relative to the working directory), and the link to the newest. */
export const DEFAULT_RUNS_ROOT = 'runs';
export const LATEST_LINK = 'latest';

/**
 * A new folder for a run given no out: ROOT/<date>-<optimizer>-<n>, the
 * first n that is free (made with mkdir, so two runs starting together get
 * two folders), and ROOT/latest, a symbolic link, moved to it. A run never
 * overwrites another; a ROOT/latest that is a real folder (made by a version
 * that wrote runs there) is left as it is.
 */
export function newRunFolder(root: string, optimizer: string, now = new Date()): string {
  const base = resolve(root);
  mkdirSync(base, { recursive: true });
  const day = now.toISOString().slice(0, 10);
  for (let n = 1; ; n++) {
    const name = `${day}-${optimizer}-${n}`;
    try {
      mkdirSync(join(base, name));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') continue;
      throw new UsamError(`cannot make a run folder in ${base}: ${(e as Error).message}; choose one with --out`);
    }
    pointLatest(base, name);
    return join(base, name);
  }
}

/** ROOT/latest → name, replaced in one rename (a reader sees the old link or the new one). */
function pointLatest(base: string, name: string): void {
  const link = join(base, LATEST_LINK);
  try {
    if (!lstatSync(link).isSymbolicLink()) return;
  } catch {
    // no link yet
  }
  const tmp = `${link}.${process.pid}.tmp`;
  rmSync(tmp, { force: true });
  symlinkSync(name, tmp);
  renameSync(tmp, link);
}
