// Line charts as inline SVG for the report: round ticks (ticks.ts), a log
// axis where the data span decades, the legend in its own column right of the
// plotting area (never over the data), and per series a colour and a dash
// pattern so lines stay distinct in print and for colour-blind readers.
import { type Axis, autoAxis, linearTicks, logTicks, niceNumber } from './ticks.js';

/** Okabe–Ito, colour-blind safe, in a fixed order per run group */
export const COLORS = ['#0072B2', '#D55E00', '#009E73', '#CC79A7', '#E69F00', '#56B4E9', '#000000', '#999933'];
export const DASHES = ['', '7 3', '2 2.5', '9 3 2 3', '4 2', '1 3'];

export const esc = (s: string) => s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);

export interface Series {
  name: string;
  /** index into COLORS / DASHES: the same run group has the same style in every chart */
  style: number;
  points: [number, number][];
  /** ± band around the line (std over seeds), as [x, low, high] */
  band?: [number, number, number][];
  /** drawn as markers only (e.g. per-epoch evaluations beside a per-step line) */
  markersOnly?: boolean;
  /** thin line, no markers (dense per-step curves) */
  thin?: boolean;
  /** vertical marks at these x values (e.g. λmax on a spectrum) */
  marks?: number[];
  /** vertical error bars [x, low, high] (mean ± std of markers) */
  errorBars?: [number, number, number][];
  /** listed in the legend even when drawn as markers only */
  legend?: boolean;
  /** marker radius (default 3.5 for markers only, 2.6 on lines) and fill (default: hollow for markers only) */
  marker?: { radius: number; filled: boolean };
}

export interface ChartOptions {
  title: string;
  /** a second line under the title: unit, estimator, what is compared */
  subtitle?: string;
  xLabel: string;
  yLabel?: string;
  series: Series[];
  /** 'auto': log when all values are positive and span ≥ 2 decades */
  yScale?: 'linear' | 'log' | 'auto';
  /** an epoch axis: integer ticks from 0 */
  xEpochs?: number;
  /** a categorical x axis: category i sits at x = i, labelled by its name */
  xCategories?: string[];
  /** lower clip of a log axis, relative to the largest value (densities) */
  logFloor?: number;
  width?: number;
  height?: number;
  /** width of the legend column right of the plotting area */
  legendWidth?: number;
  /** a key of line styles drawn under the legend (e.g. "— per 10 steps", "● per epoch") */
  key?: { label: string; markers?: boolean; dash?: string }[];
}

let clipCount = 0;
const W0 = 450, H0 = 270, LEGEND_W = 140, L = 54, T = 40, B = 38, R = 10;
const FONT = 'font-family="system-ui,-apple-system,Segoe UI,Roboto,sans-serif"';

function epochAxis(epochs: number): Axis {
  const step = Math.max(1, Math.round(niceNumber(Math.max(epochs, 1) / 6, true)));
  const max = Math.ceil(epochs / step) * step;
  const ticks = [];
  for (let v = 0; v <= max; v += step) ticks.push({ value: v, label: String(v) });
  return { min: 0, max, ticks, log: false };
}

/** Categories at x = 0, 1, ..., with half a slot of room at either end. */
function categoryAxis(names: string[]): Axis {
  return { min: -0.5, max: names.length - 0.5, ticks: names.map((label, value) => ({ value, label })), log: false };
}

/** Shortens a legend name to about `n` characters (the full name stays in a <title>). */
const clip = (s: string, n: number) => (s.length <= n ? s : s.slice(0, n - 1) + '…');

/** A line chart as one SVG element; '' when no series has a finite point. */
export function lineChart(o: ChartOptions): string {
  const W = o.width ?? W0, H = o.height ?? H0;
  const legendW = o.legendWidth ?? LEGEND_W;
  const plotR = W - legendW - R; // right edge of the plotting area
  const chars = Math.floor((legendW + R - 40) / 6.2); // legend text room at 10.5 px
  const series = o.series.map((s) => ({ ...s, points: s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y)) }));
  const all = series.flatMap((s) => s.points);
  if (all.length === 0) return '';
  let ys = all
    .map((p) => p[1])
    .concat(series.flatMap((s) => [...(s.band ?? []), ...(s.errorBars ?? [])].flatMap((b) => [b[1], b[2]])).filter(Number.isFinite));
  const xs = all.map((p) => p[0]);
  let yAxis: Axis;
  if (o.yScale === 'log' || (o.yScale !== 'linear' && ys.every((y) => y > 0))) {
    const positive = ys.filter((y) => y > 0);
    const max = Math.max(...positive);
    const floor = o.logFloor !== undefined ? max * o.logFloor : 0;
    ys = positive.map((y) => Math.max(y, floor));
    yAxis = o.yScale === 'log' ? logTicks(Math.min(...ys), max) : autoAxis(ys);
  } else yAxis = autoAxis(ys, { log: false });
  const xAxis = o.xCategories
    ? categoryAxis(o.xCategories)
    : o.xEpochs !== undefined
      ? epochAxis(o.xEpochs)
      : linearTicks(Math.min(...xs), Math.max(...xs));
  const tx = (v: number, a: Axis) => (a.log ? Math.log10(v) : v);
  const frac = (v: number, a: Axis) => (tx(v, a) - tx(a.min, a)) / (tx(a.max, a) - tx(a.min, a));
  const sx = (x: number) => L + frac(x, xAxis) * (plotR - L);
  const sy = (y: number) => {
    if (yAxis.log) y = Math.max(y, yAxis.min);
    return T + (1 - frac(y, yAxis)) * (H - T - B);
  };
  const f1 = (v: number) => v.toFixed(1);
  const out: string[] = [];
  out.push(
    `<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(o.title)}" ${FONT}>`,
    `<title>${esc(o.title)}${o.subtitle ? ' — ' + esc(o.subtitle) : ''}</title>`,
    `<text x="${L}" y="15" font-size="13" font-weight="600">${esc(o.title)}</text>`,
  );
  if (o.subtitle) out.push(`<text x="${L}" y="30" font-size="10.5" fill="#555">${esc(o.subtitle)}</text>`);
  out.push(`<rect class="plot-area" x="${L}" y="${T}" width="${plotR - L}" height="${H - T - B}" fill="#fff" stroke="#bbb"/>`);
  // grid and tick labels
  for (const t of yAxis.ticks) {
    const y = f1(sy(t.value));
    out.push(`<line x1="${L}" x2="${plotR}" y1="${y}" y2="${y}" stroke="${t.minor ? '#f3f3f3' : '#e4e4e4'}"/>`);
    out.push(`<text class="tick" x="${L - 5}" y="${f1(sy(t.value) + 3.5)}" text-anchor="end" font-size="10" fill="${t.minor ? '#777' : '#333'}">${esc(t.label)}</text>`);
  }
  for (const t of xAxis.ticks) {
    const x = f1(sx(t.value));
    out.push(`<line x1="${x}" x2="${x}" y1="${T}" y2="${H - B}" stroke="#eee"/>`);
    out.push(`<text class="tick" x="${x}" y="${H - B + 13}" text-anchor="middle" font-size="10" fill="#333">${esc(t.label)}</text>`);
  }
  out.push(`<text x="${(L + plotR) / 2}" y="${H - 7}" text-anchor="middle" font-size="11" fill="#333">${esc(o.xLabel)}</text>`);
  if (o.yLabel) out.push(`<text x="12" y="${(T + H - B) / 2}" text-anchor="middle" font-size="11" fill="#333" transform="rotate(-90 12 ${(T + H - B) / 2})">${esc(o.yLabel)}</text>`);
  // data, clipped to the plotting area
  const clipId = `plot${++clipCount}`;
  out.push(`<clipPath id="${clipId}"><rect x="${L}" y="${T}" width="${plotR - L}" height="${H - T - B}"/></clipPath><g clip-path="url(#${clipId})">`);
  for (const s of series) {
    const color = COLORS[s.style % COLORS.length];
    const dash = s.thin ? '' : DASHES[s.style % DASHES.length];
    if (s.band && s.band.length > 1) {
      const up = s.band.map(([x, , hi]) => `${f1(sx(x))},${f1(sy(hi))}`);
      const down = s.band.map(([x, lo]) => `${f1(sx(x))},${f1(sy(lo))}`).reverse();
      out.push(`<polygon class="band" points="${[...up, ...down].join(' ')}" fill="${color}" fill-opacity="0.15" stroke="none"/>`);
    }
    for (const m of s.marks ?? []) {
      const x = f1(sx(m));
      out.push(`<line class="mark" x1="${x}" x2="${x}" y1="${T}" y2="${H - B}" stroke="${color}" stroke-width="1.2" stroke-dasharray="3 3"/>`);
      out.push(`<path d="M${x},${T} l-4,-0 l4,7 l4,-7 z" fill="${color}"/>`);
    }
    for (const [x, lo, hi] of s.errorBars ?? [])
      if (Number.isFinite(lo) && Number.isFinite(hi))
        out.push(`<line class="error-bar" x1="${f1(sx(x))}" x2="${f1(sx(x))}" y1="${f1(sy(lo))}" y2="${f1(sy(hi))}" stroke="${color}" stroke-width="1.5"/>`);
    const pts = s.points.map(([x, y]) => `${f1(sx(x))},${f1(sy(y))}`);
    if (!s.markersOnly)
      out.push(
        `<polyline class="series" data-name="${esc(s.name)}" fill="none" stroke="${color}" stroke-width="${s.thin ? 1.3 : 2}" stroke-linejoin="round"${dash ? ` stroke-dasharray="${dash}"` : ''} points="${pts.join(' ')}"/>`,
      );
    if (s.markersOnly || (!s.thin && s.points.length <= 40))
      for (const [x, y] of s.points) {
        const m = s.marker ?? { radius: s.markersOnly ? 3.5 : 2.6, filled: !s.markersOnly };
        out.push(`<circle cx="${f1(sx(x))}" cy="${f1(sy(y))}" r="${m.radius}" fill="${m.filled ? color : '#fff'}" stroke="${color}" stroke-width="${m.radius < 3 ? 1 : 1.5}"/>`);
      }
  }
  out.push('</g>');
  // the legend: its own column, right of the plotting area
  const entries = series.filter((s) => s.points.length > 0 && (!s.markersOnly || s.legend));
  const lx = plotR + 12;
  out.push(`<g class="legend">`);
  entries.forEach((s, i) => {
    const y = T + 8 + 17 * i;
    const color = COLORS[s.style % COLORS.length];
    const dash = s.thin ? '' : DASHES[s.style % DASHES.length];
    out.push(
      `<g class="legend-item"><title>${esc(s.name)}</title><line x1="${lx}" x2="${lx + 20}" y1="${y}" y2="${y}" stroke="${color}" stroke-width="2.2"${dash ? ` stroke-dasharray="${dash}"` : ''}/>` +
        `<text x="${lx + 25}" y="${y + 3.5}" font-size="10.5" fill="#222">${esc(clip(s.name, chars))}</text></g>`,
    );
  });
  (o.key ?? []).forEach((k, i) => {
    const y = T + 8 + 17 * entries.length + 10 + 15 * i;
    const mark = k.markers
      ? `<circle cx="${lx + 10}" cy="${y}" r="3.5" fill="#fff" stroke="#555" stroke-width="1.5"/>`
      : `<line x1="${lx}" x2="${lx + 20}" y1="${y}" y2="${y}" stroke="#555" stroke-width="1.3"${k.dash ? ` stroke-dasharray="${k.dash}"` : ''}/>`;
    out.push(`<g class="legend-item key">${mark}<text x="${lx + 25}" y="${y + 3.5}" font-size="9.5" fill="#555">${esc(k.label)}</text></g>`);
  });
  out.push('</g></svg>');
  return out.join('');
}

/** A spectral density on a log axis (clipped at 10⁻⁷ of its peak), wide, with eigenvalues marked per series. */
export function densityChart(subtitle: string, series: Series[]): string {
  return lineChart({
    title: 'Hessian spectral density (SLQ)',
    subtitle,
    xLabel: 'eigenvalue λ',
    yLabel: 'density',
    yScale: 'log',
    logFloor: 1e-7,
    width: 940,
    height: 330,
    legendWidth: 200,
    series,
  });
}

/** The points of a density given on a grid. */
export const densityPoints = (d: { grid: number[]; values: number[] }): [number, number][] => d.grid.map((x, i) => [x, d.values[i]]);
