#!/usr/bin/env node
// The `usam` executable. In a development checkout (TypeScript sources and
// tsx present) it runs lib/ directly, so edits need no rebuild; an installed
// package runs the compiled dist/.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const source = join(root, 'lib', 'cli', 'main.ts');
let entry = join(root, 'dist', 'cli', 'main.js');
if (existsSync(source)) {
  try {
    const { register } = await import('tsx/esm/api');
    register();
    entry = source;
  } catch {
    // no tsx: an installed package, use dist/
  }
}
try {
  const { main } = await import(pathToFileURL(entry).href);
  process.exitCode = await main(process.argv.slice(2));
} catch (e) {
  process.stderr.write(`usam: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = 1;
}
