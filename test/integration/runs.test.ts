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
const quick = ['--dataset', 'synthetic', '--model', 'tiny', '--batch-size', '256', '--lr-schedule', 'constant', '--threads', '1'];
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
