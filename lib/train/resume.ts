// Continuing a saved run: what may change when it resumes. A resumed run
// continues bit for bit, so only what does not change the steps already
// planned may be given again: more epochs (where the schedules do not depend
// on the run's length), and how it is watched (probes, step log, threads, the
// divergence check). Anything else would change the trajectory and is
// refused by name: that is a new run (--out).
import { ConfigError } from '../errors.js';
import { parseTrainConfig, type TrainConfig, type TrainConfigInput } from './config.js';

/** The fields a resumed run may be given anew. */
export const RESUME_OVERRIDES = ['epochs', 'probeEvery', 'probeSamples', 'stepLogEvery', 'threads', 'divergence', 'nproc'] as const;
type Override = (typeof RESUME_OVERRIDES)[number];

/** `new Trainer({ resume: 'runs/x' })`, or `{ resume, epochs: 5 }` to continue a run for more epochs. */
export type ResumeInput = { resume: string } & Partial<Pick<TrainConfigInput, Override>>;

/**
 * The config of a resumed run: the saved one, with the overrides given.
 * `epochDone` is the checkpoint's epoch (the epochs finished).
 */
export function resumedConfig(saved: unknown, out: string, input: ResumeInput, epochDone: number): TrainConfig {
  const { resume: _resume, ...overrides } = input;
  const refused = Object.keys(overrides).filter((k) => !(RESUME_OVERRIDES as readonly string[]).includes(k));
  if (refused.length > 0)
    throw new ConfigError(
      'resume',
      refused.map((k) => ({
        path: k,
        message: `a resumed run continues its saved config bit for bit, and ${k} would change its trajectory; resume takes only ${RESUME_OVERRIDES.join(', ')} (start a new run with another out for the rest)`,
      })),
    );
  const before = parseTrainConfig({ ...(saved as object), out });
  const config = parseTrainConfig({ ...(saved as object), ...overrides, out });
  if (config.epochs !== before.epochs) {
    // the cosine schedules' horizon is the run's length: the steps already taken had another lr (or rho)
    const cosine = [config.lrSchedule === 'cosine' ? 'lrSchedule' : '', config.rhoSchedule === 'cosine' ? 'rhoSchedule' : ''].filter(Boolean);
    if (cosine.length > 0)
      throw new ConfigError('resume', [
        {
          path: 'epochs',
          message: `the run's ${cosine.join(' and ')} is cosine over its ${before.epochs} epochs; more epochs would change the rate of every step already taken. Continue runs with the constant or multistep schedule, or start a new run with --epochs ${config.epochs}`,
        },
      ]);
    if (config.epochs < epochDone)
      throw new ConfigError('resume', [{ path: 'epochs', message: `the run has finished ${epochDone} epochs; --epochs ${config.epochs} would end it before where it is` }]);
  }
  return config;
}
