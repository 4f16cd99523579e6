// Data-parallel SAM steps on the CNN (#15): 2 processes × 1 thread against 1
// process × 1 thread and × 2 threads, the same global batch, taking turns
// round after round; prints ms per step and the ratios to 1 × 1 from this run.
// Two controls measure what the machine allows: 1 process on half the batch,
// and 2 independent processes (no process group, no collective) each on half
// the batch at once, timed by the slower of the two: the speed-up 2 ranks
// could reach with free communication. The header names the transport of
// the ranks' allreduces (shared memory on one machine); one more setup runs
// the same ranks with Gloo's (USAM_SHARED_MEMORY=0).
//   npm run bench:data-parallel -- [--steps 10] [--rounds 3] [--batch 128] [--rule sam]
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { localRendezvous } from '../../lib/cli/launch.js';
import { processGroupFromEnv } from '../../lib/distributed.js';
import { DataLoader } from '../../lib/data/loader.js';
import { fashionMnist } from '../../lib/data/dataset.js';
import { Model } from '../../lib/model/model.js';
import { cnn } from '../../lib/model/presets.js';
import { native } from '../../lib/native/load.js';
import { Optimizer } from '../../lib/optim/optimizer.js';
import { option } from './args.js';

const steps = Number(option('--steps', '10'));
const rounds = Number(option('--rounds', '3'));
const batch = Number(option('--batch', '128'));
const rule = option('--rule', 'sam');
const sharpness = rule === 'sam' ? { kind: 'sam' as const, rho: 0.05 } : rule === 'frob-sam' ? { kind: 'frob-sam' as const, rho: 0.005, lambda: 0.003, samples: 2 } : undefined;

/** One rank (or the single process): ms per step over `steps` steps after 2 warm-up steps. */
function rank(): void {
  // an independent process runs alone on its half of the batch: no group
  const independent = process.env.BENCH_INDEPENDENT === '1';
  const worldSize = independent ? 1 : Number(process.env.WORLD_SIZE ?? '1');
  const batch = Number(process.env.BENCH_BATCH ?? option('--batch', '128'));
  native().setThreads(Number(process.env.BENCH_THREADS));
  const group = worldSize > 1 ? processGroupFromEnv() : undefined;
  const r = group?.rank ?? 0;
  const loader = new DataLoader(fashionMnist('train'), { batchSize: batch, shuffle: true, seed: 1, ...(group ? { shard: { rank: r, worldSize } } : {}) });
  const model = new Model(cnn({ input: [1, 28, 28] }), { seed: 0 });
  const opt = new Optimizer(model, { base: { kind: 'sgd', lr: 0.05, momentum: 0.9 }, sharpness, seed: 0, group });
  const data = Array.from({ length: steps + 2 }, (_, i) => loader.batch(0, i));
  for (let i = 0; i < 2; i++) opt.step(data[i].x, data[i].y);
  group?.barrier();
  const t0 = performance.now();
  for (let i = 2; i < steps + 2; i++) opt.step(data[i].x, data[i].y);
  const ms = (performance.now() - t0) / steps;
  process.stdout.write(JSON.stringify({ ms, transport: group?.transport }) + '\n');
  group?.dispose();
}


let transport = '';

async function measure(processes: number, threads: number, independent = false, perProcessBatch = batch, env: Record<string, string> = {}): Promise<number> {
  const rendezvous = localRendezvous(); // as usam train --nproc: a private store file, Gloo on loopback
  const self = fileURLToPath(import.meta.url);
  const runTs = fileURLToPath(new URL('../run-ts.mjs', import.meta.url));
  const outs = await Promise.all(
    Array.from({ length: processes }, (_, r) =>
      promisify(execFile)(process.execPath, [runTs, self, '--rank', '--steps', String(steps), '--batch', String(batch), '--rule', rule], {
        env: {
          ...process.env,
          BENCH_THREADS: String(threads),
          RANK: String(r),
          WORLD_SIZE: String(processes),
          ...rendezvous.env,
          ...(independent ? { BENCH_INDEPENDENT: '1', BENCH_BATCH: String(perProcessBatch) } : {}),
          ...env,
        },
      }),
    ),
  ).finally(rendezvous.cleanup);
  const reports = outs.map((o) => JSON.parse(o.stdout.trim().split('\n').at(-1)!) as { ms: number; transport?: string });
  if (!env.USAM_SHARED_MEMORY) transport = reports[0].transport ?? transport;
  // the slowest process: a synchronised step waits for it (ranks of a group all report the same step time)
  return Math.max(...reports.map((r) => r.ms));
}

async function main(): Promise<void> {
  const configs: { name: string; processes: number; threads: number; independent?: boolean; env?: Record<string, string> }[] = [
    { name: '1 process × 1 thread', processes: 1, threads: 1 },
    { name: '1 process × 2 threads', processes: 1, threads: 2 },
    { name: '2 processes × 1 thread', processes: 2, threads: 1 },
    // the same ranks with Gloo's allreduces (USAM_SHARED_MEMORY=0)
    { name: '2 processes × 1 thread, allreduces through Gloo', processes: 2, threads: 1, env: { USAM_SHARED_MEMORY: '0' } },
    // the controls: half the batch alone, and two such processes at once with no collective
    { name: `control: 1 process × 1 thread, batch ${batch / 2}`, processes: 1, threads: 1, independent: true },
    { name: `control: 2 independent processes × 1 thread, batch ${batch / 2} each, no collective`, processes: 2, threads: 1, independent: true },
  ];
  const times = configs.map(() => [] as number[]);
  for (let round = 0; round < rounds; round++)
    for (const [i, c] of configs.entries()) times[i].push(await measure(c.processes, c.threads, c.independent, batch / 2, c.env));
  const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
  const base = median(times[0]);
  console.log(`CNN ${rule} steps, global batch ${batch}, ${steps} steps × ${rounds} rounds (median), LibTorch ${native().versions().torch}, allreduces through ${transport}`);
  console.log('| setup | ms per step | vs 1 × 1 | speed-up |\n|---|---|---|---|');
  for (const [i, c] of configs.entries())
    console.log(`| ${c.name} | ${median(times[i]).toFixed(1)} | ${(median(times[i]) / base).toFixed(3)}× | ${(base / median(times[i])).toFixed(2)}× |`);
}

if (process.argv.includes('--rank')) rank();
else await main();

