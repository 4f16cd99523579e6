// Schedules for the learning rate and for rho: a value as a function of the
// step (or epoch) counter t = 0, 1, 2, ...
import { z } from 'zod';
import * as check from '../arguments.js';
import { parseOrThrow } from '../errors.js';

export const scheduleConfig = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('constant') }).strict(),
  z.object({ kind: z.literal('multistep'), milestones: z.array(z.number().int().nonnegative()), gamma: z.number().positive().default(0.1) }).strict(),
  z.object({ kind: z.literal('cosine'), total: z.number().int().positive(), min: z.number().nonnegative().default(0) }).strict(),
]);

export const warmupConfig = z.object({ steps: z.number().int().nonnegative().default(0), startFactor: z.number().min(0).max(1).default(0) });

export type ScheduleConfig = z.input<typeof scheduleConfig>;

/**
 * value(base, t): the schedule applied to a base value at step t, with an
 * optional linear warm-up over the first steps. The base is read at each
 * call, so a parameter group's lr changed at run time is scheduled from its
 * new value (as torch.optim's schedulers scale each group's own lr).
 */
export function scheduleOf(config: ScheduleConfig = { kind: 'constant' }, warmup: z.input<typeof warmupConfig> = {}): (base: number, t: number) => number {
  const c = parseOrThrow(scheduleConfig, config, 'schedule config', 'config');
  const w = parseOrThrow(warmupConfig, check.options('schedule', 'warmup', warmup), 'warmup config', 'warmup');
  return (base: number, t: number): number => {
    let v = base;
    switch (c.kind) {
      case 'constant':
        break;
      case 'multistep':
        v = base * c.gamma ** c.milestones.filter((m) => t >= m).length;
        break;
      case 'cosine': {
        const p = Math.min(t, c.total) / c.total;
        v = c.min + (base - c.min) * 0.5 * (1 + Math.cos(Math.PI * p));
        break;
      }
    }
    if (w.steps > 0 && t < w.steps) v *= w.startFactor + (1 - w.startFactor) * (t / w.steps);
    return v;
  };
}

/** value(t) = the schedule of a fixed base (scheduleOf). */
export function schedule(base: number, config: ScheduleConfig = { kind: 'constant' }, warmup: z.input<typeof warmupConfig> = {}): (t: number) => number {
  check.number('schedule', 'base', base);
  const f = scheduleOf(config, warmup);
  return (t) => f(base, t);
}
