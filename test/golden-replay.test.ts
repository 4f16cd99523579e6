// Every training golden file of the reference implementation replays to 1e-9.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { replayGolden } from '../lib/golden/replay.js';
import { goldenDir } from './helpers.js';

const files = readdirSync(goldenDir).filter((f) => f.endsWith('.json') && !f.startsWith('hessian-'));

describe('golden replays', () => {
  it('finds the golden files', () => expect(files.length).toBeGreaterThanOrEqual(5));
  it.each(files)('%s reproduces losses and parameters to 1e-9', (f) => {
    const r = replayGolden(join(goldenDir, f));
    expect(r.steps).toBeGreaterThan(0);
    expect(r.maxAbsDiff).toBeLessThan(1e-9);
  });
});
