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
  },
};

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Native work is CPU-bound on 2 cores: one test file at a time keeps
    // timings sane and LibTorch's thread pool uncontended.
    fileParallelism: false,
    pool: 'forks',
    testTimeout: 180_000,
    hookTimeout: 120_000,
    reporters: ['default', summaryLine],
  },
});
