// The paper's claims in miniature (`usam reproduce`): a grid of rules ×
// settings (clean, label noise, limited data) × seeds on Fashion-MNIST, each
// run trained by the Trainer and then probed by the same suite on the same
// fixed held-out batches; and the sweep of rho/lambda per rule the training
// defaults were chosen on. Every run leaves its folder and a record.json, so
// an interrupted grid continues where it stopped.
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import { ConfigError, parseOrThrow } from '../errors.js';
import { findRule, hasField, isTrainable, rules, type Estimator, type Hyper, type Measure, type RuleDescriptor } from '../optim/rules/index.js';
import { writeAtomic } from '../safetensors.js';
import type { TrainConfigInput } from '../train/config.js';
import { type ProbeConfigInput, probeRun } from './probe.js';
import { stat, type Stat } from '../report/report.js';
import { Trainer } from '../train/trainer.js';

/**
 * An arm of the grid: an optimizer, for the universal class the estimator,
 * and for SGD at equal compute the factor on the epochs (a SAM or Trace-SAM
 * step costs 2 forward-backward passes, a Frob-SAM step 3). The rules' arms
 * come from the registry (lib/optim/rules/): each rule with training
 * defaults, and its exact variant where it has one; the controls ('rwp',
 * 'gnp': random weight perturbation, gradient-norm penalty) last.
 */
export interface Arm {
  name: string;
  optimizer: string;
  estimator?: Estimator;
  epochsFactor?: number;
  /** the measure the arm's rule is meant to lower: its claim */
  measure?: Measure;
  /** the arms its claim is also tested against, besides SGD */
  controls: string[];
  /** `--sweep`: the points tried */
  sweep?: Hyper[];
}
export type RuleName = string;

const SGD_ARMS: Arm[] = [
  { name: 'sgd', optimizer: 'sgd', controls: [] },
  { name: 'sgd-2x', optimizer: 'sgd', epochsFactor: 2, controls: [] },
  { name: 'sgd-3x', optimizer: 'sgd', epochsFactor: 3, controls: [] },
];

/** Every arm, in the order grids run and reports list them. */
export function arms(): Arm[] {
  const trained = rules().filter(isTrainable);
  const armOf = (r: RuleDescriptor, variant: 'default' | 'exact'): Arm => ({
    name: variant === 'exact' ? `${r.kind}-exact` : r.kind,
    optimizer: r.kind,
    ...(hasField(r, 'estimator') ? { estimator: variant === 'exact' ? ('exact' as const) : ('finite-difference' as const) } : {}),
    ...(r.measure ? { measure: r.measure } : {}),
    controls: r.controls?.[variant] ?? [],
    ...(r.sweep?.[variant] ? { sweep: r.sweep[variant] } : {}),
  });
  const own = trained.filter((r) => !r.follows);
  return [
    ...SGD_ARMS,
    ...own.map((r) => armOf(r, 'default')),
    ...own.filter((r) => r.training?.exact).map((r) => armOf(r, 'exact')),
    ...trained.filter((r) => r.follows).map((r) => armOf(r, 'default')),
  ];
}
export const armNames = (): string[] => arms().map((a) => a.name);
/** The arm of a name; an unknown name is a ConfigError listing the arms. */
export function armOf(name: string): Arm {
  const arm = arms().find((a) => a.name === name);
  if (!arm) throw new ConfigError('reproduce options', [{ path: 'rules', message: `unknown arm '${name}'; use one of ${armNames().join(', ')}` }]);
  return arm;
}
/** The sweep's points per arm. */
export const sweepGrid = (): Record<string, Hyper[]> => Object.fromEntries(arms().flatMap((a) => (a.sweep ? [[a.name, a.sweep]] : [])));

/** The training settings of the paper's experiments, in miniature. */
export const SETTINGS = {
  clean: {},
  /** ⌊0.2·N⌋ training labels moved to a different class (seeded by the run's seed) */
  'label-noise': { labelNoise: 0.2 },
  /** the first 10% of the training set */
  limited: { subset: 0.1 },
} as const satisfies Record<string, Partial<TrainConfigInput>>;
export type SettingName = keyof typeof SETTINGS;
export const SETTING_NAMES = Object.keys(SETTINGS) as SettingName[];

export type { Measure };

export const MEASURE_LABEL: Record<Measure, string> = {
  trace: 'tr H',
  frobeniusSquared: '‖H‖_F²',
  maxEigenvalue: 'λmax',
  logAbsDet: 'logdet_δ',
};
export const MEASURES = Object.keys(MEASURE_LABEL) as Measure[];

/** How every run of a grid or sweep is probed: the same held-out batches, the same probe vectors. */
export const PROBE_OPTIONS = { split: 'test', batches: 4, batchSize: 256, samples: 100, slqSteps: 30, damping: 1e-3, seed: 0 } as const satisfies ProbeConfigInput;

/** The probe options of a grid's runs (part of each record: a run probed otherwise is probed again). */
export const probeOptionsOf = (c: ReproduceConfig): ProbeConfigInput => ({
  ...PROBE_OPTIONS,
  samples: c.probeSamples,
  batches: c.probeBatches,
  slqRuns: c.probeSlqRuns,
  ...(c.threads ? { threads: c.threads } : {}),
});

export const reproduceConfig = z
  .object({
    /** a small subset in a few minutes: one seed, one epoch, the finite-difference rules */
    quick: z.boolean().default(false),
    /** the rho/lambda sweep of each rule (clean setting, MLP) instead of the grid */
    sweep: z.boolean().default(false),
    models: z.array(z.enum(['mlp', 'cnn'])).default(['mlp']),
    settings: z.array(z.enum(SETTING_NAMES as [SettingName, ...SettingName[]])).optional(),
    /** arms by name (armNames(): sgd, sgd-2x, ..., each rule, its exact variant, the controls) */
    rules: z
      .array(z.string())
      .superRefine((names, ctx) => {
        const bad = names.filter((n) => !armNames().includes(n));
        if (bad.length > 0) ctx.addIssue({ code: 'custom', message: `unknown arm ${bad.map((b) => `'${b}'`).join(', ')}; use ${armNames().join(', ')}` });
      })
      .optional()
      .meta({ choices: armNames }),
    seeds: z.number().int().positive().optional(),
    /** the first seed (the grid's default 100: seeds never used by the sweep, whose seeds start at 0) */
    seedBase: z.number().int().nonnegative().optional(),
    /** training images held out as the validation split in every run (the sweep chooses on it; never on test) */
    validation: z.number().int().nonnegative().default(5000),
    /** a sweep.json whose choices set the grid's ρ/λ (default: OUT/sweep.json when there is one, else the shipped defaults) */
    sweepFrom: z.string().optional(),
    epochs: z.number().int().positive().optional(),
    dataset: z.enum(['fashion-mnist', 'synthetic']).default('fashion-mnist'),
    /** Hutchinson samples of the probes (the trace and ‖H‖_F²) */
    probeSamples: z.number().int().min(2).default(PROBE_OPTIONS.samples),
    /** held-out batches of 256 the probes are on */
    probeBatches: z.number().int().positive().default(PROBE_OPTIONS.batches),
    /** SLQ runs of logdet_δ (one run's estimate scatters by ~5e4 on the MLP) */
    probeSlqRuns: z.number().int().positive().default(4),
    threads: z.number().int().positive().optional(),
    /** train nothing: summarise the runs of the plan already in OUT (a grid stopped half-way) */
    reportOnly: z.boolean().default(false),
    out: z.string().default('runs/reproduce'),
  })
  .strict();
export type ReproduceConfigInput = z.input<typeof reproduceConfig>;
export type ReproduceConfig = z.output<typeof reproduceConfig>;

export function parseReproduceConfig(raw: unknown): ReproduceConfig {
  return parseOrThrow(reproduceConfig, raw, 'reproduce options');
}

/** One run of a grid or sweep. */
export interface RunSpec {
  /** its folder under OUT/runs, unique */
  id: string;
  model: 'mlp' | 'cnn';
  setting: SettingName;
  rule: RuleName;
  seed: number;
  /** the sweep point, or the sweep's choice in a grid: hyperparameters that differ from the shipped defaults */
  hyper: { rho?: number; lambda?: number; halfCube?: number };
  config: TrainConfigInput;
}

/** What a probe of one split measured (the flat fields of a record repeat its first split's). */
export interface ProbeSummary {
  trace: number;
  traceStandardError: number;
  frobeniusSquared: number;
  frobeniusStandardError: number;
  maxEigenvalue: number;
  minEigenvalue: number;
  logAbsDet: number;
}
export type ProbeSplit = 'test' | 'train' | 'validation';
const NO_PROBE: ProbeSummary = { trace: NaN, traceStandardError: NaN, frobeniusSquared: NaN, frobeniusStandardError: NaN, maxEigenvalue: NaN, minEigenvalue: NaN, logAbsDet: NaN };

/** One run: its first split's probe in the flat fields (what the claims read), every split's in `probes`. */
export interface RunRecord extends ProbeSummary {
  spec: RunSpec;
  /** top-1 on the held-out validation split (absent: none held out) */
  validationTop1?: number;
  /** the probes per split: the grid's on test and training images, the sweep's on validation images */
  probes?: Partial<Record<ProbeSplit, ProbeSummary>>;
  /** how it was probed */
  probe: ProbeConfigInput;
  /** the error that stopped it (divergence), or null */
  failed: string | null;
  epochs: number;
  top1: number;
  testLoss: number;
  trainLoss: number;
  trainSeconds: number;
  probeSeconds: number;
}

function trainConfigOf(model: 'mlp' | 'cnn', setting: SettingName, rule: RuleName, seed: number, hyper: RunSpec['hyper'], c: ReproduceConfig, epochs: number): TrainConfigInput {
  const r = armOf(rule);
  return {
    model,
    dataset: c.dataset,
    optimizer: r.optimizer as TrainConfigInput['optimizer'],
    ...(r.estimator ? { estimator: r.estimator } : {}),
    ...hyper,
    ...SETTINGS[setting],
    epochs: epochs * (r.epochsFactor ?? 1),
    ...(c.validation > 0 ? { validation: c.validation } : {}),
    seed,
    ...(c.threads ? { threads: c.threads } : {}),
  };
}

/** The splits each run is probed on: the sweep chooses on validation images; the grid reports test and training images. */
export const probeSplitsOf = (c: ReproduceConfig): ProbeSplit[] => (c.sweep ? ['validation'] : ['test', 'train']);

/**
 * The runs of the grid (or, with `sweep`, of the sweep) the options ask for;
 * `chosen` (the sweep's choices) sets the grid's points.
 */
export function plannedRuns(c: ReproduceConfig, chosen: Partial<Record<RuleName, RunSpec['hyper']>> = {}): RunSpec[] {
  const epochs = c.epochs ?? (c.quick ? 1 : 3);
  const seeds = c.seeds ?? (c.quick ? 1 : c.sweep ? 2 : 5);
  const first = c.seedBase ?? (c.sweep ? 0 : 100);
  const runs: RunSpec[] = [];
  if (c.sweep) {
    const grid = sweepGrid();
    for (const rule of c.rules ?? ['sgd', ...Object.keys(grid)])
      for (const hyper of rule === 'sgd' ? [{}] : (grid[rule] ?? [{}]))
        for (let seed = first; seed < first + seeds; seed++) {
          const point = Object.entries(hyper).map(([k, v]) => `${k}${v}`).join('-');
          runs.push({ id: `sweep/${rule}${point ? '-' + point : ''}/seed${seed}`, model: 'mlp', setting: 'clean', rule, seed, hyper, config: trainConfigOf('mlp', 'clean', rule, seed, hyper, c, epochs) });
        }
    return runs;
  }
  // quick: SGD and each rule's default variant (no exact estimators, no controls)
  const rules = c.rules ?? (c.quick ? arms().filter((a) => a.optimizer === 'sgd' ? !a.epochsFactor : !a.estimator || a.estimator === 'finite-difference').filter((a) => !findRule(a.optimizer)?.follows).map((a) => a.name) : armNames());
  const settings = c.settings ?? SETTING_NAMES;
  for (const model of c.models)
    for (const setting of settings)
      for (const rule of rules)
        for (let seed = first; seed < first + seeds; seed++) {
          const hyper = chosen[rule] ?? {};
          runs.push({ id: `${model}/${setting}/${rule}/seed${seed}`, model, setting, rule, seed, hyper, config: trainConfigOf(model, setting, rule, seed, hyper, c, epochs) });
        }
  return runs;
}

const RECORD_FILE = 'record.json';
const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

/**
 * Trains and probes each run, one after another. A run whose folder already
 * holds a record of the same spec is taken as it is; any other leftover (a run
 * stopped half-way) is trained again from the start.
 */
export function executeRuns(specs: RunSpec[], c: ReproduceConfig, onProgress?: (line: string) => void): RunRecord[] {
  const records: RunRecord[] = [];
  const root = resolve(c.out, 'runs');
  const probeOptions = probeOptionsOf(c);
  const splits = probeSplitsOf(c);
  specs.forEach((spec, i) => {
    const dir = join(root, spec.id);
    const recordFile = join(dir, RECORD_FILE);
    const tag = `[${i + 1}/${specs.length}] ${spec.id}`;
    if (existsSync(recordFile)) {
      const old = JSON.parse(readFileSync(recordFile, 'utf8')) as RunRecord;
      if (same(old.spec, spec) && same(old.probe, probeOptions) && splits.every((sp) => old.probes?.[sp])) {
        records.push(old);
        onProgress?.(`${tag}: done before, kept`);
        return;
      }
    }
    if (c.reportOnly) {
      onProgress?.(`${tag}: not run (--report-only)`);
      return;
    }
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(join(dir, '..'), { recursive: true });
    const t0 = Date.now();
    let failed: string | null = null;
    const trainer = new Trainer({ ...spec.config, out: dir });
    let last;
    try {
      last = trainer.run().metrics.at(-1);
    } catch (e) {
      failed = (e as Error).message;
    } finally {
      trainer.dispose();
    }
    const trainSeconds = (Date.now() - t0) / 1000;
    const t1 = Date.now();
    const probes: Partial<Record<ProbeSplit, ProbeSummary>> = {};
    for (const split of failed ? [] : splits) {
      const { trace, traceStandardError, frobeniusSquared, frobeniusStandardError, maxEigenvalue, minEigenvalue = NaN, logAbsDet } = probeRun(dir, { ...probeOptions, split });
      probes[split] = { trace, traceStandardError, frobeniusSquared, frobeniusStandardError, maxEigenvalue, minEigenvalue, logAbsDet };
    }
    const probe = probes[splits[0]];
    const record: RunRecord = {
      spec,
      ...(last?.validation ? { validationTop1: last.validation.top1 } : {}),
      probes,
      probe: probeOptions,
      failed,
      epochs: last ? last.epoch : 0,
      top1: last?.test.top1 ?? NaN,
      testLoss: last?.test.loss ?? NaN,
      trainLoss: last?.trainLoss ?? NaN,
      ...(probe ?? NO_PROBE),
      trainSeconds,
      probeSeconds: (Date.now() - t1) / 1000,
    };
    writeAtomic(recordFile, [Buffer.from(JSON.stringify(record, null, 2) + '\n')]);
    records.push(record);
    onProgress?.(
      failed
        ? `${tag}: failed: ${failed.split('\n')[0]}`
        : `${tag}: top-1 ${(100 * record.top1).toFixed(2)}%  tr H ${record.trace.toPrecision(4)}  ‖H‖_F² ${record.frobeniusSquared.toPrecision(4)}  λmax ${record.maxEigenvalue.toPrecision(4)}  (${trainSeconds.toFixed(0)} + ${record.probeSeconds.toFixed(0)} s)`,
    );
  });
  return records;
}

// ---------------------------------------------------------------- summaries

export interface Cell {
  model: string;
  setting: SettingName;
  rule: RuleName;
  hyper: RunSpec['hyper'];
  runs: number;
  failed: number;
  top1: Stat;
  testLoss: Stat;
  measures: Record<Measure, Stat>;
}

/** Mean and sample standard deviation over the seeds of each (model, setting, rule, point). */
export function summarize(records: RunRecord[]): Cell[] {
  const groups = new Map<string, RunRecord[]>();
  for (const r of records) {
    const key = JSON.stringify([r.spec.model, r.spec.setting, r.spec.rule, r.spec.hyper]);
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  return [...groups.values()].map((rs) => {
    const ok = rs.filter((r) => !r.failed);
    const s = rs[0].spec;
    return {
      model: s.model,
      setting: s.setting,
      rule: s.rule,
      hyper: s.hyper,
      runs: rs.length,
      failed: rs.length - ok.length,
      top1: stat(ok.map((r) => r.top1)),
      testLoss: stat(ok.map((r) => r.testLoss)),
      measures: Object.fromEntries(MEASURES.map((m) => [m, stat(ok.map((r) => r[m]))])) as Record<Measure, Stat>,
    };
  });
}
