// The command-line frame shared by the golden scripts: files from argv, one
// JSON line per file, exit status 1 when any file fails or exceeds the tolerance.
export function goldenMain(usage: string, tolerance: number, check: (file: string) => Record<string, unknown> & { maxAbsDiff: number }): never {
  const files = process.argv.slice(2);
  if (files.length === 0) {
    console.error(`usage: ${usage}`);
    process.exit(2);
  }
  let failed = false;
  for (const file of files) {
    try {
      const r = check(file);
      console.log(JSON.stringify(r));
      if (!(r.maxAbsDiff <= tolerance)) failed = true;
    } catch (e) {
      console.log(JSON.stringify({ file, maxAbsDiff: null, error: (e as Error).message }));
      failed = true;
    }
  }
  process.exit(failed ? 1 : 0);
}
