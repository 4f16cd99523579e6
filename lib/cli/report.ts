// `usam report RUN_DIR... --out FILE.html`
import { dirname, resolve } from 'node:path';
import { existsSync } from 'node:fs';
import { readRun, renderReport } from '../train/report.js';
import { writeAtomic } from '../train/safetensors.js';

export const REPORT_HELP = `usam report RUN_DIR... --out FILE.html

Writes one self-contained HTML page with SVG charts comparing the runs: loss,
accuracy and sharpness over epochs, Hessian probes and density when recorded.
`;

export function reportCommand(argv: string[]): number {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(REPORT_HELP);
    return 0;
  }
  const dirs: string[] = [];
  let out: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--out') out = argv[++i];
    else if (argv[i].startsWith('--out=')) out = argv[i].slice(6);
    else if (argv[i].startsWith('--')) throw new Error(`unknown flag '${argv[i]}'; usage: ${REPORT_HELP.split('\n')[0]}`);
    else dirs.push(argv[i]);
  }
  if (!out) throw new Error('--out FILE.html is required');
  if (dirs.length === 0) throw new Error('give at least one run directory');
  const runs = dirs.map(readRun); // fails before anything is written
  if (!existsSync(dirname(resolve(out)))) throw new Error(`--out ${out}: folder ${dirname(resolve(out))} does not exist`);
  writeAtomic(resolve(out), [Buffer.from(renderReport(runs))]);
  process.stderr.write(`usam: wrote ${out} (${runs.length} run${runs.length > 1 ? 's' : ''})\n`);
  return 0;
}
