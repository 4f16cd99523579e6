// One rank of test/integration/distributed.test.ts: joins the process group torchrun's
// variables describe, runs a scenario, prints one JSON line.
import { createHash } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { processGroupFromEnv } from '../lib/distributed.js';
import { hessian } from '../lib/hessian/hessian.js';
import { Model } from '../lib/model/model.js';
import { mlp } from '../lib/model/presets.js';
import { Optimizer } from '../lib/optim/optimizer.js';
import { labels, tensor } from '../lib/tensor/tensor.js';
import { rng } from './helpers.js';

/** 64 random float64 samples of 12 features and 4 classes from `seed`; part `part` of `parts` of them (contiguous). */
function shard(seed: number, part: number, parts: number) {
  const r = rng(seed);
  const N = 64, D = 12;
  const xs = Float64Array.from({ length: N * D }, () => r() * 2 - 1);
  const ys = Array.from({ length: N }, () => Math.floor(r() * 4));
  const n = N / parts;
  const x = tensor(xs.slice(part * n * D, (part + 1) * n * D), [n, D], { dtype: 'float64' });
  const y = labels(ys.slice(part * n, (part + 1) * n));
  return { x, y, D, xs, ys, n };
}

/** The probes of test/integration/distributed.test.ts on `part` of `parts` of 64 samples: trace, ‖H‖_F², λmax, log|det|. */
export function probes(part: number, parts: number, group?: import('../lib/distributed.js').ProcessGroup): number[] {
  const { x, y, D } = shard(12, part, parts);
  const model = new Model(mlp({ layers: [D, 16, 4], activation: 'tanh' }), { dtype: 'float64', seed: 6 });
  const h = hessian(model, { x, y }, { group });
  return [
    h.trace({ samples: 8, seed: 1 }).estimate,
    h.frobeniusSquared({ samples: 8, seed: 2 }).estimate,
    h.eigenvalues({ k: 1, which: 'both', seed: 3 }).largest[0],
    h.logAbsDet({ damping: 1e-3, steps: 10, runs: 1, seed: 4 }).estimate,
  ];
}

/** How many running-statistics values the steps' model holds. */
function bufferCount(batchNorm: boolean): number {
  const m = new Model(mlp({ layers: [12, 16, 4], activation: 'tanh', batchNorm }), { dtype: 'float64', seed: 5 });
  const n = m.buffers().values.numel;
  m.dispose();
  return n;
}

/** The steps of test/integration/distributed.test.ts: a float64 MLP, 64 samples; `part` of `parts` of them (contiguous). */
export function steps(
  rule: string,
  part: number,
  parts: number,
  group?: import('../lib/distributed.js').ProcessGroup,
  o: { perturbation?: 'synced' | 'local'; steps?: number; momentum?: number; batchNorm?: boolean; microBatches?: number; precision?: 'bf16' | 'fp16'; clip?: number } = {},
): number[] {
  const { xs, ys, D, n } = shard(11, part, parts);
  // a reduced precision takes a float32 model (float64 otherwise)
  const dtype = o.precision ? 'float32' : 'float64';
  // micro-batches: the one-process reference of ranks whose BatchNorm normalises each shard by itself
  const m = o.microBatches ?? 1, k = n / m;
  const micro = Array.from({ length: m }, (_, j) => ({
    x: tensor(xs.slice((part * n + j * k) * D, (part * n + (j + 1) * k) * D), [k, D], { dtype }),
    y: labels(ys.slice(part * n + j * k, part * n + (j + 1) * k)),
  }));
  const model = new Model(mlp({ layers: [D, 16, 4], activation: 'tanh', batchNorm: o.batchNorm }), { dtype, seed: 5, ...(o.precision ? { precision: o.precision } : {}) });
  const sharpness = JSON.parse(rule);
  const opt = new Optimizer(model, {
    base: { kind: 'sgd', lr: 0.1, momentum: o.momentum ?? 0.9 },
    sharpness: sharpness ?? undefined,
    seed: 9,
    group,
    perturbation: o.perturbation,
    ...(o.clip !== undefined ? { clipGradNorm: o.clip } : {}),
    // 'local' refuses loss scaling (one rank would skip alone): fp16 runs it unscaled, on these small values
    ...(o.perturbation === 'local' ? { lossScale: false as const } : {}),
  });
  const losses: number[] = [];
  for (let t = 0; t < (o.steps ?? 4); t++) losses.push((m > 1 ? opt.step(micro) : opt.step(micro[0].x, micro[0].y)).loss);
  // with BatchNorm, the running statistics too
  return [...losses, ...Array.from(model.getParams()), ...Array.from(model.buffers().values.toArray() as Float64Array)];
}

// run as a script (not when the test imports steps())
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const scenario = process.argv[2];
  const timeoutMs = Number(process.env.USAM_TEST_TIMEOUT_MS ?? 20000);
  const t0 = Date.now();
  const out: Record<string, unknown> = {};
  // USAM_TEST_RULE: one rule's results in out; USAM_TEST_RULES (a JSON array): each rule's in out.byRule, in
  // turn in the same processes (a pair of ranks takes about 2 s to start)
  const eachRule = (f: (rule: string) => Record<string, unknown>) => {
    if (process.env.USAM_TEST_RULES) out.byRule = (JSON.parse(process.env.USAM_TEST_RULES) as unknown[]).map((rule) => f(JSON.stringify(rule)));
    else Object.assign(out, f(process.env.USAM_TEST_RULE!));
  };
  try {
    const g = processGroupFromEnv(process.env, { timeoutMs, ...(process.env.USAM_TEST_FINGERPRINT ? { fingerprint: { config: process.env.USAM_TEST_FINGERPRINT } } : {}) });
    out.rank = g.rank;
    out.worldSize = g.worldSize;
    out.backend = g.backend;
    out.transport = g.transport;
    const r = g.rank;
    // the reduced-precision cells of the composition matrix (USAM_TEST_PRECISION, USAM_TEST_CLIP)
    const reduced = {
      ...(process.env.USAM_TEST_PRECISION ? { precision: process.env.USAM_TEST_PRECISION as 'bf16' | 'fp16' } : {}),
      ...(process.env.USAM_TEST_CLIP ? { clip: Number(process.env.USAM_TEST_CLIP) } : {}),
    };
    if (scenario === 'collectives') {
      const values = (f: (i: number) => number, dtype: 'float32' | 'float64') => tensor(Float64Array.from({ length: 5 }, (_, i) => f(i)), [5], { dtype });
      for (const dtype of ['float64', 'float32'] as const) {
        const sum = values((i) => (r + 1) * (i + 1) + 0.25, dtype);
        g.allreduce(sum);
        const avg = values((i) => (r + 1) * (i + 1), dtype);
        g.allreduce(avg, 'avg');
        const max = values((i) => (i % 2 === 0 ? r : -r), dtype);
        g.allreduce(max, 'max');
        const min = values((i) => (i % 2 === 0 ? r : -r), dtype);
        g.allreduce(min, 'min');
        const b = values((i) => 10 * r + i, dtype);
        g.broadcast(b, 1);
        out[dtype] = { sum: Array.from(sum.toArray() as Float64Array), avg: Array.from(avg.toArray() as Float64Array), max: Array.from(max.toArray() as Float64Array), min: Array.from(min.toArray() as Float64Array), broadcast: Array.from(b.toArray() as Float64Array) };
      }
      g.barrier();
    } else if (scenario === 'transport') {
      // random values (bit-level comparison between transports), sizes of one and of several 4 MiB chunks, and
      // integer values whose sums are exact in any order (any world size)
      const random = rng(100 + r);
      const cases: [string, 'float32' | 'float64', number, 'sum' | 'avg' | 'max' | 'min', (i: number) => number][] = [
        ['small float32 sum', 'float32', 7, 'sum', () => random() * 2 - 1],
        ['chunked float32 sum', 'float32', 1_500_000, 'sum', () => random() * 2 - 1],
        ['chunked float64 avg', 'float64', 600_000, 'avg', () => random() * 2 - 1],
        ['float32 max', 'float32', 1000, 'max', () => random() * 2 - 1],
        ['float64 min', 'float64', 1000, 'min', () => random() * 2 - 1],
        ['exact float64 sum', 'float64', 5, 'sum', (i) => (r + 1) * (i + 1)],
        ['exact float64 max', 'float64', 5, 'max', (i) => (i + r) % 3],
        ['exact float64 min', 'float64', 5, 'min', (i) => (i + r) % 3],
      ];
      const results: Record<string, { sha: string; head: number[] }> = {};
      for (const [name, dtype, n, op, f] of cases) {
        const t = tensor(Float64Array.from({ length: n }, (_, i) => f(i)), [n], { dtype });
        g.allreduce(t, op);
        const values = t.toArray() as Float32Array | Float64Array;
        results[name] = { sha: createHash('sha256').update(new Uint8Array(values.buffer, values.byteOffset, values.byteLength)).digest('hex'), head: Array.from(values.slice(0, 5)) };
      }
      out.results = results;
      // a rank that calls with another size: every rank gets an error saying so (not a hang)
      if (process.env.USAM_TEST_MISMATCH) {
        const t = tensor(new Float64Array(r + 3), [r + 3], { dtype: 'float64' });
        try {
          g.allreduce(t);
          out.mismatch = 'returned';
        } catch (e) {
          out.mismatch = (e as Error).message;
        }
      }
      g.barrier();
    } else if (scenario === 'steps') {
      eachRule((rule) => ({ values: steps(rule, r, g.worldSize, g) }));
    } else if (scenario === 'batchnorm-steps') {
      eachRule((rule) => ({ values: steps(rule, r, g.worldSize, g, { batchNorm: true, ...reduced }) }));
    } else if (scenario === 'local-step') {
      eachRule((rule) => ({
        values: steps(rule, r, g.worldSize, g, { perturbation: 'local', steps: 1, momentum: 0, ...reduced }),
        synced: steps(rule, r, g.worldSize, g, { perturbation: 'synced', steps: 1, momentum: 0, ...reduced }),
      }));
  } else if (scenario === 'local-batchnorm') {
    const v = steps(process.env.USAM_TEST_RULE!, r, g.worldSize, g, { perturbation: 'local', steps: 1, momentum: 0, batchNorm: true });
    out.buffers = v.slice(v.length - bufferCount(true));
  } else if (scenario === 'probes') {
    out.values = probes(r, g.worldSize, g);
  } else if (scenario === 'peer-dies') {
      const t = tensor(new Float64Array([r]), [1], { dtype: 'float64' });
      g.allreduce(t);
      if (r === 1) {
        process.stdout.write(JSON.stringify({ ...out, exited: true }) + '\n');
        process.exit(0); // gone without a word to the group
      }
      const t1 = Date.now();
      try {
        g.allreduce(t);
        out.second = 'returned';
      } catch (e) {
        out.error = (e as Error).message;
        out.errorAfterMs = Date.now() - t1;
      }
    } else if (scenario === 'hold') {
      // stay in the group a while (a stranger tries to join meanwhile), then meet once more
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, Number(process.env.USAM_TEST_HOLD_MS ?? 0));
      g.barrier();
    } else if (scenario === 'bad-calls') {
      const t = tensor(new Float64Array(4), [2, 2], { dtype: 'float64' });
      const errors: string[] = [];
      for (const f of [() => g.allreduce(t, 'product' as never), () => g.broadcast(t, 5)])
        try {
          f();
        } catch (e) {
          errors.push((e as Error).message);
        }
      g.dispose();
      try {
        g.barrier();
      } catch (e) {
        errors.push((e as Error).message);
      }
      out.errors = errors;
    }
  } catch (e) {
    out.error = (e as Error).message;
    out.errorAfterMs = Date.now() - t0;
  }
  process.stdout.write(JSON.stringify(out) + '\n');
}
