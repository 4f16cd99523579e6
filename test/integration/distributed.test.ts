// Process groups on c10d/Gloo (#15): ranks are separate Node processes on
// this machine, met as usam train --nproc's meet (a private store file, Gloo
// on loopback; the TCPStore that torchrun's variables describe is tested in
// test/integration/distributed-train.test.ts and test/integration/distributed-security.test.ts).
// Collectives against the values computed here; a dead peer and a missing
// one give errors within the timeout, not hangs.
import { execFile } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { localRendezvous } from '../../lib/cli/launch.js';
import { processGroupFromEnv, ProcessGroup } from '../../lib/distributed.js';
import { native } from '../../lib/native/load.js';
import { Model } from '../../lib/model/model.js';
import { mlp } from '../../lib/model/presets.js';
import { probes, steps } from '../distributed-worker.js';
import { repoRoot } from '../helpers.js';

const hasGloo = native().versions().distributed.includes('gloo');
let fp16 = true;
try {
  new Model(mlp({ layers: [2, 2] }), { precision: 'fp16' }).dispose();
} catch {
  fp16 = false; // Debian's LibTorch 1.13 has no float16 products on the CPU
}
const tsx = pathToFileURL(join(repoRoot, 'node_modules/tsx/dist/esm/index.mjs')).href;
const worker = join(repoRoot, 'test/distributed-worker.ts');


type Out = Record<string, unknown> & { rank?: number; error?: string; errorAfterMs?: number };

// the ranks meet as usam train --nproc's do: a private store file, Gloo on loopback (nothing listens elsewhere)
async function ranks(scenario: string, worldSize: number, started = worldSize, env: Record<string, string> = {}): Promise<Out[]> {
  const rendezvous = localRendezvous();
  try {
    return await runRanks(scenario, worldSize, started, { ...rendezvous.env, ...env });
  } finally {
    rendezvous.cleanup();
  }
}

// Several tests of one scenario share one pair of ranks that takes each test's rule in turn
// (USAM_TEST_RULES): started once, on the first test's call; each test reads its rule's results.
const shared = new Map<string, Promise<Out[]>>();
async function ranksForRule(scenario: string, rules: (object | null)[], rule: object | null, env: Record<string, string> = {}): Promise<Out[]> {
  const key = JSON.stringify([scenario, rules, env]);
  if (!shared.has(key)) shared.set(key, ranks(scenario, 2, 2, { USAM_TEST_RULES: JSON.stringify(rules), ...env }));
  const out = await shared.get(key)!;
  const i = rules.indexOf(rule);
  return out.map((o) => ({ ...o, ...((o.byRule as Out[] | undefined)?.[i] ?? {}) }));
}

function runRanks(scenario: string, worldSize: number, started: number, env: Record<string, string>): Promise<Out[]> {
  return Promise.all(
    Array.from({ length: started }, (_, rank) =>
      new Promise<Out>((resolve, reject) => {
        execFile(
          process.execPath,
          ['--import', tsx, worker, scenario],
          { env: { ...process.env, RANK: String(rank), WORLD_SIZE: String(worldSize), ...env }, timeout: 60_000 },
          (err, stdout, stderr) => {
            const line = stdout.trim().split('\n').at(-1);
            if (!line) return reject(new Error(`rank ${rank} printed nothing (${err?.message ?? ''}): ${stderr}`));
            resolve(JSON.parse(line) as Out);
          },
        );
      }),
    ),
  );
}

describe.skipIf(!hasGloo)('process groups (c10d Gloo), two processes on loopback', () => {
  it('allreduce (sum, avg, max, min) and broadcast, float64 and float32', async () => {
    const out = await ranks('collectives', 2);
    for (const [r, o] of out.entries()) {
      expect(o.error).toBeUndefined();
      expect([o.rank, o.worldSize, o.backend, o.transport]).toEqual([r, 2, 'gloo', 'shared memory']);
      for (const dtype of ['float64', 'float32']) {
        const d = o[dtype] as Record<string, number[]>;
        const idx = [0, 1, 2, 3, 4];
        expect(d.sum).toEqual(idx.map((i) => 1 * (i + 1) + 0.25 + 2 * (i + 1) + 0.25));
        expect(d.avg).toEqual(idx.map((i) => (3 * (i + 1)) / 2));
        expect(d.max).toEqual(idx.map((i) => (i % 2 === 0 ? 1 : 0)));
        expect(d.min).toEqual(idx.map((i) => (i % 2 === 0 ? 0 : -1)));
        expect(d.broadcast).toEqual(idx.map((i) => 10 + i)); // rank 1's values
      }
    }
  }, 90_000);

  // ranks that meet through a store file share one machine: allreduces through shared memory
  const segments = () => (existsSync('/dev/shm') ? readdirSync('/dev/shm').filter((f) => f.startsWith('usam-')) : []);
  it('between ranks of one machine, allreduces go through shared memory: bit for bit what Gloo gives, in chunks, nothing left in /dev/shm; a size mismatch is an error', async () => {
    const before = segments();
    // (the shared-memory pair then calls allreduce with sizes that differ between the ranks)
    const [shm, gloo, three] = [await ranks('transport', 2, 2, { USAM_TEST_MISMATCH: '1' }), await ranks('transport', 2, 2, { USAM_SHARED_MEMORY: '0' }), await ranks('transport', 3)];
    for (const o of [...shm, ...gloo, ...three]) expect(o.error, JSON.stringify(o)).toBeUndefined();
    expect(shm.map((o) => o.transport)).toEqual(['shared memory', 'shared memory']);
    expect(gloo.map((o) => o.transport)).toEqual(['gloo (no shared memory: USAM_SHARED_MEMORY=0)', 'gloo (no shared memory: USAM_SHARED_MEMORY=0)']);
    expect(three.map((o) => o.transport)).toEqual(['shared memory', 'shared memory', 'shared memory']);
    type Results = Record<string, { sha: string; head: number[] }>;
    const [a, b] = [shm[0].results as Results, gloo[0].results as Results];
    expect(Object.keys(a)).toHaveLength(8);
    // every rank ends with the same bits, and they are Gloo's (a sum of two is the same either way round)
    for (const o of [...shm, ...gloo]) expect(o.results).toEqual(b);
    expect(a).toEqual(b);
    // three ranks: exact values, and the same bits on every rank
    for (const o of three) {
      const r = o.results as Results;
      expect(r['exact float64 sum'].head).toEqual([6, 12, 18, 24, 30]);
      // (i + rank) mod 3 over ranks 0, 1, 2 takes every value 0..2 at every i
      expect(r['exact float64 max'].head).toEqual([2, 2, 2, 2, 2]);
      expect(r['exact float64 min'].head).toEqual([0, 0, 0, 0, 0]);
    }
    for (const o of three) expect(o.results).toEqual(three[0].results);
    expect(segments()).toEqual(before);
    // ranks that call allreduce with different sizes: an error saying so on every rank
    for (const o of shm) expect(o.mismatch).toMatch(/allreduce failed on rank \d of 2 .*called allreduce with another tensor or op \(\d values\) than rank \d .*every rank must make the same collective calls/);
  }, 120_000);

  // synced data parallelism: two ranks with half the batch each take the steps one process takes on the whole batch
  const rules: [string, object | null][] = [
    ['SGD', null],
    ['SAM', { kind: 'sam', rho: 0.05 }],
    ['Frob-SAM', { kind: 'frob-sam', rho: 0.01, lambda: 0.01, samples: 2 }],
    ['Det-SAM', { kind: 'det-sam', rho: 1, lambda: 0.1, samples: 2, halfCube: 0.05 }],
    ['Trace-SAM, exact estimator', { kind: 'trace-sam', rho: 0.05, lambda: 1, samples: 2, estimator: 'exact' }],
  ];
  it.each(rules)('%s: two processes on halves equal one process on the whole batch (float64, 1e-10)', async (_name, rule) => {
    const json = JSON.stringify(rule);
    const out = await ranksForRule('steps', rules.map((r) => r[1]), rule);
    const one = steps(json, 0, 1);
    for (const o of out) {
      expect(o.error).toBeUndefined();
      const v = o.values as number[];
      expect(v).toHaveLength(one.length);
      const scale = Math.max(...one.map(Math.abs));
      expect(Math.max(...v.map((x, i) => Math.abs(x - one[i]))) / scale).toBeLessThan(1e-10);
    }
    // and the two ranks hold the very same parameters
    expect(out[0].values).toEqual(out[1].values);
  }, 90_000);

  it.each(rules.slice(1, 3))('%s with BatchNorm: two ranks equal one process whose two micro-batches are their halves (per-shard batch statistics, pooled running statistics)', async (_name, rule) => {
    const json = JSON.stringify(rule);
    const out = await ranksForRule('batchnorm-steps', rules.slice(1, 3).map((r) => r[1]), rule);
    const one = steps(json, 0, 1, undefined, { batchNorm: true, microBatches: 2 });
    for (const o of out) {
      expect(o.error).toBeUndefined();
      const v = o.values as number[];
      const scale = Math.max(...one.map(Math.abs));
      expect(Math.max(...v.map((x, i) => Math.abs(x - one[i]))) / scale).toBeLessThan(1e-10);
    }
  }, 90_000);

  // The composition matrix's 2-rank cells in reduced precision
  // (docs/optimizers.md): the one-process reference of synced ranks is the
  // same step on their shards as micro-batches (which composition.test.ts
  // holds against float64), that of local ones the mean of one-process
  // steps on each shard; the ranks must equal them to float32 rounding.
  // Frob-SAM (3 passes, differences) at a rho above bf16's floor for this
  // model; clipping below every gradient's norm, so that it clips.
  const reducedCells = async (precision: 'bf16' | 'fp16') => {
    const rule = JSON.stringify({ kind: 'frob-sam', rho: 0.05, lambda: 0.01, samples: 2 });
    const close = (v: number[], reference: number[]) => {
      const scale = Math.max(...reference.map(Math.abs));
      expect(v).toHaveLength(reference.length);
      expect(Math.max(...v.map((x, i) => Math.abs(x - reference[i]))) / scale).toBeLessThan(1e-5);
    };
    const synced = await ranks('batchnorm-steps', 2, 2, { USAM_TEST_RULE: rule, USAM_TEST_PRECISION: precision, USAM_TEST_CLIP: '0.05' });
    const one = steps(rule, 0, 1, undefined, { batchNorm: true, microBatches: 2, precision, clip: 0.05 });
    for (const o of synced) {
      expect(o.error).toBeUndefined();
      close(o.values as number[], one);
    }
    // local: clipping acts on the averaged gradient, which a mean of one-process steps does not clip; left out
    const local = await ranks('local-step', 2, 2, { USAM_TEST_RULE: rule, USAM_TEST_PRECISION: precision });
    const a = steps(rule, 0, 2, undefined, { steps: 1, momentum: 0, precision }), b = steps(rule, 1, 2, undefined, { steps: 1, momentum: 0, precision });
    for (const o of local) {
      expect(o.error).toBeUndefined();
      close(o.values as number[], a.map((v, i) => (v + b[i]) / 2));
    }
  };
  const reducedTitle = 'with BatchNorm and clipping: two synced ranks equal one process whose micro-batches are their halves; local perturbations the mean of one-process steps on each half (float32, 1e-5)';
  it(`Frob-SAM in bf16 ${reducedTitle}`, () => reducedCells('bf16'), 90_000);
  it.skipIf(!fp16)(`Frob-SAM in fp16 ${reducedTitle}`, () => reducedCells('fp16'), 90_000);

  it.each(rules.slice(1, 4))('%s, local perturbations: each rank perturbs with its own half; one step equals the mean of one-process steps on each half', async (_name, rule) => {
    const json = JSON.stringify(rule);
    const out = await ranksForRule('local-step', rules.slice(1, 4).map((r) => r[1]), rule);
    // plain SGD (no momentum): w − lr·(g_A + g_B)/2 is the mean of w − lr·g_A and w − lr·g_B
    const a = steps(json, 0, 2, undefined, { steps: 1, momentum: 0 }), b = steps(json, 1, 2, undefined, { steps: 1, momentum: 0 });
    const mean = a.map((v, i) => (v + b[i]) / 2);
    for (const o of out) {
      expect(o.error).toBeUndefined();
      const v = o.values as number[], synced = o.synced as number[];
      const scale = Math.max(...mean.map(Math.abs));
      expect(Math.max(...v.map((x, i) => Math.abs(x - mean[i]))) / scale).toBeLessThan(1e-10);
      // and synced differs: its ascent uses the whole batch's gradient
      expect(Math.max(...v.slice(1).map((x, i) => Math.abs(x - synced[i + 1])))).toBeGreaterThan(1e-8); // ≫ the 1e-10 of the equality above
    }
  }, 90_000);

  it('local perturbations with BatchNorm: the running statistics of the unperturbed passes are pooled over the ranks, the same on both', async () => {
    const rule = JSON.stringify({ kind: 'sam', rho: 0.05 });
    const out = await ranks('local-batchnorm', 2, 2, { USAM_TEST_RULE: rule });
    // one process whose two micro-batches are the halves moves them by the same pooled statistics
    const one = steps(rule, 0, 1, undefined, { batchNorm: true, microBatches: 2, steps: 1, momentum: 0 });
    const buffers = out[0].buffers as number[];
    expect(buffers.length).toBeGreaterThan(0);
    expect(out[1].buffers).toEqual(buffers);
    const reference = one.slice(one.length - buffers.length);
    expect(Math.max(...buffers.map((b, i) => Math.abs(b - reference[i])))).toBeLessThan(1e-12);
  }, 90_000);

  it('Hessian probes on a sharded batch: one allreduce per HVP, the results of one process on all of it', async () => {
    const out = await ranks('probes', 2);
    const one = probes(0, 1);
    for (const o of out) {
      expect(o.error).toBeUndefined();
      const v = o.values as number[];
      for (let i = 0; i < one.length; i++) expect(Math.abs(v[i] - one[i]) / Math.abs(one[i])).toBeLessThan(1e-10);
    }
  }, 90_000);

  it('a peer that dies: the next collective fails with an error naming it, within the timeout', async () => {
    const [zero, one] = await ranks('peer-dies', 2, 2, { USAM_TEST_TIMEOUT_MS: '15000' });
    expect(one, JSON.stringify(one)).toMatchObject({ rank: 1, exited: true });
    expect(zero.error).toMatch(/process group: allreduce failed on rank 0 of 2 \(a peer stopped/);
    expect(zero.errorAfterMs).toBeLessThan(15_000 + 2_000);
    // through shared memory the error names the rank and its process, as soon as the process is gone
    expect(zero.error).toMatch(/rank 1 \(process \d+\) stopped while rank 0 waited for it to reach the same allreduce/);
    // and through Gloo (its peer's socket closed)
    const [gloo] = await ranks('peer-dies', 2, 2, { USAM_TEST_TIMEOUT_MS: '15000', USAM_SHARED_MEMORY: '0' });
    expect(gloo.error).toMatch(/process group: allreduce failed on rank 0 of 2 \(a peer stopped/);
    expect(gloo.errorAfterMs).toBeLessThan(15_000 + 2_000);
  }, 90_000);

  it('a rank that never comes: the rendezvous fails after the timeout, saying what to check', async () => {
    const [zero] = await ranks('collectives', 2, 1, { USAM_TEST_TIMEOUT_MS: '2000' });
    // the store may accept rank 0 alone; then Gloo's connection to its peers times out
    // (or the fingerprint check waits for rank 1's)
    expect(zero.error).toMatch(/rank 0 (could not meet the others at 127\.0\.0\.1:\d+|of 2 could not connect to its peers|did not hear from rank 1) within 2000 ms .*MASTER_ADDR\/MASTER_PORT/);
    expect(zero.errorAfterMs).toBeGreaterThanOrEqual(1900);
    expect(zero.errorAfterMs).toBeLessThan(10_000);
  }, 60_000);

  it('bad calls are errors that say what is wrong', async () => {
    const out = await ranks('bad-calls', 1);
    expect(out[0].errors).toEqual([
      'ProcessGroup.allreduce: argument \'op\' must be one of \'sum\', \'avg\', \'max\', \'min\', got the string "product"',
      "ProcessGroup.broadcast: argument 'root' must be an integer ≥ 0 and ≤ 0, got the number 5",
      'ProcessGroup.barrier: this process group was disposed; it cannot be used after dispose()',
    ]);
  }, 60_000);
});

describe('process group options', () => {
  it('refuses bad ranks, sizes, ports and missing variables before any connection', () => {
    expect(() => new ProcessGroup({ rank: 2, worldSize: 2 })).toThrow(/new ProcessGroup: argument 'options.rank' must be an integer in 0 \.\. 1 \(worldSize 2\), got the number 2/);
    expect(() => new ProcessGroup({ rank: 0, worldSize: 0 })).toThrow(/argument 'options.worldSize' must be a positive integer, got the number 0/);
    expect(() => new ProcessGroup({ rank: 0, worldSize: 1, masterPort: 70000 })).toThrow(/masterPort must be a TCP port/);
    expect(() => processGroupFromEnv({ RANK: '0', WORLD_SIZE: '2', MASTER_ADDR: '127.0.0.1' })).toThrow(/MASTER_PORT is not set/);
    expect(() => processGroupFromEnv({ RANK: 'x', WORLD_SIZE: '2', MASTER_ADDR: '127.0.0.1', MASTER_PORT: '1' })).toThrow(/RANK must be a non-negative integer, got 'x'/);
  });
  it.runIf(!hasGloo)('a build without Gloo says how to get it', () => {
    expect(() => new ProcessGroup({ rank: 0, worldSize: 1 })).toThrow(/install libgloo-dev/);
  });
});
