// What a rule's per-step reading (StepResult.sharpness, `sharpness` in
// metrics.jsonl and steps.jsonl) is, named once for the console, the report
// and the docs (math.md §2a; docs/readings.md measures each against the
// probe of its measure on the same batches).
//
// The finite-difference readings are phi(mean psi(q_i)) over the step's
// curvature samples q_i = 2·(L(w + rho·u_i) − L(w) − rho·g0ᵀu_i)/rho²: exact
// quadratic forms uᵀHu on a quadratic loss, uᵀHu + O(rho) on a smooth one.
// On a ReLU network they are the curvature of the loss smoothed at radius
// rho, which counts the kinks the Hessian (a second derivative almost
// everywhere) does not see: measured on the default MLP they do not approach
// the probe as rho → 0 (docs/readings.md). So they are named as the rule's
// finite-difference signal at its radius; the exact estimator's readings
// (HVPs) estimate the measure itself.

export interface Reading {
  /** a short name for the console line of an epoch */
  short: string;
  /** the chart title in the report */
  name: string;
  /** what it is, in a line (the chart's subtitle) */
  unit: string;
  /**
   * 'estimate': the reading estimates its measure (a consistent estimate,
   * with the sampling error of `samples` directions a step);
   * 'signal': the rule's finite-difference signal at its radius, which
   * meets the measure as rho → 0 only on a smooth loss (docs/readings.md).
   */
  kind: 'estimate' | 'signal';
}

const fdSample = 'q = 2(L(w+ρu) − L − ρgᵀu)/ρ²';

/**
 * The reading of a rule ('sam', 'asam', 'trace-sam', 'det-sam', 'frob-sam',
 * 'universal') with its estimator; undefined for base optimizers.
 */
export function readingOf(kind: string, estimator: 'finite-difference' | 'exact' = 'finite-difference'): Reading | undefined {
  const exact = estimator === 'exact';
  switch (kind) {
    case 'sam':
      return { short: 'L(w+e)−L(w)', name: 'SAM: L(w + e) − L(w), ‖e‖ = ρ', unit: 'loss (nats) at the run’s ρ: SAM’s own measure, not a Hessian one', kind: 'estimate' };
    case 'asam':
      return { short: 'L(w+e)−L(w)', name: 'ASAM: L(w + e) − L(w), adaptive e', unit: 'loss (nats) at the run’s ρ, η: ASAM’s own measure, not a Hessian one', kind: 'estimate' };
    case 'trace-sam':
      return exact
        ? { short: 'tr H ≈', name: 'Trace-SAM (exact): tr H estimate', unit: 'mean of uᵀHu by HVPs, gaussian u; loss / weight²', kind: 'estimate' }
        : { short: 'fd curvature', name: 'Trace-SAM: finite-difference curvature at radius ρ', unit: `mean of ${fdSample}; → tr H as ρ → 0 on a smooth loss (not on ReLU networks)`, kind: 'signal' };
    case 'det-sam':
      return exact
        ? { short: 'Det measure ≈', name: 'Det-SAM (exact): (E exp(−uᵀHu/2))⁻², u on [−a, a]^P', unit: 'the Det-SAM measure at its cube, by HVPs; ≈ 1 + (a²/3)·tr H for small a; dimensionless', kind: 'estimate' }
        : { short: 'fd Det signal', name: 'Det-SAM: finite-difference (mean exp(−q/2))⁻² at radius ρ', unit: `${fdSample}, u on [−a, a]^P; → the Det-SAM measure as ρ → 0 on a smooth loss`, kind: 'signal' };
    case 'frob-sam':
      return exact
        ? { short: '‖H‖_F² ≈', name: 'Frob-SAM (exact): ‖H‖_F² estimate', unit: '½·SampleVar(uᵀHu) by HVPs, gaussian u; loss² / weight⁴', kind: 'estimate' }
        : { short: 'fd Frob signal', name: 'Frob-SAM: finite-difference ½·Var(q) at radius ρ', unit: `½·SampleVar of ${fdSample}; → ‖H‖_F² as ρ → 0 on a smooth loss (4× the probe at the defaults)`, kind: 'signal' };
    case 'universal':
      return exact
        ? { short: 'S ≈', name: 'universal (exact): φ(mean ψ(uᵀHu))', unit: 'the measure by HVPs', kind: 'estimate' }
        : { short: 'fd S signal', name: 'universal: finite-difference φ(mean ψ(q)) at radius ρ', unit: `${fdSample}; → φ(E ψ(uᵀHu)) as ρ → 0 on a smooth loss`, kind: 'signal' };
    case 'rwp':
      return { short: 'L(w+ρu)−L(w)', name: 'RWP: L(w + ρu) − L(w), random u', unit: 'loss (nats): the mean rise under the random perturbation at the run’s ρ', kind: 'estimate' };
    case 'gnp':
      return { short: '½‖g‖²', name: 'GNP: ½‖∇L(w)‖²', unit: 'the penalised quantity, exact; loss² / weight²', kind: 'estimate' };
    default:
      return undefined;
  }
}
