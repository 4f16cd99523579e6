// One temporary folder per test run: every test (and every process a test
// starts, Python and Chromium included) makes its temporary files under it,
// through TMPDIR, which os.tmpdir() reads. The run removes it at the end, so
// a suite leaves nothing behind in the system's temporary folder (it used to
// leave some eighty folders a run).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export default function setup(): () => void {
  const previous = process.env.TMPDIR;
  const root = mkdtempSync(join(tmpdir(), 'usam-test-run-'));
  process.env.TMPDIR = root;
  return () => {
    if (previous === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = previous;
    rmSync(root, { recursive: true, force: true });
  };
}
