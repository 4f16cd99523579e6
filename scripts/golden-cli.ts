// The command-line frame shared by the golden scripts: files from argv (by
// default the repository's golden fixtures that `pick` selects), one JSON
// line per file, exit status 1 when any file fails or exceeds the tolerance.
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The golden cases of the reference implementation, kept in the repository. */
export const fixtureGoldenDir = join(dirname(fileURLToPath(import.meta.url)), '..', 'test', 'fixtures', 'golden');

export function goldenMain(
  usage: string,
  tolerance: number,
  pick: (name: string) => boolean,
  check: (file: string) => Record<string, unknown> & { maxAbsDiff: number },
): never {
  const given = process.argv.slice(2);
  if (given.includes('--help') || given.includes('-h')) {
    console.error(`usage: ${usage}`);
    process.exit(2);
  }
  const files = given.length > 0 ? given : readdirSync(fixtureGoldenDir).filter((f) => f.endsWith('.json') && pick(f)).map((f) => join(fixtureGoldenDir, f));
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
