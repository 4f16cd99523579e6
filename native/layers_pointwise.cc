// The pointwise layers: the activations (with the first and second
// derivatives their tangent and jet rules need) and dropout (layer.h).
#include "layer.h"

namespace usam {

namespace {

enum class Act { Relu, Gelu, GeluTanh, Tanh, Softplus, Silu, Sigmoid, LeakyRelu };

class Activation : public Layer {
 public:
  bool TakesReduced() const override { return true; }
  // spec.cc checked softplus's beta > 0
  Activation(Act act, const LayerSpec& spec)
      : Layer(spec.where), act_(act), beta_(spec.beta), threshold_(spec.threshold), slope_(spec.negativeSlope) {}
  at::Tensor Forward(const at::Tensor& x, Pass&) const override {
    switch (act_) {
      case Act::Relu: return at::relu(x);
      case Act::Gelu: return at::gelu(x);
      case Act::GeluTanh: return at::gelu(x, "tanh");
      case Act::Tanh: return at::tanh(x);
      case Act::Softplus: return at::softplus(x, beta_, threshold_);
      case Act::Silu: return at::silu(x);
      case Act::Sigmoid: return at::sigmoid(x);
      case Act::LeakyRelu: return at::leaky_relu(x, slope_);
    }
    return x;
  }
  bool HasGradRule() const override { return true; }
  // ∂x = f'(x) g by ATen's own backward kernels, the ones autograd calls
  at::Tensor ForwardGrad(const at::Tensor& x, GradPass& p, bool&, GradBackward& backward) const override {
    at::Tensor y = Forward(x, p.pass);
    backward = [this, x, y](const at::Tensor& g) -> at::Tensor {
      switch (act_) {
        case Act::Relu: return at::threshold_backward(g, y, 0);
        case Act::Gelu: return at::gelu_backward(g, x);
        case Act::GeluTanh: return at::gelu_backward(g, x, "tanh");
        case Act::Tanh: return at::tanh_backward(g, y);
        case Act::Softplus: return at::softplus_backward(g, x, beta_, threshold_);
        case Act::Silu: return at::silu_backward(g, x);
        case Act::Sigmoid: return at::sigmoid_backward(g, y);
        case Act::LeakyRelu: return at::leaky_relu_backward(g, x, slope_, false);
      }
      return g;
    };
    return y;
  }
  // R{y} = f'(x) ẋ; reverse: ∂x = f'(x) g, R{∂x} = f'(x) ġ + f''(x) ẋ g.
  Dual ForwardDual(const Dual& x, DualPass& p, DualBackward& backward) const override {
    at::Tensor y = Primal(p, [&] { return Forward(x.value, p.pass); });
    if (!x.tangent.defined()) {
      backward = NothingUpstream;
      return {y, {}};
    }
    if (act_ == Act::Relu) {  // f'' = 0; f' is the mask y > 0
      // a block's tangents [K, ...] see y broadcast over the block
      auto mask = [y](const at::Tensor& t) { return at::threshold_backward(t, t.dim() > y.dim() ? y.expand_as(t) : y, 0); };
      backward = [&p, y, mask](const Dual& g) -> Dual {
        at::Tensor dx = Primal(p, [&] { return at::threshold_backward(g.value, y, 0); });
        return {dx, mask(g.tangent)};
      };
      return {y, mask(x.tangent)};
    }
    auto [d1, d2] = Primal2(p, [&] { return Slopes(x.value, y); });
    at::Tensor xt = x.tangent;
    backward = [&p, d1 = d1, d2xt = d2 * xt](const Dual& g) -> Dual {
      at::Tensor dx = Primal(p, [&] { return g.value * d1; });
      return {dx, g.tangent * d1 + g.value * d2xt};
    };
    return {y, d1 * xt};
  }
  // ẏ = f' ẋ, ÿ = f' ẍ + f'' ẋ² (ReLU: f'' = 0, f' the mask y > 0).
  Jet ForwardJet(const Jet& x, DualPass& p) const override {
    at::Tensor y = Primal(p, [&] { return Forward(x.value, p.pass); });
    if (!x.d1.defined() && !x.d2.defined()) return {y, {}, {}};
    if (act_ == Act::Relu)
      return ScaledJet(y, x, [y](const at::Tensor& t) { return at::threshold_backward(t, t.dim() > y.dim() ? y.expand_as(t) : y, 0); });
    auto [f1, f2] = Primal2(p, [&] { return Slopes(x.value, y); });
    at::Tensor d2;
    if (x.d1.defined()) d2 = f2 * x.d1 * x.d1;
    if (x.d2.defined()) d2 = Plus(d2, f1 * x.d2);
    return {y, x.d1.defined() ? f1 * x.d1 : at::Tensor(), d2};
  }

 private:
  // f'(x) and f''(x) of the smooth activations, given y = f(x).
  std::pair<at::Tensor, at::Tensor> Slopes(const at::Tensor& x, const at::Tensor& y) const {
    switch (act_) {
      case Act::Tanh: {
        at::Tensor d1 = 1 - y * y;
        return {d1, -2 * y * d1};
      }
      case Act::Gelu: {  // f = x Φ(x): f' = Φ + x φ, f'' = φ (2 − x²)
        at::Tensor phi = at::exp(-0.5 * x * x) * (1.0 / std::sqrt(2 * M_PI));
        at::Tensor cdf = 0.5 * (1 + at::erf(x * M_SQRT1_2));
        return {cdf + x * phi, phi * (2 - x * x)};
      }
      case Act::GeluTanh: {  // f = x (1 + t) / 2, t = tanh(u), u = k (x + c x³)
        const double k = std::sqrt(2 / M_PI), c = 0.044715;
        at::Tensor x2 = x * x;
        at::Tensor t = at::tanh(k * (x + c * x * x2));
        at::Tensor du = k * (1 + 3 * c * x2), ddu = (6 * k * c) * x;
        at::Tensor sech2 = 1 - t * t;
        return {0.5 * (1 + t) + 0.5 * x * sech2 * du, sech2 * (du - x * t * du * du + 0.5 * x * ddu)};
      }
      case Act::Softplus: {  // f' = σ(βx), f'' = β σ (1 − σ); linear above the threshold
        at::Tensor z = x * beta_;
        at::Tensor sig = at::sigmoid(z);
        at::Tensor linear = z > threshold_;
        return {at::where(linear, at::ones_like(sig), sig), at::where(linear, at::zeros_like(sig), beta_ * sig * (1 - sig))};
      }
      case Act::Silu: {  // f = x σ: f' = σ (1 + x (1 − σ)), f'' = σ (1 − σ) (2 + x (1 − 2σ))
        at::Tensor sig = at::sigmoid(x);
        at::Tensor s1 = sig * (1 - sig);
        return {sig + x * s1, s1 * (2 + x * (1 - 2 * sig))};
      }
      case Act::Sigmoid: {  // f' = y (1 − y), f'' = y (1 − y) (1 − 2y)
        at::Tensor d1 = y * (1 - y);
        return {d1, d1 * (1 - 2 * y)};
      }
      case Act::LeakyRelu: {  // f' = 1 above 0, the slope at and below it (as PyTorch's backward); f'' = 0
        at::Tensor d1 = at::where(x > 0, at::ones_like(x), at::full_like(x, slope_));
        return {d1, at::zeros_like(x)};
      }
      case Act::Relu: break;
    }
    Fail(where() + ": no second derivative for this activation");
  }

  Act act_;
  double beta_ = 1, threshold_ = 20;  // softplus
  double slope_ = 0.01;               // leaky ReLU, below 0
};

// Dropout, and with `channels` Dropout2d: one draw per (sample, channel) of
// [N, C, H, W], broadcast over the plane.
class Dropout : public Layer {
 public:
  // spec.cc checked p in [0, 1)
  Dropout(const LayerSpec& spec, bool channels) : Layer(spec.where), p_(spec.p), channels_(channels) {}
  at::Tensor Forward(const at::Tensor& x, Pass& p) const override {
    if (!p.training || p_ == 0) return x;
    return x * Mask(x, p);
  }
  bool HasGradRule() const override { return true; }
  // ∂x = mask ⊙ g (the same draw as Forward's)
  at::Tensor ForwardGrad(const at::Tensor& x, GradPass& p, bool&, GradBackward& backward) const override {
    if (!p.pass.training || p_ == 0) {
      backward = [](const at::Tensor& g) { return g; };
      return x;
    }
    at::Tensor keep = Mask(x, p.pass);
    backward = [keep](const at::Tensor& g) { return g * keep; };
    return x * keep;
  }
  Dual ForwardDual(const Dual& x, DualPass& p, DualBackward& backward) const override {
    if (!p.pass.training || p_ == 0) {
      backward = IdentityBackward(x);
      return x;
    }
    // with a cache, one mask serves every HVP of the batch: the probe applies one H
    auto [keep, y] = Primal2(p, [&] {
      at::Tensor mask = Mask(x.value, p.pass);
      return std::make_pair(mask, x.value * mask);
    });
    if (!x.tangent.defined()) {
      backward = NothingUpstream;
      return {y, {}};
    }
    backward = [&p, keep = keep](const Dual& g) -> Dual {
      at::Tensor dx = Primal(p, [&] { return g.value * keep; });
      return {dx, g.tangent * keep};
    };
    return {y, x.tangent * keep};
  }
  Jet ForwardJet(const Jet& x, DualPass& p) const override {
    if (!p.pass.training || p_ == 0) return x;
    auto [keep, y] = Primal2(p, [&] {
      at::Tensor mask = Mask(x.value, p.pass);
      return std::make_pair(mask, x.value * mask);
    });
    return ScaledJet(y, x, [keep = keep](const at::Tensor& t) { return t * keep; });
  }

 private:
  // keep / (1 − p), drawn from the model's own generator, so a seeded model
  // and a restored RNG state reproduce it exactly.
  at::Tensor Mask(const at::Tensor& x, Pass& p) const {
    if (!channels_) return at::empty_like(x).bernoulli_(1.0 - p_, p.gen).div_(1.0 - p_);
    CheckImages(where(), x);
    return at::empty({x.size(0), x.size(1), 1, 1}, x.options()).bernoulli_(1.0 - p_, p.gen).div_(1.0 - p_);
  }

  double p_ = 0.5;
  bool channels_ = false;
};

}  // namespace

std::unique_ptr<Layer> MakePointwiseLayer(const LayerSpec& s) {
  switch (s.kind) {
    case LayerKind::Relu: return std::make_unique<Activation>(Act::Relu, s);
    case LayerKind::Gelu: return std::make_unique<Activation>(Act::Gelu, s);
    case LayerKind::GeluTanh: return std::make_unique<Activation>(Act::GeluTanh, s);
    case LayerKind::Tanh: return std::make_unique<Activation>(Act::Tanh, s);
    case LayerKind::Softplus: return std::make_unique<Activation>(Act::Softplus, s);
    case LayerKind::Silu: return std::make_unique<Activation>(Act::Silu, s);
    case LayerKind::Sigmoid: return std::make_unique<Activation>(Act::Sigmoid, s);
    case LayerKind::LeakyRelu: return std::make_unique<Activation>(Act::LeakyRelu, s);
    case LayerKind::Dropout: return std::make_unique<Dropout>(s, /*channels=*/false);
    case LayerKind::Dropout2d: return std::make_unique<Dropout>(s, /*channels=*/true);
    default: return nullptr;
  }
}

}  // namespace usam
