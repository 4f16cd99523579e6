// `usam report`: one self-contained HTML page (inline SVG, no script needed to
// read it, no network) comparing runs: a table of final numbers with their
// differences to a baseline, per-step training curves beside the per-epoch
// evaluations, one chart per Hessian measure of the probes, each rule's own
// per-step reading in its own chart, and the spectral density on a log axis.
// Runs whose configs differ only in seed (and out, threads) form a group,
// shown as mean ± std over its seeds.
import { existsSync, readFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { CONFIG_FILE, type EpochMetrics, METRICS_FILE, STEPS_FILE, type StepLogLine } from '../train/trainer.js';
import { COLORS, DASHES, densityChart, densityPoints, esc, lineChart, type Series } from './charts.js';

export { lineChart, type Series } from './charts.js';
import { htmlPage } from './page.js';
import { readingOf } from '../optim/rules/index.js';
import type { Reading } from '../sharpness/reading.js';

export interface Run {
  name: string;
  dir: string;
  config: Record<string, unknown>;
  metrics: EpochMetrics[];
  /** steps.jsonl; empty for runs without a step log */
  steps: StepLogLine[];
}

function readJsonLines<T>(file: string): T[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l, i) => {
      try {
        return JSON.parse(l) as T;
      } catch {
        throw new Error(`${file}: line ${i + 1} is not JSON`);
      }
    });
}

export function readRun(dir: string): Run {
  const metricsFile = join(dir, METRICS_FILE);
  if (!existsSync(metricsFile)) throw new Error(`${dir}: no ${METRICS_FILE}; is it a run directory (usam train --out)?`);
  const metrics = readJsonLines<EpochMetrics>(metricsFile);
  const stepsFile = join(dir, STEPS_FILE);
  const steps = existsSync(stepsFile) ? readJsonLines<StepLogLine>(stepsFile) : [];
  const configFile = join(dir, CONFIG_FILE);
  const config = existsSync(configFile) ? (JSON.parse(readFileSync(configFile, 'utf8')) as Record<string, unknown>) : {};
  return { name: basename(resolve(dir)), dir, config, metrics, steps };
}

// ---------------------------------------------------------------- grouping

/** Config fields that do not make runs different experiments. */
export const GROUP_IGNORED = ['seed', 'out', 'threads'];

export interface Group {
  name: string;
  runs: Run[];
  /** the config shared by the runs (without the ignored fields) */
  config: Record<string, unknown>;
}

const canonical = (v: unknown): string =>
  Array.isArray(v) ? `[${v.map(canonical).join(',')}]` : v && typeof v === 'object' ? `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`).join(',')}}` : JSON.stringify(v);

const withoutIgnored = (c: Record<string, unknown>) => Object.fromEntries(Object.entries(c).filter(([k]) => !GROUP_IGNORED.includes(k)));

/** The longest common prefix of names, without a trailing separator ("sam-s0", "sam-s1" → "sam"). */
function commonName(names: string[]): string {
  let p = names[0];
  for (const n of names) while (!n.startsWith(p)) p = p.slice(0, -1);
  return p.replace(/[-_.\s]*(s|seed)?[-_.]*$/i, '');
}

/**
 * Runs whose config.json are equal except seed, out and threads form one
 * group, in the order of their first run. A run without a config is a group
 * of its own. Group names: the run's name, or for several seeds the common
 * prefix of their names (the optimizer when there is none), unique.
 */
export function groupRuns(runs: Run[]): Group[] {
  const groups: Group[] = [];
  const keys: string[] = [];
  for (const r of runs) {
    const key = Object.keys(r.config).length === 0 ? `run:${r.dir}` : canonical(withoutIgnored(r.config));
    const i = keys.indexOf(key);
    if (i >= 0) groups[i].runs.push(r);
    else {
      keys.push(key);
      groups.push({ name: '', runs: [r], config: withoutIgnored(r.config) });
    }
  }
  const used = new Set<string>();
  for (const g of groups) {
    let name = g.runs.length === 1 ? g.runs[0].name : commonName(g.runs.map((r) => r.name)) || String(g.config.optimizer ?? 'runs');
    if (used.has(name)) for (let k = 2; ; k++) if (!used.has(`${name} (${k})`)) { name = `${name} (${k})`; break; }
    used.add(name);
    g.name = name;
  }
  return groups;
}

// ---------------------------------------------------------------- statistics

export interface Stat {
  mean: number;
  /** sample standard deviation over the seeds; NaN for one run */
  std: number;
  n: number;
}

export function stat(values: (number | null | undefined)[]): Stat {
  const v = values.filter((x): x is number => typeof x === 'number' && Number.isFinite(x));
  const n = v.length;
  if (n === 0) return { mean: NaN, std: NaN, n: 0 };
  const mean = v.reduce((a, b) => a + b, 0) / n;
  const std = n > 1 ? Math.sqrt(v.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1)) : NaN;
  return { mean, std, n };
}

/** Mean (and std band when several runs) of per-run curves, matched on x. */
export function meanCurve(curves: [number, number][][]): { points: [number, number][]; band?: [number, number, number][] } {
  if (curves.length === 1) return { points: curves[0] };
  const byX = new Map<string, { x: number; ys: number[] }>();
  for (const c of curves)
    for (const [x, y] of c) {
      if (!Number.isFinite(y)) continue;
      const k = x.toFixed(9);
      const e = byX.get(k) ?? { x, ys: [] };
      e.ys.push(y);
      byX.set(k, e);
    }
  const rows = [...byX.values()].sort((a, b) => a.x - b.x).map((e) => ({ x: e.x, s: stat(e.ys) }));
  return {
    points: rows.map((r) => [r.x, r.s.mean]),
    band: rows.map((r) => [r.x, r.s.mean - (Number.isFinite(r.s.std) ? r.s.std : 0), r.s.mean + (Number.isFinite(r.s.std) ? r.s.std : 0)]),
  };
}

// ---------------------------------------------------------------- the table

export interface Column {
  label: string;
  get: (m: EpochMetrics) => number | null | undefined;
  /** shown ×100 with "%" and differences in percentage points */
  percent?: boolean;
  /** whether lower is better (for the sign colour of the difference) */
  lowerIsBetter?: boolean;
}

export const COLUMNS: Column[] = [
  { label: 'test loss', get: (m) => m.test.loss, lowerIsBetter: true },
  { label: 'test top-1', get: (m) => m.test.top1, percent: true },
  { label: 'test top-5', get: (m) => m.test.top5, percent: true },
  { label: 'train loss', get: (m) => m.trainLoss, lowerIsBetter: true },
  { label: 'tr H', get: (m) => m.probe?.trace, lowerIsBetter: true },
  { label: '‖H‖_F²', get: (m) => m.probe?.frobeniusSquared, lowerIsBetter: true },
  { label: 'λmax', get: (m) => m.probe?.maxEigenvalue, lowerIsBetter: true },
  { label: 'log|det|', get: (m) => m.probe?.logAbsDet, lowerIsBetter: true },
  { label: 's / epoch', get: (m) => m.seconds, lowerIsBetter: true },
];

export interface TableRow {
  group: Group;
  isBaseline: boolean;
  cells: { stat: Stat; delta?: number }[];
}

/** The final value of each column per group (the last epoch's metrics, or the last probe for probe columns), with differences to the baseline's mean. */
export function summaryTable(groups: Group[], baseline?: Group, columns: Column[] = COLUMNS): TableRow[] {
  const finals = (g: Group, c: Column) => stat(g.runs.map((r) => [...r.metrics].reverse().map(c.get).find((v) => v !== undefined && v !== null && Number.isFinite(v))));
  return groups.map((g) => ({
    group: g,
    isBaseline: g === baseline,
    cells: columns.map((c) => {
      const s = finals(g, c);
      const b = baseline && g !== baseline ? finals(baseline, c) : undefined;
      return { stat: s, delta: b && b.n > 0 && s.n > 0 ? s.mean - b.mean : undefined };
    }),
  }));
}

/** The group `--baseline NAME` names: by group name, a run's directory name, or the optimizer. */
export function findBaseline(groups: Group[], name: string): Group {
  const g =
    groups.find((g) => g.name === name) ?? groups.find((g) => g.runs.some((r) => r.name === name || r.dir === name)) ?? groups.find((g) => g.config.optimizer === name);
  if (!g) throw new Error(`--baseline ${name}: no run or group of that name or optimizer; the groups are ${groups.map((g) => g.name).join(', ')}`);
  return g;
}

/** Four significant digits, exponent form for large and small magnitudes. */
export const fmt = (v: number) =>
  !Number.isFinite(v) ? '—' : Math.abs(v) >= 1e5 || (Math.abs(v) < 1e-3 && v !== 0) ? v.toExponential(2).replace('e+', 'e') : Number(v.toPrecision(4)).toString();

function cellHtml(c: { stat: Stat; delta?: number }, col: Column, isBaseline: boolean): string {
  const { mean, std, n } = c.stat;
  if (n === 0) return '<td class="num">—</td>';
  const scale = col.percent ? 100 : 1;
  const v = col.percent ? (mean * 100).toFixed(2) + '%' : fmt(mean);
  const sd = n > 1 ? ` <span class="sd">± ${col.percent ? (std * 100).toFixed(2) : fmt(Number(std.toPrecision(2)))}</span>` : '';
  let d = '';
  if (isBaseline) d = '<div class="delta">baseline</div>';
  else if (c.delta !== undefined) {
    const dv = c.delta * scale;
    const better = col.lowerIsBetter ? dv < 0 : dv > 0;
    const txt = col.percent ? `${dv >= 0 ? '+' : '−'}${Math.abs(dv).toFixed(2)} pp` : `${dv >= 0 ? '+' : '−'}${fmt(Math.abs(dv))}`;
    const rel = !col.percent && c.delta !== 0 ? ` (${dv >= 0 ? '+' : '−'}${Math.abs((100 * c.delta) / (mean - c.delta)).toFixed(1)}%)` : '';
    d = `<div class="delta ${dv === 0 ? '' : better ? 'better' : 'worse'}">${txt}${rel}</div>`;
  }
  return `<td class="num">${v}${sd}${d}</td>`;
}

// ---------------------------------------------------------------- rules

/** What the rule's own per-step estimate is, and its unit. */
/** The reading a run's optimizer reports each step (its rule's descriptor, lib/optim/rules/). */
export function ruleReading(config: Record<string, unknown>): Reading | undefined {
  return readingOf(String(config.optimizer ?? ''), config.estimator === 'exact' ? 'exact' : 'finite-difference');
}

// ---------------------------------------------------------------- the page

export interface ReportOptions {
  /** the group (name, run directory name, or optimizer) differences are taken to; default: the first */
  baseline?: string;
  title?: string;
}

function maxEpochs(groups: Group[]): number {
  return Math.max(1, ...groups.flatMap((g) => g.runs.map((r) => Math.max(Number(r.config.epochs ?? 0), r.metrics.length))));
}

function epochCurve(g: Group, get: (m: EpochMetrics) => number | null | undefined) {
  return meanCurve(g.runs.map((r) => r.metrics.map((m) => [m.epoch + 1, get(m) ?? NaN] as [number, number])));
}

function seedLabel(g: Group): string {
  return g.runs.length > 1 ? `${g.name} (${g.runs.length} seeds)` : g.name;
}

export function renderReport(runs: Run[], o: ReportOptions = {}): string {
  const groups = groupRuns(runs);
  const baseline = groups.length > 1 ? (o.baseline !== undefined ? findBaseline(groups, o.baseline) : groups[0]) : undefined;
  const style = new Map(groups.map((g, i) => [g, i]));
  const epochs = maxEpochs(groups);
  const stepsPerEpoch = groups.flatMap((g) => g.runs).map((r) => (r.metrics[0] ? r.metrics[0].step : NaN)).find(Number.isFinite);
  const logEvery = groups.flatMap((g) => g.runs).map((r) => r.steps[0]?.steps).find((s) => s !== undefined);
  const epochLabel = stepsPerEpoch ? `epoch (${stepsPerEpoch.toLocaleString('en-US')} steps each)` : 'epoch';
  const perStep = (g: Group, get: (s: StepLogLine) => number | null) =>
    meanCurve(g.runs.map((r) => r.steps.map((s) => [s.progress ?? s.step / (stepsPerEpoch ?? 1), get(s) ?? NaN] as [number, number])));
  const hasSteps = groups.some((g) => g.runs.some((r) => r.steps.length > 0));

  const sections: { title: string; note?: string; charts: string[] }[] = [];

  // 1. training: the per-step loss beside the per-epoch evaluations
  const trainSeries: Series[] = groups.flatMap((g) => [
    { name: seedLabel(g), style: style.get(g)!, thin: hasSteps, ...(hasSteps ? perStep(g, (l) => l.loss) : epochCurve(g, (m) => m.trainLoss)) },
    ...(hasSteps ? [{ name: `${seedLabel(g)} epoch mean`, style: style.get(g)!, markersOnly: true, points: epochCurve(g, (m) => m.trainLoss).points }] : []),
  ]);
  const accSeries: Series[] = groups.flatMap((g) => [
    { name: seedLabel(g), style: style.get(g)!, ...epochCurve(g, (m) => m.test.top1) },
    { name: `${seedLabel(g)} train`, style: style.get(g)!, markersOnly: true, points: epochCurve(g, (m) => m.trainAccuracy).points },
  ]);
  sections.push({
    title: 'Training',
    charts: [
      lineChart({
        title: 'training loss',
        subtitle: hasSteps ? `L(w): lines, mean of every ${logEvery ?? 'k'} steps (steps.jsonl); ○ epoch mean` : 'mean over each epoch',
        xLabel: epochLabel,
        xEpochs: epochs,
        series: trainSeries,
        key: hasSteps ? [{ label: `per ${logEvery ?? 'k'} steps` }, { label: 'epoch mean', markers: true }] : undefined,
      }),
      lineChart({
        title: 'test loss',
        subtitle: 'at the end of each epoch',
        xLabel: epochLabel,
        xEpochs: epochs,
        series: groups.map((g) => ({ name: seedLabel(g), style: style.get(g)!, ...epochCurve(g, (m) => m.test.loss) })),
      }),
      lineChart({
        title: 'test top-1 accuracy',
        subtitle: 'lines: test set at epoch end; ○ training batches of the epoch',
        xLabel: epochLabel,
        xEpochs: epochs,
        series: accSeries,
        key: [{ label: 'test' }, { label: 'train', markers: true }],
      }),
    ],
  });

  // 2. Hessian probes: the same measure, by the same estimator, for every run
  const probes: [string, string, (m: EpochMetrics) => number | null | undefined][] = [
    ['Hessian trace (Hutchinson)', 'tr H; loss / weight²', (m) => m.probe?.trace],
    ['Hessian ‖H‖_F²', '½·Var(uᵀHu), Gaussian u; loss² / weight⁴', (m) => m.probe?.frobeniusSquared],
    ['Hessian λmax (Lanczos)', 'largest eigenvalue; loss / weight²', (m) => m.probe?.maxEigenvalue],
    ['Hessian log|det(|H| + δI)| (SLQ)', 'Σ log(|λ| + δ), δ = 10⁻³; dominated by P·log δ', (m) => m.probe?.logAbsDet],
  ];
  const probeCharts = probes.map(([title, subtitle, get]) =>
    lineChart({ title, subtitle, xLabel: epochLabel, xEpochs: epochs, series: groups.map((g) => ({ name: seedLabel(g), style: style.get(g)!, ...epochCurve(g, get) })) }),
  );
  sections.push({
    title: 'Hessian probes',
    note: 'The same measure by the same estimator for every run: the Hessian of the training loss on a fixed batch of 256 (eval mode), after each probed epoch.',
    charts: probeCharts,
  });

  // 3. each rule's own estimate, in its own chart and unit
  const byRule = new Map<string, Group[]>();
  for (const g of groups) {
    const r = ruleReading(g.config);
    if (r) byRule.set(r.name, [...(byRule.get(r.name) ?? []), g]);
  }
  const ruleCharts = [...byRule].map(([, gs]) => {
    const r = ruleReading(gs[0].config)!;
    return lineChart({
      title: r.name,
      subtitle: r.unit,
      xLabel: epochLabel,
      xEpochs: epochs,
      height: 230,
      series: gs.flatMap((g) => {
        const rho = g.runs[0].metrics[0]?.rho;
        const name = `${seedLabel(g)}${rho !== undefined ? ` ρ=${fmt(rho)}` : ''}`;
        const s: Series[] = [{ name, style: style.get(g)!, markersOnly: !hasSteps, thin: hasSteps, ...(hasSteps ? perStep(g, (l) => l.sharpness) : epochCurve(g, (m) => m.sharpness)) }];
        if (hasSteps) s.push({ name: `${name} epoch mean`, style: style.get(g)!, markersOnly: true, points: epochCurve(g, (m) => m.sharpness).points });
        return s;
      }),
      key: hasSteps ? [{ label: `mean of ${logEvery ?? 'k'} steps` }, { label: 'epoch mean', markers: true }] : undefined,
    });
  });
  if (ruleCharts.some(Boolean))
    sections.push({
      title: 'Each rule’s own per-step reading',
      note: 'What a rule reads during training differs from rule to rule (a loss difference, a finite-difference curvature at the rule’s radius, an HVP estimate), so each has its own chart; the finite-difference readings are not the Hessian measures (docs/readings.md): compare runs on the probes above.',
      charts: ruleCharts,
    });

  // 4. the spectral density: log density axis, λmax marked
  const densities: Series[] = groups.flatMap((g) => {
    const r = g.runs[0]; // one seed's spectrum: densities on different grids do not average
    const last = [...r.metrics].reverse().find((m) => m.probe?.density);
    if (!last) return [];
    const d = last.probe!.density!;
    return [
      {
        name: `${g.name}${g.runs.length > 1 ? ` (seed ${r.config.seed ?? '?'})` : ''} λmax ${fmt(last.probe!.maxEigenvalue)}`,
        style: style.get(g)!,
        thin: true,
        points: densityPoints(d),
        marks: [last.probe!.maxEigenvalue],
      },
    ];
  });
  if (densities.length > 0) {
    const lastEpoch = Math.max(...groups.map((g) => ([...g.runs[0].metrics].reverse().find((m) => m.probe?.density)?.epoch ?? -1) + 1));
    sections.push({
      title: 'Hessian spectral density',
      note: 'SLQ (30 Lanczos steps, Gaussian smoothing) on the probe batch, at the last probed epoch; log density axis, so the bulk near 0 and the outliers both show; ▼ and dashed: λmax by Lanczos.',
      charts: [densityChart(`last probed epoch (${lastEpoch}); density clipped at 10⁻⁷ of its peak`, densities)],
    });
  }

  const rows = summaryTable(groups, baseline);
  const head = `<tr><th>run</th><th>optimizer</th><th>seed(s)</th><th>epochs</th>${COLUMNS.map((c) => `<th>${esc(c.label)}</th>`).join('')}</tr>`;
  const body = rows
    .map((row, i) => {
      const g = row.group;
      const swatch = `<svg class="swatch" width="22" height="8" role="img" aria-label="line style of ${esc(g.name)}"><line x1="1" x2="21" y1="4" y2="4" stroke="${COLORS[i % COLORS.length]}" stroke-width="2.5"${DASHES[i % DASHES.length] ? ` stroke-dasharray="${DASHES[i % DASHES.length]}"` : ''}/></svg>`;
      const seeds = g.runs.map((r) => r.config.seed ?? '?').join(', ');
      const ep = g.runs.map((r) => r.metrics.length);
      return `<tr${row.isBaseline ? ' class="baseline"' : ''}><td>${swatch} ${esc(g.name)}</td><td>${esc(String(g.config.optimizer ?? ''))}</td><td>${esc(seeds)}</td><td>${Math.min(...ep)}${Math.max(...ep) !== Math.min(...ep) ? `–${Math.max(...ep)}` : ''}</td>${row.cells.map((c, j) => cellHtml(c, COLUMNS[j], row.isBaseline)).join('')}</tr>`;
    })
    .join('\n');
  const common = groups[0]?.config ?? {};
  const describe = ['model', 'dataset', 'batchSize', 'lr', 'lrSchedule'].filter((k) => k in common && groups.every((g) => canonical(g.config[k]) === canonical(common[k])));
  const title = o.title ?? 'universal-sam report';
  return htmlPage(title, `<h1>${esc(title)}</h1>
<p class="note">${groups.length} group${groups.length === 1 ? '' : 's'} of ${runs.length} run${runs.length === 1 ? '' : 's'}${describe.length ? ' — ' + describe.map((k) => `${k} ${esc(canonical(common[k]).replace(/"/g, ''))}`).join(', ') : ''}. Runs whose configs differ only in ${GROUP_IGNORED.join(', ')} are one group: mean ± std over its seeds (std bands in the charts).${baseline ? ` Differences are to <b>${esc(baseline.name)}</b> (green: better, red: worse).` : ''}</p>
<table class="summary">${head}\n${body}</table>
<p class="note">Final numbers: the last epoch's evaluation and the last probe (Hessian of the training loss on a fixed batch of 256, eval mode).</p>
${sections
  .filter((s) => s.charts.some(Boolean))
  .map((s) => `<h2>${esc(s.title)}</h2>${s.note ? `<p class="note">${esc(s.note)}</p>` : ''}\n<div class="charts">${s.charts.filter(Boolean).join('\n')}</div>`)
  .join('\n')}`);
}
