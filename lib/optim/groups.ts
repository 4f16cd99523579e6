// Parameter groups, as in torch.optim: some parameters get their own
// learning rate, weight decay or (for SAM and ASAM) rho. Each parameter
// belongs to the first group that names it, the rest to the default group
// (the optimizer's own options). On the flat parameter vector a group is a
// set of ranges; neighbouring parameters of one group merge into one range,
// so a step costs one fused native call per range.
import { ConfigError, UsamError } from '../errors.js';
import { type Model, modelArg } from '../model/model.js';
import type { ModelSpec } from '../model/spec.js';

export interface ParamGroupInput {
  /** which parameters: their names (model.paramInfo()), a pattern over the names, or a test */
  params: string[] | RegExp | ((name: string) => boolean);
  /** learning rate of the group (the schedules scale it as they scale the default lr) */
  lr?: number;
  weightDecay?: number;
  /** SAM/ASAM only: the group's perturbation radius (e is rho_group·g/‖g‖ on the group) */
  rho?: number;
}

/**
 * A parameter group as the Optimizer holds it (`opt.paramGroups[i]`): lr,
 * weightDecay and rho are live, as in torch.optim: a value set here is used
 * from the next step on (the schedules scale the group's current value).
 */
export interface ParamGroup {
  /** parameter names, in the model's order */
  readonly names: string[];
  /** the group's base learning rate (≥ 0; 0 freezes the group) */
  lr: number;
  weightDecay: number;
  /** the group's perturbation radius: group 0's is the rule's rho; another group's, where set, its own (SAM, ASAM) */
  rho?: number;
}

/** A hyperparameter of a group must be a finite number ≥ 0. */
export function checkHyper(path: string, value: unknown): void {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0)
    throw new ConfigError('parameter groups', [{ path, message: `must be a finite number ≥ 0, got ${typeof value === 'number' ? value : JSON.stringify(value)}` }]);
}

/** A contiguous range of the flat vector whose parameters share a group. */
export interface Segment {
  offset: number;
  numel: number;
  group: number;
}

/**
 * Groups and ranges for a model: group 0 is the default group (defaults),
 * then the user's groups in order. Every user group must name at least one
 * parameter, and no parameter two groups.
 */
export function resolveGroups(model: Model, inputs: ParamGroupInput[], defaults: { lr: number; weightDecay: number }): { groups: ParamGroup[]; segments: Segment[] } {
  const info = model.paramInfo();
  const groups: ParamGroup[] = [{ names: [], lr: defaults.lr, weightDecay: defaults.weightDecay }];
  const owner = new Map<string, number>();
  inputs.forEach((g, k) => {
    const where = `groups[${k}]`;
    if (!g || typeof g !== 'object') throw new UsamError(`${where} must be an object like {params: [...], weightDecay: 0}`);
    const test =
      Array.isArray(g.params) ? (n: string) => (g.params as string[]).includes(n)
      : g.params instanceof RegExp ? (n: string) => (g.params as RegExp).test(n)
      : typeof g.params === 'function' ? g.params
      : undefined;
    if (!test) throw new UsamError(`${where}.params must be a list of parameter names, a RegExp or a function (name) => boolean`);
    if (Array.isArray(g.params)) {
      const unknown = g.params.filter((n) => !info.some((p) => p.name === n));
      if (unknown.length) throw new UsamError(`${where}.params names no parameter ${unknown.join(', ')}; the model's are ${info.map((p) => p.name).join(', ')}`);
    }
    for (const [field, value] of [['lr', g.lr], ['weightDecay', g.weightDecay], ['rho', g.rho]] as const)
      if (value !== undefined) checkHyper(`${where}.${field}`, value);
    const names = info.map((p) => p.name).filter((n) => test(n) && !owner.has(n));
    if (names.length === 0) throw new UsamError(`${where}.params matches no parameter not already in an earlier group; the model's parameters are ${info.map((p) => p.name).join(', ')}`);
    for (const n of names) owner.set(n, k + 1);
    groups.push({ names, lr: g.lr ?? defaults.lr, weightDecay: g.weightDecay ?? defaults.weightDecay, ...(g.rho !== undefined ? { rho: g.rho } : {}) });
  });
  const segments: Segment[] = [];
  for (const p of info) {
    const group = owner.get(p.name) ?? 0;
    if (group === 0) groups[0].names.push(p.name);
    const last = segments[segments.length - 1];
    if (last && last.group === group && last.offset + last.numel === p.offset) last.numel += p.numel;
    else segments.push({ offset: p.offset, numel: p.numel, group });
  }
  return { groups, segments };
}

/**
 * The usual recipe: biases and the weights of normalisation layers
 * (BatchNorm) take no weight decay. `groups: [noWeightDecay(model)]`.
 */
export function noWeightDecay(model: Model): ParamGroupInput {
  modelArg('noWeightDecay', 'model', model);
  const norms = normalisationModules(model.spec);
  return {
    params: (name) => name.endsWith('.bias') || norms.has(name.slice(0, name.lastIndexOf('.'))),
    weightDecay: 0,
  };
}

/** The module paths (as in parameter names) of BatchNorm layers. */
function normalisationModules(spec: ModelSpec): Set<string> {
  const found = new Set<string>();
  const walk = (layers: unknown[], prefix: string) =>
    layers.forEach((l, i) => {
      const layer = l as { type: string; body?: unknown[]; shortcut?: unknown[] };
      const path = `${prefix}${i}`;
      if (layer.type === 'batchnorm1d' || layer.type === 'batchnorm2d') found.add(path);
      if (layer.type === 'residual') {
        walk(layer.body ?? [], `${path}.body.`);
        walk(layer.shortcut ?? [], `${path}.shortcut.`);
      }
    });
  walk(spec.layers, '');
  return found;
}
