export interface LibtorchAttempt {
  source: string;
  where: string;
  why: string;
}
export interface LibtorchFound {
  source: string;
  torchDir: string;
}
export const SYSTEM_TORCH_DIRS: string[];
export function findLibtorch(env?: NodeJS.ProcessEnv): { found: LibtorchFound | null; tried: LibtorchAttempt[] };
export function libtorchLibDir(torchDir: string): string | null;
export function describeTried(tried: LibtorchAttempt[]): string;
export const HOW_TO_PROVIDE: string;
