// precision 'bf16' on a TorchScript model: its forward runs under LibTorch's
// autocast (the module's linear/conv/matmul in bfloat16, as torch.autocast
// would), its outputs come back in float32 for the loss; its HVPs (double
// backward) stay float32. The same bounds as test/numerics/precision.test.ts:
// the gradient within 50·2⁻⁹ of float32 in relative norm, and not float32
// itself; the probes bit for bit those of the float32 model.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { hessian, labels, loadTorchScript, synthetic, tensor, UNIT_ROUNDOFF } from '../../lib/index.js';
import { relativeError, repoRoot } from '../helpers.js';

const file = join(repoRoot, 'test', 'fixtures', 'torchscript', 'mlp-784-scripted.pt');

describe("precision 'bf16' on a TorchScript model (autocast)", () => {
  it('gradient within bfloat16 bounds of float32; HVPs float32 bit for bit', () => {
    const d = synthetic({ count: 64, shape: [1, 28, 28], classes: 10, seed: 1 });
    const x = tensor(d.x, [64, 1, 28, 28]);
    const y = labels(d.y);
    const fp32 = loadTorchScript(file), bf16 = loadTorchScript(file, { precision: 'bf16' });
    const v = new Float32Array(fp32.numParams).map((_, i) => Math.sin(i));
    const h32 = hessian(fp32, { x, y }, { mode: 'eval' }).hvp(v).toArray() as Float32Array;
    const h16 = hessian(bf16, { x, y }, { mode: 'eval' }).hvp(v).toArray() as Float32Array;
    expect(Array.from(h16)).toEqual(Array.from(h32));
    const a = fp32.lossAndGrad(x, y), b = bf16.lossAndGrad(x, y);
    const error = relativeError(b.grad.toArray() as Float32Array, a.grad.toArray() as Float32Array);
    expect(error).toBeLessThan(50 * UNIT_ROUNDOFF.bf16);
    expect(error).toBeGreaterThan(1e-5);
    expect(Math.abs(b.loss - a.loss) / a.loss).toBeLessThan(50 * UNIT_ROUNDOFF.bf16);
  });
});
