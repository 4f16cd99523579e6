// Every training golden file of the reference implementation replays to
// 1e-12 (measured: at most 4.9e-15), from the repository's copies (other
// files, e.g. a newer shared set, go to `npm run --silent golden -- FILE...`).
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { replayGolden } from '../../lib/golden/replay.js';
import { goldenDir, repoRoot } from '../helpers.js';

const own = readdirSync(goldenDir).filter((f) => f.endsWith('.json') && !f.startsWith('hessian-'));
const files = own.map((f) => join(goldenDir, f));

describe('golden replays', () => {
  it('finds the golden files in the repository', () => expect(own.length).toBeGreaterThanOrEqual(5));
  it.each(files.map((f) => [relative(repoRoot, f), f]))('%s reproduces losses and parameters to 1e-12', (_, f) => {
    const r = replayGolden(f);
    expect(r.steps).toBeGreaterThan(0);
    expect(r.maxAbsDiff).toBeLessThan(1e-12);
  });
});

describe('the golden commands', () => {
  const run = (script: string, ...files: string[]) =>
    spawnSync(process.execPath, [join(repoRoot, 'scripts/run-ts.mjs'), join(repoRoot, 'scripts', script), ...files], { cwd: repoRoot, encoding: 'utf8' });
  it('replay the repository\'s golden files when given none, one JSON line each, within their tolerance', () => {
    const r = run('golden.ts');
    expect(r.status, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { file: string; maxAbsDiff: number });
    expect(lines.map((l) => l.file.split('/').pop()).sort()).toEqual([...own].sort());
    for (const l of lines) expect(l.maxAbsDiff).toBeLessThan(1e-12);
    const h = run('hessian-golden.ts');
    expect(h.status, h.stderr).toBe(0);
    expect(h.stdout.trim().split('\n').map((l) => JSON.parse(l).file.split('/').pop())).toEqual(['hessian-mlp-tanh-s1.json']);
  });
  it('exit 1 on a file that does not replay', () => {
    const r = run('golden.ts', join(repoRoot, 'package.json'));
    expect(r.status).toBe(1);
    expect(JSON.parse(r.stdout.trim()).error).toBeTruthy();
  });
});
