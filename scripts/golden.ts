// npm run --silent golden -- FILE...
// Replays training golden files; one JSON line per file; exits 1 when any
// differs by more than 1e-9 (or cannot be replayed).
import { replayGolden } from '../lib/golden/replay.js';

const TOLERANCE = 1e-9;
const files = process.argv.slice(2);
if (files.length === 0) {
  console.error('usage: npm run --silent golden -- FILE...');
  process.exit(2);
}
let failed = false;
for (const file of files) {
  try {
    const r = replayGolden(file);
    console.log(JSON.stringify({ file: r.file, name: r.name, maxAbsDiff: r.maxAbsDiff }));
    if (!(r.maxAbsDiff <= TOLERANCE)) failed = true;
  } catch (e) {
    console.log(JSON.stringify({ file, name: null, maxAbsDiff: null, error: (e as Error).message }));
    failed = true;
  }
}
process.exit(failed ? 1 : 0);
