// What the charts need besides drawing: text measured and wrapped by an
// estimate of its width (so no legend or subtitle is cut: it wraps instead),
// and each chart's figure with its downloads — the SVG itself (a data: link,
// no script needed), a PNG drawn from it client-side (page.ts), and the
// plotted data as CSV (a data: link).

export const esc = (s: string) => s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);

/**
 * An upper estimate of the advance of `s` at `size` (DejaVu Sans, the widest
 * of the usual sans-serif faces, averages about 0.6 em; bold a little more).
 */
export function textWidth(s: string, size: number, bold = false): number {
  let w = 0;
  for (const c of s) w += /[ .,:;|!il'’()[\]·]/.test(c) ? 0.34 : /[A-Z‖≈±−–—]/.test(c) ? 0.72 : /[mwMW]/.test(c) ? 0.9 : 0.6;
  return w * size * (bold ? 1.08 : 1);
}

/** `s` in lines no wider than `width` (at `size`), broken at spaces; a word wider than a line is split, never dropped. */
export function wrapText(s: string, width: number, size: number, bold = false): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of s.split(/\s+/).filter(Boolean)) {
    const next = line ? `${line} ${word}` : word;
    if (textWidth(next, size, bold) <= width) {
      line = next;
      continue;
    }
    if (line) lines.push(line);
    line = '';
    let rest = word;
    while (textWidth(rest, size, bold) > width && rest.length > 1) {
      let k = rest.length - 1;
      while (k > 1 && textWidth(rest.slice(0, k), size, bold) > width) k--;
      lines.push(rest.slice(0, k));
      rest = rest.slice(k);
    }
    line = rest;
  }
  if (line || lines.length === 0) lines.push(line);
  return lines;
}

/** A file name from a chart title: "Hessian λmax (Lanczos)" → "hessian-λmax-lanczos". */
export const slug = (s: string) =>
  s
    .toLowerCase()
    .replace(/[^\p{L}\p{N}]+/gu, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 60) || 'chart';

export const csvField = (v: string | number) => {
  const s = typeof v === 'number' ? (Number.isFinite(v) ? String(v) : '') : v;
  return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
};

/** The data of a chart, one row per plotted point: series, x, y, and y ∓ std where the series has a band or error bars. */
export function chartCsv(series: { name: string; points: [number, number][]; band?: [number, number, number][]; errorBars?: [number, number, number][] }[], xName: string, yName: string): string {
  const rows: (string | number)[][] = [['series', xName, yName, `${yName} - std`, `${yName} + std`]];
  for (const s of series) {
    const spread = new Map([...(s.band ?? []), ...(s.errorBars ?? [])].map(([x, lo, hi]) => [x, [lo, hi]]));
    for (const [x, y] of s.points) {
      const b = spread.get(x);
      rows.push([s.name, x, y, b ? b[0] : '', b ? b[1] : '']);
    }
  }
  return rows.map((r) => r.map(csvField).join(',')).join('\n') + '\n';
}

/** The charts' text sizes (pt), line height and fonts. */
export const FS = { title: 14, text: 12 };
export const LINE = 15;
export const FONT = 'font-family="DejaVu Sans,Verdana,system-ui,-apple-system,Segoe UI,Roboto,sans-serif"';

/**
 * A chart's opening: the <svg> of W × H pt with its accessible title, the
 * white ground, and the title and subtitle lines (as wrapText made them).
 */
export function chartOpening(title: string, subtitle: string | undefined, W: number, H: number, titleLines: string[], subLines: string[]): string[] {
  return [
    `<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="${W}pt" height="${H}pt" viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(title)}" ${FONT}>`,
    `<title>${esc(title)}${subtitle ? ' — ' + esc(subtitle) : ''}</title>`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
    ...titleLines.map((l, i) => `<text x="10" y="${22 + LINE * i}" font-size="${FS.title}" font-weight="600">${esc(l)}</text>`),
    ...subLines.map((l, i) => `<text class="subtitle" x="10" y="${22 + LINE * (titleLines.length + i)}" font-size="${FS.text}" fill="#444">${esc(l)}</text>`),
  ];
}

/** A chart and its downloads: SVG (the chart itself, standalone), PNG (drawn from the SVG by the page's script) and CSV. */
export function figure(svg: string, name: string, csv: string): string {
  const svgHref = `data:image/svg+xml;base64,${Buffer.from(`<?xml version="1.0" encoding="UTF-8"?>\n${svg}\n`).toString('base64')}`;
  const csvHref = `data:text/csv;charset=utf-8,${encodeURIComponent(csv)}`;
  return (
    `<figure class="fig">${svg}<figcaption class="export">download: ` +
    `<a class="export-svg" href="${svgHref}" download="${esc(name)}.svg">SVG</a> · ` +
    `<a class="export-png" href="#" download="${esc(name)}.png">PNG</a><span class="export-png"> · </span>` +
    `<a class="export-csv" href="${csvHref}" download="${esc(name)}.csv">CSV</a></figcaption></figure>`
  );
}
