// What `usam reproduce` writes: the results as JSON, the tables and claims
// as Markdown (docs/reproduction.md quotes them) and an HTML page with the
// plots (top-1 per setting, each Hessian measure per rule).
import { esc, lineChart, type Series } from './charts.js';
import { htmlPage } from './page.js';
import { type Cell, type Claim, claims, MEASURE_LABEL, MEASURES, pickDefaults, PROBE_OPTIONS, type ReproduceConfig, type RunRecord, type RunSpec, summarize } from './reproduce.js';
import { fmt, type Stat } from './report.js';

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
const versus = (k: Claim) =>
  k.value.n === 0 ? 'all runs failed' : k.measure === 'logAbsDet' ? `${k.difference >= 0 ? '+' : '−'}${fmt(Math.abs(k.difference))}` : `${k.ratio.toFixed(3)}×`;
const pp = (d: number) => (Number.isFinite(d) ? `${d >= 0 ? '+' : '−'}${Math.abs(100 * d).toFixed(2)}` : '—');

function claimRows(list: Claim[], withPoint: boolean): string[] {
  return [
    `| model | setting | rule${withPoint ? ' | point' : ''} | its measure | rule | SGD | rule vs SGD | z | top-1 vs SGD (pt) | held |`,
    `|---|---|---|${withPoint ? '---|' : ''}---|---|---|---|---|---|---|`,
    ...list.map(
      (k) =>
        `| ${k.model} | ${k.setting} | ${k.rule}${withPoint ? ` | ${hyperText(k.hyper)}` : ''} | ${MEASURE_LABEL[k.measure]} | ${pm(k.value)} | ${pm(k.sgd)} | ${versus(k)} | ${Number.isFinite(k.z) ? k.z.toFixed(1) : '—'} | ${pp(k.top1Difference)} | ${k.held ? 'yes' : 'no'} |`,
    ),
  ];
}

function cellTable(cells: Cell[], withPoint = false): string[] {
  return [
    `| rule${withPoint ? ' | point' : ''} | runs | top-1 % | test loss | ${MEASURES.map((m) => MEASURE_LABEL[m]).join(' | ')} |`,
    `|---|${withPoint ? '---|' : ''}---|---|---|${MEASURES.map(() => '---|').join('')}`,
    ...cells.map(
      (c) =>
        `| ${c.rule}${withPoint ? ` | ${hyperText(c.hyper)}` : ''} | ${c.runs - c.failed}${c.failed ? ` (+${c.failed} failed)` : ''} | ${pm(c.top1, 100, 2)} | ${pm(c.testLoss, 1, 4)} | ${MEASURES.map((m) => pm(c.measures[m])).join(' | ')} |`,
    ),
  ];
}

const PROTOCOL = (r: ReproduceResults) => {
  const o = r.options;
  const first = r.records[0]?.spec.config;
  return [
    `Runs: ${r.records.length} (${r.records.filter((x) => x.failed).length} failed), LibTorch ${r.libtorch}, ${r.date}. ` +
      `Each run: \`usam train\` defaults (SGD base, lr 0.05, momentum 0.9, weight decay 5e-4, cosine schedule, batch 128, float32) with the rule's shipped ρ/λ unless a sweep point says otherwise, ` +
      `${first?.epochs ?? '?'} epoch(s) on ${o.dataset}; the seed sets the initial weights, the data order, the label noise and the directions.`,
    `Probes after the last epoch, identical for every run: the Hessian of the mean cross-entropy over the first ${o.probeBatches}×${PROBE_OPTIONS.batchSize} test images (eval mode), ` +
      `tr H and ‖H‖_F² by Hutchinson with ${o.probeSamples} Gaussian vectors, λmax by Lanczos, logdet_δ = Σ log(|λ|+δ), δ = ${PROBE_OPTIONS.damping}, by SLQ (${r.options.probeSlqRuns} runs of ${PROBE_OPTIONS.slqSteps} steps); probe seed ${PROBE_OPTIONS.seed}. Top-1 and loss on the whole test set.`,
    `A claim *held* when the rule's seed mean is below SGD's by more than two standard errors of the difference (Welch; needs ≥ 2 seeds). ` +
      `"rule vs SGD" is the ratio of the means; for logdet_δ (a log) their difference.`,
  ];
};

export function renderMarkdown(r: ReproduceResults): string {
  const cells = summarize(r.records);
  const out: string[] = [];
  out.push(...PROTOCOL(r), '');
  if (r.kind === 'sweep') {
    const picks = pickDefaults(cells);
    out.push('### Each point against SGD (same seeds)', '', ...claimRows(claims(cells), true), '');
    out.push('### Chosen: the point that lowers the rule\u2019s own measure most with top-1 within 0.5 pt of SGD\u2019s or better', '');
    out.push('| rule | chosen point | its measure vs SGD | top-1 vs SGD (pt) |', '|---|---|---|---|');
    for (const p of picks) out.push(`| ${p.rule} | ${p.hyper ? hyperText(p.hyper) : 'none: no point lowered its measure within 0.5 pt of SGD'} | ${p.claim ? versus(p.claim) : '—'} | ${p.claim ? pp(p.claim.top1Difference) : '—'} |`);
    out.push('', '### All points', '', ...cellTable(cells, true), '');
    return out.join('\n') + '\n';
  }
  out.push('### Claims: each rule against SGD on its own measure', '', ...claimRows(claims(cells), false), '');
  for (const model of [...new Set(cells.map((c) => c.model))])
    for (const setting of [...new Set(cells.map((c) => c.setting))]) {
      const these = cells.filter((c) => c.model === model && c.setting === setting);
      if (these.length === 0) continue;
      out.push(`### ${model}, ${setting}`, '', ...cellTable(these), '');
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

