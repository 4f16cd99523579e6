// npm run bench:profile [-- --models tiny,mlp] [--optimizers sgd,sam,...] [--steps 200] [--threads 1] [--json]
// Where one optimizer step's time goes (#29, "count native calls, allocations
// and JS work per step"): every function of the addon's ops, optim and
// generator objects and of the model's native object is wrapped with a
// counter and a clock, the benchmark's step (scripts/bench/step-runner.ts's
// model, batch and rules) is run K times, and per step it prints each native
// call's count and mean time, the passes' share, everything between the
// native calls (JavaScript and the N-API crossings: step − Σ native), the
// LibTorch CPU allocations of a step and of a lone forward-backward
// (countAllocations; its two calls fall inside the step's time), and
// the floor (n+1)·fb measured in the same run (fb: one forward-backward, as
// the bench's column). In one process, at one intra-op thread unless
// --threads says otherwise (at every core the direction draws' background
// thread competes with the passes); times are this machine's.
import { native } from '../../lib/native/load.js';
import { countAllocations, setThreads } from '../../lib/native/runtime.js';
import { Optimizer } from '../../lib/optim/optimizer.js';
import { labels, tensor } from '../../lib/tensor/tensor.js';
import { flag, option } from './args.js';
import { BENCH_PASSES, BENCH_RULES, makeBenchModel, median } from './models.js';

const models = option('--models', 'tiny,mlp').split(',');
const optimizers = option('--optimizers', 'sgd,sam,trace-sam,det-sam,frob-sam').split(',');
const steps = Number(option('--steps', '200'));
const json = flag('--json');
const gaps = flag('--gaps');

interface Tally {
  calls: number;
  ns: bigint;
}
const tallies = new Map<string, Tally>();
let stepNativeNs = 0n;
const marks: [string, bigint, bigint][] = []; // (name, entry, exit) of each native call in the last step, for --gaps // Σ of the native calls' times in the current step
let depth = 0; // a native call inside a wrapped call (none expected) is counted once, at the outside

/** Replaces each function property of `target` by a counted, timed call of the original. */
function instrument(target: Record<string, unknown>, prefix: string): void {
  for (const key of new Set([...Object.keys(target), ...Object.getOwnPropertyNames(Object.getPrototypeOf(target) ?? {})])) {
    if (key === 'constructor') continue;
    const f = target[key];
    if (typeof f !== 'function') continue;
    const name = `${prefix}.${key}`;
    // defined on the object itself: the addon's methods are read-only properties of its prototypes
    Object.defineProperty(target, key, { configurable: true, writable: true, value: function (this: unknown, ...args: unknown[]) {
      if (depth > 0) return f.apply(this, args);
      depth++;
      const t0 = process.hrtime.bigint();
      try {
        return f.apply(this, args);
      } finally {
        const t = tallies.get(name) ?? { calls: 0, ns: 0n };
        t.calls++;
        const dt = process.hrtime.bigint() - t0;
        t.ns += dt;
        stepNativeNs += dt;
        if (gaps) marks.push([name, t0, t0 + dt]);
        tallies.set(name, t);
        depth--;
      }
    } });
  }
}

const addon = native() as unknown as Record<string, Record<string, unknown>>;
instrument(addon.ops, 'ops');
instrument(addon.optim, 'optim');
instrument(addon.Tensor as unknown as Record<string, unknown>, 'Tensor');

setThreads(Number(option('--threads', '1')));
const rows: unknown[] = [];
if (!json) console.log(`LibTorch ${native().versions().torch}, ${native().versions().threads} intra-op thread(s)`);
for (const modelName of models) {
  for (const optimizer of optimizers) {
    const { model, input } = makeBenchModel(modelName, { dtype: 'float32', seed: 0 });
    instrument(model.native as unknown as Record<string, unknown>, 'model');
    const n = 128 * input.reduce((a, b) => a * b, 1);
    let s = 1;
    const uniform = () => (s = (s * 16807) % 2147483647) / 2147483647;
    const x = tensor(Float32Array.from({ length: n }, () => Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform())), [128, ...input]);
    const y = labels(Array.from({ length: 128 }, (_, i) => (i * 7) % 10));
    const opt = new Optimizer(model, { base: { kind: 'sgd', lr: 0.01, momentum: 0.9, weightDecay: 5e-4 }, sharpness: BENCH_RULES[optimizer], seed: 0 });
    instrument((opt as unknown as { gen: Record<string, unknown> }).gen, 'generator');
    const grad = model.zerosLikeParams();
    for (let i = 0; i < 5; i++) opt.step(x, y);
    // one forward-backward alone, alternating with the steps so that drift hits both
    const stepTimes: number[] = [];
    const fbTimes: number[] = [];
    const betweenTimes: number[] = [];
    // LibTorch CPU allocations (countAllocations) of each step and of each lone forward-backward
    const allocations: number[] = [];
    const allocatedBytes: number[] = [];
    const fbAllocations: number[] = [];
    tallies.clear();
    for (let i = 0; i < steps; i++) {
      stepNativeNs = 0n;
      marks.length = 0;
      let t0 = process.hrtime.bigint();
      const counted = countAllocations(() => opt.step(x, y));
      const dt = process.hrtime.bigint() - t0;
      allocations.push(counted.count);
      allocatedBytes.push(counted.bytes);
      if (gaps && i >= steps - 3) {
        let last = t0;
        console.log(`step ${i}: ${marks.map(([name, a, b]) => { const s = `+${Number(a - last) / 1e3}µs ${name} ${Number(b - a) / 1e3}µs`; last = b; return s; }).join(' | ')} | +${Number(t0 + dt - last) / 1e3}µs end`);
      }
      stepTimes.push(Number(dt) / 1e6);
      betweenTimes.push(Number(dt - stepNativeNs) / 1e6);
      t0 = process.hrtime.bigint();
      depth++; // not counted in the step's tallies
      fbAllocations.push(countAllocations(() => model.native.lossAndGrad(x, y, grad, true)).count);
      depth--;
      fbTimes.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    const step = median(stepTimes);
    const fb = median(fbTimes);
    const calls = [...tallies.entries()].map(([name, t]) => ({ name, perStep: t.calls / steps, msPerStep: Number(t.ns) / 1e6 / steps })).sort((a, b) => b.msPerStep - a.msPerStep);
    const nativeMs = calls.reduce((a, c) => a + c.msPerStep, 0);
    const row = { model: modelName, optimizer, params: model.numParams, stepMs: step, fbMs: fb, floorRatio: step / (BENCH_PASSES[optimizer] * fb), nativeCallsPerStep: calls.reduce((a, c) => a + c.perStep, 0), betweenMs: median(betweenTimes), nativeMs, allocationsPerStep: median(allocations), allocatedBytesPerStep: median(allocatedBytes), fbAllocations: median(fbAllocations), calls };
    rows.push(row);
    if (!json) {
      console.log(`\n${modelName} ${optimizer} (${model.numParams} parameters, gradients by ${model.gradMethod}): step ${step.toFixed(3)} ms (median), fb ${fb.toFixed(3)} ms, step/((n+1)·fb) ${row.floorRatio.toFixed(3)}`);
      console.log(`  ${row.nativeCallsPerStep.toFixed(1)} native calls a step; ${(nativeMs * 1000).toFixed(0)} µs in them (means); between them (JavaScript, crossings) ${(row.betweenMs * 1000).toFixed(0)} µs a step (median)`);
      console.log(`  ${row.allocationsPerStep} LibTorch CPU allocations a step (${(row.allocatedBytesPerStep / 1024).toFixed(0)} KiB; medians), ${row.fbAllocations} in a lone forward-backward`);
      for (const c of calls) console.log(`  ${c.name.padEnd(28)} ${c.perStep.toFixed(2).padStart(6)}×  ${(c.msPerStep * 1000).toFixed(1).padStart(8)} µs/step  ${((c.msPerStep * 1000) / c.perStep).toFixed(1).padStart(8)} µs/call`);
    }
    opt.dispose();
    grad.dispose();
    model.dispose();
  }
}
if (json) console.log(JSON.stringify(rows));
