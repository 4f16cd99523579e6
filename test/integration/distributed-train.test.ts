// `usam train --nproc N` (#15): the ranks of a data-parallel run started by
// the CLI leave the checkpoint, the evaluation and the Hessian probes a
// single process leaves (synced perturbations; evaluation and probes sharded
// over the ranks), a distributed run stopped with Ctrl-C resumes with its
// ranks to the same end, and a rank killed mid-run stops the others with a
// clear error (under the launcher, and started by hand as torchrun would).
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { native } from '../../lib/native/load.js';
import { readSafetensors } from '../../lib/safetensors.js';
import { repoRoot } from '../helpers.js';
import { freePort } from '../../lib/distributed.js';

const hasGloo = native().versions().distributed.includes('gloo');
const usam = join(repoRoot, 'scripts/usam.mjs');
const run = (argv: string[]) => promisify(execFile)(process.execPath, [usam, 'train', '--quiet', ...argv], { encoding: 'utf8', timeout: 240_000 });
const tmp = () => mkdtempSync(join(tmpdir(), 'usam-dp-'));

/** The largest difference between two checkpoints' tensors, over all of them. */
function maxDifference(a: string, b: string): number {
  const ta = readSafetensors(join(a, 'checkpoint.safetensors')).tensors, tb = readSafetensors(join(b, 'checkpoint.safetensors')).tensors;
  expect(Object.keys(ta).sort()).toEqual(Object.keys(tb).sort());
  let d = 0;
  for (const name of Object.keys(ta)) {
    if (!name.startsWith('model.')) continue;
    const x = ta[name].data as Float64Array, y = tb[name].data as Float64Array;
    for (let i = 0; i < x.length; i++) d = Math.max(d, Math.abs(x[i] - y[i]));
  }
  return d;
}

const flags = ['--dataset', 'synthetic', '--dtype', 'float64', '--epochs', '1', '--batch-size', '64', '--seed', '3', '--probe-every', '1', '--probe-samples', '4'];
const firstMetrics = (dir: string) => JSON.parse(readFileSync(join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n')[0]);
const relClose = (a: number, b: number, tol: number) => expect(Math.abs(a - b) / Math.max(Math.abs(b), 1e-300)).toBeLessThan(tol);

describe.skipIf(!hasGloo)('usam train --nproc 2 (synced perturbations) against one process', () => {
  // the CLI's launch, rendezvous and rank-0 writing, for a plain and a sharpness-aware rule (every rule
  // against one process at the API level: distributed.test.ts); frob-sam with its final gradients
  // clipped: clipping acts after the allreduce, on the global gradient
  it.each([['sgd'], ['frob-sam', '--clip-grad-norm', '0.05']])('%s %s %s: the checkpoints agree to 1e-9', async (optimizer, ...more) => {
    const one = join(tmp(), 'one'), two = join(tmp(), 'two');
    await run([...flags, '--optimizer', optimizer, ...more, '--out', one]);
    const { stderr } = await run([...flags, '--optimizer', optimizer, ...more, '--nproc', '2', '--perturbation', 'synced', '--out', two]);
    expect(stderr).toMatch(/usam: 2 ranks on this machine \(a private store file, Gloo on 127\.0\.0\.1\)/);
    expect(maxDifference(one, two)).toBeLessThan(1e-9);
    // rank 0 alone wrote the files; the saved config records the ranks
    expect(JSON.parse(readFileSync(join(two, 'config.json'), 'utf8'))).toMatchObject({ nproc: 2, perturbation: 'synced' });
    expect(readFileSync(join(two, 'metrics.jsonl'), 'utf8').trim().split('\n')).toHaveLength(1);
    // each rank evaluated half the test set and probed half the probe batch; the sums are one process's
    const a = firstMetrics(one), b = firstMetrics(two);
    if (more.length > 0) {
      // most steps were clipped, and both saw the same pre-clip norms
      expect(a.clipped).toBeGreaterThan(0.5);
      expect(b.clipped).toBe(a.clipped);
      relClose(b.gradNorm, a.gradNorm, 1e-9);
    }
    expect([b.test.count, b.test.top1, b.test.top5]).toEqual([a.test.count, a.test.top1, a.test.top5]);
    relClose(b.test.loss, a.test.loss, 1e-9);
    for (const k of ['trace', 'frobeniusSquared', 'maxEigenvalue']) relClose(b.probe[k], a.probe[k], 1e-8);
  }, 240_000);

  it('stopped with Ctrl-C and resumed (with its 2 ranks), it ends where one uninterrupted process ends', async () => {
    const many = ['--dataset', 'synthetic', '--dtype', 'float64', '--epochs', '4', '--batch-size', '64', '--seed', '5', '--optimizer', 'sam', '--hidden', '32'];
    const one = join(tmp(), 'one'), two = join(tmp(), 'two');
    await run([...many, '--out', one]);
    const child = spawn(process.execPath, [usam, 'train', '--quiet', ...many, '--nproc', '2', '--out', two], { stdio: 'ignore' });
    const code = await new Promise<number>((resolve) => {
      const poll = setInterval(() => {
        if (existsSync(join(two, 'metrics.jsonl'))) {
          clearInterval(poll);
          child.kill('SIGINT');
        }
      }, 20);
      child.on('exit', (c) => {
        clearInterval(poll);
        resolve(c ?? 1);
      });
    });
    expect([0, 130]).toContain(code); // 130: stopped; 0: it finished before the signal
    await run(['--resume', two]);
    expect(maxDifference(one, two)).toBeLessThan(1e-9);
  }, 240_000);
});

/** The pid of the child of `parent` whose environment says RANK=`rank` (a rank the launcher started). */
function rankPid(parent: number, rank: number): number | undefined {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === parent && readFileSync(`/proc/${entry}/environ`, 'utf8').split('\0').includes(`RANK=${rank}`)) return Number(entry);
    } catch {
      // the process ended while we looked
    }
  }
  return undefined;
}

/** Waits for the child's exit: its code (128 + signal number for a signal), stderr, and the ms from `since`. */
function exitOf(child: ChildProcess, since: () => number): Promise<{ code: number; stderr: string; ms: number }> {
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code: code ?? (signal === 'SIGKILL' ? 137 : 128), stderr, ms: Date.now() - since() })));
}

/** Resolves when the run's first epoch line exists (the ranks are mid-run, a checkpoint is saved). */
function firstEpoch(dir: string, child: ChildProcess): Promise<void> {
  return new Promise((resolve, reject) => {
    const poll = setInterval(() => {
      if (existsSync(join(dir, 'metrics.jsonl'))) {
        clearInterval(poll);
        resolve();
      } else if (child.exitCode !== null) {
        clearInterval(poll);
        reject(new Error(`the run ended before its first epoch (exit ${child.exitCode})`));
      }
    }, 20);
  });
}

describe.skipIf(!hasGloo)('a rank killed mid-run', () => {
  const long = ['--quiet', '--dataset', 'synthetic', '--dtype', 'float64', '--epochs', '500', '--batch-size', '64', '--seed', '2', '--optimizer', 'sam'];

  it('under usam train --nproc 2: the launcher stops the other rank, names the killed one and exits with its status; the saved epoch is intact', async () => {
    const out = join(tmp(), 'run');
    const launcher = spawn(process.execPath, [usam, 'train', ...long, '--nproc', '2', '--out', out], { stdio: ['ignore', 'ignore', 'pipe'] });
    let killedAt = 0;
    const exit = exitOf(launcher, () => killedAt);
    await firstEpoch(out, launcher);
    const victim = rankPid(launcher.pid!, 1), survivor = rankPid(launcher.pid!, 0);
    expect(victim).toBeGreaterThan(0);
    expect(survivor).toBeGreaterThan(0);
    killedAt = Date.now();
    process.kill(victim!, 'SIGKILL');
    const { code, stderr, ms } = await exit;
    expect(code).toBe(137);
    expect(stderr).toMatch(/usam: rank 1 was killed by SIGKILL; the other ranks were stopped/);
    expect(ms).toBeLessThan(30_000);
    // rank 0 was stopped too (looked up by its pid: once the launcher is gone, a live rank would have another parent)
    expect(existsSync(`/proc/${survivor}`)).toBe(false);
    // the checkpoint of the finished epoch is whole: the run can be resumed from it
    expect(Object.keys(readSafetensors(join(out, 'checkpoint.safetensors')).tensors).length).toBeGreaterThan(0);
  }, 240_000);

  it('started by hand with torchrun\'s variables: the surviving rank fails its next collective with an error naming it, well within the timeout', async () => {
    const out = join(tmp(), 'run');
    const port = await freePort();
    const ranks = [0, 1].map((rank) =>
      spawn(process.execPath, [usam, 'train', ...long, '--out', out], {
        env: { ...process.env, RANK: String(rank), LOCAL_RANK: String(rank), WORLD_SIZE: '2', LOCAL_WORLD_SIZE: '2', MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port), OMP_NUM_THREADS: '1', USAM_DIST_TIMEOUT_MS: '60000' },
        stdio: ['ignore', 'ignore', 'pipe'],
      }),
    );
    let killedAt = 0;
    const survivor = exitOf(ranks[0], () => killedAt);
    await firstEpoch(out, ranks[0]);
    killedAt = Date.now();
    ranks[1].kill('SIGKILL');
    const { code, stderr, ms } = await survivor;
    expect(code).toBe(1);
    expect(stderr).toMatch(/process group: (allreduce|broadcast|barrier) failed on rank 0 of 2/);
    expect(ms).toBeLessThan(60_000);
  }, 240_000);
});
