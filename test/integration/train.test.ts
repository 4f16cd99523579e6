// Training end to end: resume equals the uninterrupted run bit for bit,
// Fashion-MNIST learns, bad input fails cleanly, the report, and the CLI.
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FASHION_MNIST_DIR } from '../../lib/data/dataset.js';
import { encodeIdx } from '../../lib/data/idx.js';
import { Model } from '../../lib/model/model.js';
import { Optimizer } from '../../lib/optim/optimizer.js';
import { modelSpecOf, optimizerOptionsOf, type TrainConfigInput } from '../../lib/train/config.js';
import { renderReport, readRun } from '../../lib/report/report.js';
import { Trainer, type TrainResult } from '../../lib/train/trainer.js';
import { repoRoot } from '../helpers.js';

const tmp = () => mkdtempSync(join(tmpdir(), 'usam-train-'));
const asRoot = process.getuid?.() === 0;

describe('resume', () => {
  const cases: TrainConfigInput[] = [
    { optimizer: 'frob-sam', model: 'mlp', hidden: [32] },
    { optimizer: 'sam', model: 'cnn', base: 'adam', lr: 0.001, subset: 0.25 },
  ];
  for (const extra of cases) {
    it(`${extra.optimizer} on ${extra.model}: a run stopped mid-epoch and resumed equals the uninterrupted run bit for bit (float32, CPU)`, () => {
      const base: TrainConfigInput = { dataset: 'synthetic', epochs: 2, batchSize: 64, seed: 3, ...extra };
      const whole = new Trainer({ ...base, out: join(tmp(), 'whole') });
      const a = whole.run();
      const stoppedDir = join(tmp(), 'stopped');
      let steps = 0;
      const first = new Trainer({ ...base, out: stoppedDir });
      const s = first.run({ shouldStop: () => steps++ === Math.floor(first.loader.length * 1.5) });
      expect(s.stopped).toBe(true);
      expect(s.progress.epoch).toBe(1);
      first.dispose();
      const resumed = new Trainer({ resume: stoppedDir });
      const b: TrainResult = resumed.run();
      expect(b.stopped).toBe(false);
      const pa = whole.model.getParams(), pb = resumed.model.getParams();
      expect(Buffer.from(pb.buffer).equals(Buffer.from(pa.buffer))).toBe(true);
      expect(b.metrics.map((m) => [m.trainLoss, m.test.loss])).toEqual(a.metrics.map((m) => [m.trainLoss, m.test.loss]));
      expect(readFileSync(join(stoppedDir, 'metrics.jsonl'), 'utf8').trim().split('\n').length).toBe(2);
    });
  }
});

describe('batch tensors kept across steps', () => {
  it('the trainer\'s refilled batch tensors give bit for bit the steps of a new tensor pair per step, partial last batch included', () => {
    const t = new Trainer({ dataset: 'synthetic', epochs: 2, batchSize: 48, seed: 4, optimizer: 'frob-sam', hidden: [16], out: join(tmp(), 'kept') });
    const lastBatch = t.loader.length - 1;
    expect(t.loader.batchLength(lastBatch)).toBe(2048 % 48);
    t.run();
    const model = new Model(modelSpecOf(t.config, t.data.train), { dtype: t.config.dtype, device: t.config.device, seed: t.config.seed });
    const opt = new Optimizer(model, optimizerOptionsOf(t.config, t.loader.length));
    for (let epoch = 0; epoch < 2; epoch++)
      for (const { x, y } of t.loader.epoch(epoch)) {
        opt.step(x, y);
        x.dispose();
        y.dispose();
      }
    expect(Buffer.from(model.getParams().buffer).equals(Buffer.from(t.model.getParams().buffer))).toBe(true);
    t.dispose();
    model.dispose();
    opt.dispose();
  });
});

describe('Fashion-MNIST', () => {
  it.skipIf(!existsSync(FASHION_MNIST_DIR))('2 epochs of Frob-SAM on a subset reach a test accuracy far above chance', () => {
    const t = new Trainer({ dataset: 'fashion-mnist', epochs: 2, subset: 0.1, out: join(tmp(), 'fm'), probeEvery: 2, probeSamples: 4 });
    const r = t.run();
    const last = r.metrics[1];
    expect(last.test.count).toBe(10000);
    expect(last.test.top1).toBeGreaterThan(0.7); // chance: 0.1
    expect(last.test.top5).toBeGreaterThan(0.95);
    expect(last.trainLoss).toBeLessThan(r.metrics[0].trainLoss);
    expect(last.probe!.maxEigenvalue).toBeGreaterThan(0);
  });
});

describe('bad input: a clear error and no partial output', () => {
  it('a missing data folder, a corrupt data file, a wrong config field, an unwritable output directory', () => {
    const root = tmp();
    const out = join(root, 'run');
    expect(() => new Trainer({ dataset: 'mnist', dataDir: join(root, 'nowhere'), out })).toThrow(/mnist train images: none of/);
    const bad = join(root, 'corrupt');
    mkdirSync(bad);
    const img = encodeIdx([10, 28, 28], new Uint8Array(7840));
    writeFileSync(join(bad, 'train-images-idx3-ubyte'), img.subarray(0, 500));
    writeFileSync(join(bad, 'train-labels-idx1-ubyte'), encodeIdx([10], new Uint8Array(10)));
    expect(() => new Trainer({ dataset: 'mnist', dataDir: bad, out })).toThrow(/truncated or corrupt/);
    expect(() => new Trainer({ dataset: 'synthetic', epochs: 0, out } as never)).toThrow(/epochs/);
    expect(() => new Trainer({ dataset: 'synthetic', learningRate: 0.1, out } as never)).toThrow(/learningRate/);
    expect(existsSync(out)).toBe(false);
    const file = join(root, 'a-file');
    writeFileSync(file, 'x');
    expect(() => new Trainer({ dataset: 'synthetic', out: join(file, 'run') })).toThrow(/not writable/);
    const locked = join(root, 'locked');
    mkdirSync(locked);
    chmodSync(locked, 0o500);
    if (!asRoot) expect(() => new Trainer({ dataset: 'synthetic', out: join(locked, 'run') })).toThrow(/not writable/);
    expect(readdirSync(root).sort()).toEqual(['a-file', 'corrupt', 'locked']);
  });

  it('writes an epoch\'s metrics line before the checkpoint that records the epoch', () => {
    const out = join(tmp(), 'order');
    const t = new Trainer({ dataset: 'synthetic', epochs: 1, out, hidden: [8] });
    // the checkpoint cannot be written (a folder holds its name): the line must be there already
    mkdirSync(join(out, 'checkpoint.safetensors'));
    expect(() => t.run()).toThrow();
    const lines = readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n');
    expect(lines.length).toBe(1);
    expect(JSON.parse(lines[0]).epoch).toBe(1); // epochs count from 1
  });

  // root writes through mode 0500: as root, the same check runs as the unprivileged user 'nobody'
  const nobody = ['--reuid=65534', '--regid=65534', '--clear-groups'];
  const nobodyReads = asRoot && spawnSync('setpriv', [...nobody, 'test', '-r', join(repoRoot, 'lib/train/trainer.ts')]).status === 0;
  it.skipIf(!asRoot || !nobodyReads)(
    `as root: an output folder the user cannot write to is refused (checked as 'nobody')${!asRoot ? ' (skipped: not root; the test above checks it directly)' : nobodyReads ? '' : ' (skipped: nobody cannot read the checkout)'}`,
    () => {
      const root = tmp();
      chmodSync(root, 0o755);
      const locked = join(root, 'locked');
      mkdirSync(locked, { mode: 0o500 });
      const r = spawnSync(
        'setpriv',
        [...nobody, 'env', 'HOME=/tmp', process.execPath, '--import', 'tsx', '--input-type=module', '-e',
          `import { Trainer } from ${JSON.stringify(join(repoRoot, 'lib/train/trainer.ts'))};
           try { new Trainer({ dataset: 'synthetic', out: ${JSON.stringify(join(locked, 'run'))} }); } catch (e) { console.log(e.message); }`],
        { cwd: repoRoot, encoding: 'utf8' },
      );
      expect(r.stdout + r.stderr).toMatch(/output directory .*locked\/run is not writable \(EACCES\)/);
    },
  );

  it('stops a run whose loss has grown far past its start, naming lr, rho and lambda; --divergence 0 lets it run', () => {
    const config: TrainConfigInput = { dataset: 'synthetic', epochs: 10, hidden: [16], lr: 1, momentum: 0.9, optimizer: 'frob-sam', rho: 0.01, lambda: 0.02, lrSchedule: 'constant' };
    const out = join(tmp(), 'diverging');
    expect(() => new Trainer({ ...config, out }).run()).toThrow(
      /training diverged in epoch \d+, at step \d+: the mean training loss of the last 50 steps is .*× that of the first 50 .*--divergence 10, 0 turns the check off\)\. Lower --lr 1, --rho 0\.01, --lambda 0\.02\./,
    );
    const r = new Trainer({ ...config, divergence: 0, out: join(tmp(), 'unchecked') }).run();
    expect(r.metrics.at(-1)!.trainLoss).toBeGreaterThan(1000 * r.metrics[0].trainLoss); // it did diverge, finitely
  });

  it('refuses to overwrite a run', () => {
    const out = join(tmp(), 'r');
    new Trainer({ dataset: 'synthetic', epochs: 1, out, hidden: [8] }).run();
    expect(() => new Trainer({ dataset: 'synthetic', out })).toThrow(/already holds a run .* --resume/);
  });
});

describe('report', () => {
  it('writes one page whose SVG charts compare the runs', () => {
    const dirs = ['frob-sam', 'sgd'].map((optimizer) => {
      const out = join(tmp(), optimizer);
      new Trainer({ dataset: 'synthetic', epochs: 3, optimizer, out, hidden: [16], probeEvery: 3, probeSamples: 3 } as never).run();
      return out;
    });
    const html = renderReport(dirs.map(readRun));
    expect(html.startsWith('<!doctype html>')).toBe(true);
    const svgs = html.match(/<svg[\s\S]*?<\/svg>/g) ?? [];
    expect(svgs.length).toBeGreaterThanOrEqual(8);
    const titles = svgs.map((s) => /aria-label="([^"]+)"/.exec(s)![1]);
    expect(titles).toEqual(expect.arrayContaining(['training loss', 'test loss', 'test top-1 accuracy', 'Hessian trace (Hutchinson)', 'Hessian spectral density (SLQ)']));
    const loss = svgs[titles.indexOf('test loss')];
    const lines = [...loss.matchAll(/<polyline class="series" data-name="([^"]+)"[^>]*points="([^"]+)"/g)];
    expect(lines.map((l) => l[1])).toEqual(['frob-sam', 'sgd']);
    for (const l of lines) {
      const pts = l[2].split(' ').map((p) => p.split(',').map(Number));
      expect(pts.length).toBe(3);
      expect(pts.flat().every(Number.isFinite)).toBe(true);
    }
    expect((html.match(/<svg/g) ?? []).length).toBe((html.match(/<\/svg>/g) ?? []).length);
  });
});

describe('usam CLI', () => {
  const usam = join(repoRoot, 'scripts', 'usam.mjs');
  it('train stops on SIGINT with a checkpoint, resumes, and report writes the page', async () => {
    const out = join(tmp(), 'cli');
    // from another working directory: the training thread must find its own modules
    const child = spawn(process.execPath, [usam, 'train', '--dataset', 'synthetic', '--epochs', '12', '--hidden', '16', '--out', out], { cwd: tmp(), stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    const code = await new Promise<number | null>((resolve) => {
      child.stderr.on('data', (d: Buffer) => {
        err += d.toString();
        if (err.includes('epoch 1:') && !child.killed) child.kill('SIGINT');
      });
      child.on('exit', (c) => resolve(c));
    });
    expect(err).toMatch(/stopping after the current step/);
    expect(code).toBe(130);
    expect(existsSync(join(out, 'checkpoint.safetensors'))).toBe(true);
    const resumed = spawnSync(process.execPath, [usam, 'train', '--resume', out], { encoding: 'utf8' });
    expect(resumed.status).toBe(0);
    expect(readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').length).toBe(12);
    const html = join(out, 'report.html');
    const rep = spawnSync(process.execPath, [usam, 'report', out, '--out', html], { encoding: 'utf8' });
    expect(rep.status).toBe(0);
    expect(readFileSync(html, 'utf8')).toMatch(/<svg/);
    const bad = spawnSync(process.execPath, [usam, 'train', '--momentum', '-1', '--out', join(out, 'x')], { encoding: 'utf8' });
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/momentum/);
  });
});
