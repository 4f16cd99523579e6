// What a training run tells its caller as it goes (Trainer.run(events),
// trainInWorker's handlers): each step, each epoch, and the question whether
// to stop.
import * as check from '../arguments.js';
import type { EpochMetrics } from './run-folder.js';

export interface StepInfo {
  epoch: number;
  batch: number;
  batches: number;
  epochs: number;
  loss: number;
  /** running training accuracy of the epoch */
  accuracy: number | null;
  stepsPerSecond: number;
}

export interface TrainEvents {
  onStep?(s: StepInfo): void;
  onEpoch?(m: EpochMetrics): void;
  /** asked before every step; true stops after checkpointing */
  shouldStop?(): boolean;
}

/** run()'s events, checked: an object of optional functions. */
export function checkEvents(fn: string, events: TrainEvents): void {
  check.options(fn, 'events', events);
  for (const k of ['onStep', 'onEpoch', 'shouldStop'] as const)
    if (events[k] !== undefined) check.func(fn, `events.${k}`, events[k] as (...a: never[]) => unknown);
}

