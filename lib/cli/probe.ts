// `usam probe RUN_DIR|MODEL.pt [flags]`: Hessian probes of a saved run or of
// a TorchScript file, as JSON and an HTML page, with a progress line per probe.
import { dirname, join, resolve } from 'node:path';
import { existsSync, statSync } from 'node:fs';
import { parseProbeConfig, probeConfig, probeRun, renderProbePage } from '../experiments/probe.js';
import { writeAtomic } from '../safetensors.js';
import { flagHelp, parseFlags } from './flags.js';
import { ConfigError, UsamError } from '../errors.js';

export const PROBE_HELP = `usam probe RUN_DIR [flags]
usam probe MODEL.pt [--state-dict W.safetensors] [--dataset NAME] [--dtype D] [flags]

Loads the checkpoint of a 'usam train' run and probes the Hessian of its loss on
the first --batches batches of a data split: λmax and λmin (Lanczos), tr H and
‖H‖_F² (Hutchinson, with standard errors), Σ log(|λ| + δ) and the spectral
density (SLQ). Writes RUN_DIR/probe.json and RUN_DIR/probe.html (a page with
the numbers and the density plot), or where --json and --html say.

A TorchScript file (torch.jit.save; forward maps a batch of the dataset's
images to logits) is probed on --dataset (default fashion-mnist, normalised as
'usam train' does) in --dtype (default float32), with the weights of
--state-dict when given (safetensors, PyTorch's state_dict names); it writes
MODEL.probe.json and MODEL.probe.html beside the file.

Flags:
${flagHelp(probeConfig)}
`;

export function probeCommand(argv: string[]): number {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(PROBE_HELP);
    return 0;
  }
  const [runDir, ...rest] = argv;
  if (!runDir || runDir.startsWith('--')) throw new UsamError(`give the run directory (or a TorchScript file) first; usage: ${PROBE_HELP.split('\n')[0]}`);
  const { values } = parseFlags(probeConfig, rest, [], 'usam probe --help');
  const o = parseProbeConfig(values); // fails on a bad flag before any work
  if (!existsSync(runDir)) throw new ConfigError('probe', [{ path: runDir, message: "no such run folder or TorchScript file; give the folder of a 'usam train' run (its --out, or runs/latest) or a file saved by torch.jit.save" }]);
  const isFile = !statSync(runDir).isDirectory();
  const beside = (ext: string) => (isFile ? runDir.replace(/\.[^./]*$/, '') + `.probe.${ext}` : join(runDir, `probe.${ext}`));
  const jsonFile = resolve(o.json ?? beside('json'));
  const htmlFile = resolve(o.html ?? beside('html'));
  for (const f of [jsonFile, htmlFile]) if (!existsSync(dirname(f))) throw new ConfigError('probe', [{ path: f === jsonFile ? '--json' : '--html', message: `${f}: its folder ${dirname(f)} does not exist` }]);
  const report = probeRun(runDir, o, (line) => process.stderr.write(`usam: ${line}\n`));
  writeAtomic(jsonFile, [Buffer.from(JSON.stringify(report, null, 2) + '\n')]);
  writeAtomic(htmlFile, [Buffer.from(renderProbePage(report))]);
  const f = (v: number) => v.toPrecision(5);
  process.stderr.write(
    `usam: λmax ${f(report.maxEigenvalue)}  λmin ${f(report.minEigenvalue ?? NaN)}  tr H ${f(report.trace)} ± ${f(report.traceStandardError)}  ` +
      `‖H‖_F² ${f(report.frobeniusSquared)} ± ${f(report.frobeniusStandardError)}  log|det| ${f(report.logAbsDet)} (δ ${report.logAbsDetDamping})  ` +
      `${report.hvps} HVPs, ${report.seconds.toFixed(1)} s\nusam: wrote ${jsonFile} and ${htmlFile}\n`,
  );
  return 0;
}
