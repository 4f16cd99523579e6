// npm run bench:hessian [-- --json] [--rounds R] [--hvps K] [--models mlp256,cnn] [--batch 512] [--blocks 4,16]
// (--models also takes the brought models ts-mnist, ts-resnet20, ts-transformer: TorchScript files
// both sides run; scripts/bench/models.ts)
// Per-HVP time of a probe, ours against the PyTorch idiom PyHessian uses
// (the gradient's graph built once with create_graph, one autograd.grad per
// vector), on the same LibTorch (PYTHON, default Debian's python3-torch;
// the run stops when the two LibTorch versions differ), one thread each, the
// same model weights, the same batch of Fashion-MNIST images (eval mode) and
// the same vector: the PyTorch peer first reports how far our H v is from
// its own. Both run as persistent processes and take turns, R rounds of K
// HVPs each, so that a slow phase of the machine hits both alike. Ours:
//  - probe: the HVP a probe runs (the batch's HVP cache, recorded once);
//  - plain: every HVP recomputing the primal passes (no cache);
//  - graph: our own double backward through a kept graph (PyTorch's idiom
//    in C++);
//  - trace step: one vᵀHv as our trace probes take it (second-order jets
//    forward, cached), against PyHessian's trace step (H v by the idiom,
//    then the dot product with v).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { majorMinor } from '../../lib/native/libtorch.mjs';
import { isTorchScriptBenchModel, median } from './models.js';
import { Peer } from './peer.js';
import { flag, option } from './args.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
const json = flag('--json');
const rounds = Number(option('--rounds', '5'));
const hvps = Number(option('--hvps', '10'));
const batch = option('--batch', '512');
const models = option('--models', 'mlp256,cnn').split(',');
const blockSizes = option('--blocks', '4,16').split(',').map(Number);
const python = process.env.PYTHON ?? '/usr/bin/python3';
const env: NodeJS.ProcessEnv = { ...process.env, OPENBLAS_NUM_THREADS: '1', OMP_NUM_THREADS: '1', MKL_NUM_THREADS: '1' };

interface Info {
  peakRssKb: number;
  threads: number;
  torch: string;
  torchLibrary?: string;
  params?: number;
  cacheBytes?: number;
}

// brought models (ts-...): traced once by the PyTorch side; both sides run that TorchScript file
const scripted = models.filter(isTorchScriptBenchModel);
if (scripted.length > 0) {
  const tsDir = mkdtempSync(join(tmpdir(), 'usam-bench-ts-'));
  process.on('exit', () => rmSync(tsDir, { recursive: true, force: true }));
  env.USAM_BENCH_TS_DIR = tsDir;
  if (spawnSync(python, [join(here, 'pytorch_models.py'), 'trace', tsDir, ...scripted], { stdio: 'inherit' }).status !== 0) {
    console.error(`bench: ${python} could not trace ${scripted.join(', ')} (see above)`);
    process.exit(2);
  }
}

const rows: Record<string, unknown>[] = [];
for (const model of models) {
  const dir = mkdtempSync(join(tmpdir(), 'usam-hvp-bench-'));
  try {
    const ours = new Peer(process.execPath, [join(root, 'scripts/run-ts.mjs'), join(here, 'hessian-runner.ts'), model, batch, dir], env);
    await ours.ask();
    const torch = new Peer(python, [join(here, 'pytorch_hessian.py'), model, dir], env);
    const check = await torch.ask<{ maxAbsDiff: number; maxAbs: number; quadRelDiff: number }>();
    const [oi, ti] = [await ours.ask<Info>('info'), await torch.ask<Info>('info')];
    if (majorMinor(oi.torch) !== majorMinor(ti.torch)) {
      console.error(`bench: ours runs on LibTorch ${oi.torch}, PyTorch (${python}) on ${ti.torch}; build ours against PYTHON's torch`);
      process.exit(2);
    }
    const t = { probe: [] as number[], plain: [] as number[], graph: [] as number[], pytorch: [] as number[], curvature: [] as number[], quad: [] as number[] };
    for (let r = 0; r < rounds; r++) {
      const turns: [Peer, number[], string][] = [
        [ours, t.probe, `probe ${hvps}`],
        [torch, t.pytorch, `hvp ${hvps}`],
        [ours, t.plain, `plain ${hvps}`],
        [ours, t.graph, `graph ${hvps}`],
        [ours, t.curvature, `curvature ${hvps}`],
        [torch, t.quad, `quad ${hvps}`],
      ];
      if (r % 2 === 1) turns.reverse();
      for (const [peer, into, cmd] of turns) into.push(...(await peer.ask<number[]>(cmd)));
    }
    // blocks: per-HVP time of one pass over B vectors (ours: tangents batched;
    // PyTorch: autograd.grad with is_grads_batched, vmap over the vectors)
    const blockRows: { size: number; oursMs: number; curvatureMs: number; pytorchMs: number | string }[] = [];
    for (const size of blockSizes) {
      const calls = Math.max(2, Math.round(hvps / size));
      const o: number[] = [], c: number[] = [], p: number[] = [];
      let pytorchError: string | undefined;
      for (let r = 0; r < rounds; r++) {
        o.push(...(await ours.ask<number[]>(`block ${size} ${calls}`)).map((t) => t / size));
        c.push(...(await ours.ask<number[]>(`cblock ${size} ${calls}`)).map((t) => t / size));
        if (pytorchError) continue;
        const a = await torch.ask<number[] | { error: string }>(`block ${size} ${calls}`);
        if (Array.isArray(a)) p.push(...a.map((t) => t / size));
        else pytorchError = a.error;
      }
      blockRows.push({ size, oursMs: median(o), curvatureMs: median(c), pytorchMs: pytorchError ? `unsupported: ${pytorchError}` : median(p) });
    }
    const [oEnd, tEnd] = [await ours.ask<Info>('info'), await torch.ask<Info>('info')];
    ours.close();
    torch.close();
    const pytorchMs = median(t.pytorch);
    const row = {
      model,
      batch: Number(batch),
      params: oi.params ?? 0,
      probeMs: median(t.probe),
      plainMs: median(t.plain),
      graphMs: median(t.graph),
      pytorchMs,
      probeOverPytorch: median(t.probe) / pytorchMs,
      plainOverPytorch: median(t.plain) / pytorchMs,
      graphOverPytorch: median(t.graph) / pytorchMs,
      traceStepMs: median(t.curvature),
      pytorchTraceStepMs: median(t.quad),
      traceStepOverPytorch: median(t.curvature) / median(t.quad),
      quadRelativeDiff: check.quadRelDiff,
      cacheBytes: oi.cacheBytes ?? 0,
      blocks: blockRows.map((b) => ({ ...b, speedup: median(t.probe) / b.oursMs, curvatureSpeedup: median(t.curvature) / b.curvatureMs })),
      hvRelativeDiff: check.maxAbsDiff / check.maxAbs,
      peakRssKb: oEnd.peakRssKb,
      pytorchPeakRssKb: tEnd.peakRssKb,
      torch: oi.torch,
    };
    rows.push(row);
    if (json) console.log(JSON.stringify(row));
    else {
      if (rows.length === 1) console.log(`LibTorch ${oi.torch} (ours) and ${ti.torch} (${python}, ${ti.torchLibrary}); one thread each; medians of ${rounds} rounds × ${hvps} HVPs`);
      const f = (x: number) => x.toFixed(2).padStart(7);
      console.log(
        `${model.padEnd(7)} batch ${batch}  PyTorch ${f(pytorchMs)} ms  ours probe ${f(row.probeMs)} ms (${row.probeOverPytorch.toFixed(3)}×)  ` +
          `plain ${f(row.plainMs)} ms (${row.plainOverPytorch.toFixed(3)}×)  graph ${f(row.graphMs)} ms (${row.graphOverPytorch.toFixed(3)}×)  ` +
          `cache ${(row.cacheBytes / 2 ** 20).toFixed(1)} MiB  |Hv − Hv_PyTorch|max/|Hv|max ${row.hvRelativeDiff.toExponential(1)}`,
      );
      console.log(
        `${''.padEnd(7)} trace step (vᵀHv): PyTorch (H v, then · v) ${f(row.pytorchTraceStepMs)} ms  ours (jets forward) ${f(row.traceStepMs)} ms ` +
          `(${row.traceStepOverPytorch.toFixed(3)}×)  |q − q_PyTorch|/|q| ${row.quadRelativeDiff.toExponential(1)}`,
      );
      for (const b of row.blocks)
        console.log(
          `${''.padEnd(7)} block of ${String(b.size).padEnd(3)} per HVP: ours ${f(b.oursMs)} ms (speed-up ${b.speedup.toFixed(2)}× over single HVPs)  ` +
            `PyTorch ${typeof b.pytorchMs === 'number' ? `${f(b.pytorchMs)} ms (ours ${(b.oursMs / b.pytorchMs).toFixed(3)}×)` : b.pytorchMs}  ` +
            `vᵀHv per vector ${f(b.curvatureMs)} ms (speed-up ${b.curvatureSpeedup.toFixed(2)}×)`,
        );
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
