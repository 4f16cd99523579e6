// `usam report RUN_DIR... --out FILE.html [--baseline NAME] [--title TEXT]`
import { UsamError } from '../errors.js';
import { dirname, resolve } from 'node:path';
import { existsSync, statSync } from 'node:fs';
import { readRun, renderReport } from '../report/report.js';
import { writeAtomic } from '../safetensors.js';

export const REPORT_HELP = `usam report RUN_DIR... --out FILE.html [--baseline NAME] [--title TEXT]

Writes one self-contained HTML page (inline SVG, no network; prints) comparing
the runs: a table of final numbers with differences to the baseline, per-step
training loss (steps.jsonl) beside the per-epoch evaluations, one chart per
Hessian probe measure (tr H, ‖H‖_F², λmax, log|det|), each rule's own sharpness
estimate in its own chart, and the spectral density on a log axis.
Runs whose config.json differ only in seed (and out, threads) are grouped and
shown as mean ± std over their seeds, so \`usam report runs/*\` works; a
comparison that rests on one seed says so. A run folder's probe.json (written
by 'usam probe RUN_DIR') fills tr H, ‖H‖_F², λmax and log|det| where its
metrics.jsonl has no probe (marked P, with a footnote). Each chart has
downloads in the page: SVG (1 unit = 1 pt, text ≥ 12 pt), PNG (300 dpi, drawn
by the page) and CSV (the plotted points: series, x, y, y ∓ std).

  --out FILE.html     where to write the page (its folder must exist)
  --baseline NAME     the group differences are taken to: a group or run
                      directory name, or an optimizer (default: the first run)
  --title TEXT        the page's title
`;

export function reportCommand(argv: string[]): number {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(REPORT_HELP);
    return 0;
  }
  const dirs: string[] = [];
  let out: string | undefined;
  let baseline: string | undefined;
  let title: string | undefined;
  const value = (i: number, flag: string) => {
    const v = argv[i];
    if (v === undefined || v.startsWith('--')) throw new UsamError(`${flag} needs a value`);
    return v;
  };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--out') out = value(++i, '--out');
    else if (argv[i].startsWith('--out=')) out = argv[i].slice(6);
    else if (argv[i] === '--baseline') baseline = value(++i, '--baseline');
    else if (argv[i].startsWith('--baseline=')) baseline = argv[i].slice(11);
    else if (argv[i] === '--title') title = value(++i, '--title');
    else if (argv[i].startsWith('--title=')) title = argv[i].slice(8);
    else if (argv[i].startsWith('--')) throw new UsamError(`unknown flag '${argv[i]}'; usage: ${REPORT_HELP.split('\n')[0]}`);
    else dirs.push(argv[i]);
  }
  if (!out) throw new UsamError('--out FILE.html is required');
  if (dirs.length === 0) throw new UsamError('give at least one run directory');
  // `usam report runs/*` may also name files next to the runs (a log, the report itself): skipped, said
  const files = dirs.filter((d) => existsSync(d) && !statSync(d).isDirectory());
  for (const f of files) process.stderr.write(`usam: skipping ${f} (a file, not a run directory)\n`);
  const runDirs = dirs.filter((d) => !files.includes(d));
  if (runDirs.length === 0) throw new UsamError('give at least one run directory');
  const runs = runDirs.map(readRun); // fails before anything is written
  if (!existsSync(dirname(resolve(out)))) throw new UsamError(`--out ${out}: folder ${dirname(resolve(out))} does not exist`);
  const html = renderReport(runs, { baseline, title }); // an unknown --baseline fails here, before writing
  writeAtomic(resolve(out), [Buffer.from(html)]);
  process.stderr.write(`usam: wrote ${out} (${runs.length} run${runs.length > 1 ? 's' : ''})\n`);
  return 0;
}
