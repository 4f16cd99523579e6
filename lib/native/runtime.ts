// The addon's process-wide settings and facts, as typed functions: the
// versions it was built against, LibTorch's thread count, memory, CUDA.
import { ConfigError } from '../errors.js';
import type { NativeVersions } from './binding.js';
import { native } from './load.js';

/** The addon's version, flavour, LibTorch, threads and build facts. */
export const versions = (): NativeVersions => native().versions();

/** LibTorch's intra-op threads for this process (torch.set_num_threads). */
export function setThreads(n: number): void {
  if (!Number.isInteger(n) || n < 1) throw new ConfigError('threads', [{ path: 'threads', message: `must be an integer ≥ 1, got ${n}` }]);
  native().setThreads(n);
}

/** Live tensors and their bytes, and the C heap's state where glibc reports it. */
export const memory = (): ReturnType<ReturnType<typeof native>['memory']> => native().memory();

/** Returns the C heap's free memory to the system (malloc_trim); false where unsupported. */
export const trimMemory = (): boolean => native().trimMemory();

/** CUDA availability, as the loaded addon sees it (always false in the CPU flavour). */
export const cuda = {
  isAvailable: (): boolean => versions().cudaAvailable,
  deviceCount: (): number => versions().cudaDeviceCount,
};
