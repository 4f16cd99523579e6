// The safetensors format (loadable by Python's safetensors): an 8-byte
// little-endian header length, a JSON header naming each tensor's dtype,
// shape and byte range, string metadata, then the raw little-endian data.
// Written atomically: a temporary file in the same folder, fsync, rename,
// fsync of the folder — a crash leaves the previous file or the new one.
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, readdirSync, renameSync, rmSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

export type StDType = 'F32' | 'F64' | 'I64' | 'I32' | 'U8';
export type StData = Float32Array | Float64Array | BigInt64Array | Int32Array | Uint8Array;

export interface StTensor {
  dtype: StDType;
  shape: number[];
  data: StData;
}

const DTYPE_OF = (d: StData): StDType =>
  d instanceof Float32Array ? 'F32' : d instanceof Float64Array ? 'F64' : d instanceof BigInt64Array ? 'I64' : d instanceof Int32Array ? 'I32' : 'U8';

export function stTensor(data: StData, shape: number[]): StTensor {
  return { dtype: DTYPE_OF(data), shape, data };
}

export function encodeSafetensors(tensors: Record<string, StTensor>, metadata: Record<string, string> = {}): Buffer[] {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  const chunks: Buffer[] = [];
  for (const [name, t] of Object.entries(tensors)) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (n !== t.data.length) throw new Error(`safetensors: '${name}' has shape [${t.shape}] but ${t.data.length} values`);
    const bytes = Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes.length] };
    offset += bytes.length;
    chunks.push(bytes);
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8); // align the data to 8 bytes
  const head = Buffer.alloc(8 + Buffer.byteLength(json));
  head.writeBigUInt64LE(BigInt(Buffer.byteLength(json)), 0);
  head.write(json, 8);
  return [head, ...chunks];
}

export function decodeSafetensors(bytes: Uint8Array, name = 'safetensors file'): { tensors: Record<string, StTensor>; metadata: Record<string, string> } {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf.length < 8) throw new Error(`${name}: too short to be a safetensors file`);
  const n = Number(buf.readBigUInt64LE(0));
  if (n > buf.length - 8) throw new Error(`${name}: header length ${n} exceeds the file; the file is truncated or corrupt`);
  let header: Record<string, { dtype: StDType; shape: number[]; data_offsets: [number, number] } | Record<string, string>>;
  try {
    header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  } catch {
    throw new Error(`${name}: the header is not valid JSON; the file is corrupt`);
  }
  const data = buf.subarray(8 + n);
  const tensors: Record<string, StTensor> = {};
  for (const [key, v] of Object.entries(header)) {
    if (key === '__metadata__') continue;
    const e = v as { dtype: StDType; shape: number[]; data_offsets: [number, number] };
    const [a, b] = e.data_offsets;
    if (!(a <= b && b <= data.length)) throw new Error(`${name}: tensor '${key}' lies outside the file; the file is truncated`);
    const raw = Buffer.from(data.subarray(a, b)); // copy: aligned, owned
    const ab = raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength);
    const arr =
      e.dtype === 'F32' ? new Float32Array(ab) : e.dtype === 'F64' ? new Float64Array(ab) : e.dtype === 'I64' ? new BigInt64Array(ab) : e.dtype === 'I32' ? new Int32Array(ab) : new Uint8Array(ab);
    tensors[key] = { dtype: e.dtype, shape: e.shape, data: arr };
  }
  return { tensors, metadata: (header.__metadata__ as Record<string, string>) ?? {} };
}

export function readSafetensors(file: string) {
  if (!existsSync(file)) throw new Error(`checkpoint not found: ${file}`);
  return decodeSafetensors(readFileSync(file), file);
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
