// State dicts with PyTorch's names and shapes: our own round trip, the
// errors (everything missing, extra, mis-shaped or of the wrong dtype is
// listed, and nothing is written), and the round trip with Python's
// safetensors and PyTorch both ways (with a Python from USAM_TEST_TORCH_PYTHONS).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Model } from '../../lib/model/model.js';
import { mlp } from '../../lib/model/presets.js';
import { native } from '../../lib/native/load.js';
import { readSafetensors } from '../../lib/safetensors.js';
import { float64Model, maxAbsDiff, randomBatch } from '../helpers.js';

const tmp = () => mkdtempSync(join(tmpdir(), 'usam-state-'));
const bnMlp = () => mlp({ layers: [6, 8, 3], batchNorm: true });

describe('state dicts', () => {
  it('names and shapes are PyTorch\'s, num_batches_tracked included; save and load give the same model', () => {
    const a = float64Model(bnMlp(), 1);
    const { x, y } = randomBatch([10, 6], 3, 2);
    a.lossAndGrad(x, y); // moves the running statistics and counts a batch
    const sd = a.stateDict();
    expect(Object.entries(sd).map(([n, t]) => `${n} [${t.shape}]`)).toEqual([
      '1.weight [8,6]', '1.bias [8]', '2.weight [8]', '2.bias [8]', '4.weight [3,8]', '4.bias [3]',
      '2.running_mean [8]', '2.running_var [8]', '2.num_batches_tracked []',
    ]);
    expect((sd['2.num_batches_tracked'].data as BigInt64Array)[0]).toBe(1n);
    const file = join(tmp(), 'm.safetensors');
    a.saveStateDict(file);
    expect(readSafetensors(file).metadata.format).toBe('pt');
    const b = float64Model(bnMlp(), 9);
    b.loadStateDict(file);
    expect(Array.from(b.getParams())).toEqual(Array.from(a.getParams()));
    for (const m of [a, b]) m.train(false);
    expect(b.native.loss(x, y, false)).toBe(a.native.loss(x, y, false));
    expect(b.stateDict()['2.num_batches_tracked'].data).toEqual(sd['2.num_batches_tracked'].data);
    // from an object of typed arrays, with or without shapes
    const c = float64Model(bnMlp(), 7);
    c.loadStateDict(Object.fromEntries(Object.entries(sd).map(([n, t], i) => [n, i % 2 ? t.data : { data: t.data, shape: t.shape }])));
    expect(Array.from(c.getParams())).toEqual(Array.from(a.getParams()));
  });

  it('lists everything missing, extra, mis-shaped or of the wrong dtype, and changes nothing', () => {
    const m = float64Model(bnMlp(), 1);
    const before = Array.from(m.getParams());
    const sd = m.stateDict();
    const bad: Record<string, unknown> = { ...sd, 'extra.weight': new Float64Array(2), '4.weight': { data: new Float64Array(24), shape: [8, 3] } };
    delete bad['1.bias'];
    delete bad['2.running_var'];
    let message = '';
    try {
      m.loadStateDict(bad as never);
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toMatch(/missing: 1\.bias, 2\.running_var/);
    expect(message).toMatch(/not in the model: extra\.weight/);
    expect(message).toMatch(/wrong shape: 4\.weight: \[8,3\] where the model has \[3,8\]/);
    expect(Array.from(m.getParams())).toEqual(before);
    // float32 values moved by 0.5, so that loading them is seen
    const f32 = Object.fromEntries(Object.entries(sd).map(([n, t]) => [n, t.data instanceof Float64Array ? Float32Array.from(t.data, (v) => v + 0.5) : t.data]));
    expect(() => m.loadStateDict(f32)).toThrow(/wrong dtype: 1\.weight is float32, the model is float64.*\{convertDType: true\}/s);
    expect(Array.from(m.getParams())).toEqual(before);
    m.loadStateDict(f32, { convertDType: true });
    expect(maxAbsDiff(m.getParams(), before.map((v) => Math.fround(v + 0.5)))).toBe(0);
    const counts = { ...sd, '2.num_batches_tracked': new Float64Array(1) };
    expect(() => m.loadStateDict(counts)).toThrow(/2\.num_batches_tracked is float64, not int64/);
    expect(() => m.loadStateDict({ '1.weight': [1, 2] } as never)).toThrow(/'1\.weight' must be a typed array or \{data/);
    expect(() => m.loadStateDict(join(tmp(), 'none.safetensors'))).toThrow(/file not found/);
  });
});

// Pythons with torch and safetensors (.ci/torch-venv.sh installs both)
const python = (process.env.USAM_TEST_TORCH_PYTHONS ?? '').split(':').find((p) => p && existsSync(p));

describe.skipIf(!python)(`with PyTorch and Python's safetensors${python ? '' : ' (skipped: no Python in USAM_TEST_TORCH_PYTHONS)'}`, () => {
  const run = (code: string, dir: string) => {
    const r = spawnSync(python!, ['-c', code], { cwd: dir, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    return JSON.parse(r.stdout.trim().split('\n').pop()!);
  };
  const setup = `
import json, torch, torch.nn as nn, torch.nn.functional as F
from safetensors.torch import load_file, save_file
torch.manual_seed(0)
x = torch.randn(7, 6, dtype=torch.float64); y = torch.tensor([0, 2, 1, 1, 0, 2, 2])
def make(bn):
    layers = [nn.Flatten(), nn.Linear(6, 8)] + ([nn.BatchNorm1d(8)] if bn else []) + [nn.ReLU(), nn.Linear(8, 3)]
    return nn.Sequential(*layers).double()
`;

  it('a PyTorch nn.Sequential(Flatten, Linear(6,8), ReLU, Linear(8,3)) state_dict loads into mlp({layers: [6, 8, 3]}) and gives its loss to 1e-12', () => {
    const dir = tmp();
    const r = run(
      `${setup}
out = {}
for bn in (False, True):
    m = make(bn)
    if bn:
        m.train(); m(x); m(x)  # moves the running statistics, counts 2
    m.eval()
    save_file(m.state_dict(), f"torch-{int(bn)}.safetensors")
    out[str(int(bn))] = F.cross_entropy(m(x), y).item()
save_file({"x": x, "y": y}, "batch.safetensors")
print(json.dumps(out))`,
      dir,
    );
    const batch = readSafetensors(join(dir, 'batch.safetensors')).tensors;
    const x = native().Tensor.fromArray(batch.x.data as Float64Array, batch.x.shape, 'float64', 'cpu');
    const y = native().Tensor.fromArray(batch.y.data as BigInt64Array, batch.y.shape, 'int64', 'cpu');
    for (const bn of [false, true]) {
      const m = new Model(mlp({ layers: [6, 8, 3], batchNorm: bn }), { dtype: 'float64', seed: 5 });
      m.loadStateDict(join(dir, `torch-${Number(bn)}.safetensors`));
      m.train(false);
      expect(Math.abs(m.native.loss(x, y, false) - r[String(Number(bn))])).toBeLessThan(1e-12);
      if (bn) expect((m.stateDict()['2.num_batches_tracked'].data as BigInt64Array)[0]).toBe(2n);
    }
  });

  it('ours, saved, loads into PyTorch with load_state_dict(strict=True) and gives our loss to 1e-12', () => {
    const dir = tmp();
    const m = new Model(bnMlp(), { dtype: 'float64', seed: 3 });
    const { x, y } = randomBatch([7, 6], 3, 4);
    m.lossAndGrad(x, y);
    m.train(false);
    m.saveStateDict(join(dir, 'ours.safetensors'));
    writeFileSync(join(dir, 'x.json'), JSON.stringify({ x: Array.from(x.toArray() as Float64Array), y: Array.from(y.toArray() as BigInt64Array, Number) }));
    const r = run(
      `${setup}
m = make(True)
m.load_state_dict(load_file("ours.safetensors"), strict=True)
m.eval()
d = json.load(open("x.json"))
xx = torch.tensor(d["x"], dtype=torch.float64).view(7, 6)
print(json.dumps({"loss": F.cross_entropy(m(xx), torch.tensor(d["y"])).item(), "tracked": int(m[2].num_batches_tracked)}))`,
      dir,
    );
    expect(Math.abs(r.loss - m.native.loss(x, y, false))).toBeLessThan(1e-12);
    expect(r.tracked).toBe(1);
  });
});

