// The CLI's doors: a run folder that is not there, a report with nothing to
// report, a TorchScript module made for other images: each is refused with
// what was given and what to do, before anything is written.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { repoRoot } from '../helpers.js';

const usam = join(repoRoot, 'scripts', 'usam.mjs');
const work = mkdtempSync(join(tmpdir(), 'usam-doors-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const run = (...args: string[]) => spawnSync(process.execPath, [usam, ...args], { cwd: work, encoding: 'utf8' });

describe('the CLI refuses what it cannot use, saying why', () => {
  it('usam probe of a folder that does not exist names it as a missing run', () => {
    const r = run('probe', join(work, 'doesnotexist'));
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/doesnotexist: no such run folder or TorchScript file; give the folder of a 'usam train' run/);
  });

  it('usam reproduce --report-only on an empty folder fails instead of writing an empty report', () => {
    const out = join(work, 'empty');
    const r = run('reproduce', '--report-only', '--quick', '--dataset', 'synthetic', '--out', out);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/--report-only: .*empty holds none of the plan's \d+ runs: there is nothing to report/);
    expect(existsSync(join(out, 'report.html'))).toBe(false);
  });

  it('a TorchScript module that does not take the dataset’s images is refused with the dataset’s shape, before a folder is made', () => {
    const out = join(work, 'ts');
    const r = run('train', '--torchscript', join(repoRoot, 'test/fixtures/torchscript/mlp-scripted.pt'), '--dataset', 'synthetic', '--epochs', '1', '--out', out);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/torchscript: .*mlp-scripted.pt does not take this dataset's images: its forward on a batch of shape \[2, 1, 28, 28\] \(synthetic\) failed: .*mat1 and mat2 shapes cannot be multiplied/);
    expect(existsSync(out)).toBe(false);
  });
});
