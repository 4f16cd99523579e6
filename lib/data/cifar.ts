// CIFAR-10 / CIFAR-100 binary files: records of label byte(s) then 3072
// pixel bytes (1024 red, 1024 green, 1024 blue, row-major 32×32).
// CIFAR-10: 1 label byte; CIFAR-100: coarse then fine label (we keep fine).
import * as check from '../arguments.js';
import { UsamError } from '../errors.js';
import { existsSync, readFileSync } from 'node:fs';

export interface CifarRecords {
  images: Uint8Array; // N × 3 × 32 × 32
  labels: Int32Array;
  count: number;
}

export function readCifar(files: string[], variant: 'cifar10' | 'cifar100'): CifarRecords {
  check.array('readCifar', 'files', files, 'an array of file names');
  files.forEach((f, i) => check.string('readCifar', `files[${i}]`, f, 'a file name'));
  check.oneOf('readCifar', 'variant', variant, ['cifar10', 'cifar100'] as const);
  const labelBytes = variant === 'cifar10' ? 1 : 2;
  const record = labelBytes + 3072;
  const parts = files.map((f) => {
    if (!existsSync(f)) throw new UsamError(`CIFAR file not found: ${f}`);
    const b = readFileSync(f);
    if (b.length === 0 || b.length % record !== 0)
      throw new UsamError(`${f}: ${b.length} bytes is not a whole number of ${variant} records (${record} bytes each); the file is truncated or not ${variant}`);
    return b;
  });
  const count = parts.reduce((s, b) => s + b.length / record, 0);
  const images = new Uint8Array(count * 3072);
  const labels = new Int32Array(count);
  const classes = variant === 'cifar10' ? 10 : 100;
  let n = 0;
  for (const [k, b] of parts.entries())
    for (let off = 0; off < b.length; off += record, n++) {
      const label = b[off + labelBytes - 1];
      if (label >= classes) throw new UsamError(`${files[k]}: record ${off / record} has label ${label}, but ${variant} has ${classes} classes`);
      labels[n] = label;
      images.set(b.subarray(off + labelBytes, off + record), n * 3072);
    }
  return { images, labels, count };
}
