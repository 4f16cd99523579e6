#!/usr/bin/env node
// `npm test`: the whole suite in two vitest runs, one after the other.
//   1. unit and numerics, two test files at a time, at one intra-op thread
//      each (OMP_NUM_THREADS=1 unless set). Each file is its own process and
//      these groups never time anything, so the second core is free
//      throughput: measured 239 -> 140 s on this 2-core machine.
//   2. integration, one file at a time, as the config says: those files start
//      CLI processes, data-parallel ranks and Chromium of their own, and the
//      second core is theirs (two at a time measured little faster: 375 -> 353 s).
// Vitest 3 takes its worker count from the run, not from a project, hence two
// runs. The second runs even when the first failed, so that one `npm test`
// shows every failure; the exit status is the first failing one. The last
// line adds the two runs' `N passed, N failed, N skipped`.
// With arguments (`npm test -- test/unit/x.test.ts`, `--project unit`) it is
// one plain `vitest run` with them.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { constants, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

const require = createRequire(import.meta.url);
const vitest = join(dirname(require.resolve('vitest/package.json')), 'vitest.mjs');
const args = process.argv.slice(2).filter((a, i) => !(i === 0 && a === '--'));

function vitestRun(extra, env = process.env) {
  const r = spawnSync(process.execPath, [vitest, 'run', ...extra], { stdio: 'inherit', env });
  if (r.error) throw r.error;
  // killed by a signal: the shell's convention, 128 + its number
  return r.status ?? 128 + (constants.signals[r.signal] ?? 0);
}

if (args.length > 0) {
  process.exit(vitestRun(args));
}

// the config's summary reporter appends each run's counts here (vitest.config.ts)
const dir = mkdtempSync(join(tmpdir(), 'usam-test-counts-'));
const countsFile = join(dir, 'counts.jsonl');
const env = { ...process.env, USAM_TEST_COUNTS_FILE: countsFile };
// Two files at a time get one intra-op thread each. LibTorch 2.x starts with
// one per core, and two processes of two OpenMP threads on 2 cores spin
// against each other: on the CUDA flavour the readings and hessian files took
// 498 and 318 s instead of about 35 and 16 s. (Debian's 1.13 starts with one.)
const parallelEnv = { ...env, OMP_NUM_THREADS: process.env.OMP_NUM_THREADS ?? '1' };
let status = 0;
try {
  const runs = [
    { args: ['--project', 'unit', '--project', 'numerics', '--fileParallelism', '--maxWorkers=2', '--minWorkers=1'], env: parallelEnv },
    { args: ['--project', 'integration'], env },
  ];
  for (const run of runs) {
    const s = vitestRun(run.args, run.env);
    if (status === 0) status = s;
  }
  let lines = [];
  try {
    lines = readFileSync(countsFile, 'utf8').trim().split('\n').filter(Boolean);
  } catch {
    // no run got as far as its reporter
  }
  const total = { passed: 0, failed: 0, skipped: 0 };
  for (const line of lines) {
    const c = JSON.parse(line);
    total.passed += c.passed;
    total.failed += c.failed;
    total.skipped += c.skipped;
  }
  // a run that ended before reporting counts as a failure, so the line never
  // reads "0 failed" on a red run
  if (lines.length < runs.length) total.failed += runs.length - lines.length;
  if (status === 0 && total.failed > 0) status = 1;
  process.stdout.write(`\nthe whole suite: ${total.passed} passed, ${total.failed} failed, ${total.skipped} skipped\n`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
process.exit(status);
