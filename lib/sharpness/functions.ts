// The scalar functions psi (inner) and phi (outer) of S = phi(E psi(uᵀHu)),
// each with its derivative (the update rules need phi' and psi').

export interface ScalarFunction {
  f: (x: number) => number;
  df: (x: number) => number;
}

export const scalarPresets = {
  /** x ↦ x */
  identity: { f: (x: number) => x, df: () => 1 },
  /** x ↦ exp(−x/2): the inner function of Det-SAM */
  'exp-neg-half': { f: (x: number) => Math.exp(-x / 2), df: (x: number) => -0.5 * Math.exp(-x / 2) },
  /** m ↦ m^−2: the outer function of Det-SAM */
  'inverse-square': { f: (m: number) => m ** -2, df: (m: number) => -2 * m ** -3 },
  /** x ↦ x² */
  square: { f: (x: number) => x * x, df: (x: number) => 2 * x },
} satisfies Record<string, ScalarFunction>;

export type ScalarPresetName = keyof typeof scalarPresets;

export function resolveScalar(fn: ScalarPresetName | ScalarFunction): ScalarFunction {
  return typeof fn === 'string' ? scalarPresets[fn] : fn;
}
