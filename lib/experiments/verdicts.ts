// The verdicts of `usam reproduce`: each comparison pairs two arms by seed
// (the same seed gives both the same initial weights and data order), tests
// the mean paired difference with Student's t, and gives its 95% interval;
// the family of claims (each rule against SGD and against its controls, on
// its own measure) is adjusted by Holm's method, and a claim holds only when
// its adjusted p is below 0.05 and the rule is lower. The sweep's choice is
// made the same way on the validation split.
import { holm, pairedTTest, type PairedTest } from './statistics.js';
import { stat, type Stat } from '../report/report.js';
import { rules } from '../optim/rules/index.js';
import { armOf, type Measure, MEASURES, type ProbeSplit, type RuleName, type RunRecord, type RunSpec, type SettingName } from './reproduce.js';

/** A record's value of a measure on a split (the flat fields are the first split's, for records that predate `probes`). */
export function measureOf(r: RunRecord, m: Measure, split: ProbeSplit): number {
  if (r.failed) return NaN;
  return r.probes ? (r.probes[split]?.[m] ?? NaN) : split === 'test' ? r[m] : NaN;
}
const top1Of = (r: RunRecord, split: ProbeSplit) => (r.failed ? NaN : split === 'validation' ? (r.validationTop1 ?? NaN) : r.top1);

export interface Comparison {
  model: string;
  setting: SettingName;
  rule: RuleName;
  /** the arm it is compared with (SGD or a control) */
  against: RuleName;
  hyper: RunSpec['hyper'];
  measure: Measure;
  split: ProbeSplit;
  value: Stat;
  baseline: Stat;
  /** ratio of the means (for logdet_δ, a log, read the difference) */
  ratio: number;
  /** rule − baseline, paired by seed: mean, 95% interval, t, p */
  paired: PairedTest;
  /** paired difference of top-1 (on the split's images: validation for the sweep, test for the grid) */
  top1Difference: number;
}

export interface Claim extends Comparison {
  /** Holm-adjusted p over the family of claims */
  pAdjusted: number;
  held: boolean;
}

/** The rule's runs (at one point) against the baseline arm's, paired by seed, for one measure. */
export function compare(records: RunRecord[], rule: RuleName, against: RuleName, measure: Measure, split: ProbeSplit): Comparison[] {
  const out: Comparison[] = [];
  const groups = new Map<string, RunRecord[]>();
  for (const r of records.filter((x) => x.spec.rule === rule)) {
    const key = JSON.stringify([r.spec.model, r.spec.setting, r.spec.hyper]);
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  for (const rs of groups.values()) {
    const { model, setting, hyper } = rs[0].spec;
    const base = records.filter((x) => x.spec.rule === against && x.spec.model === model && x.spec.setting === setting);
    const pairs = rs.map((r) => [r, base.find((b) => b.spec.seed === r.spec.seed)] as const).filter((p): p is readonly [RunRecord, RunRecord] => p[1] !== undefined);
    if (pairs.length === 0) continue;
    const a = pairs.map(([r]) => measureOf(r, measure, split));
    const b = pairs.map(([, q]) => measureOf(q, measure, split));
    const value = stat(a), baseline = stat(b);
    const top1 = pairedTTest(pairs.map(([r]) => top1Of(r, split)), pairs.map(([, q]) => top1Of(q, split)));
    out.push({ model, setting, rule, against, hyper, measure, split, value, baseline, ratio: value.mean / baseline.mean, paired: pairedTTest(a, b), top1Difference: top1.mean });
  }
  return out;
}

/** Each rule's claim on its own measure, against SGD and against its controls, Holm-adjusted as one family. */
export function claims(records: RunRecord[], split: ProbeSplit = 'test'): Claim[] {
  const rules = [...new Set(records.map((r) => r.spec.rule))];
  const list: Comparison[] = [];
  for (const rule of rules) {
    const { measure, controls } = armOf(rule);
    if (!measure || rule.startsWith('sgd')) continue;
    for (const against of ['sgd', ...controls]) list.push(...compare(records, rule, against, measure, split));
  }
  const adjusted = holm(list.map((c) => c.paired.p));
  return list.map((c, i) => ({ ...c, pAdjusted: adjusted[i], held: adjusted[i] < 0.05 && c.paired.mean < 0 }));
}

/** Every arm but SGD against SGD on every measure: the cross-measure matrix (no claims, no adjustment). */
export function crossMatrix(records: RunRecord[], split: ProbeSplit): Comparison[] {
  const rules = [...new Set(records.map((r) => r.spec.rule))].filter((r) => r !== 'sgd');
  return rules.flatMap((rule) => MEASURES.flatMap((m) => compare(records, rule, 'sgd', m, split)));
}

/**
 * The sweep's choice per rule, on the validation split: among the points
 * whose paired top-1 is within 0.5 pt of SGD's (or better), the one that
 * lowers the rule's own measure the most relative to SGD's; none when no
 * point lowers it.
 */
export function pickDefaults(records: RunRecord[]): { rule: RuleName; hyper: RunSpec['hyper'] | null; choice: Comparison | null; candidates: Comparison[] }[] {
  const arms = [...new Set(records.map((r) => r.spec.rule))].filter((r) => armOf(r).measure && !r.startsWith('sgd'));
  return arms.map((rule) => {
    const candidates = compare(records, rule, 'sgd', armOf(rule).measure!, 'validation');
    const eligible = candidates.filter((c) => c.top1Difference >= -0.005 && c.paired.mean < 0);
    // relative to SGD's magnitude, so a log-determinant compares like a ratio
    const best = eligible.sort((a, b) => a.paired.mean / Math.abs(a.baseline.mean) - b.paired.mean / Math.abs(b.baseline.mean))[0];
    return { rule, hyper: best?.hyper ?? null, choice: best ?? null, candidates };
  });
}

/**
 * The grid's points from a sweep's results (its records): each rule at the
 * sweep's choice; RWP at Trace-SAM's chosen radius and GNP at Frob-SAM's
 * chosen lambda, so each control matches the rule it controls.
 */
export function chosenFromSweep(records: RunRecord[]): Partial<Record<RuleName, RunSpec['hyper']>> {
  const chosen: Partial<Record<RuleName, RunSpec['hyper']>> = {};
  for (const p of pickDefaults(records)) if (p.hyper) chosen[p.rule] = p.hyper;
  for (const control of rules().filter((r) => r.follows)) {
    const { rule, fields } = control.follows!;
    const from = (chosen[rule] ?? {}) as Record<string, number | undefined>;
    const taken = Object.fromEntries(fields.flatMap((f) => (from[f] !== undefined ? [[f, from[f]]] : [])));
    if (Object.keys(taken).length > 0) chosen[control.kind] = taken;
  }
  return chosen;
}
