// Every door of the TypeScript API, called wrongly. Each exported function,
// constructor and public method is listed once below with its arguments'
// names and kinds and one valid call; the harness then replaces one argument
// at a time with values of the wrong kind (missing, null, a number, a string,
// an object, an array, a function, a typed array, a disposed tensor) and calls
// again. A value of the wrong kind must come back as an error of the
// library's classes (UsamError) whose message names the argument; a value of
// the right kind may work or fail, but only with a UsamError. No TypeError from
// inside, no crash. Methods are also called on disposed objects, which must
// say so. A coverage check fails when an export or a public method is added
// without a line here.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import * as lib from '../../lib/index.js';
import { runSync } from '../../lib/model/work.js';
import { repoRoot } from '../helpers.js';

type Kind = 'tensor' | 'options' | 'object' | 'string' | 'number' | 'boolean' | 'function' | 'array' | 'numbers' | 'bytes' | 'instance' | 'any';
/** `name:kind`; a `?` after the name: it may be left out */
type Arg = `${string}:${Kind}`;
interface Door {
  /** 'mlp', 'new Model', 'Model.hvp' */
  name: string;
  args: Arg[];
  /** the call, on fresh arguments */
  call: (...a: unknown[]) => unknown;
  valid: () => unknown[];
  /** the valid call fails here (with a UsamError), e.g. for want of files: why */
  validFails?: string;
  /** try only values of the wrong kind (a right-kind value would start real work: a training run) */
  wrongOnly?: boolean;
}

const dir = mkdtempSync(join(tmpdir(), 'usam-api-fuzz-'));
const disposedTensor = () => {
  const t = lib.zeros([2], { dtype: 'float64' });
  t.dispose();
  return t;
};
// the string is a path in the temporary folder: doors that take a file name write it there, not in the repository
const badValues = (): unknown[] => [undefined, null, 42, Number.NaN, join(dir, 'x'), true, {}, [], () => 1, new Float64Array(2), disposedTensor()];

const isPlain = (v: unknown) => typeof v === 'object' && v !== null && !Array.isArray(v) && !ArrayBuffer.isView(v);
function rightKind(kind: Kind, optional: boolean, v: unknown): boolean {
  if (v === undefined) return optional;
  switch (kind) {
    case 'options':
    case 'object':
      return isPlain(v);
    case 'string':
      return typeof v === 'string';
    case 'number':
      return typeof v === 'number' && Number.isFinite(v);
    case 'boolean':
      return typeof v === 'boolean';
    case 'function':
      return typeof v === 'function';
    case 'array':
      return Array.isArray(v);
    case 'numbers':
      return Array.isArray(v) || v instanceof Float64Array;
    case 'any':
      return true;
    default:
      return false; // tensors, bytes and the library's objects: none of the bad values is one
  }
}

// ---- fixtures: a float64 MLP on 4 features, 3 classes; fresh objects per call
const spec = () => lib.mlp({ layers: [4, 5, 3] });
const model = () => new lib.Model(spec(), { dtype: 'float64', seed: 1 });
const x = () => lib.tensor(new Float64Array(24).map((_, i) => Math.sin(i)), [6, 4], { dtype: 'float64' });
const y = () => lib.labels([0, 1, 2, 0, 1, 2]);
const flat = (m = model()) => lib.zeros([m.numParams], { dtype: 'float64' });
const dataset = () => lib.synthetic({ count: 12, shape: [4], classes: 3, seed: 1 });
const optimizer = () => new lib.Optimizer(model(), { sharpness: lib.sam({ rho: 0.05 }), base: { kind: 'sgd', lr: 0.1 } });
const hessian = () => lib.hessian(model(), { x: x(), y: y() });
const loader = () => new lib.DataLoader(dataset(), { batchSize: 4, seed: 1 });
const trainConfig = () => ({ dataset: 'synthetic' as const, subset: 0.05, hidden: [5], epochs: 1, batchSize: 64, out: join(mkdtempSync(join(dir, 'run-')), 'run'), optimizer: 'sgd' });
const storeFile = () => join(mkdtempSync(join(dir, 'pg-')), 'store');
const group = () => lib.processGroupFromEnv({ RANK: '0', WORLD_SIZE: '1', USAM_STORE_FILE: storeFile() });
const idxFile = join(dir, 'a.idx');
writeFileSync(idxFile, lib.encodeIdx([2, 3], new Uint8Array(6)));
const stFile = join(dir, 'a.safetensors');
lib.writeSafetensors(stFile, { w: lib.stTensor(new Float32Array(3), [3]) });
const progress = () => ({ epoch: 1, batch: 0, globalStep: 1, lossSum: 0, sharpnessSum: 0, sharpnessCount: 0, steps: 0, correct: 0, seen: 0 });
const ckptFile = join(dir, 'a.ckpt');
{
  const o = optimizer();
  lib.saveCheckpoint(ckptFile, o.model, o, {}, progress());
}
// one finished run, for the report's doors
const runFolder = new lib.Trainer(trainConfig()).run().out;
const torchscript = join(repoRoot, 'test', 'fixtures', 'torchscript', 'mlp-scripted.pt');

const fn = (name: string, args: Arg[], valid: () => unknown[], extra: Partial<Door> = {}): Door => ({
  name,
  args,
  valid,
  call: (...a) => (name.split('.').reduce<unknown>((o, k) => (o as Record<string, unknown>)[k], lib) as (...a: unknown[]) => unknown)(...a),
  ...extra,
});
const ctor = (name: string, args: Arg[], valid: () => unknown[], extra: Partial<Door> = {}): Door => ({
  name: `new ${name}`,
  args,
  valid,
  call: (...a) => new (lib[name as keyof typeof lib] as new (...a: unknown[]) => unknown)(...a),
  ...extra,
});
/** a method, on a fresh object from `make` */
const method = <T extends object>(cls: string, m: string, make: () => T, args: Arg[], valid: () => unknown[], extra: Partial<Door> = {}): Door => ({
  name: `${cls}.${m}`,
  args,
  valid,
  call: (...a) => {
    const o = make() as Record<string, (...a: unknown[]) => unknown>;
    return o[m](...a);
  },
  ...extra,
});

let registered = 0;
const rule = (name: string, options: object): Door => fn(name, ['options:object'], () => [options]);

const doors: Door[] = [
  // tensors and the binding
  fn('tensor', ['data:numbers', 'shape?:numbers', 'options?:options'], () => [[1, 2, 3, 4], [2, 2], { dtype: 'float64' }]),
  fn('zeros', ['shape:numbers', 'options?:options'], () => [[2, 3], { dtype: 'float32' }]),
  fn('labels', ['data:numbers', 'options?:options'], () => [[0, 1], {}]),
  fn('toFloatArray', ['tensor:tensor'], () => [lib.zeros([2])]),
  fn('scope', ['fn:function'], () => [() => lib.zeros([2])]),
  fn('native', [], () => []),
  fn('loadedFrom', [], () => []),
  fn('addonCandidates', ['root?:string', 'env?:options'], () => [repoRoot, {}]),
  fn('versions', [], () => []),
  fn('cpuReducedPrecision', [], () => []),
  fn('memory', [], () => []),
  fn('trimMemory', [], () => []),
  fn('setThreads', ['threads:number'], () => [lib.versions().threads]),
  fn('countAllocations', ['fn:function'], () => [() => lib.zeros([2])]),
  fn('cuda.isAvailable', [], () => []),
  fn('cuda.deviceCount', [], () => []),
  fn('ops.axpy', ['y:tensor', 'a:number', 'x:tensor'], () => [lib.zeros([3]), 2, lib.zeros([3])]),
  fn('ops.scale', ['x:tensor', 'a:number'], () => [lib.zeros([3]), 2]),
  fn('ops.addScalar', ['x:tensor', 'c:number'], () => [lib.zeros([3]), 2]),
  fn('ops.fill', ['x:tensor', 'value:number'], () => [lib.zeros([3]), 2]),
  fn('ops.dot', ['a:tensor', 'b:tensor'], () => [lib.zeros([3]), lib.zeros([3])]),
  fn('ops.norm', ['x:tensor'], () => [lib.zeros([3])]),
  fn('ops.sum', ['x:tensor'], () => [lib.zeros([3])]),
  fn('ops.copy', ['dst:tensor', 'src:tensor'], () => [lib.zeros([3]), lib.zeros([3])]),
  fn('ops.abs', ['dst:tensor', 'src:tensor'], () => [lib.zeros([3]), lib.zeros([3])]),
  fn('ops.mul', ['dst:tensor', 'a:tensor', 'b:tensor'], () => [lib.zeros([3]), lib.zeros([3]), lib.zeros([3])]),
  fn('ops.combine', ['dst:tensor', 'coefficients:numbers', 'tensors:array'], () => [lib.zeros([3]), [1, 2], [lib.zeros([3]), lib.zeros([3])]]),
  fn('ops.shiftDot', ['dst:tensor', 'base:tensor', 'scale:number', 'dir:tensor', 'probe?:tensor', 'keep?:tensor'], () => [lib.zeros([3]), lib.zeros([3]), 0.5, lib.zeros([3]), lib.zeros([3]), lib.zeros([3])]),
  fn('ops.allFinite', ['x:tensor'], () => [lib.zeros([3])]),
  fn('ops.symmetricEigen', ['a:numbers', 'n:number', 'wantVectors:boolean'], () => [new Float64Array([2, 1, 1, 2]), 2, true]),
  fn('symmetricEigen', ['a:numbers', 'n:number', 'wantVectors?:boolean', 'backend?:string'], () => [[2, 1, 1, 2], 2, true, 'auto']),
  fn('tridiagonalEigen', ['alpha:numbers', 'beta:numbers', 'wantVectors?:boolean', 'backend?:string'], () => [[2, 2], [1], true, 'auto']),
  // random streams
  fn('generator', ['seed:number', 'device?:string'], () => [1, 'cpu']),
  fn('streamSeed', ['seed:number', 'purpose:string', 'index?:number'], () => [1, 'init', 0]),
  fn('sampleInto', ['gen:instance', 'measure:string', 'out:tensor', 'halfCube?:number'], () => [lib.generator(1), 'gaussian', lib.zeros([3]), 1]),
  // models
  fn('mlp', ['options:object'], () => [{ layers: [4, 3] }]),
  fn('cnn', ['options?:options'], () => [{}]),
  fn('resnet18', ['options?:options'], () => [{ width: 4 }]),
  fn('parseModelSpec', ['spec:any'], () => [spec()]),
  fn('hvpCache', [], () => []),
  fn('loadTorchScript', ['file:string', 'options?:options'], () => [torchscript, { dtype: 'float32' }]),
  ctor('Model', ['spec:object', 'options?:options'], () => [spec(), { dtype: 'float64' }]),
  method('Model', 'paramInfo', model, [], () => []),
  method('Model', 'train', model, ['on?:boolean'], () => [true]),
  method('Model', 'eval', model, [], () => []),
  method('Model', 'getParams', model, [], () => []),
  method('Model', 'setParams', model, ['values:numbers'], () => [new Float64Array(model().numParams)]),
  method('Model', 'zerosLikeParams', model, [], () => []),
  method('Model', 'stateDict', model, [], () => []),
  method('Model', 'loadStateDict', model, ['source:any', 'options?:options'], () => [model().stateDict(), {}]),
  method('Model', 'saveStateDict', model, ['file:string'], () => [join(dir, 'model.safetensors')]),
  method('Model', 'forward', model, ['x:tensor'], () => [x()]),
  method('Model', 'forwardAsync', model, ['x:tensor'], () => [x()]),
  method('Model', 'loss', model, ['x:tensor', 'y:tensor'], () => [x(), y()]),
  method('Model', 'lossAndGrad', model, ['x:tensor', 'y:tensor', 'options?:options'], () => [x(), y(), {}]),
  method('Model', 'lossAndGradAsync', model, ['x:tensor', 'y:tensor', 'options?:options'], () => [x(), y(), {}]),
  method('Model', 'hvp', model, ['x:tensor', 'y:tensor', 'v:tensor', 'out?:tensor', 'options?:options'], () => [x(), y(), flat(), undefined, {}]),
  method('Model', 'hvpAsync', model, ['x:tensor', 'y:tensor', 'v:tensor', 'out?:tensor', 'options?:options'], () => [x(), y(), flat(), undefined, {}]),
  method('Model', 'curvature', model, ['x:tensor', 'y:tensor', 'v:tensor', 'options?:options'], () => [x(), y(), flat(), {}]),
  method('Model', 'curvatures', model, ['x:tensor', 'y:tensor', 'V:tensor', 'options?:options'], () => [x(), y(), lib.zeros([2, model().numParams], { dtype: 'float64' }), {}]),
  method('Model', 'quadraticFormGrad', model, ['x:tensor', 'y:tensor', 'v:tensor', 'out?:tensor', 'options?:options'], () => [x(), y(), flat(), undefined, {}]),
  method('Model', 'exclusive', model, ['fn:function'], () => [async () => 1]),
  method('Model', 'idle', model, [], () => []),
  method('Model', 'buffers', model, [], () => []),
  method('Model', 'dispose', model, [], () => []),
  // sharpness rules and optimizers
  rule('sam', { rho: 0.05 }),
  rule('asam', { rho: 0.5 }),
  rule('traceSam', { rho: 0.01, lambda: 1 }),
  rule('detSam', { rho: 1, lambda: 1 }),
  rule('frobSam', { rho: 0.005, lambda: 0.003 }),
  rule('universal', { rho: 0.01, lambda: 1, psi: 'identity', phi: 'identity' }),
  rule('randomPerturbation', { rho: 0.01 }),
  rule('gradientNormPenalty', { lambda: 0.01 }),
  fn('parseSharpness', ['config:any', 'root?:string'], () => [{ kind: 'sam', rho: 0.05 }, 'sharpness']),
  fn('ruleOf', ['kind:string', 'path?:string'], () => ['sam', 'kind']),
  fn('findRule', ['kind:string'], () => ['sam']),
  fn('readingOf', ['kind:string', 'estimator?:string'], () => ['trace-sam', 'exact']),
  fn('trainingDefaultsOf', ['kind:string', 'estimator?:string'], () => ['trace-sam', 'exact']),
  fn('ruleKinds', [], () => []),
  fn('rules', [], () => []),
  fn('defineRule', ['descriptor:object'], () => [lib.findRule('sam')]),
  fn('registerRule', ['descriptor:object'], () => {
    const kind = `fuzz-rule-${++registered}`;
    return [{ ...lib.findRule('sam'), kind, schema: z.object({ kind: z.literal(kind) }) }];
  }),
  fn('schedule', ['base:number', 'config?:options', 'warmup?:options'], () => [0.1, { kind: 'constant' }, {}]),
  fn('noWeightDecay', ['model:instance'], () => [model()]),
  fn('createBaseOptimizer', ['config:object', 'like:tensor', 'grouping?:options'], () => [{ kind: 'sgd', lr: 0.1 }, lib.zeros([3])]),
  ctor('Optimizer', ['model:instance', 'options:object'], () => [model(), { base: { kind: 'sgd', lr: 0.1 }, sharpness: { kind: 'sam', rho: 0.05 } }]),
  method('Optimizer', 'step', optimizer, ['x:any', 'y?:tensor'], () => [x(), y()]),
  method('Optimizer', 'stepAsync', optimizer, ['x:any', 'y?:tensor'], () => [x(), y()]),
  method('Optimizer', 'stepWork', optimizer, ['x:any', 'y?:tensor'], () => [x(), y()]),
  method('Optimizer', 'totals', optimizer, [], () => []),
  method('Optimizer', 'stateDict', optimizer, [], () => []),
  method('Optimizer', 'loadStateDict', optimizer, ['state:object'], () => [optimizer().stateDict()]),
  method('Optimizer', 'dispose', optimizer, [], () => []),
  // curvature operators and their probes (class Curvature, exported as Hessian too)
  fn('ggn', ['model:instance', 'data:any', 'options?:options'], () => [model(), { x: x(), y: y() }, {}]),
  fn('fisher', ['model:instance', 'data:any', 'options:object'], () => [model(), { x: x(), y: y() }, { kind: 'mc', samples: 2 }]),
  fn('principalAngles', ['a:array', 'b:array'], () => [[flat()], [flat()]].map((set) => { set[0].copyFrom(new Float64Array(set[0].shape[0]).fill(1)); return set; })),
  fn('lossLandscape', ['model:instance', 'data:any', 'options?:options'], () => [model(), { x: x(), y: y() }, { points: 3 }]),
  fn('filterNormalisedDirection', ['model:instance', 'seed:number', 'index:number'], () => [model(), 1, 0]),
  ...(['compareSubspaces', 'compareSubspacesAsync'] as const).map((name) =>
    fn(name, ['a:instance', 'b:instance', 'options?:options'], () => [hessian(), lib.ggn(model(), { x: x(), y: y() }), { k: 2 }]),
  ),
  fn('hessian', ['model:instance', 'data:any', 'options?:options'], () => [model(), { x: x(), y: y() }, {}]),
  ctor('Curvature', ['operator:instance'], () => [hessian().operator]),
  ...(['hvp', 'hvpAsync', 'hvpWork'] as const).map((m) => method('Curvature', m, hessian, ['v:numbers'], () => [new Float64Array(model().numParams)])),
  ...(['quadraticForm', 'quadraticFormAsync', 'quadraticFormWork'] as const).map((m) => method('Curvature', m, hessian, ['u:numbers'], () => [new Float64Array(model().numParams)])),
  ...(['eigenvalues', 'trace', 'frobeniusSquared', 'density', 'full', 'spectrum'] as const).flatMap((m) =>
    [m, `${m}Async`, `${m}Work`].map((name) => method('Curvature', name, hessian, ['options?:options'], () => [{}])),
  ),
  ...['logAbsDet', 'logAbsDetAsync', 'logAbsDetWork'].map((name) => method('Curvature', name, hessian, ['options:object'], () => [{ damping: 1 }])),
  ...['sharpness', 'sharpnessAsync', 'sharpnessWork'].map((name) => method('Curvature', name, hessian, ['config:object'], () => [{ measure: 'trace', samples: 2 }])),
  method('Curvature', 'dispose', hessian, [], () => []),
  // data
  fn('synthetic', ['options:object'], () => [{ count: 4, shape: [2], classes: 2, seed: 1 }]),
  fn('subset', ['dataset:object', 'fraction:number'], () => [dataset(), 0.5]),
  fn('withLabelNoise', ['dataset:object', 'fraction:number', 'seed:number'], () => [dataset(), 0.5, 1]),
  fn('normalize', ['dataset:object', 'stats:object'], () => [dataset(), { mean: [0], std: [1] }]),
  fn('channelStats', ['dataset:object'], () => [dataset()]),
  fn('fashionMnist', ['split:string', 'dir?:string'], () => ['test', lib.FASHION_MNIST_DIR]),
  fn('readIdxDataset', ['dir:string', 'split:string', 'name:string'], () => [dir, 'test', 'idx'], { validFails: 'no IDX dataset in the folder' }),
  fn('cifar', ['variant:string', 'split:string', 'dir:string'], () => ['cifar10', 'test', dir], { validFails: 'no CIFAR files here' }),
  fn('readCifar', ['files:array', 'variant:string'], () => [[join(dir, 'none.bin')], 'cifar10'], { validFails: 'no CIFAR files here' }),
  fn('readIdx', ['file:string'], () => [idxFile]),
  fn('parseIdx', ['bytes:bytes', 'name?:string'], () => [readFileSync(idxFile), 'a']),
  fn('encodeIdx', ['dims:numbers', 'data:bytes'], () => [[2], new Uint8Array(2)]),
  ctor('DataLoader', ['dataset:object', 'options:object'], () => [dataset(), { batchSize: 4 }]),
  method('DataLoader', 'order', loader, ['epoch:number'], () => [1]),
  method('DataLoader', 'batch', loader, ['epoch:number', 'index:number', 'order?:any'], () => [1, 0]),
  method('DataLoader', 'batchInto', loader, ['into:object', 'epoch:number', 'index:number', 'order?:any'], () => [loader().batch(1, 0), 1, 0]),
  method('DataLoader', 'batchLength', loader, ['index:number'], () => [0]),
  method('DataLoader', 'epoch', loader, ['epoch:number', 'start?:number'], () => [1, 0]),
  ctor('BatchTensors', ['loader:instance'], () => [loader()]),
  method('BatchTensors', 'next', () => new lib.BatchTensors(loader()), ['epoch:number', 'index:number', 'order?:any'], () => [1, 0]),
  method('BatchTensors', 'dispose', () => new lib.BatchTensors(loader()), [], () => []),
  // training, checkpoints, files
  fn('parseTrainConfig', ['config:any'], () => [{ dataset: 'synthetic' }]),
  ctor('Trainer', ['config:object', 'options?:options'], () => [trainConfig(), {}], { wrongOnly: true }),
  method('Trainer', 'run', () => new lib.Trainer(trainConfig()), ['events?:options'], () => [{}]),
  method('Trainer', 'runAsync', () => new lib.Trainer(trainConfig()), ['events?:options'], () => [{}]),
  method('Trainer', 'dispose', () => new lib.Trainer(trainConfig()), [], () => []),
  fn('trainInWorker', ['config:object', 'handlers?:options'], () => [trainConfig()], { wrongOnly: true }),
  fn('evaluate', ['model:instance', 'data:object', 'batchSize?:number'], () => [model(), dataset(), 5]),
  fn('evaluateAsync', ['model:instance', 'data:object', 'batchSize?:number'], () => [model(), dataset(), 5]),
  fn('saveCheckpoint', ['file:string', 'model:instance', 'optimizer:instance', 'config:any', 'progress:object'], () => {
    const o = optimizer();
    return [join(dir, 'b.ckpt'), o.model, o, {}, progress()];
  }),
  fn('loadCheckpoint', ['file:string'], () => [ckptFile]),
  fn('readSafetensors', ['file:string'], () => [stFile]),
  fn('writeSafetensors', ['file:string', 'tensors:object', 'metadata?:options', 'options?:options'], () => [join(dir, 'b.safetensors'), { w: lib.stTensor(new Float32Array(2), [2]) }, {}, {}]),
  fn('stTensor', ['data:any', 'shape:numbers'], () => [new Float32Array(2), [2]]),
  fn('readRun', ['dir:string'], () => [runFolder]),
  fn('renderReport', ['runs:array', 'options?:options'], () => [[lib.readRun(runFolder)], {}]),
  // data parallelism
  ctor('ProcessGroup', ['options:object'], () => [{ rank: 0, worldSize: 1, storeFile: storeFile() }]),
  fn('processGroupFromEnv', ['env?:options', 'options?:options'], () => [{ RANK: '0', WORLD_SIZE: '1', USAM_STORE_FILE: storeFile() }, {}]),
  method('ProcessGroup', 'allreduce', group, ['tensor:tensor', 'op?:string'], () => [lib.zeros([3]), 'sum']),
  method('ProcessGroup', 'broadcast', group, ['tensor:tensor', 'root?:number'], () => [lib.zeros([3]), 0]),
  method('ProcessGroup', 'barrier', group, [], () => []),
  method('ProcessGroup', 'dispose', group, [], () => []),
  // the error classes a caller may make
  // (what an error carries is taken as given, but for the lists its message is made of)
  ctor('UsamError', ['message?:any', 'options?:any'], () => ['m']),
  ctor('ConfigError', ['subject?:any', 'issues?:any', 'message?:any'], () => ['s', 'm']),
  ctor('ArgumentError', ['fn?:any', 'argument?:any', 'problem?:any'], () => ['f', 'a', 'p']),
  ctor('NativeError', ['message?:any'], () => ['m']),
  ctor('NonFiniteError', ['message?:any', 'step?:any', 'quantity?:any', 'value?:any'], () => ['m', 1, 'loss', Number.NaN]),
  ctor('DivergenceError', ['message?:any', 'epoch?:any', 'step?:any', 'ratio?:any', 'limit?:any'], () => ['m', 1, 1, 2, 1]),
  ctor('AddonLoadError', ['attempts:array', 'env?:options'], () => [[], {}]),
];

/** Calls, waiting for a promise, running a Work generator (the *Work methods) and iterating a generator of batches. */
async function settle(door: string, f: () => unknown): Promise<{ ok: true } | { ok: false; error: unknown }> {
  try {
    const r = f() as { then?: unknown } | undefined;
    if (r && typeof r.then === 'function') await r;
    else if (door.endsWith('Work')) runSync(r as never);
    else if (door === 'DataLoader.epoch') for (const _ of r as Iterable<unknown>);
    return { ok: true };
  } catch (error) {
    return { ok: false, error };
  }
}

const describeArg = (v: unknown) =>
  typeof v === 'function' ? 'a function' : Number.isNaN(v) ? 'NaN' : v instanceof Float64Array ? 'Float64Array' : (v as { disposed?: boolean })?.disposed ? 'a disposed tensor' : (v as { shape?: number[] })?.shape ? `a ${(v as { dtype: string }).dtype} tensor [${(v as { shape: number[] }).shape}]` : (JSON.stringify(v) ?? String(v));

describe('every door of the API refuses wrong arguments with a UsamError naming the argument', () => {
  it('the list covers every export and every public method', async () => {
    const listed = new Set(doors.map((d) => d.name));
    const missing: string[] = [];
    const values = new Set(['FASHION_MNIST_DIR', 'FULL_HESSIAN_LIMIT', 'scalarPresets', 'sharpnessFields']);
    for (const [name, v] of Object.entries(lib)) {
      if (values.has(name)) continue;
      // a second name of an export listed under its own (Hessian for Curvature)
      if (typeof v === 'function' && v.name !== name && (lib as Record<string, unknown>)[v.name] === v) continue;
      if (typeof v === 'function') {
        const isClass = /^class\s/.test(Function.prototype.toString.call(v));
        if (!listed.has(isClass ? `new ${name}` : name)) missing.push(isClass ? `new ${name}` : name);
        if (!isClass) continue;
        // its public methods: what is on the prototype, less what the source declares private
        const privates = privateMembers(name);
        for (const [m, d] of Object.entries(Object.getOwnPropertyDescriptors((v as { prototype: object }).prototype))) {
          if (m === 'constructor' || typeof d.value !== 'function' || privates.has(m)) continue;
          if (!listed.has(`${name}.${m}`)) missing.push(`${name}.${m}`);
        }
      } else if (typeof v === 'object' && v !== null) {
        for (const [k, f] of Object.entries(v)) if (typeof f === 'function' && !listed.has(`${name}.${k}`) && name !== 'trainConfig') missing.push(`${name}.${k}`);
      }
    }
    expect(missing, 'add a line for each to doors in this file').toEqual([]);
  });

  it('each valid call works', async () => {
    const failed: string[] = [];
    for (const d of doors) {
      if (d.wrongOnly) continue;
      const r = await settle(d.name, () => d.call(...d.valid()));
      if (!r.ok && !(d.validFails && r.error instanceof lib.UsamError)) failed.push(`${d.name}: ${(r.error as Error)?.stack ?? String(r.error)}`);
    }
    expect(failed).toEqual([]);
  });

  it('wrong, missing and disposed arguments: a UsamError naming the argument, never a raw TypeError', async () => {
    const wrong: string[] = [];
    let calls = 0;
    for (const d of doors) {
      for (const [i, arg] of d.args.entries()) {
        const [rawName, kind] = arg.split(':') as [string, Kind];
        const optional = rawName.endsWith('?');
        const name = rawName.replace('?', '');
        // tensors of another shape or dtype: they may fit (ops take any length), else the error names the argument
        const misshapen = kind === 'tensor' ? [lib.zeros([7], { dtype: 'float64' }), lib.zeros([2, 3]), lib.labels([0, 1])] : [];
        for (const bad of [...badValues(), ...misshapen]) {
          const right = rightKind(kind, optional, bad) && !misshapen.includes(bad as never);
          const tensorOfAnotherShape = misshapen.includes(bad as never);
          if (right && d.wrongOnly) continue;
          const args = d.valid();
          args[i] = bad;
          // a missing last argument is a shorter call, as a person would write it
          if (bad === undefined && i === args.length - 1) args.length = i;
          const r = await settle(d.name, () => d.call(...args));
          calls++;
          const what = `${d.name}: ${name} = ${describeArg(bad)}`;
          if (r.ok) {
            if (!right && !tensorOfAnotherShape) wrong.push(`${what}: accepted`);
            continue;
          }
          const e = r.error as Error;
          if (!(e instanceof lib.UsamError)) wrong.push(`${what}: ${e?.constructor?.name}: ${String(e?.message).split('\n')[0]}`);
          else if (!right && !e.message.includes(name)) wrong.push(`${what}: the message does not name '${name}': ${e.message.split('\n')[0]}`);
        }
      }
    }
    expect(wrong).toEqual([]);
    expect(calls).toBeGreaterThan(1000);
  });

  it('objects used after dispose() say so', async () => {
    const wrong: string[] = [];
    const owners: [string, () => { dispose(): void }][] = [
      ['Model', model],
      ['Optimizer', optimizer],
      ['Curvature', hessian],
      ['BatchTensors', () => new lib.BatchTensors(loader())],
      ['ProcessGroup', group],
    ];
    for (const [cls, make] of owners) {
      for (const d of doors.filter((door) => door.name.startsWith(`${cls}.`))) {
        const m = d.name.slice(cls.length + 1);
        const args = d.valid();
        const r = await settle(d.name, () => {
          const o = make() as unknown as Record<string, (...a: unknown[]) => unknown>;
          (o as unknown as { dispose(): void }).dispose();
          return o[m](...args);
        });
        if (m === 'dispose') {
          if (!r.ok) wrong.push(`${d.name} twice: ${String((r.error as Error).message)}`);
        } else if (!r.ok && !(r.error instanceof lib.UsamError && /dispose/.test((r.error as Error).message)))
          wrong.push(`${d.name} after dispose(): ${(r.error as Error)?.constructor?.name}: ${(r.error as Error).message.split('\n')[0]}`);
        else if (r.ok && !['paramInfo', 'train', 'eval', 'totals', 'idle', 'batchLength', 'order'].includes(m)) wrong.push(`${d.name} after dispose(): worked`);
      }
    }
    expect(wrong).toEqual([]);
  });
});

/** Methods a class's source declares `private` (TypeScript's, still on the prototype at run time). */
function privateMembers(cls: string): Set<string> {
  const files: Record<string, string> = {
    Model: 'model/model.ts',
    Optimizer: 'optim/optimizer.ts',
    Curvature: 'hessian/hessian.ts',
    DataLoader: 'data/loader.ts',
    BatchTensors: 'data/loader.ts',
    Trainer: 'train/trainer.ts',
    ProcessGroup: 'distributed.ts',
  };
  if (!files[cls]) return new Set();
  const src = readFileSync(join(repoRoot, 'lib', files[cls]), 'utf8');
  return new Set([...src.matchAll(/^\s+private\s+(?:readonly\s+|async\s+|\*\s*|get\s+)*(\w+)/gm)].map((m) => m[1]));
}
