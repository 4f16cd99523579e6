// `usam reproduce [flags]`: the grid of rules × settings × seeds (or the
// rho/lambda sweep), with results.json, reproduction.md and report.html in
// --out, and a line per run.
import { join, resolve } from 'node:path';
import { mkdirSync } from 'node:fs';
import { native } from '../native/load.js';
import { writeAtomic } from '../safetensors.js';
import { executeRuns, parseReproduceConfig, plannedRuns, reproduceConfig, RULE_NAMES, SETTING_NAMES, SWEEP_GRID } from '../train/reproduce.js';
import { REPRODUCE_FORMAT, renderHtml, renderMarkdown, type ReproduceResults } from '../train/reproduce-report.js';
import { flagHelp, parseFlags } from './flags.js';

export const REPRODUCE_HELP = `usam reproduce [flags]

The paper's claims in miniature: trains every rule (${RULE_NAMES.join(', ')})
in every setting (${SETTING_NAMES.join(', ')}) with --seeds seeds on Fashion-MNIST,
probes each trained model's Hessian on the same held-out test batches (tr H,
‖H‖_F², λmax, Σ log(|λ|+δ)), and writes OUT/results.json, OUT/reproduction.md
(means ± std, each rule's claim against SGD and whether it held) and
OUT/report.html (the plots). The full grid (3 seeds, 3 epochs, MLP) takes about
an hour on 2 cores; --quick (1 seed, 1 epoch, the finite-difference rules) about 10
minutes. Runs already in OUT are kept, so an interrupted grid continues.

--sweep runs instead the ρ/λ sweep the training defaults were chosen on
(clean setting, MLP): ${Object.entries(SWEEP_GRID).map(([r, ps]) => `${r} ${ps.length} points`).join(', ')}, and SGD.

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
  const specs = plannedRuns(c);
  process.stderr.write(`usam: ${c.sweep ? 'sweep' : 'grid'} of ${specs.length} runs → ${out}\n`);
  const t0 = Date.now();
  const records = executeRuns(specs, c, (line) => process.stderr.write(`usam: ${line}\n`));
  const results: ReproduceResults = {
    format: REPRODUCE_FORMAT,
    kind: c.sweep ? 'sweep' : 'grid',
    options: c,
    libtorch: native().versions().torch,
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
