// Gauss-Newton-type curvature products (network.h: GaussNewtonBy):
//   G·v = Jᵀ M J v,  J = ∂z/∂w the Jacobian of the batch's outputs z,
// with M a positive semi-definite matrix in output space, block-diagonal by
// sample (rows of z). The loss averages n = N·d terms (N samples, d = 1 for
// cross-entropy and NLL, d outputs a sample for the elementwise losses);
// ℓ_n is sample n's summed loss (L = (1/n) Σ_n ℓ_n):
//   "ggn":              M = ∂²L/∂z², the generalised Gauss-Newton matrix
//                       (1/n) Σ_n J_nᵀ ∇²ℓ_n J_n;
//   "empirical-fisher": (1/n) Σ_n ∇_w ℓ_n ∇_w ℓ_nᵀ at the data's targets:
//                       with g_n = ∂L/∂z_n = ∇_z ℓ_n / n, M = n·g_n g_nᵀ;
//   "mc-fisher":        the same at targets drawn from the model's predictive
//                       distribution (FisherTargets), with the likelihood's
//                       gradient (cross-entropy without label smoothing):
//                       ℓ_n is then −log p(ỹ_n | z_n) up to a constant, and
//                       the expectation over the draws is the GGN.
// The 1/n with n = N·d (not 1/N) is the loss's own mean over its terms, as
// curvlinops normalises: the three share the GGN's scale.
//
// The library's own layers: the forward-over-reverse HVP pass with the
// loss's first derivative set to zero. Each layer's reverse rule is
//   R{∂L/∂a} = J_aᵀ R{∂L/∂b} + R{J_a}ᵀ ∂L/∂b   (and the same for its weights),
// and ∂L/∂b is zero at every layer when it is zero at the outputs, so only
// Jᵀ applied to the output term M·ż survives: a J v pass (the tangents), M,
// a Jᵀ pass, on the same rules, caches and blocks as the HVP.
// TorchScript modules: autograd. Jᵀu is kept with its graph for a zero
// probe u; J v = ∂⟨Jᵀu, v⟩/∂u (the double-vjp trick: Jᵀu is linear in u),
// then Jᵀ(M·Jv) by one more backward of the outputs.
#include "math_attention.h"
#include "network.h"

namespace usam {

namespace ag = torch::autograd;

namespace {
bool IsGaussNewtonKind(const std::string& kind) { return kind == "ggn" || kind == "empirical-fisher" || kind == "mc-fisher"; }
std::string NoLikelihood(LossKind kind) {
  return std::string("the Monte-Carlo Fisher draws targets from the model's likelihood, which the loss ") + LossName(kind) +
         " does not define; use a cross-entropy, bce-with-logits or mse loss, or the GGN or the empirical Fisher";
}
}  // namespace

at::Tensor Network::OutputCurvature(const std::string& kind, const Dual& z, const at::Tensor& y, PrimalCache* cache,
                                    int64_t block, double& loss) const {
  if (kind == "ggn") {
    Dual grad;
    loss = LossDual(z, y, grad, cache, block);
    return grad.tangent;  // R{∂L/∂z} = ∂²L/∂z² ż
  }
  if (kind == "mc-fisher" && (loss_.kind == LossKind::Nll || loss_.kind == LossKind::Huber))
    Fail(NoLikelihood(loss_.kind));
  at::Tensor zt = OutputTangent(z, block);
  auto lg = LossPrimal(z.value, y, cache);
  loss = lg[0].item<double>();
  const int64_t samples = z.value.size(0);
  at::Tensor g = lg[1];
  if (kind == "mc-fisher" && loss_.kind == LossKind::CrossEntropy && loss_.labelSmoothing > 0) {
    // the categorical likelihood's gradient (p − onehot(ỹ))/N: label smoothing is
    // a change of the loss, not of the model's distribution
    g = lg[2].clone();
    g.scatter_add_(1, y.view({-1, 1}), at::full({samples, 1}, -1.0, g.options()));
    g.div_(static_cast<double>(samples));
  }
  // per sample (and per direction of a block): s = ⟨g_n, ż_n⟩, u_n = n·s·g_n
  std::vector<int64_t> dims;
  for (int64_t d = block ? 2 : 1; d < zt.dim(); ++d) dims.push_back(d);
  at::Tensor s = dims.empty() ? g * zt : (g * zt).sum(dims, /*keepdim=*/true);
  const double terms = static_cast<double>(TakesLabels(loss_.kind) ? samples : z.value.numel());
  return (g * s).mul_(terms);
}

double Network::GaussNewtonBy(const std::string& kind, const at::Tensor& x, const at::Tensor& y, const at::Tensor& v,
                              at::Tensor& out, PrimalCache* cache) {
  if (!IsGaussNewtonKind(kind)) Fail("argument 'kind' is '" + kind + "'; use 'ggn', 'empirical-fisher' or 'mc-fisher'");
  PassSignals held;
  if (script_) {
    PrimalCache local;
    return ScriptGaussNewton(kind, x, y, v, out, cache ? *cache : local);
  }
  return IntoSeparate(out, {v}, [&](at::Tensor& target) {
    return TangentPass(x, y, v, cache, kind, [&](DualPass& dual) {
      dual.hv = SplitLikeParams(target, dual.block);
      DualBackward backward;
      Dual z = RunLayersDual(layers_, {x, {}}, dual, backward);
      double loss = 0;
      at::Tensor u = OutputCurvature(kind, z, y, cache, dual.block, loss);
      backward({at::zeros_like(z.value), u});
      return loss;
    });
  });
}

double Network::ScriptGaussNewton(const std::string& kind, const at::Tensor& x, const at::Tensor& y, const at::Tensor& v,
                                  at::Tensor& out, PrimalCache& cache) {
  // cache.graph: {z, the probe u, Jᵀu per parameter (with its graph)}
  KeepGraph(cache, CacheKey(x, y, "graph " + kind), [&] {
    MathAttention twice;  // Jᵀu is differentiated again
    at::Tensor z = Forward(x, false, true);
    at::Tensor probe = at::zeros_like(z).requires_grad_(true);
    cache.graph = {z, probe};
    for (auto& t : ag::grad({z}, params, {probe}, /*retain_graph=*/true, /*create_graph=*/true, /*allow_unused=*/true))
      cache.graph.push_back(t);
    at::NoGradGuard ng;
    cache.loss = Loss(z.detach(), y);
  });
  const at::Tensor &z = cache.graph[0], &probe = cache.graph[1];
  const bool block = v.dim() == 2;
  for (int64_t k = 0; k < (block ? v.size(0) : 1); ++k) {
    at::Tensor vk = block ? v.select(0, k) : v, outk = block ? out.select(0, k) : out;
    // J v = ∂⟨Jᵀu, v⟩/∂u
    auto jvs = BackwardWith(cache.graph, 2, vk, {probe});
    at::Tensor jv = jvs.empty() ? at::Tensor() : jvs[0];
    double loss = 0;
    at::Tensor u;
    {
      at::NoGradGuard ng;
      u = OutputCurvature(kind, {z.detach(), jv.defined() ? jv.detach() : at::Tensor()}, y, nullptr, 0, loss);
    }
    if (z.requires_grad())
      WriteFlat(ag::grad({z}, params, {u}, /*retain_graph=*/true, false, /*allow_unused=*/true), outk);
    else
      outk.zero_();
  }
  return cache.loss.item<double>();
}

at::Tensor Network::FisherTargets(const at::Tensor& z, const at::Tensor& noise) const {
  at::NoGradGuard ng;
  const int64_t samples = z.size(0);
  switch (loss_.kind) {
    case LossKind::CrossEntropy: {
      if (z.dim() != 2) Fail("cross-entropy needs [batch, classes] outputs, the model gives " + c10::str(z.sizes()));
      if (noise.dim() != 2 || noise.size(1) != samples)
        Fail("noise must be uniform draws [M, " + std::to_string(samples) + "], got " + c10::str(noise.sizes()));
      // the label whose cumulative probability first reaches the draw
      at::Tensor cdf = at::softmax(z, 1).cumsum(1);
      at::Tensor below = cdf.unsqueeze(0).lt(noise.unsqueeze(2).to(cdf.scalar_type()));
      return below.sum(2).clamp_max(z.size(1) - 1).to(at::kLong);
    }
    case LossKind::BceWithLogits:
    case LossKind::Mse: {
      if (noise.dim() != z.dim() + 1 || noise.sizes().slice(1) != z.sizes())
        Fail("noise must be [M, " + c10::str(z.sizes()).substr(1) + ", got " + c10::str(noise.sizes()));
      if (loss_.kind == LossKind::BceWithLogits) return noise.lt(at::sigmoid(z).unsqueeze(0)).to(z.scalar_type());
      // (z − ỹ)² is −log N(ỹ; z, 1/2) up to a constant
      return z.unsqueeze(0) + noise.to(z.scalar_type()) * std::sqrt(0.5);
    }
    default:
      Fail(NoLikelihood(loss_.kind));
  }
}

}  // namespace usam
