// CUDA availability, as the loaded addon sees it (always false in the CPU flavour).
import { native } from './native/load.js';

export const cuda = {
  isAvailable: (): boolean => native().versions().cudaAvailable,
  deviceCount: (): number => native().versions().cudaDeviceCount,
};
