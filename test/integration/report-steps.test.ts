// The trainer's step log (steps.jsonl) that the report's per-step curves read:
// a line every stepLogEvery steps and at each epoch end, window means, the
// rule's own estimate (null for SGD); a resumed run neither duplicates nor
// loses lines; and the probe's log|det|.
import { appendFileSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { STEPS_FILE, type StepLogLine, Trainer } from '../../lib/train/trainer.js';

const tmp = () => mkdtempSync(join(tmpdir(), 'usam-steps-'));
const lines = (dir: string) => readFileSync(join(dir, STEPS_FILE), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as StepLogLine);
// synthetic: 2048 samples, batch 128 → 16 steps per epoch
const config = { dataset: 'synthetic', model: 'tiny', epochs: 2, stepLogEvery: 5, threads: 1 } as const;

describe('steps.jsonl', () => {
  it('a line every k steps and at each epoch end: window means, the rule’s estimate, lr and rho', () => {
    const out = join(tmp(), 'frob');
    const t = new Trainer({ ...config, optimizer: 'frob-sam', out, probeEvery: 2, probeSamples: 2 });
    const r = t.run();
    t.dispose();
    const l = lines(out);
    expect(l.map((x) => x.step)).toEqual([5, 10, 15, 16, 20, 25, 30, 32]);
    expect(l.map((x) => x.steps)).toEqual([5, 5, 5, 1, 4, 5, 5, 2]);
    expect(l.map((x) => x.epoch)).toEqual([1, 1, 1, 1, 2, 2, 2, 2]);
    expect(l.map((x) => x.progress)).toEqual([5, 10, 15, 16, 20, 25, 30, 32].map((s) => s / 16));
    for (const x of l) {
      expect(Number.isFinite(x.loss) && Number.isFinite(x.sharpness!) && x.lr > 0 && x.rho > 0).toBe(true);
    }
    // the window means add up to the epoch's mean training loss
    const epoch0 = l.filter((x) => x.epoch === 1);
    expect(epoch0.reduce((s, x) => s + x.loss * x.steps, 0) / 16).toBeCloseTo(r.metrics[0].trainLoss, 10);
    expect(epoch0.reduce((s, x) => s + x.sharpness! * x.steps, 0) / 16).toBeCloseTo(r.metrics[0].sharpness!, 6);
    // the probe's log|det(|H| + δI)|
    const p = r.metrics[1].probe!;
    expect(Number.isFinite(p.logAbsDet!)).toBe(true);
    expect(p.logAbsDetDamping).toBe(1e-3);
    expect(r.metrics[0].probe).toBeUndefined();
  });

  it('SGD logs null sharpness; stepLogEvery 0 writes no file', () => {
    const out = join(tmp(), 'sgd');
    new Trainer({ ...config, epochs: 1, optimizer: 'sgd', out }).run();
    expect(lines(out).every((x) => x.sharpness === null)).toBe(true);
    const none = join(tmp(), 'none');
    new Trainer({ ...config, epochs: 1, optimizer: 'sgd', out: none, stepLogEvery: 0 }).run();
    expect(() => lines(none)).toThrow(/ENOENT/);
  });

  it('stop, resume, and a line written after the checkpoint before a crash: no line duplicated or lost', () => {
    const whole = join(tmp(), 'whole');
    new Trainer({ ...config, optimizer: 'sam', out: whole }).run();
    const expected = lines(whole);

    const out = join(tmp(), 'stopped');
    let n = 0;
    const first = new Trainer({ ...config, optimizer: 'sam', out });
    expect(first.run({ shouldStop: () => n++ === 22 }).stopped).toBe(true); // after 22 steps
    first.dispose();
    expect(lines(out).map((x) => x.step)).toEqual([5, 10, 15, 16, 20]); // flushed before the checkpoint
    // a line past the checkpoint (step 22), as a crash after a flush leaves it
    appendFileSync(join(out, STEPS_FILE), JSON.stringify({ ...expected[5], step: 25, loss: 123 }) + '\n');
    const second = new Trainer({ resume: out });
    second.run();
    second.dispose();
    const got = lines(out);
    expect(got.map((x) => x.step)).toEqual(expected.map((x) => x.step));
    // the same numbers (resume is bit-exact), except the window cut by the stop: steps 23–25 only
    const at25 = got.findIndex((x) => x.step === 25);
    expect(got[at25].steps).toBe(3);
    expect(got.filter((_, i) => i !== at25)).toEqual(expected.filter((_, i) => i !== at25));
  });
});
