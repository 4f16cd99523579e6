// The safetensors format (loadable by Python's safetensors): an 8-byte
// little-endian header length, a JSON header naming each tensor's dtype,
// shape and byte range, string metadata, then the raw little-endian data.
// Written atomically: a temporary file in the same folder, fsync, rename,
// fsync of the folder — a crash leaves the previous file or the new one.
import * as check from './arguments.js';
import { UsamError } from './errors.js';
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, readdirSync, renameSync, rmSync, writeSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { basename, dirname, join } from 'node:path';

export type StDType = 'F32' | 'F64' | 'I64' | 'I32' | 'U8';
export type StData = Float32Array | Float64Array | BigInt64Array | Int32Array | Uint8Array;

export interface StTensor {
  dtype: StDType;
  shape: number[];
  data: StData;
}

/** Bytes per element of the dtypes read here. */
const SIZE: Record<StDType, number> = { F64: 8, F32: 4, I64: 8, I32: 4, U8: 1 };
/** Dtypes of the format that are refused (not decoded as something else). */
const REFUSED: Record<string, string> = {
  F16: 'float16',
  BF16: 'bfloat16',
  F8_E4M3: 'float8',
  F8_E5M2: 'float8',
  I16: 'int16',
  I8: 'int8',
  U16: 'uint16',
  U32: 'uint32',
  U64: 'uint64',
  BOOL: 'bool',
};
/** The safetensors library's own bound on the header (100 MB). */
const MAX_HEADER_BYTES = 100_000_000;
/** Metadata key of the checksum written by encodeSafetensors({ checksum: true }). */
export const CHECKSUM_KEY = 'universal-sam.sha256';

const DTYPE_OF = (d: StData): StDType =>
  d instanceof Float32Array ? 'F32' : d instanceof Float64Array ? 'F64' : d instanceof BigInt64Array ? 'I64' : d instanceof Int32Array ? 'I32' : 'U8';

export function stTensor(data: StData, shape: number[]): StTensor {
  if (!(data instanceof Float32Array || data instanceof Float64Array || data instanceof BigInt64Array || data instanceof Int32Array || data instanceof Uint8Array))
    throw new check.ArgumentError('stTensor', 'data', `must be a Float32Array, Float64Array, BigInt64Array, Int32Array or Uint8Array, got ${check.describeValue(data)}`);
  const n = Array.from(check.numbers('stTensor', 'shape', shape, { integer: true, min: 0 })).reduce((a, b) => a * b, 1);
  if (n !== data.length) throw new check.ArgumentError('stTensor', 'shape', `[${shape.join(', ')}] holds ${n} values, data has ${data.length}`);
  return { dtype: DTYPE_OF(data), shape, data };
}

interface Entry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

/**
 * SHA-256 over each tensor's name, dtype, shape and byte range (in name
 * order) and the data bytes: any byte of the file changed after writing,
 * in the header's tensor entries or in the data, changes it.
 */
function checksum(entries: [string, Entry][], data: Uint8Array[]): string {
  const h = createHash('sha256');
  for (const [name, e] of [...entries].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
    h.update(`${JSON.stringify(name)}:${e.dtype}:[${e.shape.join(',')}]:${e.data_offsets[0]}-${e.data_offsets[1]}\n`);
  for (const d of data) h.update(d);
  return h.digest('hex');
}

/**
 * The file's chunks: header, then the tensors' bytes. With `checksum`, the
 * metadata also holds a SHA-256 of the tensor entries and data
 * (CHECKSUM_KEY), which decodeSafetensors verifies.
 */
export function encodeSafetensors(
  tensors: Record<string, StTensor>,
  metadata: Record<string, string> = {},
  options: { checksum?: boolean } = {},
): Buffer[] {
  const entries: [string, Entry][] = [];
  let offset = 0;
  const chunks: Buffer[] = [];
  for (const [name, t] of Object.entries(tensors)) {
    if (name === '__metadata__') throw new UsamError("safetensors: '__metadata__' cannot name a tensor");
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (n !== t.data.length) throw new UsamError(`safetensors: '${name}' has shape [${t.shape}] but ${t.data.length} values`);
    if (DTYPE_OF(t.data) !== t.dtype) throw new UsamError(`safetensors: '${name}' is declared ${t.dtype} but holds ${DTYPE_OF(t.data)} data`);
    const bytes = Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    entries.push([name, { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes.length] }]);
    offset += bytes.length;
    chunks.push(bytes);
  }
  const meta = options.checksum ? { ...metadata, [CHECKSUM_KEY]: checksum(entries, chunks) } : metadata;
  let json = JSON.stringify({ __metadata__: meta, ...Object.fromEntries(entries) });
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8); // align the data to 8 bytes
  const head = Buffer.alloc(8 + Buffer.byteLength(json));
  head.writeBigUInt64LE(BigInt(Buffer.byteLength(json)), 0);
  head.write(json, 8);
  return [head, ...chunks];
}

const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/**
 * Parses and validates a safetensors file: the header's size and JSON, each
 * tensor's dtype (F64, F32, I64, I32, U8; others refused by name), shape, and
 * byte range (shape × dtype size, inside the data, no overlaps, no gaps), and
 * the checksum when the metadata holds one. Every refusal says what is wrong.
 */
export function decodeSafetensors(bytes: Uint8Array, name = 'safetensors file'): { tensors: Record<string, StTensor>; metadata: Record<string, string> } {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const damaged = (what: string) => new UsamError(`${name}: ${what}; the file is damaged or not a safetensors file`);
  if (buf.length < 8) throw damaged(`${buf.length} bytes are too few for a safetensors file`);
  const n64 = buf.readBigUInt64LE(0);
  if (n64 > BigInt(MAX_HEADER_BYTES)) throw damaged(`the header claims ${n64} bytes (at most ${MAX_HEADER_BYTES})`);
  const n = Number(n64);
  if (n > buf.length - 8) throw damaged(`the header claims ${n} bytes but the file has ${buf.length - 8} after its length field (truncated?)`);
  let header: unknown;
  try {
    header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  } catch {
    throw damaged('the header is not valid JSON');
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) throw damaged('the header is not a JSON object');
  const data = buf.subarray(8 + n);
  const metadata = ((header as Record<string, unknown>).__metadata__ ?? {}) as Record<string, unknown>;
  if (typeof metadata !== 'object' || metadata === null || Array.isArray(metadata) || Object.values(metadata).some((v) => typeof v !== 'string'))
    throw damaged('__metadata__ must map names to strings');
  const entries: [string, Entry][] = [];
  for (const [key, v] of Object.entries(header as Record<string, unknown>)) {
    if (key === '__metadata__') continue;
    const e = v as Partial<Entry>;
    if (typeof e !== 'object' || e === null) throw damaged(`tensor '${key}' has no entry object`);
    if (typeof e.dtype !== 'string' || !(e.dtype in SIZE)) {
      const known = typeof e.dtype === 'string' ? REFUSED[e.dtype] : undefined;
      throw new UsamError(
        known
          ? `${name}: tensor '${key}' is ${e.dtype} (${known}), which universal-sam does not read; save it as float32 or float64 (in PyTorch: t.float() or t.double())`
          : `${name}: tensor '${key}' has dtype ${JSON.stringify(e.dtype)}, which is not a safetensors dtype; the file is damaged`,
      );
    }
    if (!Array.isArray(e.shape) || !e.shape.every(isCount)) throw damaged(`tensor '${key}' has shape ${JSON.stringify(e.shape)}`);
    const off = e.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || !isCount(off[0]) || !isCount(off[1]) || off[0] > off[1])
      throw damaged(`tensor '${key}' has data_offsets ${JSON.stringify(off)}`);
    const numel = e.shape.reduce((a, b) => a * b, 1);
    if (off[1] - off[0] !== numel * SIZE[e.dtype as StDType])
      throw damaged(`tensor '${key}' is ${e.dtype} [${e.shape}] (${numel * SIZE[e.dtype as StDType]} bytes) but spans ${off[1] - off[0]} bytes`);
    if (off[1] > data.length) throw damaged(`tensor '${key}' ends at byte ${off[1]} of ${data.length} data bytes (truncated?)`);
    entries.push([key, e as Entry]);
  }
  // the byte ranges tile the data: sorted by start, each begins where the last ended
  let end = 0;
  for (const [key, e] of [...entries].sort((a, b) => a[1].data_offsets[0] - b[1].data_offsets[0])) {
    if (e.data_offsets[0] !== end)
      throw damaged(e.data_offsets[0] < end ? `tensor '${key}' overlaps another tensor's bytes` : `bytes ${end}..${e.data_offsets[0]} belong to no tensor`);
    end = e.data_offsets[1];
  }
  if (end !== data.length) throw damaged(`${data.length - end} bytes after the last tensor belong to none`);
  const expected = metadata[CHECKSUM_KEY];
  if (expected !== undefined) {
    const actual = checksum(entries, [data]);
    if (actual !== expected)
      throw new UsamError(`${name}: the file is damaged: its checksum (${CHECKSUM_KEY}) does not match its contents (bytes changed after it was written); use a copy from before the damage`);
  }
  const tensors: Record<string, StTensor> = {};
  for (const [key, e] of entries) {
    const [a, b] = e.data_offsets;
    const raw = Buffer.from(data.subarray(a, b)); // copy: aligned, owned
    const ab = raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength);
    const arr =
      e.dtype === 'F32' ? new Float32Array(ab) : e.dtype === 'F64' ? new Float64Array(ab) : e.dtype === 'I64' ? new BigInt64Array(ab) : e.dtype === 'I32' ? new Int32Array(ab) : new Uint8Array(ab);
    tensors[key] = { dtype: e.dtype as StDType, shape: e.shape, data: arr };
  }
  return { tensors, metadata: metadata as Record<string, string> };
}

/** Reads and validates a safetensors file (decodeSafetensors). */
export function readSafetensors(file: string) {
  check.string('readSafetensors', 'file', file, 'a safetensors file name');
  if (!existsSync(file)) throw new UsamError(`file not found: ${file}`);
  return decodeSafetensors(readFileSync(file), file);
}

/** Writes a safetensors file atomically; `checksum` adds a SHA-256 that readSafetensors verifies. */
export function writeSafetensors(
  file: string,
  tensors: Record<string, StTensor>,
  metadata: Record<string, string> = {},
  options: { checksum?: boolean } = {},
): void {
  check.string('writeSafetensors', 'file', file, 'a file name');
  check.object('writeSafetensors', 'tensors', tensors, 'an object of names to stTensor(data, shape)');
  for (const [k, v] of Object.entries(check.record('writeSafetensors', 'metadata', metadata, 'an object of names to strings')))
    if (typeof v !== 'string') throw new check.ArgumentError('writeSafetensors', 'metadata', `must map names to strings; ${k} is ${check.describeValue(v)}`);
  check.options('writeSafetensors', 'options', options);
  writeAtomic(file, encodeSafetensors(tensors, metadata, options));
}

/** Writes `chunks` to `file` atomically (temporary file, fsync, rename, fsync folder). */
export function writeAtomic(file: string, chunks: Uint8Array[]): void {
  const dir = dirname(file);
  const tmp = join(dir, `.${basename(file)}.tmp-${process.pid}-${Date.now()}`);
  // leftovers of writers that died mid-write
  for (const f of readdirSync(dir)) if (f.startsWith(`.${basename(file)}.tmp-`)) rmSync(join(dir, f), { force: true });
  const fd = openSync(tmp, 'w');
  try {
    for (const c of chunks) {
      let off = 0;
      while (off < c.length) off += writeSync(fd, c, off, c.length - off);
    }
    fsyncSync(fd);
  } catch (e) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw e;
  }
  closeSync(fd);
  renameSync(tmp, file);
  const dfd = openSync(dir, 'r');
  try {
    fsyncSync(dfd);
  } finally {
    closeSync(dfd);
  }
}
