#!/usr/bin/env node
// The `usam` executable: runs the compiled CLI (dist/), or the TypeScript
// sources through tsx in a development checkout.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const compiled = join(root, 'dist', 'cli', 'main.js');
let entry = compiled;
if (!existsSync(compiled)) {
  const { register } = await import('tsx/esm/api');
  register();
  entry = join(root, 'lib', 'cli', 'main.ts');
}
try {
  const { main } = await import(pathToFileURL(entry).href);
  process.exitCode = await main(process.argv.slice(2));
} catch (e) {
  process.stderr.write(`usam: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = 1;
}
