// The runs a report reads (a `usam train` folder: config.json, metrics.jsonl,
// steps.jsonl, and probe.json once `usam probe` ran on it), their grouping by
// config (runs that differ only in seed are one group), and the statistics
// over a group's seeds.
import * as check from '../arguments.js';
import { UsamError } from '../errors.js';
import { existsSync, readFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { CONFIG_FILE, type EpochMetrics, METRICS_FILE, STEPS_FILE, type StepLogLine } from '../train/trainer.js';
import { numberedFromOne } from '../train/run-folder.js';
import type { LandscapeData } from './heatmap.js';

export interface Run {
  name: string;
  dir: string;
  config: Record<string, unknown>;
  metrics: EpochMetrics[];
  /** steps.jsonl; empty for runs without a step log */
  steps: StepLogLine[];
  /** probe.json, written by `usam probe RUN_DIR`, when the folder has one */
  probe?: ProbeFile;
}

/** What the report reads of a probe.json (lib/experiments/probe.ts writes it: format usam-probe/1). */
export interface ProbeFile {
  format: string;
  trace: number;
  frobeniusSquared: number;
  maxEigenvalue: number;
  minEigenvalue?: number;
  logAbsDet?: number;
  logAbsDetDamping?: number;
  density?: { grid: number[]; values: number[] };
  /** epochs done at the checkpoint probed */
  checkpoint: { epoch: number; step: number } | null;
  samplesUsed: number;
  options: { split: string; batches: number; batchSize: number; mode: string };
  /** usam probe --compare: the principal angles between the Hessian's top-k eigenspace and another operator's */
  comparison?: { against: string; k: number; angles: number[]; overlap: number };
  /** usam probe --landscape */
  landscape?: LandscapeData;
}

export const PROBE_JSON = 'probe.json';

function readJsonLines<T>(file: string): T[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l, i) => {
      try {
        return JSON.parse(l) as T;
      } catch {
        throw new UsamError(`${file}: line ${i + 1} is not JSON`);
      }
    });
}

export function readRun(dir: string): Run {
  check.string('readRun', 'dir', dir, 'a run folder (usam train --out)');
  const metricsFile = join(dir, METRICS_FILE);
  if (!existsSync(metricsFile)) throw new UsamError(`${dir}: no ${METRICS_FILE}; is it a run directory (usam train --out)?`);
  const metrics = numberedFromOne(readJsonLines<EpochMetrics>(metricsFile));
  const stepsFile = join(dir, STEPS_FILE);
  const steps = existsSync(stepsFile) ? numberedFromOne(readJsonLines<StepLogLine>(stepsFile)) : [];
  const configFile = join(dir, CONFIG_FILE);
  const config = existsSync(configFile) ? (JSON.parse(readFileSync(configFile, 'utf8')) as Record<string, unknown>) : {};
  const probeFile = join(dir, PROBE_JSON);
  let probe: ProbeFile | undefined;
  if (existsSync(probeFile)) {
    try {
      probe = JSON.parse(readFileSync(probeFile, 'utf8')) as ProbeFile;
    } catch {
      throw new UsamError(`${probeFile} is not JSON`);
    }
    if (!String(probe.format ?? '').startsWith('usam-probe/')) throw new UsamError(`${probeFile}: not written by usam probe (format ${JSON.stringify(probe.format)})`);
  }
  return { name: basename(resolve(dir)), dir, config, metrics, steps, ...(probe ? { probe } : {}) };
}

// ---------------------------------------------------------------- grouping

/** Config fields that do not make runs different experiments. */
export const GROUP_IGNORED = ['seed', 'out', 'threads'];

export interface Group {
  name: string;
  runs: Run[];
  /** the config shared by the runs (without the ignored fields) */
  config: Record<string, unknown>;
}

export const canonical = (v: unknown): string =>
  Array.isArray(v) ? `[${v.map(canonical).join(',')}]` : v && typeof v === 'object' ? `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`).join(',')}}` : JSON.stringify(v);

const withoutIgnored = (c: Record<string, unknown>) => Object.fromEntries(Object.entries(c).filter(([k]) => !GROUP_IGNORED.includes(k)));

/** The longest common prefix of names, without a trailing separator ("sam-s0", "sam-s1" → "sam"). */
function commonName(names: string[]): string {
  let p = names[0];
  for (const n of names) while (!n.startsWith(p)) p = p.slice(0, -1);
  return p.replace(/[-_.\s]*(s|seed)?[-_.]*$/i, '');
}

/**
 * Runs whose config.json are equal except seed, out and threads form one
 * group, in the order of their first run. A run without a config is a group
 * of its own. Group names: the run's name, or for several seeds the common
 * prefix of their names (the optimizer when there is none), unique.
 */
export function groupRuns(runs: Run[]): Group[] {
  const groups: Group[] = [];
  const keys: string[] = [];
  for (const r of runs) {
    const key = Object.keys(r.config).length === 0 ? `run:${r.dir}` : canonical(withoutIgnored(r.config));
    const i = keys.indexOf(key);
    if (i >= 0) groups[i].runs.push(r);
    else {
      keys.push(key);
      groups.push({ name: '', runs: [r], config: withoutIgnored(r.config) });
    }
  }
  const used = new Set<string>();
  for (const g of groups) {
    let name = g.runs.length === 1 ? g.runs[0].name : commonName(g.runs.map((r) => r.name)) || String(g.config.optimizer ?? 'runs');
    if (used.has(name)) for (let k = 2; ; k++) if (!used.has(`${name} (${k})`)) { name = `${name} (${k})`; break; }
    used.add(name);
    g.name = name;
  }
  return groups;
}

// ---------------------------------------------------------------- statistics

export interface Stat {
  mean: number;
  /** sample standard deviation over the seeds; NaN for one run */
  std: number;
  n: number;
}

export function stat(values: (number | null | undefined)[]): Stat {
  const v = values.filter((x): x is number => typeof x === 'number' && Number.isFinite(x));
  const n = v.length;
  if (n === 0) return { mean: NaN, std: NaN, n: 0 };
  const mean = v.reduce((a, b) => a + b, 0) / n;
  const std = n > 1 ? Math.sqrt(v.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1)) : NaN;
  return { mean, std, n };
}

/** Mean (and std band when several runs) of per-run curves, matched on x. */
export function meanCurve(curves: [number, number][][]): { points: [number, number][]; band?: [number, number, number][] } {
  if (curves.length === 1) return { points: curves[0] };
  const byX = new Map<string, { x: number; ys: number[] }>();
  for (const c of curves)
    for (const [x, y] of c) {
      if (!Number.isFinite(y)) continue;
      const k = x.toFixed(9);
      const e = byX.get(k) ?? { x, ys: [] };
      e.ys.push(y);
      byX.set(k, e);
    }
  const rows = [...byX.values()].sort((a, b) => a.x - b.x).map((e) => ({ x: e.x, s: stat(e.ys) }));
  return {
    points: rows.map((r) => [r.x, r.s.mean]),
    band: rows.map((r) => [r.x, r.s.mean - (Number.isFinite(r.s.std) ? r.s.std : 0), r.s.mean + (Number.isFinite(r.s.std) ? r.s.std : 0)]),
  };
}

