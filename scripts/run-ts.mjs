#!/usr/bin/env node
// Runs a TypeScript script of this package (npm run golden, bench, ...)
// with tsx, passing the remaining arguments through.
import { register } from 'tsx/esm/api';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

register();
const [script, ...args] = process.argv.slice(2);
process.argv = [process.argv[0], resolve(script), ...args];
await import(pathToFileURL(resolve(script)).href);
