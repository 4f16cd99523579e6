// Training off the main thread: the event loop stays free for signals and
// progress while a worker thread runs the steps.
import * as check from '../arguments.js';
import { UsamError } from '../errors.js';
import { Worker } from 'node:worker_threads';
import type { Progress } from './checkpoint.js';
import { parseTrainConfig, type TrainConfig, type TrainConfigInput } from './config.js';
import type { EpochMetrics, StepInfo } from './trainer.js';
import type { ResumeInput } from './resume.js';

export interface WorkerHandlers {
  onReady?(info: { out: string; batches: number; params: number; config: TrainConfig }): void;
  onStep?(s: StepInfo): void;
  onEpoch?(m: EpochMetrics): void;
}

export interface WorkerRun {
  /** Resolves when training ends (finished or stopped); rejects on an error. */
  done: Promise<{ stopped: boolean; out: string; checkpoint: string; progress: Progress }>;
  /** Stops after the current step, leaving a resumable checkpoint. */
  stop(): void;
}

export function trainInWorker(config: TrainConfigInput | ResumeInput, handlers: WorkerHandlers = {}): WorkerRun {
  const stop = new SharedArrayBuffer(4);
  const flag = new Int32Array(stop);
  check.object('trainInWorker', 'config', config, 'a training config { optimizer, epochs, ... } or { resume: folder }');
  check.options('trainInWorker', 'handlers', handlers);
  if (!('resume' in config)) parseTrainConfig(config); // bad fields fail here, before a thread starts
  const dev = import.meta.url.endsWith('.ts');
  const url = new URL(dev ? './worker.ts' : './worker.js', import.meta.url);
  // from TypeScript sources (development), the thread registers tsx first
  const worker = dev
    ? new Worker(`import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then((m) => { m.register(); return import(${JSON.stringify(url.href)}); })`, {
        eval: true,
        workerData: { config, stop },
      })
    : new Worker(url, { workerData: { config, stop } });
  const done = new Promise<Awaited<WorkerRun['done']>>((resolve, reject) => {
    let settled = false;
    worker.on('message', (m: { type: string; [k: string]: unknown }) => {
      if (m.type === 'ready') handlers.onReady?.(m as never);
      else if (m.type === 'step') handlers.onStep?.(m.step as StepInfo);
      else if (m.type === 'epoch') handlers.onEpoch?.(m.metrics as EpochMetrics);
      else if (m.type === 'done') {
        settled = true;
        resolve(m.result as never);
      } else if (m.type === 'error') {
        settled = true;
        reject(new UsamError(m.message as string));
      }
    });
    worker.on('error', (e) => {
      settled = true;
      reject(e);
    });
    worker.on('exit', (code) => {
      if (!settled) reject(new UsamError(`the training thread exited with code ${code}`));
    });
  });
  return { done, stop: () => Atomics.store(flag, 0, 1) };
}
