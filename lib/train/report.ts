// `usam report`: one self-contained HTML page with SVG charts comparing runs
// (loss, accuracy and sharpness over epochs, Hessian density when recorded).
import { existsSync, readFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { CONFIG_FILE, type EpochMetrics, METRICS_FILE } from './trainer.js';
import { extent } from '../extent.js';

export interface Run {
  name: string;
  dir: string;
  config: Record<string, unknown>;
  metrics: EpochMetrics[];
}

export function readRun(dir: string): Run {
  const metricsFile = join(dir, METRICS_FILE);
  if (!existsSync(metricsFile)) throw new Error(`${dir}: no ${METRICS_FILE}; is it a run directory (usam train --out)?`);
  const metrics = readFileSync(metricsFile, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l, i) => {
      try {
        return JSON.parse(l) as EpochMetrics;
      } catch {
        throw new Error(`${metricsFile}: line ${i + 1} is not JSON`);
      }
    });
  const configFile = join(dir, CONFIG_FILE);
  const config = existsSync(configFile) ? (JSON.parse(readFileSync(configFile, 'utf8')) as Record<string, unknown>) : {};
  return { name: basename(resolve(dir)), dir, config, metrics };
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf'];
const esc = (s: string) => s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);
const fmt = (v: number) => (Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-3 && v !== 0) ? v.toExponential(2) : Number(v.toPrecision(4)).toString());

export interface Series {
  name: string;
  points: [number, number][];
}

/** A line chart as an SVG element. */
export function lineChart(title: string, xLabel: string, series: Series[]): string {
  const W = 460, H = 280, L = 60, R = 12, T = 28, B = 40;
  const all = series.flatMap((s) => s.points).filter(([, y]) => Number.isFinite(y));
  if (all.length === 0) return '';
  let { min: x0, max: x1 } = extent(all.map((p) => p[0]));
  let { min: y0, max: y1 } = extent(all.map((p) => p[1]));
  if (x0 === x1) [x0, x1] = [x0 - 1, x1 + 1];
  if (y0 === y1) [y0, y1] = [y0 - Math.abs(y0 || 1) * 0.1, y1 + Math.abs(y1 || 1) * 0.1];
  const sx = (x: number) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const sy = (y: number) => T + (1 - (y - y0) / (y1 - y0)) * (H - T - B);
  const ticks = [0, 0.25, 0.5, 0.75, 1];
  const grid = ticks
    .map((f) => {
      let y = y0 + f * (y1 - y0);
      if (Math.abs(y) < 1e-9 * Math.max(Math.abs(y0), Math.abs(y1))) y = 0; // no 9.5e-168 labels
      return `<line x1="${L}" x2="${W - R}" y1="${sy(y)}" y2="${sy(y)}" stroke="#eee"/><text x="${L - 6}" y="${sy(y) + 4}" text-anchor="end" font-size="10">${fmt(y)}</text>`;
    })
    .join('');
  // integer x (epochs): ticks on whole numbers only
  const integral = all.every(([x]) => Number.isInteger(x));
  const xs = integral
    ? Array.from({ length: Math.floor((x1 - x0) / Math.max(1, Math.ceil((x1 - x0) / 8))) + 1 }, (_, i) => x0 + i * Math.max(1, Math.ceil((x1 - x0) / 8)))
    : ticks.map((f) => x0 + f * (x1 - x0));
  const xticks = xs.map((x) => `<text x="${sx(x)}" y="${H - B + 14}" text-anchor="middle" font-size="10">${fmt(x)}</text>`).join('');
  const lines = series
    .map((s, i) => {
      const pts = s.points.filter(([, y]) => Number.isFinite(y));
      const color = COLORS[i % COLORS.length];
      const path = pts.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(' ');
      const dots = pts.length <= 60 ? pts.map(([x, y]) => `<circle cx="${sx(x).toFixed(1)}" cy="${sy(y).toFixed(1)}" r="2.5" fill="${color}"/>`).join('') : '';
      return `<polyline class="series" data-name="${esc(s.name)}" fill="none" stroke="${color}" stroke-width="1.8" points="${path}"/>${dots}`;
    })
    .join('');
  const legend = series
    .map((s, i) => `<text x="${W - R - 6}" y="${T + 14 + 13 * i}" text-anchor="end" font-size="11" fill="${COLORS[i % COLORS.length]}">${esc(s.name)}</text>`)
    .join('');
  return (
    `<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(title)}">` +
    `<text x="${W / 2}" y="16" text-anchor="middle" font-size="13" font-weight="bold">${esc(title)}</text>${grid}${xticks}` +
    `<line x1="${L}" x2="${L}" y1="${T}" y2="${H - B}" stroke="#888"/><line x1="${L}" x2="${W - R}" y1="${H - B}" y2="${H - B}" stroke="#888"/>` +
    `<text x="${(L + W - R) / 2}" y="${H - 6}" text-anchor="middle" font-size="11">${esc(xLabel)}</text>${lines}${legend}</svg>`
  );
}

const EPOCH_CHARTS: [string, (m: EpochMetrics) => number | null | undefined][] = [
  ['training loss', (m) => m.trainLoss],
  ['test loss', (m) => m.test.loss],
  ['training accuracy', (m) => m.trainAccuracy],
  ['test top-1 accuracy', (m) => m.test.top1],
  ['test top-5 accuracy', (m) => m.test.top5],
  ['sharpness estimate S(w) (mean over the epoch)', (m) => m.sharpness],
  ['Hessian trace (Hutchinson)', (m) => m.probe?.trace],
  ['Hessian ‖H‖_F²', (m) => m.probe?.frobeniusSquared],
  ['Hessian λmax (Lanczos)', (m) => m.probe?.maxEigenvalue],
];

export function renderReport(runs: Run[]): string {
  const charts = EPOCH_CHARTS.map(([title, get]) =>
    lineChart(
      title,
      'epoch',
      runs.map((r) => ({ name: r.name, points: r.metrics.map((m) => [m.epoch + 1, get(m) ?? NaN] as [number, number]) })),
    ),
  ).filter(Boolean);
  const densities = runs.flatMap((r) => {
    const last = [...r.metrics].reverse().find((m) => m.probe?.density);
    return last ? [{ name: `${r.name} (epoch ${last.epoch + 1})`, points: last.probe!.density!.grid.map((x, i) => [x, last.probe!.density!.values[i]] as [number, number]) }] : [];
  });
  if (densities.length > 0) charts.push(lineChart('Hessian spectral density (SLQ)', 'eigenvalue', densities));
  const rows = runs
    .map((r) => {
      const m = r.metrics.at(-1);
      const c = r.config;
      return `<tr><td>${esc(r.name)}</td><td>${esc(String(c.model ?? ''))}</td><td>${esc(String(c.optimizer ?? ''))}</td><td>${esc(String(c.dataset ?? ''))}</td><td>${r.metrics.length}</td><td>${m ? fmt(m.test.loss) : ''}</td><td>${m ? (100 * m.test.top1).toFixed(2) + '%' : ''}</td><td>${m?.sharpness != null ? fmt(m.sharpness) : ''}</td></tr>`;
    })
    .join('');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>universal-sam report</title>
<style>body{font-family:system-ui,sans-serif;margin:24px;color:#222}table{border-collapse:collapse;margin-bottom:20px}td,th{border:1px solid #ccc;padding:4px 10px;font-size:13px}.charts{display:flex;flex-wrap:wrap;gap:12px}.chart{border:1px solid #ddd;background:#fff}</style>
</head><body>
<h1>universal-sam report</h1>
<table><tr><th>run</th><th>model</th><th>optimizer</th><th>dataset</th><th>epochs</th><th>test loss</th><th>top-1</th><th>sharpness</th></tr>${rows}</table>
<div class="charts">${charts.join('\n')}</div>
</body></html>
`;
}
