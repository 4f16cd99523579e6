#!/usr/bin/env node
// The suite's commands, one plan each (`npm test`, `npm run test:unit`, ...):
// a plan is one or more vitest runs, one after the other, of two kinds.
//   - parallel: two test files at a time, at one intra-op thread each
//     (OMP_NUM_THREADS=1 unless set). The unit and numerics groups: each file
//     is its own process and nothing in them is timed, so the second core is
//     throughput (measured 239 -> 140 s for the two on this 2-core machine).
//     One thread each, because LibTorch 2.x starts with one per core, and two
//     processes of two spinning OpenMP threads on 2 cores starve each other
//     (on the CUDA flavour the readings and hessian files took 498 and 318 s
//     instead of about 35 and 16 s; Debian's 1.13 starts with one).
//   - serial: one file at a time, as vitest.config.ts says. The integration
//     group: its files start CLI processes, data-parallel ranks and Chromium
//     of their own, which use the second core (two at a time measured little
//     faster: 375 -> 353 s).
// Vitest 3 takes its worker count from the run, not from a project, hence
// separate runs. A later run goes on after a failure in an earlier one, so
// one command shows every failure; the exit status is the first failing one.
// A plan of several runs ends with a line adding their
// `N passed, N failed, N skipped`.
//
//   node scripts/test.mjs                  the whole suite (npm test)
//   node scripts/test.mjs --plan NAME      unit, numerics, integration, flavour
//   node scripts/test.mjs ARGS...          one plain `vitest run ARGS...`
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { constants, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

const parallel = (...args) => ({ args: [...args, '--fileParallelism', '--maxWorkers=2', '--minWorkers=1'], threads: '1' });
const serial = (...args) => ({ args });
const groups = (...names) => names.flatMap((n) => ['--project', n]);

const PLANS = {
  suite: [parallel(...groups('unit', 'numerics')), serial(...groups('integration'))],
  unit: [parallel(...groups('unit'))],
  numerics: [parallel(...groups('numerics'))],
  integration: [serial(...groups('integration'))],
  // CI's run on the CUDA flavour: every numeric path, and the integration
  // files about the binary itself (the rest is JavaScript the 2.13 suite ran)
  flavour: [
    parallel(...groups('unit', 'numerics')),
    serial(...['cuda', 'signals', 'leaks', 'doors', 'checkpoint'].map((f) => `test/integration/${f}.test.ts`)),
  ],
};

const require = createRequire(import.meta.url);
const vitest = join(dirname(require.resolve('vitest/package.json')), 'vitest.mjs');

function vitestRun(args, env) {
  const r = spawnSync(process.execPath, [vitest, 'run', ...args], { stdio: 'inherit', env });
  if (r.error) throw r.error;
  // killed by a signal: the shell's convention, 128 + its number
  return r.status ?? 128 + (constants.signals[r.signal] ?? 0);
}

const argv = process.argv.slice(2).filter((a, i) => !(i === 0 && a === '--'));
let plan = PLANS.suite;
if (argv[0] === '--plan') {
  plan = PLANS[argv[1]];
  if (!plan || argv.length > 2) {
    process.stderr.write(`scripts/test.mjs: --plan takes one of ${Object.keys(PLANS).join(', ')}, got '${argv.slice(1).join(' ')}'\n`);
    process.exit(2);
  }
} else if (argv.length > 0) {
  process.exit(vitestRun(argv, process.env));
}

// the config's summary reporter appends each run's counts here (vitest.config.ts)
const dir = mkdtempSync(join(tmpdir(), 'usam-test-counts-'));
const countsFile = join(dir, 'counts.jsonl');
let status = 0;
try {
  for (const run of plan) {
    const env = { ...process.env, USAM_TEST_COUNTS_FILE: countsFile };
    if (run.threads) env.OMP_NUM_THREADS ??= run.threads;
    const s = vitestRun(run.args, env);
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
  total.failed += Math.max(0, plan.length - lines.length);
  if (status === 0 && total.failed > 0) status = 1;
  if (plan.length > 1) process.stdout.write(`\nthe whole ${plan === PLANS.suite ? 'suite' : 'plan'}: ${total.passed} passed, ${total.failed} failed, ${total.skipped} skipped\n`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
process.exit(status);
