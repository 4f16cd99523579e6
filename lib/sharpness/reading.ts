// What a rule's per-step reading (StepResult.sharpness, `sharpness` in
// metrics.jsonl and steps.jsonl) is: each rule's descriptor names its own
// (lib/optim/rules/<kind>.ts) for the console, the report and the docs
// (math.md §2a; docs/readings.md measures each against the probe of its
// measure on the same batches).
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

/** The finite-difference curvature sample behind the rules' readings, as the readings' subtitles write it. */
export const FD_SAMPLE = 'q = 2(L(w+ρu) − L − ρgᵀu)/ρ²';
