// Parameter groups, as torch.optim's param_groups: each range of the flat
// vector is stepped with its group's lr (scaled by the schedules like the
// default lr) and weight decay; SAM/ASAM take a rho per group.
import { describe, expect, it } from 'vitest';
import { Model } from '../../lib/model/model.js';
import { cnn, mlp } from '../../lib/model/presets.js';
import { noWeightDecay } from '../../lib/optim/groups.js';
import { Optimizer } from '../../lib/optim/optimizer.js';
import { maxAbsDiff, randomBatch, toNumbers } from '../helpers.js';

const spec = mlp({ layers: [5, 4, 3], activation: 'tanh' }); // 1.weight 1.bias 3.weight 3.bias (0: Flatten)
const batch = randomBatch([6, 5], 3, 1);
const make = () => new Model(spec, { dtype: 'float64', seed: 2 });
const gradAt = (m: Model, w: Float64Array) => {
  const probe = make();
  probe.setParams(w);
  return toNumbers(probe.lossAndGrad(batch.x, batch.y, { updateStats: false }).grad);
};

describe('parameter groups', () => {
  it('noWeightDecay: biases and BatchNorm weights take no decay, the rest the default; one SGD step, exactly', () => {
    const bn = new Model(cnn({ input: [1, 6, 6], channels: [2, 3], hidden: 4, classes: 3 }));
    const opt = new Optimizer(bn, { base: { kind: 'sgd', lr: 0.1, weightDecay: 0.01 }, groups: [noWeightDecay(bn)] });
    expect(opt.groups[1].names).toEqual(['0.bias', '1.weight', '1.bias', '4.bias', '5.weight', '5.bias', '9.bias', '11.bias']);
    expect(opt.groups[0].names).toEqual(['0.weight', '4.weight', '9.weight', '11.weight']);

    const m = make();
    const w = toNumbers(m.params);
    const g = gradAt(m, w);
    const sgd = new Optimizer(m, { base: { kind: 'sgd', lr: 0.1, weightDecay: 0.01 }, groups: [noWeightDecay(m)] });
    sgd.step(batch.x, batch.y);
    const info = m.paramInfo();
    const expected = Float64Array.from(w, (wi, i) => {
      const p = info.find((q) => i >= q.offset && i < q.offset + q.numel)!;
      const decay = p.name.endsWith('.bias') ? 0 : 0.01;
      return wi - 0.1 * (g[i] + decay * wi);
    });
    expect(maxAbsDiff(toNumbers(m.params), expected)).toBeLessThan(1e-15);
  });

  it("a group's lr is scaled by the schedule like the default lr", () => {
    const m = make();
    const opt = new Optimizer(m, { base: { kind: 'sgd', lr: 0.2 }, groups: [{ params: /^1\./, lr: 0.05 }], lrSchedule: { kind: 'cosine', total: 4, min: 0 } });
    const info = m.paramInfo();
    for (let t = 0; t < 3; t++) {
      const w = toNumbers(m.params);
      const g = gradAt(m, w);
      const r = opt.step(batch.x, batch.y);
      const factor = r.lr / 0.2;
      const expected = Float64Array.from(w, (wi, i) => wi - (info.find((q) => i >= q.offset && i < q.offset + q.numel)!.name.startsWith('1.') ? 0.05 : 0.2) * factor * g[i]);
      expect(maxAbsDiff(toNumbers(m.params), expected)).toBeLessThan(1e-15);
    }
  });

  it('groups with the default hyperparameters change nothing: Adam, bit for bit', () => {
    const plain = make(), grouped = make();
    const a = new Optimizer(plain, { base: { kind: 'adamw', lr: 0.01 } });
    const b = new Optimizer(grouped, { base: { kind: 'adamw', lr: 0.01 }, groups: [{ params: ['3.weight'] }, { params: (n) => n.endsWith('bias') }] });
    for (let i = 0; i < 4; i++) {
      a.step(batch.x, batch.y);
      b.step(batch.x, batch.y);
    }
    expect(grouped.getParams()).toEqual(plain.getParams());
    expect(b.stateDict().state).toEqual(a.stateDict().state);
    expect(b.stateDict().paramGroups.map((g) => g.params)).toEqual([['1.weight'], ['3.weight'], ['1.bias', '3.bias']]);
  });

  it('SAM: a group with rho 0 is not perturbed; e = rho·g/‖g‖ on the others', () => {
    const m = make();
    const w = toNumbers(m.params);
    const g = gradAt(m, w);
    const info = m.paramInfo();
    const inGroup = (i: number) => info.find((q) => i >= q.offset && i < q.offset + q.numel)!.name.startsWith('3.');
    const norm = Math.sqrt(g.reduce((s, x) => s + x * x, 0));
    const perturbed = Float64Array.from(w, (wi, i) => wi + (inGroup(i) ? 0 : (0.05 * g[i]) / (norm + 1e-7)));
    const gp = gradAt(m, perturbed);
    const opt = new Optimizer(m, { base: { kind: 'sgd', lr: 0.1 }, sharpness: { kind: 'sam', rho: 0.05 }, groups: [{ params: /^3\./, rho: 0 }] });
    opt.step(batch.x, batch.y);
    expect(maxAbsDiff(toNumbers(m.params), Float64Array.from(w, (wi, i) => wi - 0.1 * gp[i]))).toBeLessThan(1e-15);
  });

  it('refuses groups that do not fit, naming the field', () => {
    const m = make();
    const base = { kind: 'sgd' as const, lr: 0.1 };
    expect(() => new Optimizer(m, { base, groups: [{ params: ['2.weight'] }] })).toThrow(/groups\[0\].params names no parameter 2.weight; the model's are 1.weight, 1.bias, 3.weight, 3.bias/);
    expect(() => new Optimizer(m, { base, groups: [{ params: /^1\./ }, { params: /^1\.bias/ }] })).toThrow(/groups\[1\].params matches no parameter not already in an earlier group/);
    expect(() => new Optimizer(m, { base, groups: [{ params: /^1\./, lr: -1 }] })).toThrow(/groups\[0\].lr: must be a finite number ≥ 0, got -1/);
    expect(() => new Optimizer(m, { base, groups: [{ params: 5 as never }] })).toThrow(/groups\[0\].params must be a list of parameter names, a RegExp or a function/);
    expect(() => new Optimizer(m, { base, sharpness: { kind: 'trace-sam', rho: 0.01, lambda: 0.1 }, groups: [{ params: /^1\./, rho: 0.1 }] })).toThrow(
      /rho per group is for rules with a per-coordinate perturbation \(sam, asam\); trace-sam divides by one rho²/,
    );
  });
});

describe('live param groups (torch.optim idioms)', () => {
  const sgd = { kind: 'sgd', lr: 0.1 } as const;
  for (const grouped of [false, true]) {
    it(`paramGroups[0].lr = 0 freezes the group's parameters and setting it back resumes (${grouped ? 'two groups' : 'one group'})`, () => {
      const m = make();
      const opt = new Optimizer(m, { base: sgd, ...(grouped ? { groups: [{ params: /^3\./, lr: 0.05 }] } : {}) });
      expect(opt.paramGroups).toBe(opt.groups);
      const second = m.paramInfo().filter((p) => p.name.startsWith('3.'));
      const inSecond = (i: number) => second.some((p) => i >= p.offset && i < p.offset + p.numel);
      const before = toNumbers(m.params);
      opt.paramGroups[0].lr = 0;
      const r = opt.step(batch.x, batch.y);
      expect(r.lr).toBe(0);
      const after = toNumbers(m.params);
      for (let i = 0; i < before.length; i++) {
        if (grouped && inSecond(i)) continue; // the other group still moves
        expect(after[i]).toBe(before[i]);
      }
      if (grouped) expect(second.some((p) => after[p.offset] !== before[p.offset])).toBe(true);
      // back to 0.1: the step equals a plain SGD step from here
      opt.paramGroups[0].lr = 0.1;
      const w = toNumbers(m.params);
      const g = gradAt(m, w);
      expect(opt.step(batch.x, batch.y).lr).toBe(0.1);
      const expected = Float64Array.from(w, (wi, i) => wi - (grouped && inSecond(i) ? 0.05 : 0.1) * g[i]);
      expect(maxAbsDiff(toNumbers(m.params), expected)).toBeLessThan(1e-15);
    });
  }

  it('an LR-range test written the PyTorch way: lr set through paramGroups at every step, step().lr reports each', () => {
    const m = make();
    const opt = new Optimizer(m, { base: { kind: 'sgd', lr: 0, momentum: 0.9 } }); // lr 0 is allowed, as in PyTorch
    const seen: number[] = [];
    for (let k = 0; k < 6; k++) {
      for (const g of opt.paramGroups) g.lr = 1e-4 * 10 ** k;
      seen.push(opt.step(batch.x, batch.y).lr);
    }
    expect(seen).toEqual([1e-4, 1e-3, 1e-2, 1e-1, 1, 10].map((v, k) => 1e-4 * 10 ** k));
  });

  it('the schedules scale the group’s current value; weightDecay and rho are live too', () => {
    const m = make();
    const opt = new Optimizer(m, { base: sgd, lrSchedule: { kind: 'multistep', milestones: [1], gamma: 0.5 } });
    expect(opt.step(batch.x, batch.y).lr).toBe(0.1);
    opt.paramGroups[0].lr = 0.4;
    expect(opt.step(batch.x, batch.y).lr).toBe(0.2); // 0.4 × gamma after the milestone
    // weight decay: one step with decay 0.01 set live equals a fresh optimizer made with it
    const a = make();
    const b = make();
    const live = new Optimizer(a, { base: sgd });
    live.paramGroups[0].weightDecay = 0.01;
    live.step(batch.x, batch.y);
    new Optimizer(b, { base: { ...sgd, weightDecay: 0.01 } }).step(batch.x, batch.y);
    expect(toNumbers(a.params)).toEqual(toNumbers(b.params));
    // SAM's rho: group 0's is the rule's
    const c = make();
    const d = make();
    const sam = new Optimizer(c, { base: sgd, sharpness: { kind: 'sam', rho: 0.05 } });
    expect(sam.paramGroups[0].rho).toBe(0.05);
    sam.paramGroups[0].rho = 0.2;
    expect(sam.step(batch.x, batch.y).rho).toBe(0.2);
    new Optimizer(d, { base: sgd, sharpness: { kind: 'sam', rho: 0.2 } }).step(batch.x, batch.y);
    expect(toNumbers(c.params)).toEqual(toNumbers(d.params));
  });

  it('stateDict carries the live values and loadStateDict adopts them; a bad live value is refused by name', () => {
    const m = make();
    const opt = new Optimizer(m, { base: sgd, sharpness: { kind: 'sam', rho: 0.05 }, groups: [{ params: /^3\./, lr: 0.05, rho: 0.1 }] });
    opt.paramGroups[0].lr = 0.03;
    opt.paramGroups[1].rho = 0.07;
    const sd = opt.stateDict();
    expect(sd.paramGroups.map((g) => [g.lr, g.rho])).toEqual([[0.03, 0.05], [0.05, 0.07]]);
    const fresh = new Optimizer(make(), { base: sgd, sharpness: { kind: 'sam', rho: 0.05 }, groups: [{ params: /^3\./, lr: 0.05, rho: 0.1 }] });
    fresh.loadStateDict(sd);
    expect(fresh.paramGroups.map((g) => [g.lr, g.rho])).toEqual([[0.03, 0.05], [0.05, 0.07]]);
    const other = new Optimizer(make(), { base: sgd, sharpness: { kind: 'sam', rho: 0.05 } });
    expect(() => other.loadStateDict(sd)).toThrow(/paramGroups \(2\) do not hold the parameters of this optimizer's 1 group/);
    opt.paramGroups[1].lr = -1;
    expect(() => opt.step(batch.x, batch.y)).toThrow(/paramGroups\[1\]\.lr: must be a finite number ≥ 0, got -1/);
    opt.paramGroups[1].lr = 0.05;
    const trace = new Optimizer(make(), { base: sgd, sharpness: { kind: 'trace-sam', rho: 0.01, lambda: 1 }, groups: [{ params: /^3\./, lr: 0.05 }] });
    trace.paramGroups[1].rho = 0.1;
    expect(() => trace.step(batch.x, batch.y)).toThrow(/paramGroups\[1\]\.rho: rho per group is for rules with a per-coordinate perturbation; trace-sam takes one rho/);
  });
});
