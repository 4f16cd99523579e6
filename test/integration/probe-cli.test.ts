// `usam probe RUN_DIR`: the probes of a saved run against the exact Hessian
// of the same model on the same samples (float64), the files it writes, and
// clear errors for a folder without a run and for bad flags.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DataLoader } from '../../lib/data/loader.js';
import { hessian } from '../../lib/hessian/hessian.js';
import { loadTorchScript, Model } from '../../lib/model/model.js';
import { loadCheckpoint } from '../../lib/train/checkpoint.js';
import { datasetsOf, modelSpecOf, parseTrainConfig } from '../../lib/train/config.js';
import { PROBE_FORMAT, probeRun, type ProbeReport } from '../../lib/experiments/probe.js';
import { fmt } from '../../lib/report/report.js';
import { Trainer } from '../../lib/train/trainer.js';
import { repoRoot } from '../helpers.js';

const tmp = () => mkdtempSync(join(tmpdir(), 'usam-probe-'));
const usam = join(repoRoot, 'scripts', 'usam.mjs');

describe('usam probe', () => {
  // a float64 run small enough for the exact Hessian: 784·2 + 2 + 2·10 + 10 = 1600 parameters
  const run = join(tmp(), 'run');
  const trainer = new Trainer({ dataset: 'synthetic', epochs: 1, hidden: [2], dtype: 'float64', optimizer: 'sam', out: run });
  trainer.run();
  trainer.dispose();

  it('gives the exact Hessian\'s extreme eigenvalues, and trace, ‖H‖_F² and log|det| within their errors', () => {
    const lines: string[] = [];
    const r = probeRun(run, { batches: 2, batchSize: 100, samples: 200, slqSteps: 60, slqRuns: 4 }, (l) => lines.push(l));
    expect(lines[0]).toMatch(/probing mlp \(1600 parameters\) on 2 train batches of 100 \(200 samples\), eval mode/);
    expect(lines.slice(1).map((l) => l.split(':')[0])).toEqual(['trace', 'frobenius', 'eigenvalues', 'density', 'logAbsDet']);

    // the exact quantities, from the checkpoint, on the same 200 samples
    const config = parseTrainConfig({ ...(loadCheckpoint(join(run, 'checkpoint.safetensors')).config as object), out: run });
    const data = datasetsOf(config);
    const model = new Model(modelSpecOf(config, data.train), { dtype: 'float64', seed: 99 });
    loadCheckpoint(join(run, 'checkpoint.safetensors')).restoreModel(model);
    const loader = new DataLoader(data.train, { batchSize: 100, dtype: 'float64' });
    const exact = hessian(model, [loader.batch(0, 0), loader.batch(0, 1)], { cache: false }).spectrum({ damping: 1e-3 });
    const rel = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);
    expect(rel(r.maxEigenvalue, exact.maxEigenvalue)).toBeLessThan(1e-6);
    expect(rel(r.minEigenvalue!, exact.minEigenvalue)).toBeLessThan(1e-4);
    expect(Math.abs(r.trace - exact.trace)).toBeLessThan(4 * r.traceStandardError);
    expect(Math.abs(r.frobeniusSquared - exact.frobeniusSquared)).toBeLessThan(4 * r.frobeniusStandardError);
    // SLQ of Σ log(|λ| + δ): most of 1600 eigenvalues sit near 0, where log is steep; 60 steps give a few percent
    expect(rel(r.logAbsDet, exact.logAbsDetDamped!)).toBeLessThan(0.05);
    expect(r.samplesUsed).toBe(200);
    expect(r.cacheBytesPerBatch.every((b) => b > 0)).toBe(true);
    expect(r.timings.reduce((a, t) => a + t.hvps, 0)).toBe(r.hvps);
    model.dispose();
  });

  it('writes probe.json and probe.html from the command line; refuses a folder without a run and a bad flag', () => {
    const p = spawnSync(process.execPath, [usam, 'probe', run, '--batches', '1', '--samples', '8', '--slq-steps', '10', '--slq-runs', '1', '--split', 'test'], { encoding: 'utf8' });
    expect(p.stderr).toMatch(/usam: trace: 8 HVPs in/);
    expect(p.status).toBe(0);
    const r = JSON.parse(readFileSync(join(run, 'probe.json'), 'utf8')) as ProbeReport;
    expect([r.format, r.options.split, r.options.batches, r.samplesUsed, r.params]).toEqual([PROBE_FORMAT, 'test', 1, 256, 1600]);
    expect(r.maxEigenvalue).toBeGreaterThan(r.minEigenvalue!);
    const html = readFileSync(join(run, 'probe.html'), 'utf8');
    expect(html).toMatch(/<svg[^>]*class="chart"/);
    expect(html).toContain('Hessian spectral density (SLQ)');
    expect(html).toContain('(1 batch of 256)');
    expect(html).not.toContain('…'); // the legend whole
    expect(html).toMatch(/density; λmin -?[\d.e-]+, λmax [\d.e-]+<\/text>/);
    expect(html).toMatch(/class="export-svg" href="data:image\/svg\+xml;base64,[^"]+" download="hessian-spectral-density-slq\.svg"/);

    // usam report reads probe.json: the run trained without --probe-every gets its Hessian measures from it, marked
    const page = join(tmp(), 'report.html');
    const rep = spawnSync(process.execPath, [usam, 'report', run, '--out', page], { encoding: 'utf8' });
    expect(rep.status, rep.stderr).toBe(0);
    const table = /<table class="summary">[\s\S]*?<\/table>/.exec(readFileSync(page, 'utf8'))![0];
    for (const v of [r.trace, r.frobeniusSquared, r.maxEigenvalue, r.logAbsDet])
      expect(table).toContain(`<span class="v">${fmt(v)}<sup class="src" title="from probe.json (usam probe)">P</sup></span>`);
    expect(table).not.toContain('<td class="num">—</td>');

    const empty = tmp();
    const none = spawnSync(process.execPath, [usam, 'probe', empty], { encoding: 'utf8' });
    expect(none.status).toBe(1);
    expect(none.stderr).toMatch(/holds no checkpoint.safetensors; give the folder of a 'usam train' run/);
    const bad = spawnSync(process.execPath, [usam, 'probe', run, '--split', 'validation'], { encoding: 'utf8' });
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/split/);
    const unknown = spawnSync(process.execPath, [usam, 'probe', run, '--epochs', '3'], { encoding: 'utf8' });
    expect(unknown.stderr).toMatch(/unknown flag '--epochs'; see 'usam probe --help'/);
  });

  it('--compare: the Hessian against itself at the same checkpoint (angles 0) and against the GGN (nonnegative values); a section of the page; bad values refused', () => {
    const small = ['--batches', '1', '--batch-size', '100', '--samples', '4', '--slq-steps', '6', '--slq-runs', '1', '--compare-k', '3'];
    const out = tmp();
    const self = spawnSync(process.execPath, [usam, 'probe', run, ...small, '--compare', run, '--json', join(out, 'self.json'), '--html', join(out, 'self.html')], { encoding: 'utf8' });
    expect(self.status, self.stderr).toBe(0);
    expect(self.stderr).toMatch(/usam: compare: overlap 1\.000, \d+ products in/);
    const same = (JSON.parse(readFileSync(join(out, 'self.json'), 'utf8')) as ProbeReport).comparison!;
    expect(same).toMatchObject({ against: run, k: 3, which: 'largest' });
    expect(Math.max(...same.angles)).toBeLessThan(1e-4);
    same.a.values.forEach((v, i) => expect(Math.abs(v - same.b.values[i])).toBeLessThan(1e-9 * same.a.values[0]));

    const g = spawnSync(process.execPath, [usam, 'probe', run, ...small, '--compare', 'ggn', '--json', join(out, 'ggn.json'), '--html', join(out, 'ggn.html')], { encoding: 'utf8' });
    expect(g.status, g.stderr).toBe(0);
    const c = (JSON.parse(readFileSync(join(out, 'ggn.json'), 'utf8')) as ProbeReport).comparison!;
    expect(c.against).toBe('ggn');
    expect(c.b.values.every((v) => v >= -1e-12 * c.b.values[0])).toBe(true);
    expect(c.angles.every((a) => a >= 0 && a <= Math.PI / 2)).toBe(true);
    expect(c.overlap).toBeGreaterThan(0);
    expect(c.overlap).toBeLessThanOrEqual(1 + 1e-12);
    const html = readFileSync(join(out, 'ggn.html'), 'utf8');
    expect(html).toContain('Top-3 eigenspaces: the Hessian against ggn');
    expect((html.match(/<td class="num">[\d.]+°<\/td>/g) ?? []).length).toBe(3);

    const bad = spawnSync(process.execPath, [usam, 'probe', run, ...small, '--compare', 'hessian-of-nothing'], { encoding: 'utf8' });
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/--compare hessian-of-nothing: give 'ggn', 'empirical-fisher', 'mc-fisher' or the folder of another 'usam train' run/);
  });

  it('a TorchScript file with a state dict: its weights, on the named data, in the named dtype; MODEL.probe.json beside it', () => {
    const dir = tmp();
    const file = join(dir, 'net.pt');
    copyFileSync(join(repoRoot, 'test/fixtures/torchscript/mlp-784-scripted.pt'), file);
    // weights that are not the file's own: every parameter halved
    const m = loadTorchScript(file, { dtype: 'float64' });
    const weights = join(dir, 'w.safetensors');
    m.setParams(Array.from(m.getParams(), (v) => v / 2));
    m.saveStateDict(weights);
    const data = datasetsOf(parseTrainConfig({ dataset: 'synthetic' }));
    const batch = new DataLoader(data.test, { batchSize: 64, dtype: 'float64' }).batch(0, 0);
    const expected = m.loss(batch.x, batch.y);
    const o = { dataset: 'synthetic', dtype: 'float64', split: 'test', batches: 1, batchSize: 64, samples: 4, slqSteps: 8, slqRuns: 1 } as const;
    const r = probeRun(file, { ...o, stateDict: weights });
    expect(Math.abs(r.loss - expected)).toBeLessThan(1e-12 * Math.abs(expected));
    expect([r.checkpoint, r.optimizer, r.dataset, r.params]).toEqual([null, 'none', 'synthetic', m.numParams]);
    // λmax against the Hessian of the model built here by hand
    const top = hessian(m, batch, { mode: 'eval' }).eigenvalues({ k: 1, tol: 1e-10, maxIter: 200 }).largest[0];
    expect(Math.abs(r.maxEigenvalue - top)).toBeLessThan(1e-4 * top);
    // without the state dict: the file's own weights, another loss
    expect(Math.abs(probeRun(file, o).loss - expected)).toBeGreaterThan(1e-3);
    m.dispose();

    const p = spawnSync(process.execPath, [usam, 'probe', file, '--dataset', 'synthetic', '--state-dict', weights, '--dtype', 'float64', '--batches', '1', '--samples', '4', '--slq-steps', '8', '--slq-runs', '1'], { encoding: 'utf8' });
    expect(p.stderr).toMatch(/probing .*net\.pt/);
    expect(p.status).toBe(0);
    expect(existsSync(join(dir, 'net.probe.json')) && existsSync(join(dir, 'net.probe.html'))).toBe(true);
    const f32 = spawnSync(process.execPath, [usam, 'probe', file, '--dataset', 'synthetic', '--state-dict', weights], { encoding: 'utf8' });
    expect(f32.status).toBe(1);
    expect(f32.stderr).toMatch(/wrong dtype: 1.weight is float64, the model is float32[\s\S]*--dtype float32\|float64 chooses it/);
    // the data options are for files: a run directory is probed on its own
    const wrong = spawnSync(process.execPath, [usam, 'probe', run, '--dataset', 'synthetic'], { encoding: 'utf8' });
    expect(wrong.status).toBe(1);
    expect(wrong.stderr).toMatch(/--dataset: only for a TorchScript file; a run directory is probed on its own data/);
  });
});
