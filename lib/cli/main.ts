// The `usam` command line.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadedFrom, native, packageRoot } from '../native/load.js';
import { probeCommand } from './probe.js';
import { reportCommand } from './report.js';
import { reproduceCommand } from './reproduce.js';
import { trainCommand } from './train.js';
import { cpuReducedPrecision, versions } from '../native/runtime.js';

const HELP = `usam — sharpness-aware training and Hessian probes on LibTorch

Usage:
  usam train [flags]              train a model (usam train --help for the flags; --nproc N: data-parallel)
  usam report RUN_DIR... --out F  an HTML page of charts comparing runs (--baseline NAME: differences to it)
  usam probe RUN_DIR [flags]      Hessian probes of a saved run: JSON and an HTML page (usam probe --help)
  usam reproduce [flags]          the paper's claims in miniature: rules × settings × seeds, probed (usam reproduce --help)
  usam version                    package, LibTorch and CUDA versions, and which binary was loaded
  usam --help                     this text

Library use (TypeScript): import { Model, mlp, ... } from 'universal-sam'.
`;

export function packageVersion(): string {
  return JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')).version;
}

export async function main(argv: string[]): Promise<number> {
  const [command] = argv;
  if (!command || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(HELP);
    return 0;
  }
  if (command === 'train') return trainCommand(argv.slice(1));
  if (command === 'report') return reportCommand(argv.slice(1));
  if (command === 'probe') return probeCommand(argv.slice(1));
  if (command === 'reproduce') return reproduceCommand(argv.slice(1));
  if (command === 'version' || command === '--version') {
    const v = versions();
    const from = loadedFrom();
    process.stdout.write(
      [
        `universal-sam ${packageVersion()}`,
        `addon ${v.addon} (${v.flavour} flavour, ${from.source}: ${from.path})`,
        `LibTorch ${v.torch} (${v.flavour}) at ${from.libtorch.libDir}`,
        `built against LibTorch ${from.build.torch} at ${from.build.torchLibDir} (${from.build.kind} build${from.build.cuda ? `, CUDA ${from.build.cuda}` : ''})`,
        `CUDA ${v.cudaAvailable ? `available, ${v.cudaDeviceCount} device(s)` : v.flavour === 'cuda' ? 'not available (no GPU or driver visible)' : 'not available (cpu flavour)'}`,
        `threads ${v.threads}${v.defaultThreads === 0 ? ' (from OMP_NUM_THREADS / MKL_NUM_THREADS)' : ''}`,
        `Linear layers' float32 products: ${v.sgemm === 'onednn' ? "oneDNN's sgemm" : "LibTorch's at::mm (USAM_DNNL_SGEMM=1 with libdnnl2 installed takes oneDNN's at one thread; docs/performance.md)"}`,
        reducedPrecisionLine(),
      ].join('\n') + '\n',
    );
    return 0;
  }
  process.stderr.write(`usam: unknown command '${command}'. Run 'usam --help' for the commands.\n`);
  return 2;
}

/** What --precision bf16/fp16 costs on this CPU: native arithmetic, or LibTorch's emulation (correct, slower). */
function reducedPrecisionLine(): string {
  const c = cpuReducedPrecision();
  const say = (kind: 'bf16' | 'fp16', how: string) =>
    how === 'native' ? `${kind} native (${c.flags.filter((f) => f.includes(kind === 'bf16' ? 'bf16' : 'fp16')).join(', ')})` : how === 'emulated' ? `${kind} emulated (correct, slower)` : `${kind} unknown`;
  return `CPU reduced precision: ${say('bf16', c.bf16)}; ${say('fp16', c.fp16)}`;
}
