// BatchNorm's steps in a forward-over-reverse HVP (see tangent.h: Dual).
// With x̂ = (x − μ)·r, r = (σ² + ε)^(−1/2), y = γ x̂ + β, and m(·) the mean
// over every dimension but the channel (batch statistics):
//   R{x̂} = r (ẋ − m(ẋ) − x̂ m(x̂ ẋ)),  R{r}/r = −r m(x̂ ẋ),  R{y} = γ R{x̂} + v_γ x̂ + v_β;
// with h = γ g and ḣ = γ ġ + v_γ g:
//   ∂x = r (h − m(h) − x̂ m(h x̂)),
//   R{∂x} = (R{r}/r) ∂x + r (ḣ − m(ḣ) − R{x̂} m(h x̂) − x̂ m(ḣ x̂ + h R{x̂})),
//   (Hv)_γ = Σ (ġ x̂ + g R{x̂}),  (Hv)_β = Σ ġ.
// With running statistics (eval mode) μ and r are constants and every m(·)
// term vanishes. On the CPU each step is one fused per-channel kernel (two
// passes over the data); elsewhere it is composed of ATen ops.
#pragma once
#include "tangent.h"

namespace usam {

struct BatchNormDualArgs {
  at::Tensor gamma, beta, vgamma, vbeta;  // all undefined without affine
  at::Tensor runningMean, runningVar;     // read when !batchStats
  double eps = 1e-5;
  bool batchStats = true;
};

// What the reverse step needs besides the inputs: per channel μ, r,
// m(x̂ ẋ) and m(ẋ) (the last two zero in eval mode or without a tangent).
struct BatchNormDualState {
  at::Tensor x, xt, mean, r, a, meanXt;
};

// (y, R{y}) of x; fills `state` for the reverse step.
Dual BatchNormForwardDual(const Dual& x, const BatchNormDualArgs& args, BatchNormDualState& state);

// (∂x, R{∂x}) from (g, ġ) of the output, undefined when the input has no
// tangent; writes (Hv)_γ and (Hv)_β into hvGamma and hvBeta when affine.
Dual BatchNormBackwardDual(const Dual& g, const BatchNormDualArgs& args, const BatchNormDualState& state,
                           at::Tensor& hvGamma, at::Tensor& hvBeta);

}  // namespace usam
