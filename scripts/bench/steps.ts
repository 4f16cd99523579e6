// npm run bench [-- --json] [--out FILE] [--rounds R] [--steps K] [--threads N] [--models tiny,mlp,cnn] [--optimizers ...] [--device cuda] [--precision fp32,bf16]
// Median ms per optimizer step, ours against the same update rules in
// PyTorch-Python on the same LibTorch with the same thread count: PYTHON
// chooses the PyTorch (default Debian's python3-torch, LibTorch 1.13), and
// ours must run on that PyTorch's LibTorch (a build against it, e.g.
// USAM_ADDON=... or the local build made with the same PYTHON); the header
// says which two ran, and the run stops when their versions differ. Measured
// in this run: both run as persistent processes
// and take turns (R rounds of K steps each), so that a slow phase of the
// machine hits both alike. Also ours over (n+1) × one forward-backward of the
// same model (n perturbed passes per step), from a turn of its own in which
// our steps and passes take turns (a step and the passes it is compared with
// see the same phase of the host), and peak RSS for the memory target.
// Each ratio is given with a distribution-free interval for the median of its
// per-round ratios (models.ts medianInterval): on a shared VM the speed moves
// by tens of percent between rounds, and a ratio without it overstates what
// one run shows (use ≥ 6 rounds for a 95% interval).
// USAM_BENCH_OFFICIAL=<a clone of dbahri/universal_sam> adds a third peer: the
// paper's own optimizer classes (solver/sam.py, imported from that clone by
// pytorch_steps.py ... official) on the same model, batch and LibTorch, fp32
// cells only; without it that column is reported as skipped.
// Models ts-mnist, ts-resnet20, ts-transformer (--models) are brought models:
// pytorch_models.py traces them once into a temporary folder, and both sides
// run that same TorchScript file (ours through loadTorchScript).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { majorMinor } from '../../lib/native/libtorch.mjs';
import { BENCH_PASSES, isTorchScriptBenchModel, median, medianInterval } from './models.js';
import { Peer } from './peer.js';
import { flag, option } from './args.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
const json = flag('--json');
// --out FILE: every row (with its raw times) as one JSON array, beside the text
const outFile = option('--out', '');
const rounds = Number(option('--rounds', '5'));
const steps = Number(option('--steps', '6'));
const models = option('--models', 'tiny,mlp,cnn').split(',');
const optimizers = option('--optimizers', 'sgd,sam,trace-sam,det-sam,frob-sam').split(',');
const device = option('--device', 'cpu');
// 'bf16': ours with ModelOptions.precision 'bf16', PyTorch's forward under
// torch.autocast(bfloat16); 'fp16' likewise, with a 2^16 loss scale on both
// sides. Several (--precision fp32,bf16): every precision's two peers take
// turns in the same rounds, so the bf16/fp32 ratios come from one run.
const precisions = option('--precision', 'fp32').split(',');
const python = process.env.PYTHON ?? (device === 'cpu' ? '/usr/bin/python3' : 'python3');
// One intra-op thread on each side by default. Both peers stay alive and take
// turns, and an idle OpenMP pool spins for a while after each parallel region:
// on this 2-core VM two 2-thread peers stole each other's cores (tiny SGD
// step 12.7 ms at 2 threads against ≈1 ms at 1). Use --threads N on a machine
// with cores to spare.
const threads = Number(option('--threads', '1'));
const officialRepo = process.env.USAM_BENCH_OFFICIAL;
if (!json && !officialRepo) console.log('official classes: skipped (set USAM_BENCH_OFFICIAL to a clone of dbahri/universal_sam)');

interface Info {
  peakRssKb: number;
  threads: number;
  params?: number;
  torch: string;
  torchLibrary?: string;
  sgemm?: string;
}

// Which LibTorch each side runs on: a ratio means something only on the same one.
{
  const ours = new Peer(process.execPath, [join(root, 'scripts/run-ts.mjs'), join(here, 'step-runner.ts'), 'tiny', 'sgd', device], process.env);
  const torch = new Peer(python, [join(here, 'pytorch_steps.py'), 'tiny', 'sgd', '1', device], process.env);
  await Promise.all([ours.ask(), torch.ask()]);
  const [oi, ti] = await Promise.all([ours.ask<Info>('info'), torch.ask<Info>('info')]);
  ours.close();
  torch.close();
  const header = `ours: LibTorch ${oi.torch} (${oi.torchLibrary}; Linear products: ${oi.sgemm === 'onednn' ? "oneDNN's sgemm" : 'at::mm'}); PyTorch: ${python}, torch ${ti.torch} (${ti.torchLibrary})`;
  if (json) console.log(JSON.stringify({ oursTorch: oi.torch, oursLibrary: oi.torchLibrary, oursSgemm: oi.sgemm, pytorchTorch: ti.torch, pytorchLibrary: ti.torchLibrary, python }));
  else console.log(header);
  if (majorMinor(oi.torch) !== majorMinor(ti.torch)) {
    console.error(`bench: ours and PyTorch run on different LibTorch versions (${header}); build ours against PYTHON's torch (PYTHON=${python} npm run build:native) or set USAM_ADDON`);
    process.exit(2);
  }
}

// the brought models, traced once by the PyTorch side into a folder both sides read
const scripted = models.filter(isTorchScriptBenchModel);
if (scripted.length > 0) {
  const dir = mkdtempSync(join(tmpdir(), 'usam-bench-ts-'));
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  process.env.USAM_BENCH_TS_DIR = dir;
  const r = spawnSync(python, [join(here, 'pytorch_models.py'), 'trace', dir, ...scripted], { stdio: 'inherit' });
  if (r.status !== 0) {
    console.error(`bench: ${python} could not trace ${scripted.join(', ')} (see above)`);
    process.exit(2);
  }
}

const rows: Record<string, unknown>[] = [];
const range = (i: { low: number; high: number }) => `[${i.low.toFixed(3)}, ${i.high.toFixed(3)}]`;
// Above one thread, OpenMP's idle threads sleep instead of spinning
// (OMP_WAIT_POLICY=PASSIVE, both peers): a peer waiting for its turn then
// leaves the cores to the one running (see `threads` above).
const env = (threads: number) => ({ ...process.env, OPENBLAS_NUM_THREADS: String(threads), OMP_NUM_THREADS: String(threads), ...(threads > 1 ? { OMP_WAIT_POLICY: 'PASSIVE' } : {}) });
for (const model of models)
  for (const o of optimizers) {
    const cells = precisions.map((precision) => ({
      precision,
      ours: new Peer(process.execPath, [join(root, 'scripts/run-ts.mjs'), join(here, 'step-runner.ts'), model, o, device, precision], env(threads)),
      torch: new Peer(python, [join(here, 'pytorch_steps.py'), model, o, String(threads), device, precision], env(threads)),
      official:
        officialRepo && precision === 'fp32'
          ? new Peer(python, [join(here, 'pytorch_steps.py'), model, o, String(threads), device, precision, 'official'], env(threads))
          : undefined,
      // pairedSteps/oursFb: the floor's turn, steps and passes taking turns in one process (step-runner's `pairs`)
      t: { ours: [] as number[], torch: [] as number[], pairedSteps: [] as number[], oursFb: [] as number[], torchFb: [] as number[], official: [] as number[] },
    }));
    await Promise.all(cells.flatMap((c) => [c.ours.ask(), c.torch.ask(), c.official?.ask()]));
    // a turn: one command to one peer, its reply kept
    const times = (peer: Peer, cmd: string, into: number[]) => async () => void into.push(...(await peer.ask<number[]>(cmd)));
    const pairs = (peer: Peer, t: { pairedSteps: number[]; oursFb: number[] }) => async () => {
      const reply = await peer.ask<{ step: number[]; fb: number[] }>(`pairs ${steps}`);
      t.pairedSteps.push(...reply.step);
      t.oursFb.push(...reply.fb);
    };
    for (let r = 0; r < rounds; r++) {
      const turns = cells.flatMap(({ ours, torch, official, t }) => [
        times(ours, `step ${steps}`, t.ours),
        times(torch, `step ${steps}`, t.torch),
        ...(official ? [times(official, `step ${steps}`, t.official)] : []),
        pairs(ours, t),
        times(torch, `fb ${steps}`, t.torchFb),
      ]);
      if (r % 2 === 1) turns.reverse();
      for (const turn of turns) await turn();
    }
    const cellRows = [];
    for (const { precision, ours, torch, official, t } of cells) {
      const [oi, ti] = await Promise.all([ours.ask<Info>('info'), torch.ask<Info>('info')]);
      ours.close();
      torch.close();
      official?.close();
      // per round: the ratio of the two peers' medians in that round (the rounds are the run's independent repeats)
      const perRound = (a: number[], b: number[], scale = 1) =>
        Array.from({ length: rounds }, (_, r) => median(a.slice(r * steps, (r + 1) * steps)) / (scale * median(b.slice(r * steps, (r + 1) * steps))));
      const ratio = (a: number[], b: number[], scale = 1) => medianInterval(perRound(a, b, scale));
      const row = {
        model,
        optimizer: o,
        medianMs: median(t.ours),
        pytorchMs: median(t.torch),
        /** ratios: the median of the per-round ratios (each round's two medians), with its interval */
        oursOverPytorch: ratio(t.ours, t.torch).median,
        officialMs: official ? median(t.official) : null,
        oursOverOfficial: official ? ratio(t.ours, t.official).median : null,
        forwardBackwardMs: median(t.oursFb),
        pytorchForwardBackwardMs: median(t.torchFb),
        passes: BENCH_PASSES[o],
        /** the floor: each round's steps over its passes, both from the round's paired turn */
        oursOverPasses: ratio(t.pairedSteps, t.oursFb, BENCH_PASSES[o]).median,
        /** distribution-free intervals (medianInterval) for the median of the per-round ratios */
        oursOverPytorchInterval: ratio(t.ours, t.torch),
        oursOverOfficialInterval: official ? ratio(t.ours, t.official) : null,
        oursOverPassesInterval: ratio(t.pairedSteps, t.oursFb, BENCH_PASSES[o]),
        /** the floor as it was estimated until 2026-12-08: the step turn's steps over the paired turn's passes, two turns apart */
        oursOverPassesSeparateTurns: ratio(t.ours, t.oursFb, BENCH_PASSES[o]),
        /** every time measured (ms), round after round of `steps` each */
        times: t,
        peakRssKb: oi.peakRssKb,
        pytorchPeakRssKb: ti.peakRssKb,
        params: oi.params ?? 0,
        threads,
        precision,
      };
      rows.push(row);
      cellRows.push(row);
      if (json) console.log(JSON.stringify(row));
      else
        console.log(
          `${model.padEnd(8)} ${o.padEnd(10)} ${precision} ours ${row.medianMs.toFixed(2).padStart(8)} ms  pytorch ${row.pytorchMs.toFixed(2).padStart(8)} ms  ours/pytorch ${row.oursOverPytorch.toFixed(3)} ${range(row.oursOverPytorchInterval)}  ` +
            (official ? `official ${row.officialMs!.toFixed(2)} ms  ours/official ${row.oursOverOfficial!.toFixed(3)} ${range(row.oursOverOfficialInterval!)}  ` : '') +
            `ours/(${BENCH_PASSES[o]}×fb ${row.forwardBackwardMs.toFixed(2)} ms) ${row.oursOverPasses.toFixed(3)} ${range(row.oursOverPassesInterval)}  peak RSS ${(oi.peakRssKb / 1024).toFixed(0)} MiB`,
        );
    }
    // each reduced precision against fp32 of the same run: < 1 is faster
    const fp32 = cellRows.find((r) => r.precision === 'fp32');
    if (fp32 && !json)
      for (const r of cellRows.filter((c) => c !== fp32))
        console.log(`${''.padEnd(8)} ${''.padEnd(10)} ${r.precision}/fp32: ours ${(r.medianMs / fp32.medianMs).toFixed(3)}, pytorch ${(r.pytorchMs / fp32.pytorchMs).toFixed(3)}`);
  }

if (outFile) writeFileSync(outFile, JSON.stringify(rows));
if (!json) {
  const coverage = medianInterval(Array.from({ length: rounds }, (_, i) => i)).coverage;
  console.log(
    `(${rounds} rounds × ${steps} steps, medians; [a, b]: a distribution-free ${(100 * coverage).toFixed(1)}% interval for the median of the per-round ratios; threads ${rows[0]?.threads}; precision ${precisions.join(', ')})`,
  );
  for (const model of models) {
    const sgd = rows.find((r) => r.model === model && r.optimizer === 'sgd' && r.precision === precisions[0]);
    const frob = rows.find((r) => r.model === model && r.optimizer === 'frob-sam' && r.precision === precisions[0]);
    if (!sgd || !frob) continue;
    const limitKb = ((sgd.peakRssKb as number) + (4 * (sgd.params as number) * 4) / 1024) * 1.1;
    console.log(
      `memory ${model}: Frob-SAM peak RSS ${((frob.peakRssKb as number) / 1024).toFixed(1)} MiB, SGD ${((sgd.peakRssKb as number) / 1024).toFixed(1)} MiB, limit (SGD + 4·P·4 B)·1.1 = ${(limitKb / 1024).toFixed(1)} MiB → ${(frob.peakRssKb as number) <= limitKb ? 'within' : 'OVER'}`,
    );
  }
}
