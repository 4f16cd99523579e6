// `usam reproduce [flags]`: the grid of rules × settings × seeds (or the
// rho/lambda sweep), with results.json, reproduction.md and report.html in
// --out, and a line per run.
import { join, relative, resolve } from 'node:path';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { writeAtomic } from '../safetensors.js';
import { executeRuns, parseReproduceConfig, plannedRuns, reproduceConfig, armNames, SETTING_NAMES, sweepGrid } from '../experiments/reproduce.js';
import { REPRODUCE_FORMAT, renderHtml, renderMarkdown, type ReproduceResults } from '../experiments/reproduce-report.js';
import { chosenFromSweep } from '../experiments/verdicts.js';
import { flagHelp, parseFlags } from './flags.js';
import { versions } from '../native/runtime.js';
import { ConfigError, UsamError } from '../errors.js';

export const REPRODUCE_HELP = `usam reproduce [flags]

The paper's claims in miniature: trains every arm (${armNames().join(', ')})
in every setting (${SETTING_NAMES.join(', ')}) with --seeds seeds (5 by default, from
seed 100: never the sweep's) on Fashion-MNIST with the last --validation training
images held out, probes each trained model's Hessian on the same test batches and
the same training batches (tr H, ‖H‖_F², λmax, Σ log(|λ|+δ)), and writes
OUT/results.json, OUT/reproduction.md (each rule's claim against SGD and its
controls by paired t tests with Holm's correction, the cross-measure matrix, the
training losses) and OUT/report.html (the plots). When OUT/sweep.json exists
(or --sweep-from names one), the grid runs at the sweep's choices. Runs already
in OUT are kept, so an interrupted grid continues.

--sweep runs instead the ρ/λ sweep (clean setting, MLP, seeds 0 and 1), chosen on
the validation split: ${Object.entries(sweepGrid()).map(([r, ps]) => `${r} ${ps.length} points`).join(', ')}, and SGD.

Flags:
${flagHelp(reproduceConfig)}
`;

export function reproduceCommand(argv: string[]): number {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(REPRODUCE_HELP);
    return 0;
  }
  const { values } = parseFlags(reproduceConfig, argv, [], 'usam reproduce --help');
  const c = parseReproduceConfig(values);
  const out = resolve(c.out);
  mkdirSync(out, { recursive: true });
  // the grid runs at the sweep's choices (made on the validation split), when there is a sweep
  const sweepFile = c.sweepFrom ?? join(out, 'sweep.json');
  if (c.sweepFrom && !existsSync(sweepFile)) throw new UsamError(`--sweep-from ${sweepFile}: no such file; run 'usam reproduce --sweep' first, or leave the flag out for the shipped defaults`);
  const chosen = !c.sweep && existsSync(sweepFile) ? chosenFromSweep((JSON.parse(readFileSync(sweepFile, 'utf8')) as ReproduceResults).records) : {};
  if (Object.keys(chosen).length > 0) process.stderr.write(`usam: the grid's points from ${sweepFile}: ${JSON.stringify(chosen)}\n`);
  const specs = plannedRuns(c, chosen);
  process.stderr.write(`usam: ${c.sweep ? 'sweep' : 'grid'} of ${specs.length} runs → ${out}\n`);
  const t0 = Date.now();
  const records = executeRuns(specs, c, (line) => process.stderr.write(`usam: ${line}\n`));
  if (c.reportOnly && records.length === 0)
    throw new ConfigError('reproduce options', [{ path: '--report-only', message: `${out} holds none of the plan's ${specs.length} runs: there is nothing to report. Run it without --report-only first (or give the --out of a grid that ran)` }]);
  const results: ReproduceResults = {
    format: REPRODUCE_FORMAT,
    kind: c.sweep ? 'sweep' : 'grid',
    // paths as given relative to where it ran, so the files say nothing of the machine
    options: { ...c, out: relative(process.cwd(), out) || '.', ...(c.sweepFrom ? { sweepFrom: relative(process.cwd(), resolve(c.sweepFrom)) } : {}) },
    libtorch: versions().torch,
    date: new Date().toISOString().slice(0, 10),
    seconds: (Date.now() - t0) / 1000,
    records,
  };
  const base = c.sweep ? 'sweep' : 'results';
  writeAtomic(join(out, `${base}.json`), [Buffer.from(JSON.stringify(results, null, 2) + '\n')]);
  writeAtomic(join(out, `${c.sweep ? 'sweep' : 'reproduction'}.md`), [Buffer.from(renderMarkdown(results))]);
  writeAtomic(join(out, `${c.sweep ? 'sweep' : 'report'}.html`), [Buffer.from(renderHtml(results))]);
  process.stderr.write(`usam: wrote ${base}.json, ${c.sweep ? 'sweep.md, sweep.html' : 'reproduction.md, report.html'} in ${out} (${((Date.now() - t0) / 60000).toFixed(1)} min)\n`);
  return 0;
}
