// A heat map as inline SVG (the loss landscape on a plane): one cell per grid
// point, coloured on a perceptually uniform scale (viridis' stops), on a log
// scale where the values span two decades or more, with the colour bar and
// its labels in a legend block under the plotting area (never over the data),
// the centre marked, and the same downloads as the line charts (SVG, PNG,
// CSV of the grid). Sizes in points, text ≥ 12 pt.
import { chartOpening, csvField, esc, FS, figure, LINE, slug, wrapText } from './export.js';
import { linearTicks } from './ticks.js';

// viridis at 0, ¼, ½, ¾, 1
const STOPS = [
  [68, 1, 84],
  [59, 82, 139],
  [33, 145, 140],
  [94, 201, 98],
  [253, 231, 37],
];

function colour(t: number): string {
  const x = Math.min(1, Math.max(0, t)) * (STOPS.length - 1);
  const i = Math.min(STOPS.length - 2, Math.floor(x));
  const f = x - i;
  const c = STOPS[i].map((v, k) => Math.round(v + f * (STOPS[i + 1][k] - v)));
  return `rgb(${c.join(',')})`;
}

export interface HeatmapOptions {
  title: string;
  subtitle?: string;
  xLabel: string;
  yLabel: string;
  /** the value's name (colour bar and CSV) */
  valueLabel: string;
  xs: number[];
  ys: number[];
  /** values[j][i] at (xs[i], ys[j]) */
  values: number[][];
  /** a point to mark, e.g. the weights themselves at (0, 0) */
  mark?: [number, number];
}

const W = 480, L = 62, R = 14, PLOT_H = 300;
const f1 = (v: number) => v.toFixed(1);

/** The heat map in its figure with downloads; '' when it has no finite value. */
export function heatmapChart(o: HeatmapOptions): string {
  const finite = o.values.flat().filter(Number.isFinite);
  if (finite.length === 0 || o.xs.length < 2 || o.ys.length < 2) return '';
  const lo = Math.min(...finite), hi = Math.max(...finite);
  const log = lo > 0 && hi / lo >= 100;
  const scale = (v: number) => (log ? Math.log10(v) : v);
  const [s0, s1] = [scale(lo), scale(hi)];
  const t = (v: number) => (s1 > s0 ? (scale(v) - s0) / (s1 - s0) : 0.5);
  const titleLines = wrapText(o.title, W - 20, FS.title, true);
  const subLines = o.subtitle ? wrapText(o.subtitle, W - 20, FS.text) : [];
  const T = 22 + LINE * (titleLines.length + subLines.length) + 8;
  const plotR = W - R, plotB = T + PLOT_H;
  const [x0, x1] = [o.xs[0], o.xs[o.xs.length - 1]], [y0, y1] = [o.ys[0], o.ys[o.ys.length - 1]];
  const cw = (plotR - L) / o.xs.length, ch = PLOT_H / o.ys.length;
  const out: string[] = [];
  const barY = plotB + 52, barH = 12;
  const H = barY + barH + 40;
  out.push(...chartOpening(o.title, o.subtitle, W, H, titleLines, subLines));
  out.push(`<rect class="plot-area" x="${L}" y="${T}" width="${plotR - L}" height="${PLOT_H}" fill="#fff" stroke="#aaa"/>`);
  // cells: each centred on its grid point, covering the plot exactly
  out.push('<g class="cells">');
  o.values.forEach((row, j) =>
    row.forEach((v, i) => {
      if (!Number.isFinite(v)) return;
      out.push(`<rect x="${f1(L + i * cw)}" y="${f1(plotB - (j + 1) * ch)}" width="${(cw + 0.3).toFixed(2)}" height="${(ch + 0.3).toFixed(2)}" fill="${colour(t(v))}"/>`);
    }),
  );
  out.push('</g>');
  // axes: the first and last cells' centres are the grid's ends
  const xt = linearTicks(x0, x1, 5).ticks.filter((k) => k.value >= x0 - 1e-12 && k.value <= x1 + 1e-12);
  const yt = linearTicks(y0, y1, 5).ticks.filter((k) => k.value >= y0 - 1e-12 && k.value <= y1 + 1e-12);
  const inset = (v: number, a: number, b: number) => a + cw / 2 + ((v - x0) / (x1 - x0)) * (b - a - cw);
  // (x and y the same way)
  const insetY = (v: number) => plotB - ch / 2 - ((v - y0) / (y1 - y0)) * (PLOT_H - ch);
  for (const k of xt) out.push(`<text class="tick" x="${f1(inset(k.value, L, plotR))}" y="${plotB + 16}" text-anchor="middle" font-size="${FS.text}" fill="#222">${esc(k.label)}</text>`);
  for (const k of yt) out.push(`<text class="tick" x="${L - 6}" y="${f1(insetY(k.value) + 4)}" text-anchor="end" font-size="${FS.text}" fill="#222">${esc(k.label)}</text>`);
  out.push(`<text x="${(L + plotR) / 2}" y="${plotB + 34}" text-anchor="middle" font-size="${FS.text}" fill="#222">${esc(o.xLabel)}</text>`);
  out.push(`<text x="16" y="${(T + plotB) / 2}" text-anchor="middle" font-size="${FS.text}" fill="#222" transform="rotate(-90 16 ${(T + plotB) / 2})">${esc(o.yLabel)}</text>`);
  if (o.mark) {
    const [mx, my] = [inset(o.mark[0], L, plotR), insetY(o.mark[1])];
    out.push(`<path class="mark" d="M${f1(mx - 6)},${f1(my)} h12 M${f1(mx)},${f1(my - 6)} v12" stroke="#fff" stroke-width="3"/><path d="M${f1(mx - 6)},${f1(my)} h12 M${f1(mx)},${f1(my - 6)} v12" stroke="#000" stroke-width="1.3"/>`);
  }
  // the colour bar: a legend block under the plot
  const steps = 48, bw = (plotR - L) / steps;
  const fmtV = (v: number) => (Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-3 && v !== 0) ? v.toExponential(2) : v.toPrecision(4));
  out.push(`<g class="legend"><g class="legend-item">`);
  for (let k = 0; k < steps; k++) out.push(`<rect x="${f1(L + k * bw)}" y="${barY}" width="${(bw + 0.3).toFixed(2)}" height="${barH}" fill="${colour((k + 0.5) / steps)}"/>`);
  out.push(`<rect x="${L}" y="${barY}" width="${plotR - L}" height="${barH}" fill="none" stroke="#888"/>`);
  out.push(`<text x="${L}" y="${barY + barH + 16}" font-size="${FS.text}" fill="#222">${esc(fmtV(lo))}</text>`);
  out.push(`<text x="${(L + plotR) / 2}" y="${barY + barH + 16}" text-anchor="middle" font-size="${FS.text}" fill="#222">${esc(`${o.valueLabel}${log ? ' (log colour scale)' : ''}`)}</text>`);
  out.push(`<text x="${plotR}" y="${barY + barH + 16}" text-anchor="end" font-size="${FS.text}" fill="#222">${esc(fmtV(hi))}</text>`);
  out.push('</g></g></svg>');
  const rows: (string | number)[][] = [[o.xLabel, o.yLabel, o.valueLabel]];
  o.values.forEach((row, j) => row.forEach((v, i) => rows.push([o.xs[i], o.ys[j], v])));
  return figure(out.join(''), slug(o.title), rows.map((r) => r.map(csvField).join(',')).join('\n') + '\n');
}

/** What a landscape chart needs of lossLandscape()'s result (probe.json's `landscape`). */
export interface LandscapeData {
  alphas: number[];
  betas: number[];
  loss: number[][];
  center: number;
  directions: string;
  eigenvalues?: [number, number];
}

const fmtShort = (v: number) => (Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-3 && v !== 0) ? v.toExponential(3) : v.toPrecision(4));

/** The loss landscape as a heat map, the weights marked; `name` prefixes the title (a run's). */
export function landscapeChart(l: LandscapeData, name?: string): string {
  const along =
    l.directions === 'eigenvectors' && l.eigenvalues
      ? `the Hessian's top eigenvectors (λ₁ ${fmtShort(l.eigenvalues[0])}, λ₂ ${fmtShort(l.eigenvalues[1])}; unit norm)`
      : l.directions === 'random'
        ? 'two gaussian directions normalised filter by filter (Li et al. 2018)'
        : 'two given directions';
  return heatmapChart({
    title: `${name ? `${name}: l` : 'L'}oss landscape L(w + α·d₁ + β·d₂)`,
    subtitle: `along ${along}; + marks the weights, L = ${fmtShort(l.center)}`,
    xLabel: 'α (along d₁)',
    yLabel: 'β (along d₂)',
    valueLabel: 'loss',
    xs: l.alphas,
    ys: l.betas,
    values: l.loss,
    mark: [0, 0],
  });
}
