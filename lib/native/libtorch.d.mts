export interface LibtorchAttempt {
  source: string;
  where: string;
  why: string;
}
/** A LibTorch library folder: its version (from TorchConfigVersion.cmake) and whether it is a CUDA build. */
export interface LibtorchLibrary {
  libDir: string;
  version: string | null;
  cuda: boolean;
}
export interface LibtorchFound extends LibtorchLibrary {
  source: string;
  where: string;
  torchDir: string;
}
export interface BuildInfo {
  flavour: 'cpu' | 'cuda';
  torch: string;
  torchLibDir: string;
  cuda: string;
  kind: 'local' | 'prebuild';
  addon: string;
}
export const SYSTEM_TORCH_DIRS: string[];
export function findAllLibtorch(env?: NodeJS.ProcessEnv): { all: LibtorchFound[]; tried: LibtorchAttempt[] };
export function clearLibtorchSearches(): void;
export function findLibtorch(env?: NodeJS.ProcessEnv): { found: LibtorchFound | null; tried: LibtorchAttempt[] };
export function libtorchLibDir(torchDir: string): string | null;
export function libtorchAt(libDir: string): LibtorchLibrary | null;
export function describeLibtorch(t: LibtorchLibrary): string;
export function describeTried(tried: LibtorchAttempt[]): string;
export const HOW_TO_PROVIDE: string;
export function readBuildInfo(binaryPath: string): BuildInfo | null;
export function realpath(p: string): string;
export function majorMinor(version: string | null | undefined): string;
export function libtorchFiles(libDir: string, flavour: string): string[];
