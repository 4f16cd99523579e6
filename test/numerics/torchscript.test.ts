// TorchScript modules as models: the fixtures in test/fixtures/torchscript were
// saved by Debian's PyTorch 1.13 (scripts/make-torchscript-fixtures.py, which
// also wrote their float64 losses and HVPs by PyTorch's double backward into
// reference.json), so these tests run without Python.
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { hessian } from '../../lib/hessian/hessian.js';
import { loadTorchScript, type Model } from '../../lib/model/model.js';
import { Optimizer } from '../../lib/optim/optimizer.js';
import { tensor } from '../../lib/tensor/tensor.js';
import { probeRun } from '../../lib/experiments/probe.js';
import { Trainer } from '../../lib/train/trainer.js';
import { native } from '../../lib/native/load.js';
import { labels } from '../../lib/tensor/tensor.js';
import { maxAbsDiff, repoRoot, toNumbers, torchPython } from '../helpers.js';

const dir = join(repoRoot, 'test', 'fixtures', 'torchscript');
interface Case {
  x: { shape: number[]; data: number[] };
  y: number[];
  v: number[];
  names: string[];
  buffers: string[];
  eval: { loss: number; hv: number[] };
  train: { loss: number; hv: number[] };
}
const ref = JSON.parse(readFileSync(join(dir, 'reference.json'), 'utf8')) as { torch: string; cases: Record<string, Case> };

function batchOf(c: Case) {
  return {
    x: tensor(Float64Array.from(c.x.data), c.x.shape, { dtype: 'float64' }),
    y: tensor(BigInt64Array.from(c.y, BigInt), [c.y.length], { dtype: 'int64' }),
    v: tensor(Float64Array.from(c.v), [c.v.length], { dtype: 'float64' }),
  };
}
const relDiff = (a: ArrayLike<number>, b: number[]) => maxAbsDiff(a, b) / Math.max(...b.map(Math.abs));

describe(`TorchScript modules saved by PyTorch ${ref.torch}`, () => {
  for (const file of ['mlp-scripted.pt', 'mlp-traced.pt']) {
    it(`${file} (Linear, Tanh, Softplus) loads in float64: PyTorch's names, loss and double-backward HVP (1e-10); ten Frob-SAM steps lower its loss`, () => {
      const c = ref.cases.mlp;
      const model = loadTorchScript(join(dir, file), { dtype: 'float64' });
      expect(model.paramInfo().map((p) => p.name)).toEqual(c.names);
      const { x, y, v } = batchOf(c);
      model.eval();
      expect(Math.abs(model.native.loss(x, y, false) - c.eval.loss)).toBeLessThan(1e-12);
      expect(relDiff(toNumbers(model.hvp(x, y, v)), c.eval.hv)).toBeLessThan(1e-10);
      expect(() => model.hvp(x, y, v, undefined, { method: 'forward-over-reverse' })).toThrow(/TorchScript model has no forward-over-reverse rules.*'double-backward'/);
      // a probe session: the gradient's graph kept (PyTorch's idiom)
      const h = hessian(model, { x, y }, { mode: 'eval' });
      expect(relDiff(toNumbers(h.hvp(v)), c.eval.hv)).toBeLessThan(1e-10);
      expect(relDiff(toNumbers(h.hvp(v)), c.eval.hv)).toBeLessThan(1e-10);
      expect(h.operator.cacheInfo()).toMatchObject({ records: 1, replays: 1 });
      h.dispose();
      model.train();
      const opt = new Optimizer(model, { base: { kind: 'sgd', lr: 0.1 }, sharpness: { kind: 'frob-sam', rho: 0.01, lambda: 0.01, samples: 2 }, seed: 1 });
      const first = opt.step(x, y).loss;
      let last = first;
      for (let i = 0; i < 9; i++) last = opt.step(x, y).loss;
      expect(last).toBeLessThan(first * 0.9);
      opt.dispose();
      model.dispose();
    });
  }

  it('a scripted CNN with BatchNorm: eval and train mode match PyTorch, perturbed passes leave the statistics alone, a step moves them once', () => {
    const c = ref.cases['cnn-bn'];
    const model = loadTorchScript(join(dir, 'cnn-bn-scripted.pt'), { dtype: 'float64' });
    const { x, y, v } = batchOf(c);
    expect(model.buffers().info.map((b) => b.name)).toEqual(c.buffers.filter((n) => !n.endsWith('num_batches_tracked')));
    expect(model.buffers().counterNames).toEqual(c.buffers.filter((n) => n.endsWith('num_batches_tracked')));
    const stats = () => Array.from(toNumbers(model.buffers().values));
    const counted = () => (model.buffers().counters.toArray() as BigInt64Array)[0];
    const before = stats(), count = counted();
    for (const mode of ['eval', 'train'] as const) {
      model.train(mode === 'train');
      expect(Math.abs(model.native.loss(x, y, false) - c[mode].loss)).toBeLessThan(1e-12);
      expect(relDiff(toNumbers(model.hvp(x, y, v)), c[mode].hv)).toBeLessThan(1e-10);
    }
    model.lossAndGrad(x, y, { updateStats: false });
    expect(stats()).toEqual(before);
    expect(counted()).toBe(count);
    const opt = new Optimizer(model, { base: { kind: 'sgd', lr: 0.01 }, sharpness: { kind: 'sam', rho: 0.05 } });
    opt.step(x, y); // one pass with statistics, one perturbed pass without
    expect(counted()).toBe(count + 1n);
    expect(stats()).not.toEqual(before);
    // the state dict has PyTorch's names, and a state dict round trip restores the statistics
    const file = join(mkdtempSync(join(tmpdir(), 'usam-ts-')), 'sd.safetensors');
    model.saveStateDict(file);
    const again = loadTorchScript(join(dir, 'cnn-bn-scripted.pt'), { dtype: 'float64' });
    again.loadStateDict(file);
    expect(Array.from(toNumbers(again.buffers().values))).toEqual(stats());
    expect(() => hessian(model, { x, y })).toThrow(/TorchScript model may hold BatchNorm or dropout.*options.mode/);
    for (const m of [model, again] as Model[]) m.dispose();
    opt.dispose();
  });

  it('third-order gradients (the exact estimators\' quadraticFormGrad) by autograd: ∇(vᵀHv)·d equals the central difference of vᵀHv along d', () => {
    const c = ref.cases.mlp;
    const model = loadTorchScript(join(dir, 'mlp-scripted.pt'), { dtype: 'float64' });
    const { x, y, v } = batchOf(c);
    const d = Float64Array.from(c.v, (_, i) => Math.cos(i));
    const { q, grad } = model.quadraticFormGrad(x, y, v);
    const w0 = model.getParams();
    const qAt = (t: number) => {
      model.setParams(w0.map((w, i) => w + t * d[i]));
      return model.quadraticFormGrad(x, y, v).q;
    };
    const eps = 1e-4;
    const fd = (qAt(eps) - qAt(-eps)) / (2 * eps);
    const exact = toNumbers(grad).reduce((s, g, i) => s + g * d[i], 0);
    expect(Math.abs(fd - exact) / Math.abs(exact)).toBeLessThan(1e-6);
    expect(Math.abs(q - toNumbers(v).reduce((s, vi, i) => s + vi * c.eval.hv[i], 0)) / Math.abs(q)).toBeLessThan(1e-10);
    model.dispose();
  });

  it("the exact estimator's step (its samples sharing one gradient graph) equals the rule's arithmetic on uncached third-order passes", () => {
    for (const [name, file] of [['mlp', 'mlp-scripted.pt'], ['cnn-bn', 'cnn-bn-scripted.pt']] as const) {
      const make = () => {
        const m = loadTorchScript(join(dir, file), { dtype: 'float64' });
        m.train(false);
        return m;
      };
      const { x, y, v } = batchOf(ref.cases[name]);
      const reference = make();
      const us = [0, 1, 2].map((k) => Array.from(toNumbers(v), (vi, i) => vi + Math.sin(i + k)));
      const [rho, lambda, lr, n] = [0.05, 0.1, 0.1, 3];
      // math.md §6, Frobenius form: g0 + lambda·rho²/(n−1)·Σ (q_i/2 − mean)·½∇q_i
      const w = reference.getParams();
      const g0 = toNumbers(reference.lossAndGrad(x, y).grad);
      const forms = us.map((u) => reference.quadraticFormGrad(x, y, tensor(Float64Array.from(u), [u.length], { dtype: 'float64' })));
      const halves = forms.map((f) => f.q / 2);
      const mean = halves.reduce((a, b) => a + b, 0) / n;
      const c = (lambda * rho * rho) / (n - 1);
      const expected = Array.from(w, (wi, j) => wi - lr * (g0[j] + forms.reduce((s, f, i) => s + 0.5 * c * (halves[i] - mean) * toNumbers(f.grad)[j], 0)));
      let k = 0;
      const model = make();
      const r = new Optimizer(model, { base: { kind: 'sgd', lr }, sharpness: { kind: 'frob-sam', rho, lambda, samples: n, estimator: 'exact', mu: () => us[k++ % n] } }).step(x, y);
      expect(r.counters, name).toEqual({ forward: 2, backward: 2, hvp: n });
      expect(relDiff(model.getParams(), expected), name).toBeLessThan(1e-12);
      for (const m of [reference, model]) m.dispose();
    }
  });

  it('the Trainer trains one (config.torchscript): stopped and resumed equals the uninterrupted run bit for bit; usam probe reads the run', () => {
    const base = { dataset: 'synthetic' as const, epochs: 2, batchSize: 64, seed: 3, torchscript: join(dir, 'mlp-784-scripted.pt') };
    const root = mkdtempSync(join(tmpdir(), 'usam-ts-train-'));
    const whole = new Trainer({ ...base, out: join(root, 'whole') });
    const a = whole.run();
    expect(a.metrics[1].trainLoss).toBeLessThan(a.metrics[0].trainLoss);
    let steps = 0;
    const first = new Trainer({ ...base, out: join(root, 'stopped') });
    expect(first.run({ shouldStop: () => steps++ === Math.floor(first.loader.length * 1.5) }).stopped).toBe(true);
    first.dispose();
    const resumed = new Trainer({ resume: join(root, 'stopped') });
    resumed.run();
    expect(Buffer.from(resumed.model.getParams().buffer).equals(Buffer.from(whole.model.getParams().buffer))).toBe(true);
    const probe = probeRun(join(root, 'whole'), { batches: 1, samples: 4, slqSteps: 8, slqRuns: 1 });
    expect(probe.model).toBe(base.torchscript);
    expect(probe.params).toBe(784 * 16 + 16 + 16 * 10 + 10);
    expect(probe.maxEigenvalue).toBeGreaterThan(0);
    for (const t of [whole, resumed]) t.dispose();
  });

  it('refuses a missing file, a file that is not TorchScript, a module without parameters and a forward that returns a tuple', () => {
    expect(() => loadTorchScript(join(dir, 'none.pt'))).toThrow(/TorchScript file not found or not readable/);
    const junk = join(mkdtempSync(join(tmpdir(), 'usam-ts-')), 'junk.pt');
    writeFileSync(junk, 'not a zip archive');
    expect(() => loadTorchScript(junk)).toThrow(/is not a TorchScript file this LibTorch \(\d+\.\d+\) can load/);
    expect(() => loadTorchScript(join(dir, 'no-parameters.pt'))).toThrow(/has no parameters; there is nothing to train or probe/);
    const pair = loadTorchScript(join(dir, 'tuple-output.pt'), { dtype: 'float64' });
    const x = tensor(new Float64Array(12), [2, 6], { dtype: 'float64' });
    expect(() => pair.forward(x)).toThrow(/forward returned Tuple, not one tensor/);
    expect(() => loadTorchScript(join(dir, 'mlp-scripted.pt'), { loss: { type: 'hinge' } as never })).toThrow(/options.loss.type 'hinge' is unknown/);
    const two = loadTorchScript(join(dir, 'two-inputs.pt'), { dtype: 'float64' });
    expect(() => two.forward(x)).toThrow(/the TorchScript module's forward failed: .*mask/s);
  });
});

// LibTorch 2.x runs attention through fused kernels whose backward has no
// derivative (flash attention on the CPU): PyTorch's own double backward
// fails on such a module with its defaults. Ours takes the math attention
// for passes differentiated twice, and its HVP equals PyTorch's with the
// math attention. Needs LibTorch 2.x and a torch no newer than it (to save
// the module); skipped otherwise.
const [major, minor] = native().versions().torch.split('.').map(Number);
const twin = major >= 2 ? torchPython([major, minor]) : null;
describe.skipIf(!twin)(`attention traced by PyTorch 2.x${twin ? '' : ' (skipped: needs LibTorch 2.x and a torch 2.x Python no newer, in USAM_TEST_TORCH_PYTHONS or PYTHON)'}`, () => {
  it('a module with nn.MultiheadAttention: double-backward HVPs and vᵀHv equal PyTorch\'s with the math attention (1e-10, float64)', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'usam-attention-')), 'attention.pt');
    const r = spawnSync(twin!.python, [join(repoRoot, 'test/pytorch/attention_twin.py'), file], { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: '1' } });
    if (r.status !== 0) throw new Error(`test/pytorch/attention_twin.py failed: ${r.stderr}`);
    const t = JSON.parse(r.stdout) as { fused: string | null; x: number[]; shape: number[]; y: number[]; v: number[]; loss: number; hv: number[]; names: string[] };
    const model = loadTorchScript(file, { dtype: 'float64' });
    expect(model.paramInfo().map((p) => p.name)).toEqual(t.names);
    const x = tensor(Float64Array.from(t.x), t.shape, { dtype: 'float64' });
    const y = labels(t.y);
    const v = tensor(Float64Array.from(t.v), [t.v.length], { dtype: 'float64' });
    const out = model.zerosLikeParams();
    const loss = model.native.hvp(x, y, v, out);
    expect(Math.abs(loss - t.loss)).toBeLessThan(1e-12);
    const scale = Math.max(...t.hv.map(Math.abs));
    expect(maxAbsDiff(toNumbers(out), t.hv) / scale).toBeLessThan(1e-10);
    const q = tensor(new Float64Array(1), [1], { dtype: 'float64' });
    model.native.curvature(x, y, v, q);
    const exact = t.hv.reduce((s, h, i) => s + h * t.v[i], 0);
    expect(Math.abs(toNumbers(q)[0] - exact) / Math.abs(exact)).toBeLessThan(1e-10);
    // the fused kernel is back for first-order passes (PyTorch's default): it is what fails twice
    console.log(`PyTorch ${twin!.version} with its defaults: ${t.fused ?? 'no fused attention kernel here'}`);
  });
});
