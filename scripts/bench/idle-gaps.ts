// npm run bench:idle-gaps [-- --model mlp] [--optimizers sam,trace-sam] [--rounds 12] [--gap 60]
// Whether idle time between a benchmark's turns changes our step's ratio to
// its passes. `npm run bench` runs each peer in turns, and a process idles
// while the others take theirs; here one step-runner process (the bench's
// own, scripts/bench/step-runner.ts) gets alternating turns of 6 steps and
// 6 forward-backward passes, once back to back and once with `--gap` ms of
// idle time after each turn, and step/((n+1)·fb) (the medians of each round's
// turns) is printed for both, as the median and range over the rounds.
// Rules that draw directions (Trace/Det/Frob-SAM) hand each draw to a
// background thread, which an idle virtual machine is slow to wake.
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { option } from './args.js';
import { BENCH_PASSES, median } from './models.js';
import { Peer } from './peer.js';

const model = option('--model', 'mlp');
const optimizers = option('--optimizers', 'sam,trace-sam').split(',');
const rounds = Number(option('--rounds', '12'));
const gap = Number(option('--gap', '60'));
const here = dirname(fileURLToPath(import.meta.url));
const idle = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
console.log(`${model}, 1 intra-op thread, ${rounds} rounds of a 6-step turn and a 6-pass turn; gaps of ${gap} ms after each turn, or none`);
for (const o of optimizers) {
  const peer = new Peer(process.execPath, [join(here, '../run-ts.mjs'), join(here, 'step-runner.ts'), model, o], { ...process.env, OMP_NUM_THREADS: '1' });
  await peer.ask();
  for (const g of [0, gap, 0, gap]) {
    const ratios: number[] = [];
    for (let r = 0; r < rounds; r++) {
      const steps = await peer.ask<number[]>('step 6');
      if (g) await idle(g);
      const passes = await peer.ask<number[]>('fb 6');
      if (g) await idle(g);
      ratios.push(median(steps) / (BENCH_PASSES[o] * median(passes)));
    }
    const s = [...ratios].sort((a, b) => a - b);
    console.log(`${o}, gaps of ${g} ms: step/((n+1)·fb) ${median(s).toFixed(3)} (${s[0].toFixed(3)}–${s.at(-1)!.toFixed(3)})`);
  }
  peer.close();
}
