// IDX files (MNIST, Fashion-MNIST), raw or gzipped: magic 0x0000 0x08 <ndim>,
// then ndim big-endian uint32 sizes, then unsigned bytes.
import * as check from '../arguments.js';
import { UsamError } from '../errors.js';
import { existsSync, readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';

export interface IdxArray {
  dims: number[];
  data: Uint8Array;
}

export function readIdx(file: string): IdxArray {
  check.string('readIdx', 'file', file, 'an IDX file name');
  if (!existsSync(file)) throw new UsamError(`IDX file not found: ${file}`);
  let bytes: Uint8Array = readFileSync(file);
  if (bytes[0] === 0x1f && bytes[1] === 0x8b) {
    try {
      bytes = gunzipSync(bytes);
    } catch (e) {
      throw new UsamError(`${file}: corrupt gzip data (${(e as Error).message}); download or reinstall the file`);
    }
  }
  return parseIdx(bytes, file);
}

export function parseIdx(bytes: Uint8Array, name = 'IDX data'): IdxArray {
  check.bytes('parseIdx', 'bytes', bytes);
  check.string('parseIdx', 'name', name, 'a name for messages');
  if (bytes.length < 4) throw new UsamError(`${name}: too short for an IDX header (${bytes.length} bytes)`);
  if (bytes[0] !== 0 || bytes[1] !== 0) throw new UsamError(`${name}: not an IDX file (bad magic number)`);
  if (bytes[2] !== 0x08) throw new UsamError(`${name}: IDX element type 0x${bytes[2].toString(16)} is not supported (only unsigned bytes, 0x08)`);
  const ndim = bytes[3];
  if (ndim < 1 || bytes.length < 4 + 4 * ndim) throw new UsamError(`${name}: truncated IDX header`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const dims = Array.from({ length: ndim }, (_, i) => view.getUint32(4 + 4 * i, false));
  const count = dims.reduce((a, b) => a * b, 1);
  const start = 4 + 4 * ndim;
  if (bytes.length - start !== count)
    throw new UsamError(`${name}: IDX header says ${dims.join('×')} = ${count} values but the file holds ${bytes.length - start}; the file is truncated or corrupt`);
  return { dims, data: bytes.subarray(start, start + count) };
}

/** Encodes unsigned bytes as IDX (used by tests and tools). */
export function encodeIdx(dims: number[], data: Uint8Array): Uint8Array {
  const n = Array.from(check.numbers('encodeIdx', 'dims', dims, { integer: true, min: 0 })).reduce((a, b) => a * b, 1);
  check.bytes('encodeIdx', 'data', data);
  if (data.length !== n) throw new check.ArgumentError('encodeIdx', 'data', `holds ${data.length} bytes; dims [${dims.join(', ')}] need ${n}`);
  const out = new Uint8Array(4 + 4 * dims.length + data.length);
  const view = new DataView(out.buffer);
  out[2] = 0x08;
  out[3] = dims.length;
  dims.forEach((d, i) => view.setUint32(4 + 4 * i, d, false));
  out.set(data, 4 + 4 * dims.length);
  return out;
}
