// @ts-check
// What the install recorded and what a binary was built against: the
// install's record of the LibTorch its search found (so that loading a
// prebuild asks no Python), the build facts embedded in a binary, and the
// LibTorch files a flavour needs. The search itself is ./libtorch.mjs.
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { findAllLibtorch, majorMinor, searchKey } from './libtorch.mjs';

/** @typedef {import('./libtorch.mjs').LibtorchLibrary} LibtorchLibrary */
/** @typedef {import('./libtorch.mjs').LibtorchSearch} LibtorchSearch */
/** @typedef {import('./libtorch.mjs').LibtorchFound} LibtorchFound */
/** @typedef {import('./libtorch.mjs').LibtorchAttempt} LibtorchAttempt */
/** @typedef {import('./libtorch.mjs').BuildInfo} BuildInfo */

// ---------------------------------------------------------------------------
// The install's record. Asking the Pythons costs every load of a prebuild
// (measured on 2 busy cores: 207 ms for two Pythons, against 2 ms to check a
// record); so `npm install` records what its search found
// beside the binary the loader uses (build/Release/usam.libtorch.json), and
// the loader takes it instead of searching while it is valid: the same
// search key (searchKey), and every LibTorch it found still has the same
// libtorch_cpu.so (pip and apt replace that file when they upgrade it).
// A LibTorch installed since, where none was before, is not seen until the
// next `npm install` (or when the record has no LibTorch that fits).
const RECORD_FORMAT = 1;

/**
 * Where the install records its search for the package in root: beside the local build.
 * @param {string} root
 * @returns {string}
 */
export const libtorchRecordPath = (root) => join(root, 'build', 'Release', 'usam.libtorch.json');

/**
 * dev, ino, size and mtime of a file (as strings: exact beyond 2^53), or that it is missing.
 * @param {string} path
 */
function fileIdentity(path) {
  try {
    const s = statSync(path, { bigint: true });
    return { path, dev: String(s.dev), ino: String(s.ino), size: String(s.size), mtimeNs: String(s.mtimeNs) };
  } catch {
    return { path, missing: true };
  }
}

/** @param {LibtorchLibrary} t */
const libraryIdentity = (t) => fileIdentity(join(t.libDir, 'libtorch_cpu.so'));

/**
 * Searches (findAllLibtorch) and records the result in file, with what
 * decided it: written to a temporary file and renamed, so a reader never
 * sees half a record.
 * @param {string} file
 * @param {NodeJS.ProcessEnv} [env]
 */
export function writeLibtorchRecord(file, env = process.env) {
  const { all, tried } = findAllLibtorch(env);
  const record = { format: RECORD_FORMAT, key: searchKey(env), found: all.map((t) => ({ ...t, library: libraryIdentity(t) })), tried };
  mkdirSync(dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(record, null, 2)}\n`);
  renameSync(tmp, file);
}

/** @param {unknown} t */
const isRecordedLibtorch = (t) => {
  const r = /** @type {Record<string, unknown>} */ (t);
  return typeof t === 'object' && t !== null &&
    ['source', 'where', 'torchDir', 'libDir'].every((k) => typeof r[k] === 'string') &&
    (r.version === null || typeof r.version === 'string') && typeof r.cuda === 'boolean';
};

/** @param {unknown} t */
const isAttempt = (t) => typeof t === 'object' && t !== null &&
  ['source', 'where', 'why'].every((k) => typeof (/** @type {Record<string, unknown>} */ (t))[k] === 'string');

/**
 * The search recorded in file when it is still valid for this environment,
 * else null (no record, a damaged one, another search key, or a LibTorch
 * library changed or gone): then search (findAllLibtorch).
 * @param {string} file
 * @param {NodeJS.ProcessEnv} [env]
 * @returns {LibtorchSearch | null}
 */
export function readLibtorchRecord(file, env = process.env) {
  let record;
  try {
    record = JSON.parse(readFileSync(file, 'utf8'));
  } catch {
    return null;
  }
  if (typeof record !== 'object' || record === null || record.format !== RECORD_FORMAT) return null;
  if (!Array.isArray(record.found) || !record.found.every(isRecordedLibtorch)) return null;
  if (!Array.isArray(record.tried) || !record.tried.every(isAttempt)) return null;
  if (JSON.stringify(record.key) !== JSON.stringify(searchKey(env))) return null;
  /** @type {(LibtorchFound & { library: unknown })[]} */
  const found = record.found;
  if (!found.every((t) => JSON.stringify(t.library) === JSON.stringify(libraryIdentity(t)))) return null;
  return {
    all: found.map(({ source, where, torchDir, libDir, version, cuda }) => ({ source, where, torchDir, libDir, version, cuda })),
    tried: record.tried.map((/** @type {LibtorchAttempt} */ { source, where, why }) => ({ source, where, why })),
  };
}

// ---------------------------------------------------------------------------
// Build info: CMake embeds a JSON object between two markers in every binary
// (native/build_info.h.in), readable without loading the binary.
const MARKER = '<<universal-sam-build-info>>';

/**
 * {flavour, torch, torchLibDir, cuda, kind: 'local'|'prebuild', addon} of a
 * binary, or null when the file has none (not a universal-sam binary, or one
 * built before build info existed).
 * @param {string} binaryPath
 * @returns {BuildInfo | null}
 */
export function readBuildInfo(binaryPath) {
  let bytes;
  try {
    bytes = readFileSync(binaryPath);
  } catch {
    return null;
  }
  const marker = Buffer.from(MARKER, 'latin1');
  const start = bytes.indexOf(marker);
  if (start < 0) return null;
  const end = bytes.indexOf(marker, start + marker.length);
  if (end < 0) return null;
  try {
    return JSON.parse(bytes.subarray(start + marker.length, end).toString('utf8'));
  } catch {
    return null;
  }
}


/**
 * The libraries to load, in dependency order, for a flavour ('cpu' | 'cuda') from a LibTorch folder.
 * @param {string} libDir
 * @param {string} flavour
 * @returns {string[]}
 */
export function libtorchFiles(libDir, flavour) {
  const names = ['libc10.so', 'libtorch_cpu.so', ...(flavour === 'cuda' ? ['libc10_cuda.so', 'libtorch_cuda.so'] : []), 'libtorch.so'];
  return names.map((n) => join(libDir, n)).filter((p) => existsSync(p));
}
