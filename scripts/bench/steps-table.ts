// node scripts/run-ts.mjs scripts/bench/steps-table.ts LABEL=runs.json [LABEL=runs.json ...]
// The markdown table of docs/benchmarks.md from `npm run bench -- --out
// runs.json` files (one per LibTorch line), side by side: per model and rule,
// our step time and each ratio with its interval, as the run computed them.
import { readFileSync } from 'node:fs';

interface Interval {
  median: number;
  low: number;
  high: number;
  coverage: number;
}
interface Row {
  model: string;
  optimizer: string;
  precision: string;
  medianMs: number;
  oursOverPytorchInterval: Interval;
  oursOverOfficialInterval: Interval | null;
  oursOverPassesInterval: Interval;
}

const runs = process.argv.slice(2).map((arg) => {
  const [label, file] = arg.includes('=') ? arg.split('=') : [arg, arg];
  return { label, rows: JSON.parse(readFileSync(file, 'utf8')) as Row[] };
});
if (runs.length === 0) {
  console.error('usage: steps-table.ts LABEL=runs.json [LABEL=runs.json ...] (files from npm run bench -- --out FILE)');
  process.exit(2);
}
const cell = (i: Interval | null) => (i ? `${i.median.toFixed(2)} [${i.low.toFixed(2)}, ${i.high.toFixed(2)}]` : 'skipped');
const keys = [...new Set(runs.flatMap((r) => r.rows.map((row) => `${row.model}|${row.optimizer}|${row.precision}`)))];
const head = ['model', 'rule', ...runs.flatMap((r) => [`${r.label}: ours ms`, 'ours/PyTorch', 'ours/official', 'ours/((n+1)·fb)'])];
console.log(`| ${head.join(' | ')} |`);
console.log(`|${head.map((_, i) => (i < 2 ? '---' : '---:')).join('|')}|`);
for (const key of keys) {
  const [model, optimizer, precision] = key.split('|');
  const cells = runs.flatMap(({ rows }) => {
    const row = rows.find((r) => r.model === model && r.optimizer === optimizer && r.precision === precision);
    return row ? [row.medianMs.toFixed(2), cell(row.oursOverPytorchInterval), cell(row.oursOverOfficialInterval), cell(row.oursOverPassesInterval)] : ['', '', '', ''];
  });
  console.log(`| ${model} | ${optimizer}${precision === 'fp32' ? '' : ` (${precision})`} | ${cells.join(' | ')} |`);
}
