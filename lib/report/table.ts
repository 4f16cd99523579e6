// The report's table of final numbers (mean ± std over a group's seeds, the
// difference to the baseline), where each value came from (metrics.jsonl or
// probe.json), and the words above it: how many runs in how many groups, and
// a warning when a comparison rests on one seed.
import { UsamError } from '../errors.js';
import type { EpochMetrics } from '../train/trainer.js';
import { COLORS, DASHES } from './charts.js';
import { esc } from './export.js';
import { type Group, type ProbeFile, type Run, type Stat, stat } from './runs.js';

export interface Column {
  label: string;
  get: (m: EpochMetrics) => number | null | undefined;
  /** for a Hessian measure: its value in probe.json, used when metrics.jsonl has no probe */
  probeFile?: (p: ProbeFile) => number | null | undefined;
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
  { label: 'tr H', get: (m) => m.probe?.trace, probeFile: (p) => p.trace, lowerIsBetter: true },
  { label: '‖H‖_F²', get: (m) => m.probe?.frobeniusSquared, probeFile: (p) => p.frobeniusSquared, lowerIsBetter: true },
  { label: 'λmax', get: (m) => m.probe?.maxEigenvalue, probeFile: (p) => p.maxEigenvalue, lowerIsBetter: true },
  { label: 'log|det|', get: (m) => m.probe?.logAbsDet, probeFile: (p) => p.logAbsDet, lowerIsBetter: true },
  { label: 's / epoch', get: (m) => m.seconds, lowerIsBetter: true },
];

/** Where a value came from: the last epoch (or probe) in metrics.jsonl, or `usam probe`'s probe.json. */
export type Source = 'metrics' | 'probe.json';

export interface Cell {
  stat: Stat;
  delta?: number;
  /** the sources of the values the mean is over */
  sources: Source[];
}

export interface TableRow {
  group: Group;
  isBaseline: boolean;
  cells: Cell[];
}

const finite = (v: number | null | undefined): v is number => typeof v === 'number' && Number.isFinite(v);

/** A run's final value of a column and its source: the last finite value in metrics.jsonl, else probe.json's (probe columns). */
export function finalValue(r: Run, c: Column): { value: number; source: Source } | undefined {
  const v = [...r.metrics].reverse().map(c.get).find(finite);
  if (v !== undefined) return { value: v, source: 'metrics' };
  const p = r.probe && c.probeFile ? c.probeFile(r.probe) : undefined;
  return finite(p) ? { value: p, source: 'probe.json' } : undefined;
}

function finals(g: Group, c: Column): { stat: Stat; sources: Source[] } {
  const f = g.runs.map((r) => finalValue(r, c));
  return { stat: stat(f.map((x) => x?.value)), sources: [...new Set(f.flatMap((x) => (x ? [x.source] : [])))] };
}

/** The final value of each column per group (the last epoch's metrics, or the last probe for probe columns, else probe.json), with differences to the baseline's mean. */
export function summaryTable(groups: Group[], baseline?: Group, columns: Column[] = COLUMNS): TableRow[] {
  return groups.map((g) => ({
    group: g,
    isBaseline: g === baseline,
    cells: columns.map((c) => {
      const s = finals(g, c);
      const b = baseline && g !== baseline ? finals(baseline, c).stat : undefined;
      return { ...s, delta: b && b.n > 0 && s.stat.n > 0 ? s.stat.mean - b.mean : undefined };
    }),
  }));
}

/** The group `--baseline NAME` names: by group name, a run's directory name, or the optimizer. */
export function findBaseline(groups: Group[], name: string): Group {
  const g =
    groups.find((g) => g.name === name) ?? groups.find((g) => g.runs.some((r) => r.name === name || r.dir === name)) ?? groups.find((g) => g.config.optimizer === name);
  if (!g) throw new UsamError(`--baseline ${name}: no run or group of that name or optimizer; the groups are ${groups.map((g) => g.name).join(', ')}`);
  return g;
}

/** Four significant digits, exponent form for large and small magnitudes. */
export const fmt = (v: number) =>
  !Number.isFinite(v) ? '—' : Math.abs(v) >= 1e5 || (Math.abs(v) < 1e-3 && v !== 0) ? v.toExponential(2).replace('e+', 'e') : Number(v.toPrecision(4)).toString();

/** The marker of a value from probe.json (explained under the table). */
export const PROBE_MARK = '<sup class="src" title="from probe.json (usam probe)">P</sup>';

function cellHtml(c: Cell, col: Column, isBaseline: boolean): string {
  const { mean, std, n } = c.stat;
  if (n === 0) return '<td class="num">—</td>';
  const scale = col.percent ? 100 : 1;
  const v = col.percent ? (mean * 100).toFixed(2) + '%' : fmt(mean);
  const mark = c.sources.includes('probe.json') ? PROBE_MARK : '';
  const sd = n > 1 ? `<span class="sd">± ${col.percent ? (std * 100).toFixed(2) : fmt(Number(std.toPrecision(2)))}</span>` : '';
  let d = '';
  if (isBaseline) d = '<div class="delta">baseline</div>';
  else if (c.delta !== undefined) {
    const dv = c.delta * scale;
    const better = col.lowerIsBetter ? dv < 0 : dv > 0;
    const txt = col.percent ? `${dv >= 0 ? '+' : '−'}${Math.abs(dv).toFixed(2)} pp` : `${dv >= 0 ? '+' : '−'}${fmt(Math.abs(dv))}`;
    const rel = !col.percent && c.delta !== 0 ? ` <span class="rel">(${dv >= 0 ? '+' : '−'}${Math.abs((100 * c.delta) / (mean - c.delta)).toFixed(1)}%)</span>` : '';
    d = `<div class="delta ${dv === 0 ? '' : better ? 'better' : 'worse'}"><span>${txt}</span>${rel}</div>`;
  }
  return `<td class="num"><span class="v">${v}${mark}</span>${sd}${d}</td>`;
}

/** The table as HTML (in a box that scrolls should it still be too wide), with the footnote on probe.json values when there are any. */
export function tableHtml(rows: TableRow[], columns: Column[] = COLUMNS): string {
  const head = `<tr><th>run</th>${columns.map((c) => `<th>${esc(c.label)}</th>`).join('')}</tr>`;
  const body = rows
    .map((row, i) => {
      const g = row.group;
      const swatch = `<svg class="swatch" width="22" height="8" role="img" aria-label="line style of ${esc(g.name)}"><line x1="1" x2="21" y1="4" y2="4" stroke="${COLORS[i % COLORS.length]}" stroke-width="2.5"${DASHES[i % DASHES.length] ? ` stroke-dasharray="${DASHES[i % DASHES.length]}"` : ''}/></svg>`;
      const seeds = g.runs.map((r) => r.config.seed ?? '?').join(', ');
      const ep = g.runs.map((r) => r.metrics.length);
      const epochs = `${Math.min(...ep)}${Math.max(...ep) !== Math.min(...ep) ? `–${Math.max(...ep)}` : ''} epoch${Math.max(...ep) === 1 ? '' : 's'}`;
      const meta = `${esc(String(g.config.optimizer ?? '?'))} · seed${g.runs.length > 1 ? 's' : ''} ${esc(seeds)} · ${epochs}`;
      return `<tr${row.isBaseline ? ' class="baseline"' : ''}><td class="run">${swatch} ${esc(g.name)}<div class="meta">${meta}</div></td>${row.cells.map((c, j) => cellHtml(c, columns[j], row.isBaseline)).join('')}</tr>`;
    })
    .join('\n');
  const fromFile = rows.flatMap((r) => r.group.runs.filter((run) => run.probe && columns.some((c) => finalValue(run, c)?.source === 'probe.json')));
  const note = fromFile.length
    ? `<p class="note probe-source">${PROBE_MARK} from probe.json (<code>usam probe</code> of the run's checkpoint: ${[
        ...new Set(fromFile.map((r) => `${r.probe!.samplesUsed} ${r.probe!.options.split} samples, ${r.probe!.options.mode} mode${r.probe!.checkpoint ? `, after epoch ${r.probe!.checkpoint.epoch}` : ''}`)),
      ]
        .map(esc)
        .join('; ')}), used where metrics.jsonl has no probe (${fromFile.map((r) => esc(r.name)).join(', ')}). Unmarked values: metrics.jsonl (the last epoch; probes on the fixed training batch of --probe-samples).</p>`
    : '';
  return `<div class="table-wrap"><table class="summary">${head}\n${body}</table></div>\n${note}`;
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

/** "2 runs"; "2 groups of 3 runs"; "5 runs in 2 groups (3 and 2 runs)". */
export function runsPhrase(groups: Group[]): string {
  const sizes = groups.map((g) => g.runs.length);
  const n = sizes.reduce((a, b) => a + b, 0);
  if (sizes.every((s) => s === 1)) return plural(n, 'run');
  if (sizes.every((s) => s === sizes[0])) return `${plural(groups.length, 'group')} of ${sizes[0]} runs`;
  const list = sizes.length === 2 ? `${sizes[0]} and ${sizes[1]}` : `${sizes.slice(0, -1).join(', ')} and ${sizes.at(-1)}`;
  return `${n} runs in ${groups.length} groups (${list} runs)`;
}

/** A warning when groups are compared and one of them (or all) rests on a single seed; '' otherwise. */
export function seedWarning(groups: Group[]): string {
  const single = groups.filter((g) => g.runs.length === 1);
  if (single.length === 0 || groups.length < 2) return '';
  const what =
    single.length === groups.length
        ? `This comparison rests on one seed per ${groups.length === 2 ? 'side' : 'run'}`
        : `${single.map((g) => esc(g.name)).join(', ')} ${single.length === 1 ? 'rests' : 'rest'} on one seed`;
  return `<p class="warn single-seed"><b>One seed.</b> ${what}: no spread (±) can be given and no test of a difference is possible, so a difference may be seed noise. Train the same config with more seeds (<code>--seed 1</code>, <code>--seed 2</code>, …) and pass all the runs: they are grouped and shown as mean ± std.</p>`;
}
