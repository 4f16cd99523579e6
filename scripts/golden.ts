// npm run --silent golden [-- FILE...]
// Replays training golden files (by default the repository's, in
// test/fixtures/golden); one JSON line per file; exits 1 when any differs by
// more than 1e-12 (or cannot be replayed).
import { replayGolden } from '../lib/golden/replay.js';
import { goldenMain } from './golden-cli.js';

goldenMain('npm run --silent golden [-- FILE...]', 1e-12, (name) => !name.startsWith('hessian-'), (file) => {
  const r = replayGolden(file);
  return { file: r.file, name: r.name, maxAbsDiff: r.maxAbsDiff };
});
