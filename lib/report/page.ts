// The frame of the HTML pages (usam report, usam probe): one self-contained
// page, inline SVG charts, a print style, and a layout self-check the
// Chromium test reads.
import { esc } from './charts.js';

const STYLE = `<style>
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#222;max-width:1440px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:22px 0 4px}p.note{font-size:12.5px;color:#555;margin:0 0 8px;max-width:900px}
table{border-collapse:collapse;margin:10px 0 8px}td,th{border:1px solid #d4d4d4;padding:4px 8px;font-size:12.5px;vertical-align:top}th{background:#f6f6f6;text-align:left}
td.num{text-align:right;white-space:nowrap}.sd{color:#666}.delta{font-size:11px;color:#666}.delta.better{color:#1a7f37}.delta.worse{color:#b42318}tr.baseline td{background:#fafafa}
.charts{display:flex;flex-wrap:wrap;gap:12px}.chart{border:1px solid #ddd;background:#fff}
@media print{body{margin:8mm;max-width:none}.chart,table{break-inside:avoid}h2{break-after:avoid}}
</style>`;

const LAYOUT_CHECK = `<script>
// Layout self-check (read by the Chromium test; harmless elsewhere): every
// legend box against every plotting area, and legend items against each other.
(function () {
  var inter = function (a, b) { return Math.max(0, Math.min(a.right, b.right) - Math.max(a.left, b.left)) * Math.max(0, Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top)); };
  var charts = document.querySelectorAll('svg.chart'), overlaps = [], legends = 0;
  charts.forEach(function (svg, i) {
    var plot = svg.querySelector('.plot-area').getBoundingClientRect(), box = svg.getBoundingClientRect();
    var items = Array.prototype.map.call(svg.querySelectorAll('.legend-item'), function (e) { return e.getBoundingClientRect(); });
    legends += items.length;
    items.forEach(function (r, j) {
      if (inter(r, plot) > 0) overlaps.push({ chart: i, item: j, with: 'plot area' });
      if (r.left < box.left - 0.5 || r.right > box.right + 0.5 || r.top < box.top - 0.5 || r.bottom > box.bottom + 0.5) overlaps.push({ chart: i, item: j, with: 'outside the chart' });
      for (var k = 0; k < j; k++) if (inter(r, items[k]) > 0.5) overlaps.push({ chart: i, item: j, with: 'legend item ' + k });
    });
  });
  var widths = Array.prototype.map.call(document.querySelectorAll('svg.chart .legend-item text'), function (e) { return e.getBoundingClientRect().width; });
  document.body.setAttribute('data-layout', JSON.stringify({ charts: charts.length, legendItems: legends, minLegendTextWidth: widths.length ? Math.min.apply(null, widths) : 0, overlaps: overlaps }));
})();
</script>`;

export function htmlPage(title: string, body: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>${esc(title)}</title>
${STYLE}
</head><body>
${body}
${LAYOUT_CHECK}
</body></html>
`;
}
