// The house's rules, checked on the source: lib/ is built in floors, and an
// import may only point down (or along its own folder); the binding is
// reached only through the floors that own it. A change that breaks a rule
// fails here with the file, the import and the floors named.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot } from '../helpers.js';

const lib = join(repoRoot, 'lib');

/** lib/'s floors, lowest first (docs/contributing.md, Architecture). Paths are lib-relative folders or files. */
const FLOORS: string[][] = [
  ['errors.ts'],
  ['arguments.ts', 'extent.ts', 'safetensors.ts'],
  ['native'],
  ['tensor'],
  ['random.ts', 'distributed.ts'],
  ['model'],
  ['sharpness'],
  ['optim'],
  ['hessian', 'data'],
  ['train', 'golden'],
  ['report'],
  ['experiments'],
  ['cli'],
  ['index.ts'],
];

/** The files besides lib/native/ that may call native(): the binding behind one floor. */
const NATIVE_CALLERS = ['tensor/', 'model/', 'random.ts', 'distributed.ts', 'optim/base.ts'];

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) return sources(p);
    return /\.(ts|mts|mjs)$/.test(name) && !name.endsWith('.d.ts') ? [p] : [];
  });
}

/** The floor of a lib-relative path and the unit (folder or file) it belongs to. */
function placeOf(path: string): { floor: number; unit: string } {
  const unit = path.includes('/') ? path.split('/')[0] : path;
  const floor = FLOORS.findIndex((f) => f.includes(unit));
  return { floor, unit };
}

const files = sources(lib).map((f) => relative(lib, f).replaceAll('\\', '/'));
const importsOf = (file: string): string[] =>
  [...readFileSync(join(lib, file), 'utf8').matchAll(/(?:^|\n)\s*(?:import|export)\s[^'"]*?from\s+['"](\.[^'"]+)['"]/g)].map((m) =>
    normalize(join(dirname(file), m[1])).replaceAll('\\', '/'),
  );

describe('architecture', () => {
  it('every file of lib/ sits on a floor', () => {
    const homeless = files.filter((f) => placeOf(f).floor < 0);
    expect(homeless, `add these to FLOORS in ${relative(repoRoot, __filename)}`).toEqual([]);
  });

  it('imports point down: no file imports from a floor above its own, nor from another unit of its floor', () => {
    const violations: string[] = [];
    for (const file of files) {
      const from = placeOf(file);
      for (const target of importsOf(file)) {
        const to = placeOf(target);
        if (to.floor > from.floor || (to.floor === from.floor && to.unit !== from.unit))
          violations.push(`${file} (floor ${from.floor}, ${from.unit}) imports ${target} (floor ${to.floor}, ${to.unit})`);
      }
    }
    expect(violations).toEqual([]);
  });

  it('the check sees an import that points up', () => {
    // what the test above would say of lib/tensor/ops.ts importing the optimizer
    const from = placeOf('tensor/ops.ts');
    const to = placeOf('optim/optimizer.ts');
    expect(to.floor).toBeGreaterThan(from.floor);
    expect(importsOf('index.ts')).toContain('optim/optimizer.js');
  });

  it('native() is called only from lib/native/ and the floors that own the binding', () => {
    const callers = files.filter((f) => /\bnative\(\)/.test(readFileSync(join(lib, f), 'utf8').replace(/\/\/.*$/gm, '').replace(/\/\*[\s\S]*?\*\//g, '')));
    const stray = callers.filter((f) => !f.startsWith('native/') && !NATIVE_CALLERS.some((a) => (a.endsWith('/') ? f.startsWith(a) : f === a)));
    expect(stray).toEqual([]);
  });

  it('no TypeScript file of lib/ is over 400 lines', () => {
    const long = files.map((f) => ({ f, n: readFileSync(join(lib, f), 'utf8').split('\n').length })).filter((x) => x.n > 400);
    expect(long).toEqual([]);
  });
});
