import { appendFileSync } from 'node:fs';
import { defineConfig } from 'vitest/config';

interface Task {
  type: string;
  mode?: string;
  result?: { state?: string };
  tasks?: Task[];
}

/**
 * Ends the run with the plain line 'N passed, N failed, N skipped'. A file or
 * suite that failed without a failing test inside (it could not be loaded, a
 * hook threw) counts as one failure, so the line never reads "0 failed" on a
 * red run.
 */
const summaryLine = {
  onFinished(files: Task[] = []) {
    const count = { passed: 0, failed: 0, skipped: 0 };
    const walk = (t: Task): number => {
      if (t.type === 'test') {
        if (t.mode === 'skip' || t.mode === 'todo' || t.result?.state === 'skip') count.skipped++;
        else if (t.result?.state === 'pass') count.passed++;
        else {
          count.failed++;
          return 1;
        }
        return 0;
      }
      const failedInside = (t.tasks ?? []).reduce((n, c) => n + walk(c), 0);
      if (t.result?.state === 'fail' && failedInside === 0) {
        count.failed++;
        return 1;
      }
      return failedInside;
    };
    files.forEach(walk);
    process.stdout.write(`\n${count.passed} passed, ${count.failed} failed, ${count.skipped} skipped\n`);
    // npm test (scripts/test.mjs) makes two runs and adds their counts
    const countsFile = process.env.USAM_TEST_COUNTS_FILE;
    if (countsFile) appendFileSync(countsFile, `${JSON.stringify(count)}\n`);
  },
};

/**
 * The suite in three groups, run one after another (`npm test`, which runs
 * unit and numerics two files at a time: scripts/test.mjs), or alone:
 * `npm run test:unit` (fast, under a minute: logic, validation, small
 * native checks), `npm run test:numerics` (goldens, PyTorch twins, finite
 * differences), `npm run test:integration` (the package, the CLI, training
 * runs, data-parallel processes, the report in a browser, the docs' blocks).
 */
const GROUPS = ['unit', 'numerics', 'integration'] as const;

export default defineConfig({
  test: {
    projects: GROUPS.map((name, order) => ({
      extends: true,
      test: { name, include: [`test/${name}/**/*.test.ts`], sequence: { groupOrder: order } },
    })),
    // One test file at a time unless the command line says otherwise: the
    // integration files start processes of their own (CLI runs, data-parallel
    // ranks, Chromium) that want the second core. `npm test` runs the unit and
    // numerics groups two files at a time in a run of their own, as
    // `test:unit` and `test:numerics` do (scripts/test.mjs, its plans).
    fileParallelism: false,
    pool: 'forks',
    // TMPDIR: a folder of this run's own, removed at its end (test/global-setup.ts)
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 180_000,
    hookTimeout: 120_000,
    reporters: ['default', summaryLine],
  },
});
