// `usam train`: flags (or a JSON config validated by the same schema), a
// worker thread that trains, a progress bar, and Ctrl-C that stops after the
// current step with a resumable checkpoint.
import { readingOf } from '../optim/rules/index.js';
import type { Reading } from '../sharpness/reading.js';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadCheckpoint } from '../train/checkpoint.js';
import { parseTrainConfig, trainConfig } from '../train/config.js';
import { CHECKPOINT_FILE, RESUME_OVERRIDES } from '../train/trainer.js';
import { ConfigError, UsamError } from '../errors.js';
import { launchRanks } from './launch.js';
import { trainInWorker } from '../train/run.js';
import type { EpochMetrics } from '../train/trainer.js';
import { flagHelp, parseFlags } from './flags.js';

export const TRAIN_HELP = `usam train [flags] | --config FILE.json | --resume RUN_DIR

Trains a model with any optimizer of the SAM family and writes RUN_DIR (--out):
config.json, metrics.jsonl (one JSON line per epoch), steps.jsonl (the mean loss and
per-step reading every --step-log-every steps, default 10) and checkpoint.safetensors.
With no flags: an MLP with Frob-SAM on Fashion-MNIST for 3 epochs.
Without --out, each run gets a new folder runs/<date>-<optimizer>-<n>; runs/latest links to the newest.
Ctrl-C stops after the current step and leaves a checkpoint; --resume continues it.

Flags:
${flagHelp(trainConfig)}
  --config FILE.json                          a JSON object with the same fields (camelCase); flags override it
  --resume RUN_DIR                            continue the run saved in RUN_DIR; with it only --epochs (more epochs,
                                              constant or multistep schedules), --probe-every, --probe-samples,
                                              --step-log-every, --threads, --divergence, --nproc
  --quiet                                     no progress bar
`;

/** The saved run's ranks, epochs and epochs done (the Trainer reports what is wrong with a folder it cannot read). */
function savedRun(dir: string): { nproc: number; epochs?: number; done?: number } {
  try {
    const c = loadCheckpoint(join(dir, CHECKPOINT_FILE));
    const config = c.config as { nproc?: number; epochs?: number };
    return { nproc: config.nproc ?? 1, epochs: config.epochs, done: c.progress.epoch };
  } catch {
    return { nproc: 1 };
  }
}

const flagOf = (key: string) => `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;

function bar(fraction: number, width = 24): string {
  const full = Math.round(fraction * width);
  return '█'.repeat(full) + '░'.repeat(width - full);
}

export async function trainCommand(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(TRAIN_HELP);
    return 0;
  }
  const { values, extra } = parseFlags(trainConfig, argv, ['--config', '--resume', '--quiet']);
  let config: object;
  let nproc: number;
  if (extra['--resume'] === true) throw new ConfigError('flags', [{ path: '--resume', message: 'needs the run folder: usam train --resume runs/NAME' }]);
  if (typeof extra['--resume'] === 'string') {
    const dir = extra['--resume'];
    const refused = Object.keys(values).filter((k) => !(RESUME_OVERRIDES as readonly string[]).includes(k));
    if (refused.length > 0 || extra['--config'])
      throw new ConfigError('flags', [
        {
          path: [...refused.map(flagOf), ...(extra['--config'] ? ['--config'] : [])].join(', '),
          message: `a resumed run continues its saved config bit for bit; --resume takes only ${RESUME_OVERRIDES.map(flagOf).join(', ')} (start a new run with --out for the rest)`,
        },
      ]);
    const saved = savedRun(dir);
    const epochs = (values.epochs as number | undefined) ?? saved.epochs;
    if (saved.done !== undefined && epochs !== undefined && saved.done >= epochs) {
      process.stderr.write(`usam: ${dir} has finished its ${saved.done} epochs; continue it with --resume ${dir} --epochs ${saved.done + 1} (or more)\n`);
      return 0;
    }
    config = { resume: dir, ...values };
    // a data-parallel run resumes with as many ranks as it had, unless told
    nproc = (values.nproc as number | undefined) ?? saved.nproc;
  } else {
    let fromFile: object = {};
    if (extra['--config'] !== undefined) {
      if (extra['--config'] === true) throw new UsamError('--config needs a file name');
      try {
        fromFile = JSON.parse(readFileSync(extra['--config'], 'utf8'));
      } catch (e) {
        throw new UsamError(`--config ${extra['--config']}: ${(e as Error).message}`);
      }
    }
    config = { ...fromFile, ...values };
    nproc = (config as { nproc?: number }).nproc ?? 1;
  }
  // the launcher: N ranks of this same command (each one sees WORLD_SIZE and trains its shard)
  if (nproc > 1 && process.env.WORLD_SIZE === undefined) {
    if (!('resume' in config)) parseTrainConfig(config); // a bad flag fails once, here, not in every rank
    return launchRanks(nproc, argv);
  }
  const quiet = extra['--quiet'] === true || !process.stderr.isTTY;
  let interrupted = 0;
  let reading: Reading | undefined; // what the epoch line's per-step mean is
  const run = trainInWorker(config as never, {
    onReady: (r) => {
      reading = readingOf(r.config.optimizer, r.config.estimator);
      process.stderr.write(`usam: training ${r.config.torchscript ?? r.config.model} (${r.params} parameters) with ${r.config.optimizer} on ${r.config.dataset}, ${r.batches} steps per epoch → ${r.out}\n`);
    },
    onStep: (s) => {
      if (quiet) return;
      const acc = s.accuracy === null ? '' : `  acc ${(100 * s.accuracy).toFixed(1)}%`;
      const line = `epoch ${s.epoch}/${s.epochs} ${bar(s.batch / s.batches)} ${s.batch}/${s.batches}  loss ${s.loss.toFixed(4)}${acc}  ${s.stepsPerSecond.toFixed(1)} steps/s`;
      process.stderr.write(`\r${line}\x1b[K`);
    },
    onEpoch: (m: EpochMetrics) => {
      if (!quiet) process.stderr.write('\r\x1b[K');
      const sharp = m.sharpness === null ? '' : `  ${reading?.short ?? 'sharpness'} ${m.sharpness.toPrecision(4)}`;
      const probe = m.probe ? `  tr H ${m.probe.trace.toPrecision(4)}  λmax ${m.probe.maxEigenvalue.toPrecision(4)}` : '';
      process.stderr.write(
        `epoch ${m.epoch}: train loss ${m.trainLoss.toFixed(4)}${m.trainAccuracy === null ? '' : ` (${(100 * m.trainAccuracy).toFixed(2)}%)`}  test loss ${m.test.loss.toFixed(4)}  top-1 ${(100 * m.test.top1).toFixed(2)}%  top-5 ${(100 * m.test.top5).toFixed(2)}%${sharp}${probe}  (${m.seconds.toFixed(1)} s)\n`,
      );
    },
  });
  const onSignal = () => {
    interrupted++;
    if (interrupted === 1) {
      process.stderr.write('\nusam: stopping after the current step (Ctrl-C again to abort without a checkpoint)\n');
      run.stop();
    } else process.exit(130);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const r = await run.done;
    if (r.stopped) {
      process.stderr.write(`usam: stopped in epoch ${r.progress.epoch + 1} after batch ${r.progress.batch}, step ${r.progress.globalStep}; resume with: usam train --resume ${r.out}\n`);
      return 130;
    }
    process.stderr.write(`usam: done; metrics in ${r.out}/metrics.jsonl, checkpoint ${r.checkpoint}\n`);
    return 0;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
