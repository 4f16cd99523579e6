// npm run bench [-- --json] [-- --steps N] [-- --models tiny,mlp,cnn]
// Median ms per optimizer step, ours against the same update rules in
// PyTorch-Python on Debian's python3-torch (the same LibTorch 1.13.1), with
// the same thread count, measured in this run; and ours over (n+1) × one
// forward-backward of the same model (n perturbed passes per step).
import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
const args = process.argv.slice(2);
const json = args.includes('--json');
const opt = (name: string, fallback: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : fallback;
};
const steps = opt('--steps', '10');
const models = opt('--models', 'tiny,mlp,cnn').split(',');
const optimizers = ['sgd', 'sam', 'trace-sam', 'det-sam', 'frob-sam'];
const PASSES: Record<string, number> = { sgd: 1, sam: 2, 'trace-sam': 2, 'det-sam': 2, 'frob-sam': 3 };
const python = process.env.PYTHON ?? '/usr/bin/python3';

interface Cell {
  medianMs: number;
  forwardBackwardMs: number;
  peakRssKb: number;
  params?: number;
  threads: number;
}

const run = (cmd: string, argv: string[]): Cell => JSON.parse(execFileSync(cmd, argv, { cwd: root, encoding: 'utf8' }).trim().split('\n').at(-1)!);

const rows: Record<string, unknown>[] = [];
for (const model of models)
  for (const o of optimizers) {
    const ours = run(process.execPath, [join(root, 'scripts/run-ts.mjs'), join(here, 'step-runner.ts'), model, o, steps]);
    const torch = run(python, [join(here, 'pytorch_steps.py'), model, o, steps, String(ours.threads)]);
    const row = {
      model,
      optimizer: o,
      medianMs: ours.medianMs,
      pytorchMs: torch.medianMs,
      oursOverPytorch: ours.medianMs / torch.medianMs,
      forwardBackwardMs: ours.forwardBackwardMs,
      passes: PASSES[o],
      oursOverPasses: ours.medianMs / (PASSES[o] * ours.forwardBackwardMs),
      peakRssKb: ours.peakRssKb,
      pytorchPeakRssKb: torch.peakRssKb,
      params: ours.params,
      threads: ours.threads,
    };
    rows.push(row);
    if (json) console.log(JSON.stringify(row));
    else
      console.log(
        `${model.padEnd(5)} ${o.padEnd(10)} ours ${ours.medianMs.toFixed(2).padStart(8)} ms  pytorch ${torch.medianMs.toFixed(2).padStart(8)} ms  ratio ${row.oursOverPytorch.toFixed(3)}  ` +
          `ours/(${PASSES[o]}×fb ${ours.forwardBackwardMs.toFixed(2)} ms) ${row.oursOverPasses.toFixed(3)}  peak RSS ${(ours.peakRssKb / 1024).toFixed(0)} MiB`,
      );
  }

// memory: Frob-SAM's peak RSS against SGD's + 4·P·bytes + 10%
if (!json)
  for (const model of models) {
    const sgd = rows.find((r) => r.model === model && r.optimizer === 'sgd')!;
    const frob = rows.find((r) => r.model === model && r.optimizer === 'frob-sam')!;
    const limitKb = ((sgd.peakRssKb as number) + (4 * (sgd.params as number) * 4) / 1024) * 1.1;
    console.log(`memory ${model}: Frob-SAM peak ${(frob.peakRssKb as number / 1024).toFixed(1)} MiB, limit (SGD + 4·P·4 B) × 1.1 = ${(limitKb / 1024).toFixed(1)} MiB → ${(frob.peakRssKb as number) <= limitKb ? 'ok' : 'OVER'}`);
  }
