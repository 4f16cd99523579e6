// Runs that continue and runs that never collide: `--resume RUN --epochs N`
// continues a finished run bit for bit; with no --out every run gets a new
// folder and runs/latest links to the newest; what would change a resumed
// run's trajectory is refused by name.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readlinkSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readSafetensors } from '../../lib/safetensors.js';
import { Trainer } from '../../lib/train/trainer.js';
import { repoRoot } from '../helpers.js';

const usam = join(repoRoot, 'scripts', 'usam.mjs');
const work = mkdtempSync(join(tmpdir(), 'usam-runs-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const train = (args: string[], cwd = work) => spawnSync(process.execPath, [usam, 'train', '--quiet', ...args], { cwd, encoding: 'utf8' });
const quick = ['--dataset', 'synthetic', '--model', 'tiny', '--batch-size', '512', '--lr-schedule', 'constant', '--threads', '1'];
const tensorsOf = (dir: string) => readSafetensors(join(dir, 'checkpoint.safetensors')).tensors;

describe('runs that continue', () => {
  it('usam train --epochs 1, then --resume RUN --epochs 3, equals a 3-epoch run bit for bit (constant schedule)', () => {
    const whole = join(work, 'whole');
    const short = join(work, 'short');
    expect(train([...quick, '--epochs', '3', '--out', whole]).status).toBe(0);
    expect(train([...quick, '--epochs', '1', '--out', short]).status).toBe(0);
    const again = train(['--resume', short]);
    expect(again.status).toBe(0);
    expect(again.stderr).toMatch(/has finished its 1 epochs; continue it with --resume .* --epochs 2/);
    const more = train(['--resume', short, '--epochs', '3']);
    expect(more.stderr, more.stderr).toMatch(/done/);
    const [a, b] = [tensorsOf(whole), tensorsOf(short)];
    expect(Object.keys(b).sort()).toEqual(Object.keys(a).sort());
    for (const name of Object.keys(a)) expect(Buffer.from(b[name].data.buffer).equals(Buffer.from(a[name].data.buffer)), name).toBe(true);
    const lines = (dir: string) => readFileSync(join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(lines(short).map((m) => [m.epoch, m.trainLoss, m.test.loss])).toEqual(lines(whole).map((m) => [m.epoch, m.trainLoss, m.test.loss]));
    expect(JSON.parse(readFileSync(join(short, 'config.json'), 'utf8')).epochs).toBe(3);
  });

  it('what would change the trajectory is refused by name; so are cosine schedules given more epochs, and a folder with no run', () => {
    const run = join(work, 'cosine');
    expect(train(['--dataset', 'synthetic', '--model', 'tiny', '--epochs', '1', '--threads', '1', '--out', run]).status).toBe(0);
    const lr = train(['--resume', run, '--lr', '0.5']);
    expect(lr.status).not.toBe(0);
    expect(lr.stderr).toMatch(/--lr: a resumed run continues its saved config bit for bit; --resume takes only --epochs, --probe-every/);
    const cosine = train(['--resume', run, '--epochs', '2']);
    expect(cosine.status).not.toBe(0);
    expect(cosine.stderr).toMatch(/epochs: the run's lrSchedule is cosine over its 1 epochs; more epochs would change the rate of every step already taken/);
    const missing = train(['--resume', join(work, 'nothing-here')]);
    expect(missing.status).not.toBe(0);
    expect(missing.stderr).toMatch(/nothing-here holds no run to resume \(no checkpoint.safetensors; the folder does not exist\)/);
    expect(() => new Trainer({ resume: run, lr: 0.5 } as never)).toThrow(/lr: a resumed run continues its saved config bit for bit/);
  });
});

describe('runs that never collide', () => {
  it('two usam train calls with no --out both succeed, each in a folder of its own; runs/latest is the second', () => {
    const cwd = mkdtempSync(join(work, 'cwd-'));
    const first = train(['--dataset', 'synthetic', '--model', 'tiny', '--epochs', '1', '--threads', '1'], cwd);
    expect(first.status, first.stderr).toBe(0);
    const second = train(['--dataset', 'synthetic', '--model', 'tiny', '--epochs', '1', '--threads', '1', '--optimizer', 'sam'], cwd);
    expect(second.status, second.stderr).toBe(0);
    const day = new Date().toISOString().slice(0, 10);
    expect(first.stderr).toContain(join(cwd, 'runs', `${day}-frob-sam-1`));
    expect(second.stderr).toContain(join(cwd, 'runs', `${day}-sam-1`));
    expect(readlinkSync(join(cwd, 'runs', 'latest'))).toBe(`${day}-sam-1`);
    const third = train(['--dataset', 'synthetic', '--model', 'tiny', '--epochs', '1', '--threads', '1', '--optimizer', 'sam'], cwd);
    expect(third.status).toBe(0);
    expect(realpathSync(join(cwd, 'runs', 'latest'))).toBe(realpathSync(join(cwd, 'runs', `${day}-sam-2`)));
  });
});

describe('one numbering', () => {
  it('the console, metrics.jsonl, steps.jsonl, the report and an error name the same epoch and step, counting from 1', async () => {
    const out = join(work, 'numbered');
    const r = train(['--dataset', 'synthetic', '--model', 'tiny', '--epochs', '2', '--batch-size', '128', '--step-log-every', '16', '--threads', '1', '--out', out]);
    expect(r.status, r.stderr).toBe(0);
    // synthetic: 2048 images, batch 128: 16 steps an epoch
    expect([...r.stderr.matchAll(/^epoch (\d+): train loss/gm)].map((m) => Number(m[1]))).toEqual([1, 2]);
    const metrics = readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(metrics.map((m) => [m.epoch, m.step])).toEqual([[1, 16], [2, 32]]);
    const steps = readFileSync(join(out, 'steps.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(steps.map((s) => [s.epoch, s.step])).toEqual([[1, 16], [2, 32]]);
    const { readRun } = await import('../../lib/report/report.js');
    expect(readRun(out).metrics.map((m) => m.epoch)).toEqual([1, 2]);
    // an error at a step: the epoch, the batch and the step agree with the numbering above
    const failing = new Trainer({ dataset: 'synthetic', model: 'tiny', optimizer: 'sgd', lr: 1e38, momentum: 0, epochs: 2, lrSchedule: 'constant', divergence: 0, threads: 1, out: join(work, 'nan') });
    let message = '';
    let step = 0;
    try {
      failing.run();
    } catch (e) {
      message = (e as Error).message;
      step = (e as { step: number }).step;
    }
    failing.dispose();
    const m = /^epoch (\d+), batch (\d+) of (\d+): step (\d+): /.exec(message);
    expect(m, message).not.toBeNull();
    const [epoch, batch, batches, s] = m!.slice(1).map(Number);
    expect(batches).toBe(16);
    expect(s).toBe((epoch - 1) * batches + batch);
    expect(step).toBe(s);
  });
});
