// The normalisations: BatchNorm (1-D and 2-D; its fused tangent kernels in
// batchnorm.cc) and LayerNorm (layer.h), with their tangent, reverse and jet
// rules.
#include "batchnorm.h"
#include "layer.h"

namespace usam {

namespace {

class BatchNorm : public Layer {
 public:
  bool TakesReduced() const override { return true; }
  // spec.cc checked eps > 0 and momentum in [0, 1]
  BatchNorm(const LayerSpec& spec, const std::string& prefix, Slots& s, int64_t spatialDims)
      : Layer(spec.where), spatialDims_(spatialDims), eps_(spec.eps), momentum_(spec.momentum), affine_(spec.affine) {
    const int64_t n = spec.numFeatures;
    if (affine_) {
      weight_ = s.AddParam(prefix + "weight", {n}, 0, 1.0);
      bias_ = s.AddParam(prefix + "bias", {n}, 0, 0.0);
    }
    mean_ = s.AddBuffer(prefix + "running_mean", {n}, 0.0);
    var_ = s.AddBuffer(prefix + "running_var", {n}, 1.0);
    counter_ = s.AddCounter(prefix + "num_batches_tracked");
  }
  at::Tensor Forward(const at::Tensor& x, Pass& p) const override {
    CheckRank(x);
    // Batch statistics in training mode; running statistics are read in eval
    // mode and written only when the pass asks for it.
    bool gather = p.training && p.updateStats && p.stats != nullptr;
    if (gather) {
      at::NoGradGuard ng;
      p.stats->Add(mean_, var_, counter_, momentum_, x.detach());
    }
    bool useRunning = !p.training || (p.updateStats && !gather);
    at::Tensor rm = useRunning ? p.buffers[mean_] : at::Tensor();
    at::Tensor rv = useRunning ? p.buffers[var_] : at::Tensor();
    if (p.twiceDifferentiable) return Composite(x, p);
    bool cudnn = at::globalContext().userEnabledCuDNN();
    if (p.training && p.updateStats && !gather) p.counters[counter_].add_(1);
    // the kernel moves the running statistics without bumping their version
    // (autograd checks it); num_batches_tracked's add_ above does
    return at::batch_norm(x, affine_ ? p.params[weight_] : at::Tensor(), affine_ ? p.params[bias_] : at::Tensor(), rm,
                          rv, p.training, momentum_, eps_, cudnn);
  }
  // The tangent rules and their fused CPU kernels live in batchnorm.cc.
  Dual ForwardDual(const Dual& x, DualPass& p, DualBackward& backward) const override {
    CheckRank(x.value);
    BatchNormDualArgs args;
    if (affine_) {
      args.gamma = p.pass.params[weight_], args.beta = p.pass.params[bias_];
      args.vgamma = p.v[weight_], args.vbeta = p.v[bias_];
    }
    args.runningMean = p.pass.buffers[mean_], args.runningVar = p.pass.buffers[var_];
    args.eps = eps_;
    args.batchStats = p.pass.training;
    if (p.block) return ForwardBlock(x, p, args, backward);
    auto state = std::make_shared<BatchNormDualState>();
    Dual y = BatchNormForwardDual(x, args, *state);
    backward = [this, &p, args, state](const Dual& g) -> Dual {
      at::Tensor none;
      return BatchNormBackwardDual(g, args, *state, affine_ ? p.hv[weight_] : none, affine_ ? p.hv[bias_] : none);
    };
    return y;
  }
  // x̂ by batch statistics (NormalizedJet) or by the running ones (constants:
  // x̂' = ẋ r, x̂'' = ẍ r), then the affine map.
  Jet ForwardJet(const Jet& x, DualPass& p) const override {
    CheckRank(x.value);
    std::vector<int64_t> channel(static_cast<size_t>(x.value.dim()), 1), dims{0}, tdims;
    channel[1] = x.value.size(1);
    for (int64_t d = 2; d < x.value.dim(); ++d) dims.push_back(d);
    for (auto d : dims) tdims.push_back(p.block ? d + 1 : d);
    Jet xh;
    if (p.pass.training) {
      auto [c, r] = Primal2(p, [&] {
        at::Tensor cc = x.value - x.value.mean(dims, /*keepdim=*/true);
        return std::make_pair(cc, ((cc * cc).mean(dims, /*keepdim=*/true) + eps_).rsqrt());
      });
      xh = NormalizedJet(Primal(p, [&, c = c, r = r] { return c * r; }), c, r, x, tdims);
    } else {
      auto [value, r] = Primal2(p, [&] {
        at::Tensor rr = (p.pass.buffers[var_].view(channel) + eps_).rsqrt();
        return std::make_pair((x.value - p.pass.buffers[mean_].view(channel)) * rr, rr);
      });
      xh = ScaledJet(value, x, [r = r](const at::Tensor& t) { return t * r; });
    }
    if (!affine_) return xh;
    std::vector<int64_t> tangentChannel = TangentShape(channel, p);
    at::Tensor gamma = p.pass.params[weight_].view(channel);
    at::Tensor y = Primal(p, [&] { return xh.value * gamma + p.pass.params[bias_].view(channel); });
    return AffineJet(y, xh, gamma, p.v[weight_].view(tangentChannel), p.v[bias_].view(tangentChannel));
  }

 private:
  // A block runs the fused kernels once per direction (they compute primal
  // and tangent together, per channel).
  Dual ForwardBlock(const Dual& x, DualPass& p, const BatchNormDualArgs& shared, DualBackward& backward) const {
    const int64_t K = p.block;
    std::vector<BatchNormDualArgs> args(K, shared);
    std::vector<std::shared_ptr<BatchNormDualState>> states;
    at::Tensor y;
    std::vector<at::Tensor> yt;
    for (int64_t k = 0; k < K; ++k) {
      if (affine_) args[k].vgamma = p.v[weight_].select(0, k), args[k].vbeta = p.v[bias_].select(0, k);
      states.push_back(std::make_shared<BatchNormDualState>());
      Dual d = BatchNormForwardDual({x.value, x.tangent.defined() ? x.tangent.select(0, k) : at::Tensor()}, args[k], *states[k]);
      y = d.value;
      yt.push_back(d.tangent);
    }
    backward = [this, &p, args, states, K](const Dual& g) -> Dual {
      at::Tensor dx;
      std::vector<at::Tensor> dxt;
      for (int64_t k = 0; k < K; ++k) {  // every k writes its (Hv)_γ, (Hv)_β, with or without upstream
        at::Tensor none, hg = affine_ ? p.hv[weight_].select(0, k) : none, hb = affine_ ? p.hv[bias_].select(0, k) : none;
        Dual d = BatchNormBackwardDual({g.value, g.tangent.select(0, k)}, args[k], *states[k], hg, hb);
        dx = d.value;
        dxt.push_back(d.tangent);
      }
      if (!dx.defined()) return {};
      return {dx, at::stack(dxt)};
    };
    return {y, yt[0].defined() ? at::stack(yt) : at::Tensor()};
  }

  void CheckRank(const at::Tensor& x) const {
    int64_t want = spatialDims_ == 2 ? 4 : 2;
    if (!(x.dim() == want || (spatialDims_ == 1 && x.dim() == 3)))
      Fail(where() + ": expected a " + (spatialDims_ == 2 ? "4-D [N, C, H, W]" : "2-D [N, C] or 3-D [N, C, L]") +
           " input, got " + std::to_string(x.dim()) + "-D");
  }

  // Batch norm written with elementary ops for passes that differentiate
  // more than once (HVPs, third-order gradients): LibTorch's fused kernel
  // has a double backward, but the derivative of that double backward is
  // wrong (third-order checks against finite differences fail), and cuDNN's
  // has none. Same numbers as the fused kernel, to rounding. Such passes
  // never update running statistics.
  at::Tensor Composite(const at::Tensor& x, Pass& p) const {
    std::vector<int64_t> dims{0};
    std::vector<int64_t> shape(static_cast<size_t>(x.dim()), 1);
    shape[1] = x.size(1);
    for (int64_t d = 2; d < x.dim(); ++d) dims.push_back(d);
    at::Tensor mean, var;
    if (p.training) {
      mean = x.mean(dims, /*keepdim=*/true);
      var = (x - mean).pow(2).mean(dims, /*keepdim=*/true);
    } else {
      mean = p.buffers[mean_].view(shape);
      var = p.buffers[var_].view(shape);
    }
    at::Tensor y = (x - mean) * (var + eps_).rsqrt();
    if (affine_) y = y * p.params[weight_].view(shape) + p.params[bias_].view(shape);
    return y;
  }

  int64_t spatialDims_;
  double eps_ = 1e-5, momentum_ = 0.1;
  bool affine_ = true;
  size_t weight_ = 0, bias_ = 0, mean_ = 0, var_ = 0, counter_ = 0;
};

// PyTorch's nn.LayerNorm: each sample normalised over its last D dims (the
// normalised shape), x̂ = (x − μ)·r with r = (σ² + ε)^(−1/2) of those dims,
// y = γ ⊙ x̂ + β with γ, β of the normalised shape. The tangent and reverse
// rules are BatchNorm's with batch statistics (batchnorm.h), m(·) the mean
// over the normalised dims of one sample, and (Hv)_γ, (Hv)_β summed over the
// leading dims. Negative dims name the normalised ones, so a block's leading
// K changes nothing.
class LayerNorm : public Layer {
 public:
  // spec.cc checked eps > 0
  LayerNorm(const LayerSpec& spec, const std::string& prefix, Slots& s)
      : Layer(spec.where), shape_(spec.normalizedShape), eps_(spec.eps), affine_(spec.affine) {
    for (int64_t d = 1; d <= static_cast<int64_t>(shape_.size()); ++d) dims_.push_back(-d);
    if (affine_) {
      weight_ = s.AddParam(prefix + "weight", shape_, 0, 1.0);
      bias_ = s.AddParam(prefix + "bias", shape_, 0, 0.0);
    }
  }
  at::Tensor Forward(const at::Tensor& x, Pass& p) const override {
    CheckShape(x);
    at::Tensor gamma = affine_ ? p.params[weight_] : at::Tensor(), beta = affine_ ? p.params[bias_] : at::Tensor();
    // passes differentiated more than once take the composite (as BatchNorm's)
    if (!p.twiceDifferentiable) return at::layer_norm(x, shape_, gamma, beta, eps_, false);
    at::Tensor xc = x - x.mean(dims_, true);
    at::Tensor xh = xc * ((xc * xc).mean(dims_, true) + eps_).rsqrt();
    return affine_ ? xh * gamma + beta : xh;
  }
  Dual ForwardDual(const Dual& x, DualPass& p, DualBackward& backward) const override {
    CheckShape(x.value);
    auto [xh, r] = Primal2(p, [&] {
      at::Tensor xc = x.value - x.value.mean(dims_, true);
      at::Tensor rr = ((xc * xc).mean(dims_, true) + eps_).rsqrt();
      return std::make_pair(xc * rr, rr);
    });
    at::Tensor gamma = affine_ ? p.pass.params[weight_] : at::Tensor();
    at::Tensor y = Primal(p, [&] { return affine_ ? xh * gamma + p.pass.params[bias_] : xh; });
    at::Tensor a, xht;  // m(x̂ ẋ), R{x̂}
    if (x.tangent.defined()) {
      a = (xh * x.tangent).mean(dims_, true);
      xht = (x.tangent - x.tangent.mean(dims_, true) - xh * a) * r;
    }
    at::Tensor yt = xht;
    if (affine_) {
      yt = xh * ParamTangent(p.v[weight_], x.value, p) + ParamTangent(p.v[bias_], x.value, p);
      if (xht.defined()) yt.add_(xht * gamma);
    }
    backward = [this, &p, xh = xh, r = r, a, xht, gamma, rank = x.value.dim()](const Dual& g) -> Dual {
      if (affine_) {
        at::Tensor sg = g.tangent * xh;
        if (xht.defined()) sg.add_(g.value * xht);
        p.hv[weight_].copy_(SumLeading(sg, rank, p));
        p.hv[bias_].copy_(SumLeading(g.tangent, rank, p));
      }
      if (!xht.defined()) return {};
      // h = γ g, ḣ = γ ġ + v_γ g
      auto [h, dx] = Primal2(p, [&] {
        at::Tensor hh = affine_ ? g.value * gamma : g.value;
        at::Tensor d = (hh - hh.mean(dims_, true) - xh * (hh * xh).mean(dims_, true)) * r;
        return std::make_pair(hh, d);
      });
      at::Tensor ht = affine_ ? g.tangent * gamma + g.value * ParamTangent(p.v[weight_], xh, p) : g.tangent;
      at::Tensor mhx = Primal(p, [&] { return (h * xh).mean(dims_, true); });
      at::Tensor dxt = (ht - ht.mean(dims_, true) - xht * mhx - xh * (ht * xh + h * xht).mean(dims_, true)) * r - a * r * dx;
      return {dx, dxt};
    };
    return {y, yt};
  }
  Jet ForwardJet(const Jet& x, DualPass& p) const override {
    CheckShape(x.value);
    auto [c, r] = Primal2(p, [&] {
      at::Tensor xc = x.value - x.value.mean(dims_, true);
      return std::make_pair(xc, ((xc * xc).mean(dims_, true) + eps_).rsqrt());
    });
    // negative dims: the same for a block's tangents
    Jet xh = NormalizedJet(Primal(p, [&, c = c, r = r] { return c * r; }), c, r, x, dims_);
    if (!affine_) return xh;
    at::Tensor gamma = p.pass.params[weight_];
    at::Tensor y = Primal(p, [&] { return xh.value * gamma + p.pass.params[bias_]; });
    return AffineJet(y, xh, gamma, ParamTangent(p.v[weight_], x.value, p), ParamTangent(p.v[bias_], x.value, p));
  }

 private:
  void CheckShape(const at::Tensor& x) const {
    int64_t D = static_cast<int64_t>(shape_.size());
    bool ok = x.dim() > D;
    for (int64_t i = 0; ok && i < D; ++i) ok = x.size(x.dim() - D + i) == shape_[static_cast<size_t>(i)];
    if (!ok)
      Fail(where() + ": the input's last dims must be the normalised shape " + c10::str(c10::IntArrayRef(shape_)) +
           " after at least a batch dim, got " + c10::str(x.sizes()));
  }
  // A parameter's tangent against values of rank `rank`: as is, or for a block
  // [K, ...] with ones for the value's leading dims.
  at::Tensor ParamTangent(const at::Tensor& v, const at::Tensor& like, const DualPass& p) const {
    if (!p.block) return v;
    std::vector<int64_t> shape{p.block};
    for (int64_t d = 0; d < like.dim() - static_cast<int64_t>(shape_.size()); ++d) shape.push_back(1);
    shape.insert(shape.end(), shape_.begin(), shape_.end());
    return v.view(shape);
  }
  // The sum over the leading (sample) dims of a [K,] N... × normalised tensor.
  at::Tensor SumLeading(const at::Tensor& t, int64_t rank, const DualPass& p) const {
    std::vector<int64_t> dims;
    int64_t lead = rank - static_cast<int64_t>(shape_.size()), first = p.block ? 1 : 0;
    for (int64_t d = 0; d < lead; ++d) dims.push_back(first + d);
    return t.sum(dims);
  }

  std::vector<int64_t> shape_, dims_;
  double eps_ = 1e-5;
  bool affine_ = true;
  size_t weight_ = 0, bias_ = 0;
};

}  // namespace

std::unique_ptr<Layer> MakeNormLayer(const LayerSpec& s, const std::string& prefix, Slots& slots) {
  switch (s.kind) {
    case LayerKind::BatchNorm1d: return std::make_unique<BatchNorm>(s, prefix, slots, 1);
    case LayerKind::BatchNorm2d: return std::make_unique<BatchNorm>(s, prefix, slots, 2);
    case LayerKind::LayerNorm: return std::make_unique<LayerNorm>(s, prefix, slots);
    default: return nullptr;
  }
}

}  // namespace usam
