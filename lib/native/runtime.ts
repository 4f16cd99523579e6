// The addon's process-wide settings and facts, as typed functions: the
// versions it was built against, LibTorch's thread count, memory, CUDA.
import { readFileSync } from 'node:fs';
import { ConfigError } from '../errors.js';
import type { NativeVersions } from './binding.js';
import { native } from './load.js';

/** The addon's version, flavour, LibTorch, threads and build facts. */
export const versions = (): NativeVersions => native().versions();

/** LibTorch's intra-op threads for this process (torch.set_num_threads), and OpenBLAS's where the process has it. */
export function setThreads(n: number): void {
  if (!Number.isInteger(n) || n < 1) throw new ConfigError('threads', [{ path: 'threads', message: `must be an integer ≥ 1, got ${n}` }]);
  native().setThreads(n);
}

/** Live tensors and their bytes, and the C heap's state where glibc reports it. */
export const memory = (): ReturnType<ReturnType<typeof native>['memory']> => native().memory();

/** Returns the C heap's free memory to the system (malloc_trim); false where unsupported. */
export const trimMemory = (): boolean => native().trimMemory();

/**
 * Runs `fn` while counting LibTorch's CPU allocations (a counting wrapper
 * around its CPU allocator, in place for the call): fn's value, and how many
 * blocks of memory its synchronous part took from LibTorch's CPU allocator
 * and their bytes. A profiling aid (`npm run bench:profile` prints it per
 * step). Views and tensors that share memory allocate nothing; CUDA memory
 * is not counted. Calls nest; an error from fn ends the count and is rethrown.
 */
export function countAllocations<T>(fn: () => T): { value: T; count: number; bytes: number } {
  if (typeof fn !== 'function') throw new ConfigError('countAllocations', [{ path: 'fn', message: 'must be a function to run while counting' }]);
  const start = native().allocationCounter(true);
  let end = start;
  let value: T;
  try {
    value = fn();
  } finally {
    end = native().allocationCounter(false);
  }
  return { value, count: end.count - start.count, bytes: end.bytes - start.bytes };
}

/** CUDA availability, as the loaded addon sees it (always false in the CPU flavour). */
export const cuda = {
  isAvailable: (): boolean => versions().cudaAvailable,
  deviceCount: (): number => versions().cudaDeviceCount,
};

/**
 * Whether this CPU has native bfloat16 and float16 arithmetic (x86 flags in
 * /proc/cpuinfo: AVX512-BF16 or AMX-BF16; AVX512-FP16 or AMX-FP16). Without
 * them LibTorch emulates the reduced type: precision 'bf16' / 'fp16' stay
 * correct, only slower. 'unknown' where /proc/cpuinfo cannot be read.
 */
export function cpuReducedPrecision(): { bf16: 'native' | 'emulated' | 'unknown'; fp16: 'native' | 'emulated' | 'unknown'; flags: string[] } {
  let flags: Set<string>;
  try {
    const line = readFileSync('/proc/cpuinfo', 'utf8').split('\n').find((l) => /^(flags|Features)\s*:/.test(l)) ?? '';
    flags = new Set(line.split(':')[1]?.trim().split(/\s+/) ?? []);
  } catch {
    return { bf16: 'unknown', fp16: 'unknown', flags: [] };
  }
  if (flags.size === 0) return { bf16: 'unknown', fp16: 'unknown', flags: [] };
  const present = (names: string[]) => names.filter((f) => flags.has(f));
  const bf16 = present(['avx512_bf16', 'amx_bf16']), fp16 = present(['avx512_fp16', 'amx_fp16']);
  return { bf16: bf16.length > 0 ? 'native' : 'emulated', fp16: fp16.length > 0 ? 'native' : 'emulated', flags: [...bf16, ...fp16] };
}
