// `usam train --nproc N`: starts N copies of the same command as the ranks of
// a data-parallel run on this machine, with torchrun's variables (RANK,
// LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE; OMP_NUM_THREADS = cores / N unless
// set), a rendezvous that opens nothing to the network (USAM_STORE_FILE: a
// store file in a new folder only this user can enter, mode 0700, removed at
// the end; USAM_GLOO_HOST=127.0.0.1: Gloo's sockets on loopback) and a random
// run token (USAM_RUN_TOKEN, unless given) every rank must present, shows rank 0's output,
// forwards Ctrl-C (the ranks stop together, at the same step), and stops
// every rank when one fails, showing that rank's error (or the signal that
// killed it) and exiting with its status.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, constants, tmpdir } from 'node:os';
import { join } from 'node:path';
import { packageRoot } from '../native/load.js';


/** The environment of a local run's ranks: a private store folder (0700) and loopback Gloo; `cleanup` removes the folder. */
export function localRendezvous(): { env: Record<string, string>; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'usam-run-')); // mode 0700
  return {
    env: {
      USAM_STORE_FILE: join(dir, 'store'),
      USAM_GLOO_HOST: '127.0.0.1',
      USAM_RUN_TOKEN: process.env.USAM_RUN_TOKEN || randomBytes(16).toString('hex'),
    },
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

export async function launchRanks(nproc: number, argv: string[]): Promise<number> {
  const rendezvous = localRendezvous();
  const threads = process.env.OMP_NUM_THREADS ?? String(Math.max(1, Math.floor(availableParallelism() / nproc)));
  const script = join(packageRoot, 'scripts', 'usam.mjs');
  process.stderr.write(`usam: ${nproc} ranks on this machine (a private store file, Gloo on 127.0.0.1), ${threads} thread(s) each; rank 0 reports\n`);
  const children: ChildProcess[] = [];
  const errors: string[] = Array.from({ length: nproc }, () => '');
  let first: { rank: number; code: number; signal?: string } | undefined;
  const exits = Array.from({ length: nproc }, (_, rank) => {
    const child = spawn(process.execPath, [script, 'train', ...argv], {
      env: {
        ...process.env,
        RANK: String(rank),
        LOCAL_RANK: String(rank),
        WORLD_SIZE: String(nproc),
        LOCAL_WORLD_SIZE: String(nproc),
        ...rendezvous.env,
        OMP_NUM_THREADS: threads,
      },
      stdio: ['ignore', rank === 0 ? 'inherit' : 'ignore', 'pipe'],
    });
    children.push(child);
    child.stderr!.on('data', (d: Buffer) => {
      if (rank === 0) process.stderr.write(d);
      else errors[rank] = (errors[rank] + d.toString()).slice(-4000);
    });
    return new Promise<number>((resolve) =>
      child.on('exit', (code, signal) => {
        // the first rank to fail is the cause; the others are stopped because of it
        if (code !== 0 && code !== 130 && !first) {
          first = { rank, code: code ?? 128 + (signal ? constants.signals[signal] : 0), signal: signal ?? undefined };
          for (const [r, c] of children.entries()) if (r !== rank && c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
        }
        resolve(code ?? 128 + (signal ? constants.signals[signal] : 0));
      }),
    );
  });
  const onSignal = () => children.forEach((c) => c.exitCode === null && c.kill('SIGINT'));
  process.on('SIGINT', onSignal);
  try {
    const codes = await Promise.all(exits);
    if (!first) return codes[0];
    // rank 0's own error is on the terminal already; a signal prints nothing, another rank's stderr is not shown
    if (first.signal || first.rank > 0)
      process.stderr.write(
        `usam: rank ${first.rank} ${first.signal ? `was killed by ${first.signal}` : `failed (exit ${first.code})`}; the other ranks were stopped` +
          (first.rank > 0 && errors[first.rank] ? `. Its output:\n${errors[first.rank]}` : '\n'),
      );
    return first.code;
  } finally {
    process.off('SIGINT', onSignal);
    rendezvous.cleanup();
  }
}
