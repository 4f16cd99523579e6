// npm run bench:scale [-- --model resnet18|ts-transformer-10m] [-- --batch 128]
//   [-- --k 10] [-- --slq-steps 100] [-- --budget-mb 1024] [-- --threads 2]
//   [-- --probes eigen,density] [-- --out FILE.jsonl]
// The probes on a large model, memory bounded by a stated budget: the top-k
// eigenvalues (Lanczos) and a one-run SLQ density of --slq-steps steps, each
// in its own process (so its peak RSS is its own), with the Lanczos basis
// and the HVP caches each held to --budget-mb (maxBasisBytes, cache.maxBytes;
// above it Lanczos runs the three-term recurrence and says so). Per probe:
// HVPs, seconds, the RSS after loading the model and batch, and the peak RSS
// (VmHWM), so that peak − baseline can be read against the budget.
// With USAM_BENCH_PYHESSIAN=<a clone of amirgholami/PyHessian> and PYTHON
// (a Python with torch, the LibTorch ours is built against: USAM_ADDON), the
// same probes by PyHessian on the same weights and batch (its density with
// iter = --slq-steps, n_v = 1; its eigenvalues, power iteration with
// deflation, top_n = --py-top, default 1: its top-10 takes hours here), also
// one process each; HVPs counted by wrapping its hessian_vector_product.
// The batch is seeded synthetic data of the model's input shape (CIFAR shape
// for ResNet-18), labels i mod 10.
import { spawnSync } from 'node:child_process';
import { appendFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { hessian } from '../../lib/hessian/hessian.js';
import { setThreads, versions } from '../../lib/native/runtime.js';
import { labels, tensor } from '../../lib/tensor/tensor.js';
import { flag, option } from './args.js';
import { isTorchScriptBenchModel, makeBenchModel } from './models.js';
import { existsSync, mkdirSync } from 'node:fs';

const here = dirname(fileURLToPath(import.meta.url));
const model = option('--model', 'resnet18');
const batch = Number(option('--batch', '128'));
const k = Number(option('--k', '10'));
const slqSteps = Number(option('--slq-steps', '100'));
const budget = Number(option('--budget-mb', '1024')) * 2 ** 20;
const threads = Number(option('--threads', '2'));
const pyTop = Number(option('--py-top', '1'));
const probes = option('--probes', 'eigen,density').split(',');
const out = option('--out', '');
const child = option('--child', '');

// a brought model: traced once by the Python side into USAM_BENCH_TS_DIR (both sides run that file)
if (!child && isTorchScriptBenchModel(model)) {
  const dir = (process.env.USAM_BENCH_TS_DIR ??= join(tmpdir(), 'usam-bench-ts'));
  mkdirSync(dir, { recursive: true });
  if (!existsSync(join(dir, `${model}.pt`)) && spawnSync(process.env.PYTHON ?? 'python3', [join(here, 'pytorch_models.py'), 'trace', dir, model], { stdio: 'inherit' }).status !== 0) {
    console.error(`bench:scale: could not trace ${model} with ${process.env.PYTHON ?? 'python3'} (set PYTHON to a Python with torch)`);
    process.exit(1);
  }
}

const memory = () => {
  const s = readFileSync('/proc/self/status', 'utf8');
  const kb = (key: string) => Number(new RegExp(`${key}:\\s+(\\d+)`).exec(s)![1]);
  return { rssMb: kb('VmRSS') / 1024, peakMb: kb('VmHWM') / 1024 };
};

/** The model (seed 0) and the seeded batch, as both sides see them. */
function setup() {
  setThreads(threads);
  const { model: m, input } = makeBenchModel(model, { seed: 0 });
  const size = input.reduce((a, b) => a * b, 1);
  const x = tensor(Float32Array.from({ length: batch * size }, (_, i) => Math.sin(0.37 * i) + 0.1 * Math.cos(i)), [batch, ...input]);
  const y = labels(Array.from({ length: batch }, (_, i) => i % 10));
  return { m, x, y };
}

if (child) {
  // one probe in this process
  const { m, x, y } = setup();
  const base = memory();
  const h = hessian(m, { x, y }, { mode: 'eval', cache: { maxBytes: budget } });
  const started = Date.now();
  const memoryOptions = { maxBasisBytes: budget };
  let result: Record<string, unknown>;
  if (child === 'eigen') {
    const r = h.eigenvalues({ k, tol: 1e-3, ...memoryOptions });
    result = { values: r.largest, residuals: r.largestResiduals, converged: r.converged, iterations: r.iterations, hvps: r.hvps, reorthogonalization: r.reorthogonalization, vectorBytes: r.vectorBytes, note: r.note };
  } else {
    const r = h.density({ steps: slqSteps, runs: 1, ...memoryOptions });
    result = { hvps: r.hvps, reorthogonalization: r.reorthogonalization, vectorBytes: r.vectorBytes, note: r.note, nodes: r.runs[0].nodes.length, topNode: Math.max(...r.runs[0].nodes) };
  }
  const seconds = (Date.now() - started) / 1000;
  const peak = memory();
  process.stdout.write(JSON.stringify({ side: 'ours', probe: child, seconds, baselineRssMb: base.rssMb, peakRssMb: peak.peakMb, cacheBytes: h.operator.cacheInfo().bytes, ...result }) + '\n');
  process.exit(0);
}

const { m, x, y } = setup();
const folder = mkdtempSync(join(tmpdir(), 'usam-bench-scale-'));
writeFileSync(join(folder, 'params.f32'), Buffer.from(new Float32Array(m.getParams()).buffer));
writeFileSync(join(folder, 'x.f32'), Buffer.from((x.toArray() as Float32Array).buffer));
writeFileSync(join(folder, 'y.i32'), Buffer.from(Int32Array.from(y.toArray() as BigInt64Array, Number).buffer));
const header = {
  model,
  params: m.numParams,
  batch,
  threads,
  budgetMb: budget / 2 ** 20,
  libtorch: versions().torch,
  date: new Date().toISOString(),
};
console.log(`bench:scale ${JSON.stringify(header)}`);
m.dispose();
const rows: Record<string, unknown>[] = [];
const record = (row: Record<string, unknown>) => {
  rows.push(row);
  console.log(JSON.stringify(row));
  if (out) appendFileSync(out, JSON.stringify({ ...header, ...row }) + '\n');
};
const script = process.argv[1];
const pyhessian = process.env.USAM_BENCH_PYHESSIAN;
const python = process.env.PYTHON ?? 'python3';
for (const probe of probes) {
  const r = spawnSync(process.execPath, [join(here, '..', 'run-ts.mjs'), script, ...process.argv.slice(2), '--child', probe], { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) record({ side: 'ours', probe, error: r.stderr.split('\n').slice(-5).join(' ') });
  else record(JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<string, unknown>);
  if (!pyhessian) continue;
  const env = { ...process.env, USAM_BENCH_PYHESSIAN: pyhessian, PYTHONPATH: `${pyhessian}:${here}` };
  const p = spawnSync(python, [join(here, 'pyhessian_at_scale.py'), model, folder, probe, String(probe === 'eigen' ? pyTop : slqSteps), String(threads)], { encoding: 'utf8', env, maxBuffer: 64 << 20 });
  if (p.status !== 0) record({ side: 'pyhessian', probe, error: p.stderr.split('\n').slice(-5).join(' ') });
  else record(JSON.parse(p.stdout.trim().split('\n').pop()!) as Record<string, unknown>);
}
if (!pyhessian) console.log('bench:scale: no PyHessian run (set USAM_BENCH_PYHESSIAN to a clone of amirgholami/PyHessian and PYTHON to a Python with torch)');
if (flag('--json')) console.log(JSON.stringify({ header, rows }));
