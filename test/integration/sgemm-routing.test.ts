// oneDNN's sgemm taken at runtime (USAM_DNNL_SGEMM=1) by a build that does
// not link it (2.x): the Linear layers' products of a training pass and of
// a forward-over-reverse HVP move there, and the numbers are LibTorch's own
// up to float32 rounding. Each setting in its own process (the variable is
// read once). Skipped where the build links oneDNN already (1.x) or the
// machine has no libdnnl.so.2.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { native } from '../../lib/native/load.js';
import { maxAbsDiff, repoRoot } from '../helpers.js';

interface Paths {
  sgemm: string;
  loss: number;
  grad: number[];
  hv: number[];
}
function run(env: NodeJS.ProcessEnv): Paths {
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(repoRoot, 'test/fixtures/sgemm-paths.ts')], { cwd: repoRoot, env, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`test/fixtures/sgemm-paths.ts failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as Paths;
}

const optIn = native().versions().sgemm === 'libtorch' && existsSync('/usr/lib/x86_64-linux-gnu/libdnnl.so.2');
describe.skipIf(!optIn)(`oneDNN's sgemm by USAM_DNNL_SGEMM=1${optIn ? '' : ' (skipped: the build links oneDNN already, or no libdnnl.so.2)'}`, () => {
  it('a training pass and an HVP of an MLP: oneDNN runs them, and they equal at::mm\'s to float32 rounding', () => {
    const { USAM_DNNL_SGEMM: _, ...rest } = process.env;
    const plain = run(rest);
    const routed = run({ ...rest, USAM_DNNL_SGEMM: '1' });
    expect(plain.sgemm).toBe('libtorch');
    expect(routed.sgemm).toBe('onednn');
    // the products really moved: another kernel rounds differently somewhere (the
    // same numbers to the bit would mean LibTorch's BLAS ran them after all)
    expect(routed.grad.some((g, i) => g !== plain.grad[i])).toBe(true);
    expect(Math.abs(routed.loss - plain.loss) / Math.abs(plain.loss)).toBeLessThan(1e-6);
    for (const k of ['grad', 'hv'] as const) {
      const scale = Math.max(...plain[k].map(Math.abs));
      expect(maxAbsDiff(routed[k], plain[k]) / scale).toBeLessThan(1e-5);
    }
  });
});
