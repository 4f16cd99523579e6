// Every TypeScript block of README.md and docs/*.md, run as a user would paste
// it: each ```ts block is written to a file of its own in an empty folder of
// its own (with the one input file a block names, net.pt, put there) and run
// by Node with tsx in a child process, importing 'universal-sam' from this
// checkout. A block that throws, or prints to stderr, fails; so the
// documentation cannot drift from the code. Blocks that are not meant to run
// (signatures, snippets that need a second machine) are fenced ```text
// instead (docs/contributing.md). The blocks run one per core at a time, each
// on one LibTorch thread: a block's time is mostly starting Node, tsx and
// LibTorch, one core's work (54 s for the blocks one after another, 2 cores).
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { repoRoot } from '../helpers.js';

const pages = ['README.md', ...readdirSync(join(repoRoot, 'docs')).filter((f) => f.endsWith('.md')).sort().map((f) => `docs/${f}`)];
const blocks = pages.flatMap((page) => {
  const text = readFileSync(join(repoRoot, page), 'utf8');
  return [...text.matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map((m) => ({ page, code: m[1], line: text.slice(0, m.index).split('\n').length + 1 }));
});
const work = mkdtempSync(join(tmpdir(), 'usam-docs-'));
// the package's own dependencies (zod, which a rule's schema uses) resolve as in a user's project
symlinkSync(join(repoRoot, 'node_modules'), join(work, 'node_modules'), 'dir');
afterAll(() => rmSync(work, { recursive: true, force: true }));

// at most one child per core; the others wait their turn
const slots = Math.max(1, availableParallelism());
let running = 0;
const waiting: (() => void)[] = [];
async function inTurn<T>(f: () => Promise<T>): Promise<T> {
  if (running >= slots) await new Promise<void>((resolve) => waiting.push(resolve));
  running++;
  try {
    return await f();
  } finally {
    running--;
    waiting.shift()?.();
  }
}

const lib = pathToFileURL(join(repoRoot, 'lib/index.ts')).href;
const tsx = pathToFileURL(join(repoRoot, 'node_modules/tsx/dist/esm/index.mjs')).href;

// asynchronous: a block may train for a minute, and vitest's worker must keep answering meanwhile
async function run(code: string, name: string): Promise<string> {
  // a folder per block: blocks that write files (runs/, model.safetensors) run side by side
  const dir = join(work, name);
  mkdirSync(dir);
  copyFileSync(join(repoRoot, 'test/fixtures/torchscript/mlp-784-scripted.pt'), join(dir, 'net.pt'));
  const file = join(dir, 'block.mts');
  writeFileSync(file, code.replaceAll("from 'universal-sam'", `from '${lib}'`));
  const env = { ...process.env, OMP_NUM_THREADS: '1' };
  const { stdout, stderr } = await inTurn(() => promisify(execFile)(process.execPath, ['--import', tsx, file], { cwd: dir, env, encoding: 'utf8', timeout: 240_000 }));
  if (stderr.trim()) throw Object.assign(new Error('the block wrote to stderr'), { stderr, stdout });
  return stdout;
}

describe('README.md and docs/*.md: every TypeScript block runs', () => {
  it('has the blocks it is expected to have', () => {
    expect(blocks.length).toBeGreaterThanOrEqual(12);
    expect(blocks.filter((b) => b.page === 'README.md').length).toBeGreaterThanOrEqual(2);
    // the one-step example is there, and the check below applies to it
    expect(blocks.filter((b) => b.code.includes('opt.step(x, y);   // {')).length).toBe(1);
  });
  for (const [i, b] of blocks.entries()) {
    const title = b.code.split('\n').find((l) => l.trim() && !l.startsWith('import') && !l.startsWith('//'))!.slice(0, 60);
    it.concurrent(`block ${i + 1} (${b.page}:${b.line}): ${title}`, async ({ expect }) => {
      let out: string;
      try {
        out = await run(b.code, `block${i + 1}`);
      } catch (e) {
        const err = e as { stderr?: string; stdout?: string; message: string };
        throw new Error(`${b.page}:${b.line}: the block failed:\n${err.stderr || err.message}\n${err.stdout ?? ''}`);
      }
      // the one-step example must train: its printed loss falls
      if (process.env.USAM_TEST_VERBOSE) console.log(out);
      const losses = [...out.matchAll(/loss (\d+\.\d+)/g)].map((m) => Number(m[1]));
      if (b.code.includes('opt.step(x, y);   // {')) {
        expect(losses.length).toBeGreaterThan(2);
        expect(losses.at(-1)!).toBeLessThan(0.5 * losses[0]);
      }
    }, 300_000);
  }
});
