// `usam train --nproc N` (#15): the ranks of a data-parallel run started by
// the CLI leave the checkpoint a single process leaves (synced
// perturbations), and a distributed run stopped with Ctrl-C resumes with its
// ranks to the same end.
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { native } from '../lib/native/load.js';
import { readSafetensors } from '../lib/safetensors.js';
import { repoRoot } from './helpers.js';

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

const flags = ['--dataset', 'synthetic', '--dtype', 'float64', '--epochs', '1', '--batch-size', '64', '--seed', '3'];

describe.skipIf(!hasGloo)('usam train --nproc 2 (synced perturbations) against one process', () => {
  it.each(['sgd', 'sam', 'frob-sam'])('%s: the checkpoints agree to 1e-9', async (optimizer) => {
    const one = join(tmp(), 'one'), two = join(tmp(), 'two');
    await run([...flags, '--optimizer', optimizer, '--out', one]);
    const { stderr } = await run([...flags, '--optimizer', optimizer, '--nproc', '2', '--perturbation', 'synced', '--out', two]);
    expect(stderr).toMatch(/usam: 2 ranks on 127\.0\.0\.1:\d+/);
    expect(maxDifference(one, two)).toBeLessThan(1e-9);
    // rank 0 alone wrote the files; the saved config records the ranks
    expect(JSON.parse(readFileSync(join(two, 'config.json'), 'utf8'))).toMatchObject({ nproc: 2, perturbation: 'synced' });
    expect(readFileSync(join(two, 'metrics.jsonl'), 'utf8').trim().split('\n')).toHaveLength(1);
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
