// The registry of SAM-family rules, in the manner of torch/optim: each rule
// is one descriptor (rules/<kind>.ts) that owns its config schema and
// library defaults, its training defaults, how to build its step, the name
// and meaning of its per-step reading, and the measure it is meant to lower.
// The Optimizer, the training config, the report, `usam reproduce` and the
// golden replay all read the descriptors here; none of them names a rule.
// A rule of one's own is a descriptor passed to registerRule().
import { z } from 'zod';
import * as check from '../../arguments.js';
import { ConfigError, parseOrThrow } from '../../errors.js';
import type { Model } from '../../model/model.js';
import type { Work } from '../../model/work.js';
import type { Generator } from '../../random.js';
import type { Reading } from '../../sharpness/reading.js';
import type { Tensor } from '../../tensor/tensor.js';
import type { DirectionSampler, RuleContext, RuleResult } from './context.js';

export type Estimator = 'finite-difference' | 'exact';
const ESTIMATORS = ['finite-difference', 'exact'] as const;
/** The Hessian measures the probes report (lib/hessian), by which a rule's claim is judged. */
export type Measure = 'trace' | 'frobeniusSquared' | 'maxEigenvalue' | 'logAbsDet';
/** Hyperparameters by name: { rho: 0.05 }, { rho: 0.005, lambda: 0.003, samples: 2 }. */
export type Hyper = Record<string, number>;
/**
 * A value for the rule as configured by default ('default': the
 * finite-difference estimator, or the rule's only form) and, for rules that
 * have one, for the exact estimator ('exact').
 */
export type PerVariant<T> = { default?: T; exact?: T };

/**
 * kind → the zod schema of that rule's config. Each rule file adds its own
 * entry (TypeScript declaration merging), which types `sharpness` configs per
 * rule; a rule of one's own can add its entry the same way.
 */
// eslint-disable-next-line @typescript-eslint/no-empty-object-type
export interface RuleSchemas {}

/** A sharpness config as written: `{ kind: 'frob-sam', rho: 0.005, lambda: 0.003 }`. */
export type SharpnessConfigInput = { [K in keyof RuleSchemas]: RuleSchemas[K] extends z.ZodType ? z.input<RuleSchemas[K]> : never }[keyof RuleSchemas];
/** A sharpness config after parsing: every default filled in. */
export type SharpnessConfig = { [K in keyof RuleSchemas]: RuleSchemas[K] extends z.ZodType ? z.output<RuleSchemas[K]> : never }[keyof RuleSchemas];

/** What a rule's build() gets from the Optimizer. */
export interface RuleEnv {
  model: Model;
  /** the stream of the directions u ~ mu (seeded by the optimizer's seed) */
  generator: Generator;
  /** batchNorm 'every-pass': the perturbed passes move BatchNorm's running statistics */
  statsEveryPass: boolean;
  /** rules with groupRho: the per-coordinate factor rho_group / rho at this step (the groups' rho are live), or undefined when all groups perturb by one rho */
  rhoScale(): Tensor | undefined;
}

/** A rule ready to step: its step, and the direction sampler it draws from (the Optimizer disposes it, saves its generator). */
export interface BuiltRule {
  step: (ctx: RuleContext) => Work<RuleResult>;
  sampler?: DirectionSampler;
  /** draws of the sampler in one step (the prefetch announces them) */
  drawsPerStep?: number;
}

export interface RuleDescriptor<S extends z.ZodObject = z.ZodObject> {
  /** the config's `kind` and the name `usam train --optimizer` takes */
  kind: string;
  /** one line: what the rule does (CLI help, docs) */
  summary: string;
  /** the config: a strict zod object with `kind: z.literal(kind)`; its .default()s are the library defaults */
  schema: S;
  /** whether the rule has a radius rho (false: GNP); without one, rho 0 does not make a step plain */
  radius: boolean;
  /** parameter groups may set their own rho (SAM, ASAM: the perturbation is per coordinate) */
  groupRho?: boolean;
  /** what StepResult.sharpness is, per estimator */
  reading(estimator: Estimator): Reading;
  /** the Hessian measure the rule is meant to lower (its claim in `usam reproduce`) */
  measure?: Measure;
  /**
   * Training defaults (`usam train`, the Trainer): the fields a training
   * config leaves unset. A rule without them is not offered by `usam train`
   * (the universal class needs functions, which flags cannot give).
   */
  training?: PerVariant<Hyper>;
  /**
   * A control (RWP, GNP) takes these fields from the rule it controls, in
   * the training defaults and in the grid after a sweep, so the two match.
   */
  follows?: { rule: string; fields: string[] };
  /** `usam reproduce`: the arms each variant's claim is also tested against (besides SGD) */
  controls?: PerVariant<string[]>;
  /** `usam reproduce --sweep`: the points tried per variant */
  sweep?: PerVariant<Hyper[]>;
  /** the rule's step for a parsed config */
  build(config: z.output<S>, env: RuleEnv): BuiltRule;
}

/** A descriptor's shape: a lowercase kind, and a schema whose kind is that literal. */
function checkDescriptor(fn: string, d: RuleDescriptor<z.ZodObject>): void {
  check.object(fn, 'descriptor', d, 'a rule descriptor { kind, schema, build, ... } (docs/optimizers.md)');
  if (typeof d.kind !== 'string' || !/^[a-z][a-z0-9-]*$/.test(d.kind))
    throw new ConfigError('rule descriptor', [{ path: 'descriptor.kind', message: `must be a lowercase name like 'my-sam', got ${JSON.stringify(d.kind)}` }]);
  if (!(d.schema instanceof z.ZodObject) || !(d.schema.shape.kind instanceof z.ZodLiteral) || d.schema.shape.kind.value !== d.kind)
    throw new ConfigError('rule descriptor', [{ path: 'descriptor.schema', message: `must be a z.object({ kind: z.literal('${d.kind}'), ... })` }]);
  check.func(fn, 'descriptor.build', d.build, 'a function (config, env) => BuiltRule');
  check.func(fn, 'descriptor.reading', d.reading, "a function (estimator) => Reading (the rule's per-step reading)");
}

/** Type-checks a descriptor (its build() sees its own schema's config), and checks its shape. */
export const defineRule = <S extends z.ZodObject>(d: RuleDescriptor<S>): RuleDescriptor<S> => {
  checkDescriptor('defineRule', d as unknown as RuleDescriptor<z.ZodObject>);
  return d;
};

/**
 * The config builder of a rule, `sam({ rho: 0.05 })`: its fields are
 * checked at once (ConfigError naming `options.<field>`), so a mistake
 * surfaces where it is written; the result is the config as given, with its kind.
 */
export function configBuilder<S extends z.ZodObject>(kind: string, fn: string) {
  return (options: Omit<z.input<S>, 'kind'>): SharpnessConfigInput => {
    const config = { ...check.object(fn, 'options', options as object, `${fn} options { rho, ... }`), kind } as unknown as SharpnessConfigInput;
    try {
      parseSharpness(config, 'options');
    } catch (e) {
      throw e instanceof ConfigError ? new ConfigError(`${fn}(options)`, e.issues) : e;
    }
    return config;
  };
}

/** The base optimizers' names, which no rule may take (`usam train --optimizer sgd`). */
export const BASE_OPTIMIZERS = ['sgd', 'adam', 'adamw'] as const;

const registry = new Map<string, RuleDescriptor>();

/** Adds a rule; its kind must be new. Returns the descriptor. */
export function registerRule<S extends z.ZodObject>(d: RuleDescriptor<S>): RuleDescriptor<S> {
  check.object('registerRule', 'descriptor', d, 'a rule descriptor { kind, schema, build, ... } (docs/optimizers.md)');
  if (registry.has(d.kind) || (BASE_OPTIMIZERS as readonly string[]).includes(d.kind))
    throw new ConfigError('rule descriptor', [{ path: 'descriptor.kind', message: `'${d.kind}' is taken (${registry.has(d.kind) ? 'a registered rule' : 'a base optimizer'}); choose another name` }]);
  checkDescriptor('registerRule', d as unknown as RuleDescriptor<z.ZodObject>);
  registry.set(d.kind, d as unknown as RuleDescriptor);
  return d;
}

/** The registered rules, in registration order. */
export const rules = (): RuleDescriptor[] => [...registry.values()];
export const ruleKinds = (): string[] => [...registry.keys()];

/** The rule of a kind, or undefined. */
export const findRule = (kind: string): RuleDescriptor | undefined => registry.get(check.string('findRule', 'kind', kind, "a rule's kind ('sam', 'frob-sam', ...)"));

/** The rule of a kind; an unknown kind is a ConfigError that lists the known ones. */
export function ruleOf(kind: string, path = 'sharpness.kind'): RuleDescriptor {
  check.string('ruleOf', 'path', path, 'the config path for messages');
  if (typeof kind !== 'string') throw new ConfigError('sharpness config', [{ path, message: `must be a rule's kind (one of ${ruleKinds().join(', ')}), got ${check.describeValue(kind)}` }], `ruleOf: argument 'kind' (${path}) must be a rule's kind (one of ${ruleKinds().join(', ')}), got ${check.describeValue(kind)}`);
  const d = registry.get(kind);
  if (!d) throw new ConfigError('sharpness config', [{ path, message: `unknown rule '${kind}'; use one of ${ruleKinds().join(', ')}` }]);
  return d;
}

/** The hyperparameters a training config or a golden file may set, where the rule's config has them. */
export const HYPER_FIELDS = ['rho', 'lambda', 'samples', 'halfCube', 'eta'] as const;

/** Whether `usam train` offers the rule: it has training defaults, or takes them from the rule it controls. */
export const isTrainable = (d: RuleDescriptor): boolean => d.training !== undefined || d.follows !== undefined;

/** Whether a rule's config has a field (rho, lambda, estimator, ...). */
export const hasField = (d: RuleDescriptor, field: string): boolean => field in d.schema.shape;

/** The variant a config selects: 'exact' for the exact estimator, else 'default'. */
export const variantOf = (estimator: unknown): keyof PerVariant<unknown> => (estimator === 'exact' ? 'exact' : 'default');

/** The training defaults of a rule's variant, with the fields a control follows taken from its rule. */
export function trainingDefaultsOf(kind: string, estimator: Estimator = 'finite-difference'): Hyper | undefined {
  check.oneOf('trainingDefaultsOf', 'estimator', estimator, ESTIMATORS);
  const d = ruleOf(check.string('trainingDefaultsOf', 'kind', kind, "a rule's kind"), 'kind');
  const own = d.training?.[variantOf(estimator)];
  if (!own && !d.follows) return undefined;
  const followed = d.follows ? trainingDefaultsOf(d.follows.rule) : undefined;
  const taken = Object.fromEntries((d.follows?.fields ?? []).flatMap((f) => (followed?.[f] !== undefined ? [[f, followed[f]]] : [])));
  return { ...own, ...taken };
}

/** The reading of a rule's StepResult.sharpness; undefined for base optimizers and unknown kinds. */
export function readingOf(kind: string, estimator: Estimator = 'finite-difference'): Reading | undefined {
  check.string('readingOf', 'kind', kind, "a rule's kind");
  check.oneOf('readingOf', 'estimator', estimator, ESTIMATORS);
  return registry.get(kind)?.reading(estimator);
}

/**
 * Parses a sharpness config with its rule's schema, and the checks every
 * rule with directions shares. Throws a ConfigError naming each field.
 */
export function parseSharpness(config: unknown, root = 'sharpness'): SharpnessConfig {
  check.string('parseSharpness', 'root', root, "the config's name in messages");
  if (config === null || typeof config !== 'object' || typeof (config as { kind?: unknown }).kind !== 'string')
    throw new ConfigError(`${root} config`, [{ path: `${root}.kind`, message: `a sharpness config is an object with a kind: one of ${ruleKinds().join(', ')}` }]);
  const d = ruleOf((config as { kind: string }).kind, `${root}.kind`);
  const c = parseOrThrow(d.schema, config, `${root} config`, root) as Record<string, unknown>;
  const issues = [];
  if (c.directions === 'antithetic' && typeof c.samples === 'number' && c.samples % 2 !== 0)
    issues.push({ path: `${root}.samples`, message: `antithetic directions come in ± pairs: samples must be even, got ${c.samples}` });
  if (c.mu === 'cube' && hasField(d, 'halfCube') && c.halfCube === undefined)
    issues.push({ path: `${root}.halfCube`, message: 'mu "cube" needs halfCube (the cube is [-halfCube, halfCube]^P)' });
  if (issues.length > 0) throw new ConfigError(`${root} config`, issues);
  return c as SharpnessConfig;
}
