// Tensor handles, flat-vector operations and samplers.
import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { cuda, setThreads, versions } from '../../lib/native/runtime.js';
import { native } from '../../lib/native/load.js';
import { ops } from '../../lib/tensor/ops.js';
import { generator, sampleInto } from '../../lib/random.js';
import { labels, tensor, toFloatArray, zeros } from '../../lib/tensor/tensor.js';

describe('tensors', () => {
  it('round-trip float32, float64 and int64 with shape, dtype and device', () => {
    const a = tensor([1.5, -2, 3.25, 4, 5, 6], [2, 3]);
    expect([a.shape, a.dtype, a.device, a.numel]).toEqual([[2, 3], 'float32', 'cpu', 6]);
    expect(Array.from(a.toArray() as Float32Array)).toEqual([1.5, -2, 3.25, 4, 5, 6]);
    const b = tensor(new Float64Array([0.1, 0.2]));
    expect(b.dtype).toBe('float64');
    expect((b.toArray() as Float64Array)[0]).toBe(0.1);
    const y = labels([3, 1, 2]);
    expect([y.dtype, Array.from(y.toArray() as BigInt64Array)]).toEqual(['int64', [3n, 1n, 2n]]);
    expect(tensor([2.5]).item()).toBe(2.5);
    const c = a.clone();
    ops.scale(c, 2);
    expect((a.toArray() as Float32Array)[0]).toBe(1.5);
    expect(a.to('cpu', 'float64').dtype).toBe('float64');
  });

  it('refuses mismatched data, shapes, dtypes and devices with clear messages', () => {
    expect(() => tensor([1, 2, 3], [2, 2])).toThrow(/holds 4 elements but 'data' has 3/);
    expect(() => tensor([1.5], [1], { dtype: 'int64' })).toThrow(/not an integer/);
    expect(() => tensor([1], [1], { device: 'cuda:0' })).toThrow(/CPU flavour|no CUDA device/);
    expect(() => tensor([1], [1], { device: 'metal' as never })).toThrow(/'cpu', 'cuda' or 'cuda:N'/);
    expect(() => ops.axpy(zeros([3]), 1, zeros([4]))).toThrow(/shape \[3\].*shape \[4\]/);
    expect(() => ops.axpy(zeros([3]), 1, zeros([3], { dtype: 'float64' }))).toThrow(/float32.*float64/);
  });

  it('copyFrom writes values in place, converting to the dtype; views see the write', () => {
    const a = zeros([2, 2], { dtype: 'float64' });
    expect(a.copyFrom(new Float32Array([0.1, 2, 3, 4]))).toBe(a);
    expect(Array.from(a.toArray() as Float64Array)).toEqual([Math.fround(0.1), 2, 3, 4]);
    const flat = zeros([4]);
    const tail = flat.narrow(2, 2);
    flat.copyFrom(new Float64Array([1, 2, 3, 4]));
    expect(Array.from(tail.toArray() as Float32Array)).toEqual([3, 4]);
    tail.copyFrom(new Float32Array([7, 8]));
    expect(Array.from(flat.toArray() as Float32Array)).toEqual([1, 2, 7, 8]);
    const y = labels([0, 0, 0]);
    y.copyFrom(new Int32Array([5, -1, 2]));
    expect(Array.from(y.toArray() as BigInt64Array)).toEqual([5n, -1n, 2n]);
    y.copyFrom(new BigInt64Array([2n ** 40n, 0n, 1n]));
    expect((y.toArray() as BigInt64Array)[0]).toBe(2n ** 40n);
  });

  it('view gives the same memory under another shape, and refuses a wrong element count', () => {
    const flat = zeros([6], { dtype: 'float64' });
    const grid = flat.view([2, 3]);
    expect(grid.shape).toEqual([2, 3]);
    grid.copyFrom(new Float64Array([1, 2, 3, 4, 5, 6]));
    expect(Array.from(flat.narrow(3, 3).toArray() as Float64Array)).toEqual([4, 5, 6]);
    expect(() => flat.view([4, 2])).toThrow(/shape \[4, 2\] holds 8 elements, this tensor 6/);
  });

  it('copyFrom refuses a wrong length, a wrong kind of array and a disposed tensor', () => {
    const a = zeros([2, 3]);
    expect(() => a.copyFrom(new Float32Array(5))).toThrow(/'data' has 5 elements but this tensor of shape \[2, 3\] holds 6/);
    expect(() => a.copyFrom(new Int32Array(6))).toThrow(/int32 values\) does not fit dtype 'float32'/);
    expect(() => labels([1]).copyFrom(new Float64Array(1))).toThrow(/does not fit dtype 'int64'/);
    expect(() => a.copyFrom([1, 2, 3, 4, 5, 6] as never)).toThrow(/must be a Float32Array, Float64Array, Int32Array or BigInt64Array/);
    expect(() => a.copyFrom(new Uint8Array(6) as never)).toThrow(/must be a Float32Array/);
    a.dispose();
    expect(() => a.copyFrom(new Float32Array(6))).toThrow(/disposed/);
  });

  it('dispose releases, and a disposed handle throws', () => {
    const t = zeros([1000]);
    t.dispose();
    expect(t.disposed).toBe(true);
    expect(() => t.shape).toThrow(/disposed/);
    expect(() => ops.norm(t)).toThrow(/argument 'x': this tensor was disposed/);
    t.dispose(); // idempotent
  });
});

describe('flat-vector operations', () => {
  const v = (xs: number[]) => tensor(new Float64Array(xs));
  const arr = (t: ReturnType<typeof v>) => Array.from(t.toArray() as Float64Array);
  it('axpy, scale, dot, norm, copy, abs, mul, addScalar, combine, allFinite', () => {
    const y = v([1, 2, 3]);
    ops.axpy(y, 2, v([1, -1, 0.5]));
    expect(arr(y)).toEqual([3, 0, 4]);
    expect(ops.dot(y, v([1, 1, 1]))).toBe(7);
    expect(ops.norm(y)).toBe(5);
    ops.scale(y, -1);
    expect(arr(y)).toEqual([-3, -0, -4]);
    const z = v([0, 0, 0]);
    ops.abs(z, y);
    expect(arr(z)).toEqual([3, 0, 4]);
    ops.mul(z, z, v([2, 2, 0.5]));
    expect(arr(z)).toEqual([6, 0, 2]);
    ops.addScalar(z, 1);
    expect(arr(z)).toEqual([7, 1, 3]);
    ops.copy(z, y);
    expect(arr(z)).toEqual([-3, -0, -4]);
    ops.combine(z, [1, 2, -1], [v([1, 1, 1]), v([1, 2, 3]), v([0, 0, 1])]);
    expect(arr(z)).toEqual([3, 5, 6]);
    expect(ops.sum(z)).toBe(14);
    expect(ops.allFinite(z)).toBe(true);
    expect(ops.allFinite(v([1, NaN]))).toBe(false);
  });

  it('shiftDot: dst = base + scale·dir and ⟨probe, dir⟩ accumulated in double, in place over base too', () => {
    // float32 vectors longer than one parallel grain, against float64 arithmetic on the same float32 values
    const n = 100_003;
    let s = 11;
    const draw = () => ((s = (s * 16807) % 2147483647) / 2147483647) * 2 - 1;
    const [w, u, g] = [0, 1, 2].map(() => Float32Array.from({ length: n }, draw));
    const base = tensor(w);
    const dst = zeros([n]);
    const slope = ops.shiftDot(dst, base, 0.37, tensor(u), tensor(g));
    let exact = 0;
    for (let k = 0; k < n; k++) exact += g[k] * u[k];
    expect(Math.abs(slope - exact)).toBeLessThan(1e-9 * Math.sqrt(n));
    const out = dst.toArray() as Float32Array;
    for (let k = 0; k < n; k += 997) expect(out[k]).toBe(Math.fround(w[k] + Math.fround(Math.fround(0.37) * u[k])));
    // the same as the combine it replaces (params ← w0 + s·u), bit for bit, and dst may be base itself
    const combined = zeros([n]);
    ops.combine(combined, [1, 0.37], [base, tensor(u)]);
    expect(Array.from(combined.toArray() as Float32Array)).toEqual(Array.from(out));
    ops.shiftDot(base, base, 0.37, tensor(u), tensor(g));
    expect(Array.from(base.toArray() as Float32Array)).toEqual(Array.from(out));
    // with keep: w is kept bit for bit in the same pass while dst = w is overwritten; without a probe, no dot
    for (const dtype of ['float32', 'float64'] as const) {
      const w2 = tensor(dtype === 'float32' ? w : Float64Array.from(w));
      const [u2, g2] = [u, g].map((a) => tensor(dtype === 'float32' ? a : Float64Array.from(a)));
      const expected = zeros([n], { dtype });
      const expectedSlope = ops.shiftDot(expected, w2, 0.37, u2, g2);
      const kept = zeros([n], { dtype });
      expect(ops.shiftDot(w2, w2, 0.37, u2, g2, kept)).toBe(expectedSlope);
      expect(Array.from(toFloatArray(kept))).toEqual(Array.from(dtype === 'float32' ? w : Float64Array.from(w)));
      expect(Array.from(toFloatArray(w2))).toEqual(Array.from(toFloatArray(expected)));
      const again = zeros([n], { dtype });
      expect(ops.shiftDot(again, kept, 0.37, u2, undefined)).toBe(0);
      expect(Array.from(toFloatArray(again))).toEqual(Array.from(toFloatArray(expected)));
    }
    const x = v([1, 2]);
    expect(() => ops.shiftDot(x, v([0, 0]), 1, x, v([1, 1]))).toThrow(/dst may alias only base/);
    expect(() => ops.shiftDot(x, x, NaN, v([1, 1]), v([1, 1]))).toThrow(/scale/);
    expect(() => ops.shiftDot(x, x, 1, v([1, 1]), v([1, 1]), x)).toThrow(/keep must be a tensor of its own/);
    expect(() => ops.shiftDot(x, x, 1, v([1, 1]), v([1, 1]), v([1, 1, 1]))).toThrow(/keep/);
  });
});

describe('samplers', () => {
  const n = 200_000;
  const stats = (a: Float64Array) => {
    let m = 0, s = 0;
    for (const x of a) m += x;
    m /= a.length;
    for (const x of a) s += (x - m) ** 2;
    return { mean: m, variance: s / a.length };
  };
  it('gaussian, rademacher, sphere and cube draw what they say, over all P coordinates', () => {
    const g = generator(7);
    const out = zeros([n], { dtype: 'float64' });
    sampleInto(g, 'gaussian', out);
    let st = stats(out.toArray() as Float64Array);
    expect(Math.abs(st.mean)).toBeLessThan(0.01);
    expect(Math.abs(st.variance - 1)).toBeLessThan(0.02);
    sampleInto(g, 'rademacher', out);
    const r = out.toArray() as Float64Array;
    expect(r.every((x) => x === 1 || x === -1)).toBe(true);
    expect(Math.abs(stats(r).mean)).toBeLessThan(0.01);
    sampleInto(g, 'sphere', out);
    expect(ops.norm(out)).toBeCloseTo(1, 12);
    sampleInto(g, 'cube', out, 0.05);
    const c = out.toArray() as Float64Array;
    st = stats(c);
    expect(c.every((x) => Math.abs(x) <= 0.05)).toBe(true);
    expect(Math.abs(st.variance - 0.05 ** 2 / 3)).toBeLessThan(2e-5);
  });

  it('the same seed gives the same draws; a saved state replays them', () => {
    const a = zeros([50], { dtype: 'float64' });
    const b = zeros([50], { dtype: 'float64' });
    const g1 = generator(3), g2 = generator(3);
    g1.gaussian(a);
    g2.gaussian(b);
    expect(a.toArray()).toEqual(b.toArray());
    const state = g1.getState();
    g1.gaussian(a);
    g2.setState(state);
    g2.gaussian(b);
    expect(a.toArray()).toEqual(b.toArray());
    expect(generator(4).randperm(10).slice().sort()).toEqual(Int32Array.from([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]));
  });

  it('mark() and rewind() return to a state natively, as getState/setState do', () => {
    const g = generator(5);
    expect(() => g.rewind()).toThrow(/rewind\(\) needs a mark\(\) first/);
    const a = zeros([40], { dtype: 'float64' }), b = zeros([40], { dtype: 'float64' });
    g.gaussian(a); // a state past the seed's
    const state = g.getState();
    g.mark();
    g.gaussian(a);
    g.rademacher(b);
    const first = [...a.toArray(), ...b.toArray()];
    g.rewind();
    expect(g.getState()).toEqual(state);
    g.gaussian(a);
    g.rademacher(b);
    expect([...a.toArray(), ...b.toArray()]).toEqual(first);
    // a draw in the background is settled before the rewind, and the mark survives a rewind
    g.fillAsync(a, 'gaussian');
    g.rewind();
    g.rewind();
    expect(g.getState()).toEqual(state);
  });

  it("a background draw runs off its caller's CPU: the fill thread may use the caller's CPUs but the one it submitted from", () => {
    // Linux put a fill thread woken after idling on its waker's CPU, where it
    // preempted the caller for the whole draw (generator.cc, SteerAwayFrom)
    const cpus = (status: string) => {
      const list = /^Cpus_allowed_list:\s*(.*)$/m.exec(status)![1].trim();
      return new Set(list.split(',').flatMap((r) => {
        const [a, b = a] = r.split('-').map(Number);
        return Array.from({ length: b - a + 1 }, (_, i) => a + i);
      }));
    };
    // the CPU this thread runs on now (field 39 of its stat, counted after the name's closing parenthesis)
    const cpuNow = () => {
      const stat = readFileSync('/proc/thread-self/stat', 'utf8');
      return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[36]);
    };
    const g = generator(3);
    const u = zeros([1000]);
    // a submission during which this thread stayed on one CPU, so that CPU is the one the fill was kept off
    let from = -1;
    for (let attempt = 0; attempt < 20 && from < 0; attempt++) {
      const before = cpuNow();
      g.fillAsync(u, 'gaussian');
      if (cpuNow() === before) from = before;
      g.wait();
    }
    expect(from, 'a submission without a migration').toBeGreaterThanOrEqual(0);
    const fill = readdirSync('/proc/self/task').find((tid) => readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim() === 'usam-fill');
    expect(fill, 'a thread named usam-fill').toBeDefined();
    const callers = cpus(readFileSync('/proc/thread-self/status', 'utf8'));
    const fills = cpus(readFileSync(`/proc/self/task/${fill}/status`, 'utf8'));
    expect([...fills].every((c) => callers.has(c))).toBe(true);
    if (callers.size > 1) expect([...callers].filter((c) => !fills.has(c))).toEqual([from]);
    else expect(fills).toEqual(callers);
    expect(u.toArray().some((x) => x !== 0)).toBe(true);
  });

  it("setThreads sets LibTorch's intra-op threads and OpenBLAS's, where the process has OpenBLAS (Debian's 1.13)", () => {
    const before = versions().threads;
    try {
      for (const n of [1, 2, 1]) {
        setThreads(n);
        const v = versions();
        expect(v.threads).toBe(n);
        // OpenBLAS keeps a thread count of its own, which at::set_num_threads does not reach there
        expect(v.blasThreads).toBe(v.blasThreads === 0 ? 0 : n);
      }
      if (versions().torchLibrary.includes('/usr/lib/')) expect(versions().blasThreads, "Debian's LibTorch runs on OpenBLAS").toBe(1);
    } finally {
      setThreads(before);
    }
  });

  it('reports versions and CUDA availability', () => {
    const v = native().versions();
    expect(cuda.isAvailable()).toBe(v.cudaAvailable);
    expect(cuda.deviceCount()).toBe(v.cudaDeviceCount);
    expect(v.torch).toMatch(/^\d+\.\d+\.\d+$/);
    expect(['cpu', 'cuda']).toContain(v.flavour);
  });
});
