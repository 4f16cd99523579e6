// A model's state as PyTorch's state_dict: every parameter and buffer under
// PyTorch's name and shape (module index path, then weight/bias,
// running_mean/running_var, num_batches_tracked), in safetensors files that
// Python's safetensors reads and writes, or as an object of typed arrays.
import * as check from '../arguments.js';
import { UsamError } from '../errors.js';
import { readSafetensors, type StData, stTensor, type StTensor, writeSafetensors } from '../safetensors.js';
import type { Model } from './model.js';

type FloatArray = Float32Array | Float64Array;

/** One entry: values with their shape, or bare values (then only the element count is checked). */
export type StateDictEntry = StData | { data: StData; shape: number[] };
export type StateDictSource = string | Record<string, StateDictEntry>;

export interface LoadStateDictOptions {
  /** convert float tensors of the other float dtype (float32 ⇄ float64) instead of refusing them */
  convertDType?: boolean;
}

interface Slot {
  name: string;
  shape: number[];
  offset: number;
  numel: number;
  kind: 'param' | 'buffer' | 'counter';
}

function slotsOf(model: Model): Slot[] {
  const { info, counterNames } = model.buffers();
  return [
    ...model.paramInfo().map((p) => ({ ...p, kind: 'param' as const })),
    ...info.map((b) => ({ ...b, kind: 'buffer' as const })),
    ...counterNames.map((name, i) => ({ name, shape: [], offset: i, numel: 1, kind: 'counter' as const })),
  ];
}

/** The model's state: parameters and buffers (copies), under PyTorch's names, in PyTorch's order. */
export function stateDictOf(model: Model): Record<string, StTensor> {
  const params = model.params.toArray() as FloatArray;
  const { values, counters } = model.buffers();
  const buffers = values.numel > 0 ? (values.toArray() as FloatArray) : undefined;
  const counts = counters.numel > 0 ? (counters.toArray() as BigInt64Array) : undefined;
  const out: Record<string, StTensor> = {};
  for (const s of slotsOf(model)) {
    const from = s.kind === 'param' ? params : s.kind === 'buffer' ? buffers! : counts!;
    out[s.name] = stTensor(from.slice(s.offset, s.offset + s.numel) as StData, s.shape);
  }
  return out;
}

/** Writes the state dict as a safetensors file (atomically), readable by safetensors.torch.load_file. */
export function saveStateDict(model: Model, file: string): void {
  writeSafetensors(file, stateDictOf(model), { format: 'pt' });
}

const kindOf = (d: StData) =>
  d instanceof Float32Array ? 'float32' : d instanceof Float64Array ? 'float64' : d instanceof BigInt64Array ? 'int64' : d instanceof Int32Array ? 'int32' : 'uint8';

/**
 * Loads a state dict (a safetensors file, or an object of typed arrays) into
 * the model. Every name and shape is checked before anything is written: an
 * error lists what is missing, what is extra and what is mis-shaped, and
 * nothing of the model changes.
 */
export function loadStateDict(model: Model, source: StateDictSource, options: LoadStateDictOptions = {}): void {
  const where = typeof source === 'string' ? source : 'state dict';
  const given: Record<string, { data: StData; shape?: number[] }> = {};
  if (typeof source === 'string') {
    for (const [name, t] of Object.entries(readSafetensors(source).tensors)) given[name] = { data: t.data, shape: t.shape };
  } else {
    if (source === null || typeof source !== 'object') throw new check.ArgumentError('Model.loadStateDict', 'source', `must be a safetensors file name or an object of typed arrays (stateDict()), got ${check.describeValue(source)}`);
    for (const [name, e] of Object.entries(source)) {
      if (ArrayBuffer.isView(e)) given[name] = { data: e as StData };
      else if (e && typeof e === 'object' && ArrayBuffer.isView((e as { data: unknown }).data) && Array.isArray((e as { shape: unknown }).shape))
        given[name] = e as { data: StData; shape: number[] };
      else throw new UsamError(`${where}: '${name}' must be a typed array or {data: typed array, shape: number[]}`);
    }
  }
  const slots = slotsOf(model);
  const known = new Set(slots.map((s) => s.name));
  const missing = slots.filter((s) => !(s.name in given)).map((s) => s.name);
  const extra = Object.keys(given).filter((n) => !known.has(n));
  const misshaped: string[] = [];
  const wrongType: string[] = [];
  for (const s of slots) {
    const g = given[s.name];
    if (!g) continue;
    const shapeOk = g.shape ? g.shape.length === s.shape.length && g.shape.every((d, i) => d === s.shape[i]) : g.data.length === s.numel;
    if (!shapeOk) misshaped.push(`${s.name}: [${g.shape ?? `${g.data.length} values`}] where the model has [${s.shape}]`);
    const kind = kindOf(g.data);
    if (s.kind === 'counter') {
      if (kind !== 'int64') wrongType.push(`${s.name} is ${kind}, not int64`);
    } else if (kind !== model.dtype && !(options.convertDType && (kind === 'float32' || kind === 'float64')))
      wrongType.push(`${s.name} is ${kind}, the model is ${model.dtype}`);
  }
  const problems = [
    missing.length ? `missing: ${missing.join(', ')}` : '',
    extra.length ? `not in the model: ${extra.join(', ')}` : '',
    misshaped.length ? `wrong shape: ${misshaped.join('; ')}` : '',
    wrongType.length ? `wrong dtype: ${wrongType.join('; ')}${wrongType.some((w) => w.includes('the model is')) ? ' (pass {convertDType: true} to convert)' : ''}` : '',
  ].filter(Boolean);
  if (problems.length > 0)
    throw new UsamError(`${where} does not fit the model (${model.numParams} parameters; names as in model.paramInfo() and model.buffers()):\n  ${problems.join('\n  ')}`);

  // everything checked: write all three flat buffers
  const float = (n: number) => (model.dtype === 'float64' ? new Float64Array(n) : new Float32Array(n));
  const { values, counters } = model.buffers();
  const params = float(model.numParams), buffers = float(values.numel), counts = new BigInt64Array(counters.numel);
  for (const s of slots) {
    const data = given[s.name].data;
    if (s.kind === 'counter') counts[s.offset] = (data as BigInt64Array)[0];
    else (s.kind === 'param' ? params : buffers).set(data as FloatArray, s.offset);
  }
  model.params.copyFrom(params);
  if (values.numel > 0) values.copyFrom(buffers);
  if (counters.numel > 0) counters.copyFrom(counts);
}
