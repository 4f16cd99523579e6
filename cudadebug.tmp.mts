import { Model, Optimizer, mlp, hessian } from './lib/index.ts';
import { randomBatch, maxAbsDiff, toNumbers } from './test/helpers.ts';
const spec = mlp({ layers: [5, 7, 3], activation: 'gelu' });
const { x, y } = randomBatch([8, 5], 3, 6);
const cases: [string, any][] = [
  ['sgd-mom', { base: { kind: 'sgd', lr: 0.1, momentum: 0.9 } }],
  ['sgd', { base: { kind: 'sgd', lr: 0.1 } }],
  ['sam', { base: { kind: 'sgd', lr: 0.1 }, sharpness: { kind: 'sam', rho: 0.05 } }],
  ['sam-mom', { base: { kind: 'sgd', lr: 0.1, momentum: 0.9 }, sharpness: { kind: 'sam', rho: 0.05 } }],
  ['asam', { base: { kind: 'sgd', lr: 0.1 }, sharpness: { kind: 'asam', rho: 0.05 } }],
];
for (const [name, opts] of cases) {
  const run = (device: string) => {
    const m = new Model(spec, { dtype: 'float64', seed: 1, device });
    const o = new Optimizer(m, opts);
    const out: any[] = [];
    const xd = device === 'cpu' ? x : x.to(device), yd = device === 'cpu' ? y : y.to(device);
    const g = m.lossAndGrad(xd, yd, { updateStats: false });
    out.push({ g0: toNumbers(g.grad).slice(0, 3), norm: Math.hypot(...toNumbers(g.grad)) });
    for (let i = 0; i < 3; i++) { const r = o.step(xd, yd); out.push({ loss: r.loss, sharp: r.sharpness, lr: r.lr, rho: r.rho, p: Array.from(m.getParams().slice(0, 3)) }); }
    return { params: m.getParams(), out };
  };
  const a = run('cpu'), b = run('cuda');
  console.log(name, 'diff', maxAbsDiff(a.params, b.params));
  console.log(' cpu', JSON.stringify(a.out));
  console.log(' gpu', JSON.stringify(b.out));
}
