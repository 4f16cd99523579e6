// The frame of the HTML pages (usam report, usam probe): one self-contained
// page, inline SVG charts, a print style, the PNG download of each chart
// (drawn from its SVG on a canvas, at 300 dpi), and a layout self-check the
// Chromium test reads.
import { esc } from './export.js';

const STYLE = `<style>
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#222;max-width:1440px}
h1{font-size:24px;margin:0 0 6px}h2{font-size:19px;margin:26px 0 6px}p.note{font-size:15px;color:#444;margin:0 0 8px;max-width:1000px;line-height:1.4}
p.warn{font-size:15px;background:#fff4e5;border:1px solid #f0b46c;border-left:5px solid #d97706;padding:8px 12px;max-width:1000px;margin:8px 0}
.table-wrap{max-width:100%;overflow-x:auto}
table{border-collapse:collapse;margin:10px 0 8px}td,th{border:1px solid #d4d4d4;padding:4px 6px;font-size:14.5px;vertical-align:top}td.run{min-width:9em}.meta{font-size:13px;color:#555}th{background:#f6f6f6;text-align:left}
td.num{text-align:right}.v{white-space:nowrap}.sd{color:#555;white-space:nowrap;display:block;font-size:13px}.delta{font-size:13px;color:#555}.delta span,.v{white-space:nowrap}.delta.better{color:#1a7f37}.delta.worse{color:#b42318}tr.baseline td{background:#fafafa}
.src{color:#7a4e00;font-size:12px;vertical-align:super}
.charts{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}.fig{margin:0;max-width:100%}.chart{border:1px solid #ddd;background:#fff;display:block;max-width:100%;height:auto}
.export{font-size:13px;color:#555;margin:3px 0 0 2px}html:not(.js) .export-png{display:none}
@media print{body{margin:8mm;max-width:none}.fig,table{break-inside:avoid}h2{break-after:avoid}.export{display:none}}
</style>`;

/** The PNG download: the chart's SVG (its SVG link) drawn on a canvas at 300 dpi (1 unit = 1 pt), no library. */
const EXPORT_SCRIPT = `<script>
document.documentElement.classList.add('js');
window.usamPng = function (fig, done) {
  var svg = fig.querySelector('svg.chart'), href = fig.querySelector('a.export-svg').getAttribute('href');
  var box = svg.viewBox.baseVal, scale = 300 / 72, img = new Image();
  img.onload = function () {
    var c = document.createElement('canvas');
    c.width = Math.round(box.width * scale); c.height = Math.round(box.height * scale);
    var g = c.getContext('2d'); g.fillStyle = '#fff'; g.fillRect(0, 0, c.width, c.height); g.drawImage(img, 0, 0, c.width, c.height);
    c.toBlob(function (b) { done(b, c.width, c.height); }, 'image/png');
  };
  img.onerror = function () { done(null, 0, 0); };
  img.src = href;
};
document.addEventListener('click', function (e) {
  var a = e.target.closest && e.target.closest('a.export-png');
  if (!a) return;
  e.preventDefault();
  window.usamPng(a.closest('figure'), function (blob) {
    if (!blob) return;
    var t = document.createElement('a'); t.href = URL.createObjectURL(blob); t.download = a.getAttribute('download');
    document.body.appendChild(t); t.click(); t.remove(); setTimeout(function () { URL.revokeObjectURL(t.href); }, 1000);
  });
});
</script>`;

const LAYOUT_CHECK = `<script>
// Layout self-check (read by the Chromium test; harmless elsewhere): every
// legend item against the plotting area, the chart's box and the other items;
// every text inside its chart; every data marker wholly inside its plotting
// area; no table wider than its box and no page wider than the window. The
// PNG export of the first chart is tried too (async: the test waits).
(function () {
  var inter = function (a, b) { return Math.max(0, Math.min(a.right, b.right) - Math.max(a.left, b.left)) * Math.max(0, Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top)); };
  var inside = function (r, b) { return r.left >= b.left - 0.5 && r.right <= b.right + 0.5 && r.top >= b.top - 0.5 && r.bottom <= b.bottom + 0.5; };
  var charts = document.querySelectorAll('svg.chart'), overlaps = [], legends = 0, markers = 0;
  charts.forEach(function (svg, i) {
    var plot = svg.querySelector('.plot-area').getBoundingClientRect(), box = svg.getBoundingClientRect();
    var items = Array.prototype.map.call(svg.querySelectorAll('.legend-item'), function (e) { return e.getBoundingClientRect(); });
    legends += items.length;
    items.forEach(function (r, j) {
      if (inter(r, plot) > 0) overlaps.push({ chart: i, item: j, with: 'plot area' });
      if (!inside(r, box)) overlaps.push({ chart: i, item: j, with: 'outside the chart' });
      for (var k = 0; k < j; k++) if (inter(r, items[k]) > 0.5) overlaps.push({ chart: i, item: j, with: 'legend item ' + k });
    });
    svg.querySelectorAll('text').forEach(function (t, j) { if (!inside(t.getBoundingClientRect(), box)) overlaps.push({ chart: i, text: t.textContent, with: 'text outside the chart' }); });
    svg.querySelectorAll('.marker').forEach(function (c, j) { markers++; if (!inside(c.getBoundingClientRect(), plot)) overlaps.push({ chart: i, marker: j, with: 'marker clipped by the plot area' }); });
  });
  var tables = [];
  document.querySelectorAll('table').forEach(function (t, i) {
    var w = t.parentElement, r = t.getBoundingClientRect();
    tables.push({ table: i, width: Math.round(r.width), box: Math.round(w.getBoundingClientRect().width), cut: r.right > window.innerWidth + 0.5 || t.offsetWidth > w.clientWidth + 0.5 });
  });
  var widths = Array.prototype.map.call(document.querySelectorAll('svg.chart .legend-item text'), function (e) { return e.getBoundingClientRect().width; });
  var fonts = Array.prototype.map.call(document.querySelectorAll('svg.chart text'), function (e) { return parseFloat(e.getAttribute('font-size')); });
  var layout = { charts: charts.length, legendItems: legends, markers: markers, minLegendTextWidth: widths.length ? Math.min.apply(null, widths) : 0, minFontPt: fonts.length ? Math.min.apply(null, fonts) : 0,
    tables: tables, pageWidth: document.documentElement.scrollWidth, pageHeight: document.documentElement.scrollHeight, windowWidth: window.innerWidth, overlaps: overlaps };
  document.body.setAttribute('data-layout', JSON.stringify(layout));
  var fig = document.querySelector('figure.fig');
  if (fig && window.usamPng) window.usamPng(fig, function (blob, w, h) { layout.png = { bytes: blob ? blob.size : 0, width: w, height: h }; document.body.setAttribute('data-layout', JSON.stringify(layout)); });
})();
</script>`;

export function htmlPage(title: string, body: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>${esc(title)}</title>
${STYLE}
</head><body>
${body}
${EXPORT_SCRIPT}
${LAYOUT_CHECK}
</body></html>
`;
}
