// Line charts as inline SVG for the report: round ticks (ticks.ts), a log
// axis where the data span decades, the legend in its own block under the
// plotting area (never over the data; long names wrap, never cut), and per
// series a colour and a dash pattern so lines stay distinct in print and for
// colour-blind readers. Sizes are in points (1 unit = 1 pt, text ≥ 12 pt), so
// the SVG a chart exports is at publication size as it is.
import { chartCsv, chartOpening, esc, FS, figure, LINE, slug, textWidth, wrapText } from './export.js';
import { type Axis, autoAxis, linearTicks, logTicks, niceNumber } from './ticks.js';

export { esc } from './export.js';

/** Okabe–Ito, colour-blind safe, in a fixed order per run group */
export const COLORS = ['#0072B2', '#D55E00', '#009E73', '#CC79A7', '#E69F00', '#56B4E9', '#000000', '#999933'];
export const DASHES = ['', '7 3', '2 2.5', '9 3 2 3', '4 2', '1 3'];


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
  marker?: { radius: number; filled: boolean; diamond?: boolean };
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
  /** the chart's width in pt (default 480: a full text width at 12 pt text) */
  width?: number;
  /** the plotting area's height in pt */
  height?: number;
  /** (unused: the legend sits under the plotting area and wraps) */
  legendWidth?: number;
  /** the y quantity's name in the CSV export (default: the title) */
  yName?: string;
  /** a key of line styles drawn under the legend (e.g. "— per 10 steps", "● per epoch") */
  key?: { label: string; markers?: boolean; dash?: string }[];
}

let clipCount = 0;
/** width, plotting-area height, right margin, inset of the data from the plot's border (markers stay inside), all in pt */
const W0 = 480, PLOT_H0 = 220, R = 12, PAD = 10;

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

/** A data marker: a circle, or a diamond (e.g. a value of probe.json beside the training's probes). */
function markerSvg(x: number, y: number, m: { radius: number; filled: boolean; diamond?: boolean }, color: string, attrs: string): string {
  const paint = `fill="${m.filled ? color : '#fff'}" stroke="${color}" stroke-width="${m.radius < 3 ? 1 : 1.5}"`;
  const r = m.radius * 1.3;
  return m.diamond
    ? `<path${attrs} d="M${x.toFixed(1)},${(y - r).toFixed(1)} l${r.toFixed(1)},${r.toFixed(1)} l${(-r).toFixed(1)},${r.toFixed(1)} l${(-r).toFixed(1)},${(-r).toFixed(1)} z" ${paint}/>`
    : `<circle${attrs} cx="${x.toFixed(1)}" cy="${y.toFixed(1)}" r="${m.radius}" ${paint}/>`;
}

/** A line chart as one SVG element in its figure (with its SVG, PNG and CSV downloads); '' when no series has a finite point. */
export function lineChart(o: ChartOptions): string {
  const W = o.width ?? W0;
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
  // the frame: title and subtitle wrapped over the width, the y tick labels' room on the left
  const titleLines = wrapText(o.title, W - 20, FS.title, true);
  const subLines = o.subtitle ? wrapText(o.subtitle, W - 20, FS.text) : [];
  const L = Math.ceil(Math.max(40, 14 + Math.max(...yAxis.ticks.map((t) => textWidth(t.label, FS.text))) + (o.yLabel ? 20 : 0)));
  const plotR = W - R;
  const T = 10 + LINE * (titleLines.length + subLines.length) + 12;
  const plotB = T + (o.height ?? PLOT_H0);
  const tx = (v: number, a: Axis) => (a.log ? Math.log10(v) : v);
  const frac = (v: number, a: Axis) => (tx(v, a) - tx(a.min, a)) / (tx(a.max, a) - tx(a.min, a));
  const sx = (x: number) => L + PAD + frac(x, xAxis) * (plotR - L - 2 * PAD);
  const sy = (y: number) => {
    if (yAxis.log) y = Math.max(y, yAxis.min);
    return T + PAD + (1 - frac(y, yAxis)) * (plotB - T - 2 * PAD);
  };
  const f1 = (v: number) => v.toFixed(1);
  // the legend under the x axis: entries flow in rows, a name too long for a row wraps
  const entries = series.filter((s) => s.points.length > 0 && (!s.markersOnly || s.legend));
  const items: { lines: string[]; w: number; draw: (x: number, y: number) => string; key: boolean }[] = [];
  const room = W - 20 - 28;
  for (const s of entries) {
    const color = COLORS[s.style % COLORS.length];
    const dash = s.thin ? '' : DASHES[s.style % DASHES.length];
    const lines = wrapText(s.name, room, FS.text);
    items.push({
      lines,
      key: false,
      w: 28 + Math.max(...lines.map((l) => textWidth(l, FS.text))),
      draw: (x, y) =>
        s.markersOnly
          ? markerSvg(x + 10, y, { radius: 4.5, filled: !!s.marker?.filled, diamond: s.marker?.diamond }, color, '')
          : `<line x1="${x}" x2="${x + 20}" y1="${y}" y2="${y}" stroke="${color}" stroke-width="2.2"${dash ? ` stroke-dasharray="${dash}"` : ''}/>`,
    });
  }
  for (const k of o.key ?? []) {
    const lines = wrapText(k.label, room, FS.text);
    items.push({
      lines,
      key: true,
      w: 28 + Math.max(...lines.map((l) => textWidth(l, FS.text))),
      draw: (x, y) =>
        k.markers
          ? `<circle cx="${x + 10}" cy="${y}" r="4" fill="#fff" stroke="#555" stroke-width="1.5"/>`
          : `<line x1="${x}" x2="${x + 20}" y1="${y}" y2="${y}" stroke="#555" stroke-width="1.3"${k.dash ? ` stroke-dasharray="${k.dash}"` : ''}/>`,
    });
  }
  const placed: { x: number; y: number; item: (typeof items)[number] }[] = [];
  let cx = 10, cy = plotB + 52, rowH = 0;
  for (const it of items) {
    if (cx > 10 && (cx + it.w > W - 10 || (it.key && !placed.at(-1)?.item.key))) {
      cx = 10;
      cy += rowH;
      rowH = 0;
    }
    placed.push({ x: cx, y: cy, item: it });
    cx += it.w + 18;
    rowH = Math.max(rowH, LINE * it.lines.length + 4);
  }
  const H = Math.ceil(cy + rowH + 4);

  const out: string[] = [];
  out.push(...chartOpening(o.title, o.subtitle, W, H, titleLines, subLines));
  out.push(`<rect class="plot-area" x="${L}" y="${T}" width="${plotR - L}" height="${plotB - T}" fill="#fff" stroke="#aaa"/>`);
  // grid and tick labels
  for (const t of yAxis.ticks) {
    const y = f1(sy(t.value));
    out.push(`<line x1="${L}" x2="${plotR}" y1="${y}" y2="${y}" stroke="${t.minor ? '#f3f3f3' : '#e4e4e4'}"/>`);
    out.push(`<text class="tick" x="${L - 6}" y="${f1(sy(t.value) + 4)}" text-anchor="end" font-size="${FS.text}" fill="${t.minor ? '#666' : '#222'}">${esc(t.label)}</text>`);
  }
  for (const t of xAxis.ticks) {
    const x = f1(sx(t.value));
    out.push(`<line x1="${x}" x2="${x}" y1="${T}" y2="${plotB}" stroke="#eee"/>`);
    out.push(`<text class="tick" x="${x}" y="${plotB + 16}" text-anchor="middle" font-size="${FS.text}" fill="#222">${esc(t.label)}</text>`);
  }
  out.push(`<text x="${(L + plotR) / 2}" y="${plotB + 34}" text-anchor="middle" font-size="${FS.text}" fill="#222">${esc(o.xLabel)}</text>`);
  if (o.yLabel) out.push(`<text x="16" y="${(T + plotB) / 2}" text-anchor="middle" font-size="${FS.text}" fill="#222" transform="rotate(-90 16 ${(T + plotB) / 2})">${esc(o.yLabel)}</text>`);
  // data, clipped to the plotting area (inset by PAD, so a marker at an axis' end is whole)
  const clipId = `plot${++clipCount}`;
  out.push(`<clipPath id="${clipId}"><rect x="${L}" y="${T}" width="${plotR - L}" height="${plotB - T}"/></clipPath><g clip-path="url(#${clipId})">`);
  for (const s of series) {
    const color = COLORS[s.style % COLORS.length];
    const dash = s.thin ? '' : DASHES[s.style % DASHES.length];
    const band = s.band?.filter((b) => b.every(Number.isFinite)) ?? [];
    if (band.length > 1) {
      const up = band.map(([x, , hi]) => `${f1(sx(x))},${f1(sy(hi))}`);
      const down = band.map(([x, lo]) => `${f1(sx(x))},${f1(sy(lo))}`).reverse();
      out.push(`<polygon class="band" points="${[...up, ...down].join(' ')}" fill="${color}" fill-opacity="0.15" stroke="none"/>`);
    }
    for (const m of s.marks ?? []) {
      const x = f1(sx(m));
      out.push(`<line class="mark" x1="${x}" x2="${x}" y1="${T}" y2="${plotB}" stroke="${color}" stroke-width="1.2" stroke-dasharray="3 3"/>`);
      out.push(`<path d="M${x},${T} l-4,-0 l4,7 l4,-7 z" fill="${color}"/>`);
    }
    // a band of one point (one epoch, several seeds) is an error bar
    for (const [x, lo, hi] of [...(s.errorBars ?? []), ...(band.length === 1 && s.points.length === 1 ? band : [])])
      if (Number.isFinite(lo) && Number.isFinite(hi))
        out.push(`<line class="error-bar" x1="${f1(sx(x))}" x2="${f1(sx(x))}" y1="${f1(sy(lo))}" y2="${f1(sy(hi))}" stroke="${color}" stroke-width="1.5"/>`);
    const pts = s.points.map(([x, y]) => `${f1(sx(x))},${f1(sy(y))}`);
    if (!s.markersOnly && s.points.length > 1)
      out.push(
        `<polyline class="series" data-name="${esc(s.name)}" fill="none" stroke="${color}" stroke-width="${s.thin ? 1.3 : 2}" stroke-linejoin="round"${dash ? ` stroke-dasharray="${dash}"` : ''} points="${pts.join(' ')}"/>`,
      );
    // markers: for markers-only series, short lines, and any series of a single point (it has no line)
    if (s.markersOnly || s.points.length === 1 || (!s.thin && s.points.length <= 40))
      for (const [x, y] of s.points) {
        const lone = s.points.length === 1 && !s.markersOnly;
        const m = s.marker ?? { radius: s.markersOnly ? 4 : lone ? 4.5 : 3, filled: !s.markersOnly };
        out.push(markerSvg(sx(x), sy(y), m, color, ` class="marker"${lone ? ` data-name="${esc(s.name)}"` : ''}`));
      }
  }
  out.push('</g>');
  out.push(`<g class="legend">`);
  for (const { x, y, item } of placed)
    out.push(
      `<g class="legend-item${item.key ? ' key' : ''}">${item.draw(x, y - 4)}` +
        item.lines.map((l, i) => `<text x="${x + 28}" y="${y + LINE * i}" font-size="${FS.text}" fill="${item.key ? '#555' : '#222'}">${esc(l)}</text>`).join('') +
        '</g>',
    );
  out.push('</g></svg>');
  const csvSeries = series.filter((s) => s.points.length > 0);
  return figure(out.join(''), slug(o.title), chartCsv(csvSeries, o.xLabel, o.yName ?? o.yLabel ?? o.title));
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
    width: 700,
    height: 240,
    series,
  });
}

/** The points of a density given on a grid. */
export const densityPoints = (d: { grid: number[]; values: number[] }): [number, number][] => d.grid.map((x, i) => [x, d.values[i]]);
