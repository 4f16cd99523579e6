// The training thread: runs a Trainer off the main thread and reports to it.
// The main thread asks it to stop through a shared flag, read between steps.
import { parentPort, workerData } from 'node:worker_threads';
import { processGroupFromEnv } from '../distributed.js';
import { CONFIG_FILE, Trainer } from './trainer.js';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const { config, stop } = workerData as { config: object; stop: SharedArrayBuffer };
const flag = new Int32Array(stop);

/** The run's device: its config, or for a resumed run the config.json rank 0 wrote. */
function deviceOf(c: object): string {
  if ('resume' in c) {
    try {
      return (JSON.parse(readFileSync(join(String(c.resume), CONFIG_FILE), 'utf8')) as { device?: string }).device ?? 'cpu';
    } catch {
      return 'cpu'; // the Trainer reports what is wrong with the folder
    }
  }
  return (c as { device?: string }).device ?? 'cpu';
}
const post = (m: object) => parentPort!.postMessage(m);

try {
  // a rank of a data-parallel run (usam train --nproc, torchrun): the group from torchrun's variables
  const group = Number(process.env.WORLD_SIZE ?? '1') > 1 ? processGroupFromEnv(process.env, {
          timeoutMs: Number(process.env.USAM_DIST_TIMEOUT_MS) || undefined,
          // NCCL for a CUDA run, Gloo on CPU
          backend: deviceOf(config).startsWith('cuda') ? 'nccl' : 'gloo',
          // every rank must run the same config: a rank of another run is refused at rendezvous
          fingerprint: { config: createHash('sha256').update(JSON.stringify(config)).digest('hex').slice(0, 16) },
        }) : undefined;
  const trainer = new Trainer(config as never, { group });
  post({ type: 'ready', out: trainer.out, batches: trainer.loader.length, params: trainer.model.numParams, config: trainer.config });
  let lastPost = 0;
  const result = trainer.run({
    onStep: (s) => {
      const now = Date.now();
      if (now - lastPost >= 100 || s.batch === s.batches) {
        lastPost = now;
        post({ type: 'step', step: s });
      }
    },
    onEpoch: (m) => post({ type: 'epoch', metrics: m }),
    shouldStop: () => Atomics.load(flag, 0) === 1,
  });
  trainer.dispose();
  group?.dispose();
  post({ type: 'done', result: { stopped: result.stopped, out: result.out, checkpoint: result.checkpoint, progress: result.progress } });
} catch (e) {
  post({ type: 'error', message: e instanceof Error ? e.message : String(e) });
}
