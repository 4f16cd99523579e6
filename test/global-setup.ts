// One temporary folder per test run: every test (and every process a test
// starts, Python and Chromium included) makes its temporary files under it,
// through TMPDIR, which os.tmpdir() reads. The run removes it at the end, so
// a suite leaves nothing behind in the system's temporary folder (it used to
// leave some eighty folders a run).
import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export default function setup(): () => void {
  // every project of the run (unit, numerics, integration) calls this: the
  // first makes the folder, the others keep it (nested folders would make
  // paths too long for Chromium's Unix socket)
  if (process.env.USAM_TEST_RUN_TMPDIR) return () => {};
  const previous = process.env.TMPDIR;
  const root = mkdtempSync(join(tmpdir(), 'usam-test-run-'));
  // as /tmp itself: a test's child that runs as another user ('nobody') writes here too
  chmodSync(root, 0o1777);
  // tsx keeps its compiled files in the temporary folder (tsx-UID): that one
  // stays where it was, so that runs (and CI's three suites) share it as before
  const uid = process.getuid?.();
  if (uid !== undefined) {
    const cache = join(tmpdir(), `tsx-${uid}`);
    mkdirSync(cache, { recursive: true, mode: 0o700 });
    symlinkSync(cache, join(root, `tsx-${uid}`), 'dir');
  }
  process.env.TMPDIR = root;
  process.env.USAM_TEST_RUN_TMPDIR = root;
  return () => {
    if (previous === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = previous;
    delete process.env.USAM_TEST_RUN_TMPDIR;
    rmSync(root, { recursive: true, force: true });
  };
}
