// What `usam reproduce` writes: the results as JSON, the tables and claims
// as Markdown (docs/reproduction.md quotes them) and an HTML page with the
// plots (top-1 per setting, each Hessian measure per rule).
import { esc, lineChart, type Series } from '../report/charts.js';
import { htmlPage } from '../report/page.js';
import { type Cell, MEASURE_LABEL, MEASURES, PROBE_OPTIONS, type ProbeSplit, type ReproduceConfig, type RunRecord, type RunSpec, summarize } from './reproduce.js';
import { type Claim, claims, type Comparison, crossMatrix, pickDefaults } from './verdicts.js';
import { fmt, stat, type Stat } from '../report/report.js';

export const REPRODUCE_FORMAT = 'usam-reproduce/1';

export interface ReproduceResults {
  format: typeof REPRODUCE_FORMAT;
  kind: 'grid' | 'sweep';
  options: ReproduceConfig;
  libtorch: string;
  date: string;
  /** wall-clock seconds of this invocation (runs kept from before cost none) */
  seconds: number;
  records: RunRecord[];
}

const pm = (s: Stat, scale = 1, digits?: number) => {
  if (s.n === 0) return '—';
  const v = (x: number) => (digits === undefined ? fmt(x * scale) : (x * scale).toFixed(digits));
  return s.n > 1 ? `${v(s.mean)} ± ${digits === undefined ? fmt(Number((s.std * scale).toPrecision(2))) : (s.std * scale).toFixed(digits)}` : v(s.mean);
};
const hyperText = (h: RunSpec['hyper']) =>
  Object.entries(h)
    .map(([k, v]) => `${k === 'rho' ? 'ρ' : k === 'lambda' ? 'λ' : k} ${v}`)
    .join(', ') || 'defaults';
const versus = (k: Comparison) =>
  k.value.n === 0 ? 'all runs failed' : k.measure === 'logAbsDet' ? `${k.paired.mean >= 0 ? '+' : '−'}${fmt(Math.abs(k.paired.mean))}` : `${k.ratio.toFixed(3)}×`;
const pp = (d: number) => (Number.isFinite(d) ? `${d >= 0 ? '+' : '−'}${Math.abs(100 * d).toFixed(2)}` : '—');
const pv = (p: number) => (Number.isFinite(p) ? (p < 1e-4 ? p.toExponential(1) : p.toFixed(4)) : '—');
const interval = (k: Comparison) => (Number.isFinite(k.paired.low) ? `${fmt(k.paired.mean)} [${fmt(k.paired.low)}, ${fmt(k.paired.high)}]` : fmt(k.paired.mean));

function claimRows(list: Claim[]): string[] {
  return [
    '| setting | rule | against | its measure | rule | against | ratio | paired Δ [95% CI] | t (df) | p | Holm p | top-1 Δ (pt) | verdict |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|',
    ...list.map(
      (k) =>
        `| ${k.setting} | ${k.rule}${Object.keys(k.hyper).length ? ` (${hyperText(k.hyper)})` : ''} | ${k.against} | ${MEASURE_LABEL[k.measure]} | ${pm(k.value)} | ${pm(k.baseline)} | ${versus(k)} | ${interval(k)} | ${Number.isFinite(k.paired.t) ? `${k.paired.t.toFixed(2)} (${k.paired.df})` : '—'} | ${pv(k.paired.p)} | ${pv(k.pAdjusted)} | ${pp(k.top1Difference)} | ${k.held ? '**held**' : 'not shown'} |`,
    ),
  ];
}

/** Rows: arms; columns: measures; each cell the ratio to SGD (logdet_δ: the difference) and the paired 95% interval of the difference as a ratio. */
function matrixRows(list: Comparison[]): string[] {
  const rules = [...new Set(list.map((c) => c.rule))];
  const cellOf = (c: Comparison | undefined) => {
    if (!c || c.value.n === 0) return '—';
    if (c.measure === 'logAbsDet') return `${versus(c)} [${fmt(c.paired.low)}, ${fmt(c.paired.high)}]`;
    const b = c.baseline.mean;
    return `${c.ratio.toFixed(2)}× [${(1 + c.paired.low / b).toFixed(2)}, ${(1 + c.paired.high / b).toFixed(2)}]`;
  };
  return [
    `| arm | ${MEASURES.map((m) => MEASURE_LABEL[m]).join(' | ')} |`,
    `|---|${MEASURES.map(() => '---|').join('')}`,
    ...rules.flatMap((rule) => {
      const mine = list.filter((c) => c.rule === rule);
      const settings = [...new Set(mine.map((c) => c.setting))];
      return settings.map((st) => `| ${rule}${settings.length > 1 ? ` (${st})` : ''} | ${MEASURES.map((m) => cellOf(mine.find((c) => c.setting === st && c.measure === m))).join(' | ')} |`);
    }),
  ];
}

function cellTable(cells: Cell[], records: RunRecord[], withPoint = false): string[] {
  const trainLoss = (c: Cell) => stat(records.filter((r) => r.spec.rule === c.rule && r.spec.setting === c.setting && r.spec.model === c.model && JSON.stringify(r.spec.hyper) === JSON.stringify(c.hyper) && !r.failed).map((r) => r.trainLoss));
  return [
    `| rule${withPoint ? ' | point' : ''} | runs | top-1 % | test loss | train loss | ${MEASURES.map((m) => MEASURE_LABEL[m]).join(' | ')} |`,
    `|---|${withPoint ? '---|' : ''}---|---|---|---|${MEASURES.map(() => '---|').join('')}`,
    ...cells.map(
      (c) =>
        `| ${c.rule}${withPoint ? ` | ${hyperText(c.hyper)}` : ''} | ${c.runs - c.failed}${c.failed ? ` (+${c.failed} failed)` : ''} | ${pm(c.top1, 100, 2)} | ${pm(c.testLoss, 1, 4)} | ${pm(trainLoss(c), 1, 4)} | ${MEASURES.map((m) => pm(c.measures[m])).join(' | ')} |`,
    ),
  ];
}

const SPLIT_TEXT: Record<ProbeSplit, string> = { test: 'test images', train: 'training images', validation: 'held-out validation images' };

const PROTOCOL = (r: ReproduceResults) => {
  const o = r.options;
  const first = r.records[0]?.spec.config;
  const seeds = [...new Set(r.records.map((x) => x.spec.seed))].sort((a, b) => a - b);
  const splits = [...new Set(r.records.flatMap((x) => Object.keys(x.probes ?? { test: 1 })))] as ProbeSplit[];
  return [
    `Runs: ${r.records.length} (${r.records.filter((x) => x.failed).length} failed), seeds ${seeds.join(', ')}, LibTorch ${r.libtorch}, ${r.date}. ` +
      `Each run: \`usam train\` defaults (SGD base, lr 0.05, momentum 0.9, weight decay 5e-4, cosine schedule, batch 128, float32) with the rule's ρ/λ (${r.kind === 'sweep' ? 'the sweep point' : 'the sweep\u2019s choice where it made one, else the shipped default'}), ` +
      `${first?.epochs ?? '?'} epoch(s) (SGD at equal compute: ×2, ×3) on ${o.dataset}, the last ${o.validation} training images held out as the validation split; the seed sets the initial weights, the data order, the label noise and the directions, so arms with one seed are paired.`,
    `Probes after the last epoch, identical for every run: the Hessian of the mean cross-entropy over the first ${o.probeBatches}×${PROBE_OPTIONS.batchSize} ${splits.map((s) => SPLIT_TEXT[s]).join(' and over the first ones of the ')} (eval mode), ` +
      `tr H by Hutchinson with ${o.probeSamples} Rademacher vectors, ‖H‖_F² by ${o.probeSamples} Gaussian ones, λmax by Lanczos, logdet_δ = Σ log(|λ|+δ), δ = ${PROBE_OPTIONS.damping}, by SLQ (${r.options.probeSlqRuns} runs of ${PROBE_OPTIONS.slqSteps} steps); probe seed ${PROBE_OPTIONS.seed}.`,
    r.kind === 'sweep'
      ? 'Each point is compared with SGD on the same seeds, on the validation split only (top-1 and probes); the choice never sees a test image.'
      : 'Each comparison pairs the two arms by seed: the mean paired difference, its 95% interval (t quantile, n − 1 degrees of freedom), the two-sided p of a paired t test, and Holm\u2019s adjustment over the whole family of claims (each rule against SGD and against its controls, on its own measure). A claim is **held** only when its Holm-adjusted p < 0.05 and the rule is lower; otherwise "not shown". "ratio" is of the means; for logdet_δ (a log) read the difference.',
  ];
};

export function renderMarkdown(r: ReproduceResults): string {
  const cells = summarize(r.records);
  const out: string[] = [];
  out.push(...PROTOCOL(r), '');
  if (r.kind === 'sweep') {
    const picks = pickDefaults(r.records);
    out.push('### Chosen on the validation split: the point that lowers the rule\u2019s own measure most with validation top-1 within 0.5 pt of SGD\u2019s or better', '');
    out.push('| rule | chosen point | its measure vs SGD (validation) | paired Δ [95% CI] | validation top-1 vs SGD (pt) |', '|---|---|---|---|---|');
    for (const p of picks)
      out.push(`| ${p.rule} | ${p.hyper ? hyperText(p.hyper) : 'none: no point lowered its measure within 0.5 pt of SGD'} | ${p.choice ? versus(p.choice) : '—'} | ${p.choice ? interval(p.choice) : '—'} | ${p.choice ? pp(p.choice.top1Difference) : '—'} |`);
    out.push('', '### Every point against SGD (validation split, paired by seed)', '');
    out.push('| rule | point | its measure | ratio | paired Δ [95% CI] | validation top-1 Δ (pt) |', '|---|---|---|---|---|---|');
    for (const p of picks) for (const c of p.candidates) out.push(`| ${c.rule} | ${hyperText(c.hyper)} | ${MEASURE_LABEL[c.measure]} | ${versus(c)} | ${interval(c)} | ${pp(c.top1Difference)} |`);
    out.push('', '### All points: top-1 and losses on test images for reference (the choice used none of them); measures on the validation images', '', ...cellTable(cells, r.records, true), '');
    return out.join('\n') + '\n';
  }
  out.push('### Claims: each rule on its own measure, against SGD and its controls (test images)', '', ...claimRows(claims(r.records, 'test')), '');
  const splits = [...new Set(r.records.flatMap((x) => Object.keys(x.probes ?? { test: 1 })))] as ProbeSplit[];
  for (const split of splits) out.push(`### Every arm on every measure against SGD (${SPLIT_TEXT[split]}): ratio of means [95% interval of the paired difference, as a ratio]`, '', ...matrixRows(crossMatrix(r.records, split)), '');
  for (const model of [...new Set(cells.map((c) => c.model))])
    for (const setting of [...new Set(cells.map((c) => c.setting))]) {
      const these = cells.filter((c) => c.model === model && c.setting === setting);
      if (these.length === 0) continue;
      out.push(`### ${model}, ${setting}: means ± std over seeds (measures on test images)`, '', ...cellTable(these, r.records), '');
    }
  return out.join('\n') + '\n';
}

// wide enough that every rule's name fits under its slot
const CHART_W = 1000;

/** Per model: top-1 and each measure per rule, one series per setting (mean ± std, and each seed). */
function gridCharts(r: ReproduceResults): string {
  const cells = summarize(r.records);
  const parts: string[] = [];
  for (const model of [...new Set(cells.map((c) => c.model))]) {
    const mine = cells.filter((c) => c.model === model);
    const rules = [...new Set(mine.map((c) => c.rule))];
    const settings = [...new Set(mine.map((c) => c.setting))];
    const chart = (title: string, subtitle: string, value: (x: RunRecord) => number, cellStat: (c: Cell) => Stat) => {
      const series: Series[] = [];
      settings.forEach((setting, si) => {
        const shift = settings.length > 1 ? (si - (settings.length - 1) / 2) * 0.25 : 0;
        const cs = rules.map((rule) => mine.find((c) => c.rule === rule && c.setting === setting));
        series.push({
          name: setting,
          style: si,
          markersOnly: true,
          legend: true,
          marker: { radius: 4.5, filled: true },
          points: cs.flatMap((c, i) => (c ? [[i + shift, cellStat(c).mean] as [number, number]] : [])),
          errorBars: cs.flatMap((c, i) => (c && cellStat(c).n > 1 ? [[i + shift, cellStat(c).mean - cellStat(c).std, cellStat(c).mean + cellStat(c).std] as [number, number, number]] : [])),
        });
        // each seed, small and unlabelled, beside the mean
        series.push({
          name: `${setting}, per seed`,
          style: si,
          markersOnly: true,
          marker: { radius: 2.2, filled: false },
          points: r.records
            .filter((x) => x.spec.model === model && x.spec.setting === setting && !x.failed)
            .map((x) => [rules.indexOf(x.spec.rule) + shift + 0.07, value(x)] as [number, number]),
        });
      });
      return lineChart({ title, subtitle, xLabel: 'rule', series, xCategories: rules, yScale: 'linear', width: CHART_W, legendWidth: 120 });
    };
    parts.push(`<h2>${esc(model)}</h2><div class="charts">`);
    parts.push(chart('Test top-1 (%)', 'mean ± std over seeds (filled markers), each seed (small rings, right of it)', (x) => 100 * x.top1, (c) => scaled(c.top1, 100)));
    for (const m of MEASURES)
      parts.push(chart(MEASURE_LABEL[m], `Hessian on ${r.options.probeBatches}×256 held-out images after training; lower is flatter`, (x) => x[m], (c) => c.measures[m]));
    parts.push('</div>');
  }
  return parts.join('\n');
}
const scaled = (s: Stat, k: number): Stat => ({ mean: s.mean * k, std: s.std * k, n: s.n });

export function renderHtml(r: ReproduceResults): string {
  const title = r.kind === 'sweep' ? 'usam reproduce: the ρ/λ sweep' : 'usam reproduce: the rules against SGD on Fashion-MNIST';
  const md = renderMarkdown(r);
  // the Markdown tables, as HTML tables
  const tables = md
    .split('\n\n')
    .map((block) => {
      const lines = block.split('\n').filter(Boolean);
      if (lines[0]?.startsWith('### ')) return `<h2>${esc(lines[0].slice(4))}</h2>` + tableHtml(lines.slice(1));
      if (lines[0]?.startsWith('|')) return tableHtml(lines);
      return `<p class="note">${esc(block)}</p>`;
    })
    .join('\n');
  return htmlPage(title, `<h1>${esc(title)}</h1>\n${r.kind === 'grid' ? gridCharts(r) : ''}\n${tables}`);
}

function tableHtml(lines: string[]): string {
  const rows = lines.filter((l) => l.startsWith('|') && !/^\|(-+\|)+$/.test(l)).map((l) => l.slice(1, -1).split(' | ').map((c) => c.trim().replace(/^\| ?/, '')));
  if (rows.length === 0) return '';
  const [head, ...body] = rows;
  return `<table><tr>${head.map((h) => `<th>${esc(h)}</th>`).join('')}</tr>${body.map((r) => `<tr>${r.map((c, i) => `<td${i > 0 ? ' class="num"' : ''}>${esc(c)}</td>`).join('')}</tr>`).join('')}</table>`;
}

