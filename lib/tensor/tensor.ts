// Tensor handles. Tensors stay native; TypeScript holds handles with shape,
// dtype and device, and copies data in and out with typed arrays.
import type { DType, Device, FloatDType, NativeTensor } from '../native/binding.js';
import * as check from '../arguments.js';
import { ConfigError, UsamError } from '../errors.js';
import { native } from '../native/load.js';

export type Tensor = NativeTensor;
export type { DType, Device, FloatDType };

export interface TensorOptions {
  dtype?: DType;
  device?: Device | string;
}

type Data = ArrayLike<number> | Float32Array | Float64Array | Int32Array | BigInt64Array;

function asTyped(data: Data, dtype: DType): Float32Array | Float64Array | Int32Array | BigInt64Array {
  if (data instanceof Float32Array || data instanceof Float64Array || data instanceof Int32Array || data instanceof BigInt64Array)
    return data;
  if (dtype === 'int64') {
    const out = new BigInt64Array(data.length);
    for (let i = 0; i < data.length; i++) {
      const v = data[i];
      if (!Number.isInteger(v)) throw new UsamError(`tensor: data[${i}] = ${v} is not an integer; int64 tensors take integers`);
      out[i] = BigInt(v);
    }
    return out;
  }
  return dtype === 'float32' ? Float32Array.from(data) : Float64Array.from(data);
}

const DTYPES = ['float32', 'float64', 'int64'] as const;

/** `{ dtype?, device? }`, checked. */
function tensorOptions(fn: string, options: TensorOptions | undefined): TensorOptions {
  const o = check.options(fn, 'options', options);
  if (o.dtype !== undefined) check.oneOf(fn, 'options.dtype', o.dtype, DTYPES);
  if (o.device !== undefined) check.string(fn, 'options.device', o.device, "a device ('cpu', 'cuda', 'cuda:1')");
  return o;
}

/**
 * A live tensor of the library (not disposed), for a door's argument `name`:
 * `tensorArg('Model.forward', 'x', x)`.
 */
export function tensorArg(fn: string, name: string, v: unknown): Tensor {
  return check.instanceOf(fn, name, v, native().Tensor as unknown as abstract new () => Tensor, 'a Tensor (tensor(...), zeros(...), labels(...))', (t) => t.disposed);
}

/** A tensor argument that may be left out. */
export const optionalTensorArg = (fn: string, name: string, v: unknown): Tensor | undefined => (v === undefined ? undefined : tensorArg(fn, name, v));

/** A tensor from values (copied). `shape` defaults to [data.length]; dtype to float32 (int64 for Int32Array/BigInt64Array data). */
export function tensor(data: Data, shape?: number[], options?: TensorOptions): Tensor {
  check.values('tensor', 'data', data);
  if (shape !== undefined) check.shape('tensor', 'shape', shape);
  const o = tensorOptions('tensor', options);
  const inferred: DType =
    data instanceof Float64Array ? 'float64' : data instanceof Int32Array || data instanceof BigInt64Array ? 'int64' : 'float32';
  const dtype = o.dtype ?? inferred;
  return native().Tensor.fromArray(asTyped(data, dtype), shape ?? [data.length], dtype, o.device ?? 'cpu');
}

/**
 * A float tensor of `values` (copied) in the dtype and on the device of
 * `like` — a model, a tensor: `floatTensor(model, values)` is a flat vector
 * in the model's dtype. `shape` defaults to [values.length].
 */
export function floatTensor(like: { dtype: string; device: Device | string }, values: ArrayLike<number>, shape: number[] = [values.length]): Tensor {
  if (like.dtype !== 'float32' && like.dtype !== 'float64') throw new UsamError(`floatTensor: a ${like.dtype} tensor cannot hold values of a float vector; use a float32 or float64 model or tensor`);
  const data = like.dtype === 'float64' ? (values instanceof Float64Array ? values : Float64Array.from(values)) : values instanceof Float32Array ? values : Float32Array.from(values);
  return native().Tensor.fromArray(data, shape, like.dtype, like.device);
}

/** Class labels as an int64 tensor. */
export function labels(data: ArrayLike<number> | Int32Array, options?: { device?: Device | string }): Tensor {
  if (!Array.isArray(data) && !(ArrayBuffer.isView(data) && !(data instanceof DataView) && !(data instanceof BigInt64Array)))
    throw new check.ArgumentError('labels', 'data', `must be an array of class indices (integers), got ${check.describeValue(data)}`);
  const o = tensorOptions('labels', options);
  if (!(data instanceof Int32Array))
    for (let i = 0; i < data.length; i++) {
      const v = data[i];
      // Int32Array.from would truncate 1.7 to 1: class labels are integers (a loss checks their range: -1 is an integer the loss refuses)
      if (!Number.isInteger(v) || Math.abs(v) > 2 ** 31 - 1)
        throw new ConfigError('labels', [{ path: `data[${i}]`, message: `is ${v}; class labels are integers (for float targets use tensor(values, shape, { dtype: 'float32' }))` }]);
    }
  return tensor(data instanceof Int32Array ? data : Int32Array.from(data), [data.length], { dtype: 'int64', device: o.device });
}

export function zeros(shape: number[], options?: TensorOptions): Tensor {
  check.shape('zeros', 'shape', shape);
  const o = tensorOptions('zeros', options);
  return native().Tensor.zeros(shape, o.dtype ?? 'float32', o.device ?? 'cpu');
}

/** Float values of a float tensor as numbers (a copy). */
export function toFloatArray(t: Tensor): Float32Array | Float64Array {
  const a = tensorArg('toFloatArray', 'tensor', t).toArray();
  if (a instanceof Float32Array || a instanceof Float64Array) return a;
  throw new check.ArgumentError('toFloatArray', 'tensor', `must be a float tensor, got a ${t.dtype} one`);
}
