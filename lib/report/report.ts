// `usam report`: one self-contained HTML page (inline SVG, no script needed to
// read it, no network) comparing runs: a table of final numbers with their
// differences to a baseline, per-step training curves beside the per-epoch
// evaluations, one chart per Hessian measure of the probes, each rule's own
// per-step reading in its own chart, and the spectral density on a log axis.
// Runs whose configs differ only in seed (and out, threads) form a group,
// shown as mean ± std over its seeds (runs.ts); the table is table.ts. A run
// folder's probe.json (usam probe) fills the Hessian measures where its
// metrics.jsonl has none, marked as such.
import * as check from '../arguments.js';
import type { EpochMetrics, StepLogLine } from '../train/trainer.js';
import { densityChart, densityPoints, esc, lineChart, type Series } from './charts.js';
import { landscapeChart } from './heatmap.js';
import { canonical, GROUP_IGNORED, type Group, groupRuns, meanCurve, type ProbeFile, type Run } from './runs.js';
import { findBaseline, fmt, runsPhrase, seedWarning, summaryTable, tableHtml } from './table.js';

export { lineChart, type Series } from './charts.js';
export * from './runs.js';
export * from './table.js';
import { htmlPage } from './page.js';
import { readingOf } from '../optim/rules/index.js';
import type { Reading } from '../sharpness/reading.js';

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
  return meanCurve(g.runs.map((r) => r.metrics.map((m) => [m.epoch, get(m) ?? NaN] as [number, number])));
}

/** The values of probe.json (usam probe) of a group's runs, at the epoch of the checkpoint probed. */
function probeFileCurve(g: Group, get: (p: ProbeFile) => number | null | undefined) {
  const runs = g.runs.filter((r) => r.probe?.checkpoint && Number.isFinite(get(r.probe) ?? NaN));
  return runs.length ? meanCurve(runs.map((r) => [[r.probe!.checkpoint!.epoch, get(r.probe!)!] as [number, number]])) : undefined;
}

function seedLabel(g: Group): string {
  return g.runs.length > 1 ? `${g.name} (${g.runs.length} seeds)` : g.name;
}

export function renderReport(runs: Run[], o: ReportOptions = {}): string {
  check.array('renderReport', 'runs', runs, 'an array of runs (readRun(folder))');
  if (runs.length === 0) throw new check.ArgumentError('renderReport', 'runs', 'is empty; a report needs at least one run (readRun(folder))');
  runs.forEach((r, i) => check.object('renderReport', `runs[${i}]`, r, 'a run (readRun(folder))'));
  check.options('renderReport', 'options', o);
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
  const probes: [string, string, (m: EpochMetrics) => number | null | undefined, (p: ProbeFile) => number | null | undefined][] = [
    ['Hessian trace (Hutchinson)', 'tr H; loss / weight²', (m) => m.probe?.trace, (p) => p.trace],
    ['Hessian ‖H‖_F²', '½·Var(uᵀHu), Gaussian u; loss² / weight⁴', (m) => m.probe?.frobeniusSquared, (p) => p.frobeniusSquared],
    ['Hessian λmax (Lanczos)', 'largest eigenvalue; loss / weight²', (m) => m.probe?.maxEigenvalue, (p) => p.maxEigenvalue],
    ['Hessian log|det(|H| + δI)| (SLQ)', 'Σ log(|λ| + δ), δ = 10⁻³; dominated by P·log δ', (m) => m.probe?.logAbsDet, (p) => p.logAbsDet],
  ];
  const anyProbeFile = groups.some((g) => g.runs.some((r) => r.probe));
  const probeCharts = probes.map(([title, subtitle, get, getFile]) =>
    lineChart({
      title,
      subtitle: anyProbeFile ? `${subtitle}; ◆ probe.json (usam probe)` : subtitle,
      xLabel: epochLabel,
      xEpochs: epochs,
      yName: title,
      series: groups.flatMap((g) => {
        const file = probeFileCurve(g, getFile);
        return [
          { name: seedLabel(g), style: style.get(g)!, ...epochCurve(g, get) },
          ...(file ? [{ name: `${seedLabel(g)} · probe.json`, style: style.get(g)!, markersOnly: true, legend: true, marker: { radius: 5, filled: true, diamond: true }, points: file.points, errorBars: file.band }] : []),
        ];
      }),
    }),
  );
  sections.push({
    title: 'Hessian probes',
    note: `The same measure by the same estimator for every run: the Hessian of the training loss on a fixed batch of 256 (eval mode), after each probed epoch (usam train --probe-every).${anyProbeFile ? ' Filled markers with “probe.json” in the legend: usam probe of the run’s checkpoint (its own batches, options in probe.json).' : ''}`,
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
  const densityOf = (r: Run) => {
    const last = [...r.metrics].reverse().find((m) => m.probe?.density);
    if (last) return { density: last.probe!.density!, lmax: last.probe!.maxEigenvalue, epoch: last.epoch, file: false };
    const p = r.probe;
    return p?.density ? { density: p.density, lmax: p.maxEigenvalue, epoch: p.checkpoint?.epoch ?? NaN, file: true } : undefined;
  };
  const densities: Series[] = groups.flatMap((g) => {
    const r = g.runs[0]; // one seed's spectrum: densities on different grids do not average
    const d = densityOf(r);
    if (!d) return [];
    return [
      {
        name: `${g.name}${g.runs.length > 1 ? ` (seed ${r.config.seed ?? '?'})` : ''}${d.file ? ' · probe.json' : ''} λmax ${fmt(d.lmax)}`,
        style: style.get(g)!,
        thin: true,
        points: densityPoints(d.density),
        marks: [d.lmax],
      },
    ];
  });
  if (densities.length > 0) {
    const lastEpoch = Math.max(...groups.map((g) => densityOf(g.runs[0])?.epoch ?? -1).filter(Number.isFinite));
    sections.push({
      title: 'Hessian spectral density',
      note: 'SLQ (Lanczos, Gaussian smoothing) on the probe batch, at the last probed epoch (or of probe.json where training logged no density); log density axis, so the bulk near 0 and the outliers both show; ▼ and dashed: λmax by Lanczos.',
      charts: [densityChart(`last probed epoch (${lastEpoch}); density clipped at 10⁻⁷ of its peak`, densities)],
    });
  }

  // 5. what usam probe --compare and --landscape wrote into probe.json (one seed's per group)
  const compared = groups.flatMap((g) => (g.runs[0].probe?.comparison ? [{ g, c: g.runs[0].probe.comparison }] : []));
  if (compared.length > 0)
    sections.push({
      title: 'Eigenspaces (usam probe --compare)',
      note: 'Principal angles between the top-k eigenspace of each run’s Hessian and that of the operator it was compared with (the GGN, a Fisher, or another run’s Hessian), on its probe batches; 0°: shared directions, 90°: orthogonal ones. The legend gives the overlap ‖Q_AᵀQ_B‖_F²/k.',
      charts: [
        lineChart({
          title: 'Principal angles between top eigenspaces',
          subtitle: 'probe.json of each run (usam probe --compare)',
          xLabel: 'i (ascending angles)',
          yLabel: 'angle θ_i (degrees)',
          yScale: 'linear',
          series: compared.map(({ g, c }) => ({
            name: `${g.name} against ${c.against}: overlap ${c.overlap.toFixed(3)}`,
            style: style.get(g)!,
            points: c.angles.map((a, i): [number, number] => [i + 1, (a * 180) / Math.PI]),
          })),
        }),
      ],
    });
  const landscapes = groups.flatMap((g) => (g.runs[0].probe?.landscape ? [landscapeChart(g.runs[0].probe.landscape, g.name)] : []));
  if (landscapes.length > 0)
    sections.push({ title: 'Loss landscapes (usam probe --landscape)', note: 'L(w + α·d₁ + β·d₂) on the run’s probe batches, from probe.json; colour scales are per run.', charts: landscapes });

  const rows = summaryTable(groups, baseline);
  const common = groups[0]?.config ?? {};
  const describe = ['model', 'dataset', 'batchSize', 'lr', 'lrSchedule'].filter((k) => k in common && groups.every((g) => canonical(g.config[k]) === canonical(common[k])));
  const title = o.title ?? 'universal-sam report';
  return htmlPage(title, `<h1>${esc(title)}</h1>
<p class="note">${runsPhrase(groups)}${describe.length ? ' — ' + describe.map((k) => `${k} ${esc(canonical(common[k]).replace(/"/g, ''))}`).join(', ') : ''}.${groups.some((g) => g.runs.length > 1) ? ` Runs whose configs differ only in ${GROUP_IGNORED.join(', ')} are one group: mean ± std over its seeds (std bands or bars in the charts).` : ''}${baseline ? ` Differences are to <b>${esc(baseline.name)}</b> (green: better, red: worse).` : ''}</p>
${seedWarning(groups)}
${tableHtml(rows)}
<p class="note">Final numbers: the last epoch's evaluation and the last probe (Hessian of the training loss on a fixed batch of 256, eval mode). Each chart can be downloaded as SVG (1 unit = 1 pt, text ≥ 12 pt), PNG (300 dpi) and CSV (its plotted points).</p>
${sections
  .filter((s) => s.charts.some(Boolean))
  .map((s) => `<h2>${esc(s.title)}</h2>${s.note ? `<p class="note">${esc(s.note)}</p>` : ''}\n<div class="charts">${s.charts.filter(Boolean).join('\n')}</div>`)
  .join('\n')}`);
}
