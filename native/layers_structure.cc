// The layers that arrange values rather than compute them (pooling,
// flatten, identity, residual blocks), the one place where LayerSpecs become
// layers (MakeLayers), and the loops that run a list of layers (layer.h).
#include "layer.h"
#include "pooling.h"

namespace usam {

size_t Slots::AddParam(std::string name, std::vector<int64_t> shape, double bound, double fill) {
  ParamSlot s{std::move(name), std::move(shape), paramCount, 1, bound, fill};
  for (auto d : s.shape) s.numel *= d;
  paramCount += s.numel;
  params.push_back(std::move(s));
  return params.size() - 1;
}

size_t Slots::AddNormalParam(std::string name, std::vector<int64_t> shape, double stddev) {
  size_t i = AddParam(std::move(name), std::move(shape), 0, 0);
  params[i].stddev = stddev;
  return i;
}

size_t Slots::AddBuffer(std::string name, std::vector<int64_t> shape, double fill) {
  BufferSlot s{std::move(name), std::move(shape), bufferCount, 1, fill};
  for (auto d : s.shape) s.numel *= d;
  bufferCount += s.numel;
  buffers.push_back(std::move(s));
  return buffers.size() - 1;
}

size_t Slots::AddCounter(std::string name) {
  counters.push_back(std::move(name));
  return counters.size() - 1;
}

void CheckImages(const std::string& where, const at::Tensor& x) {
  if (x.dim() != 4) Fail(where + ": expected a 4-D [N, C, H, W] input, got " + std::to_string(x.dim()) + "-D");
}

namespace {

using Pair = std::vector<int64_t>;

enum class PoolKind { Max, Avg };

class Pool2d : public Layer {
 public:
  bool TakesReduced() const override { return true; }
  // spec.cc defaulted the stride to the kernel and checked the padding (at most half of it)
  Pool2d(PoolKind kind, const LayerSpec& spec)
      : Layer(spec.where), kind_(kind), kernel_(spec.kernelSize), stride_(spec.stride), padding_(spec.padding) {}
  at::Tensor Forward(const at::Tensor& x, Pass& p) const override {
    CheckImages(where(), x);
    if (kind_ == PoolKind::Avg) return at::avg_pool2d(x, kernel_, stride_, padding_);
    // pooling.h's kernels where they apply (not twice: their backward is not differentiable again)
    if (!p.twiceDifferentiable && MaxPoolKernelTakes(x)) return MaxPoolOnce(x, Shape());
    return at::max_pool2d(x, kernel_, stride_, padding_);
  }
  // Max pooling routes values, tangents and gradients through the same
  // argmax; average pooling is linear.
  Dual ForwardDual(const Dual& x, DualPass& p, DualBackward& backward) const override {
    if (kind_ == PoolKind::Avg)
      return LinearMapDual(x, p, [this](const at::Tensor& t) {
        CheckImages(where(), t);
        return at::avg_pool2d(t, kernel_, stride_, padding_);
      }, backward);
    CheckImages(where(), x.value);
    auto [y, idx] = Primal2(p, [&] { return WithIndices(x.value); });
    if (!x.tangent.defined()) {
      backward = NothingUpstream;
      return {y, {}};
    }
    if (p.block) {
      // gather and scatter-add along the argmax, over the block at once
      const int64_t K = p.block;
      at::Tensor flatIdx = idx.flatten(2).unsqueeze(0).expand({K, -1, -1, -1});
      at::Tensor yt = x.tangent.flatten(3).gather(3, flatIdx).view(TangentShape(y.sizes().vec(), p));
      backward = [this, &p, x0 = x.value, idx = idx, flatIdx, K](const Dual& g) -> Dual {
        at::Tensor dx = Primal(p, [&] { return Route(g.value, x0, idx); });
        at::Tensor dxt = at::zeros(TangentShape(x0.sizes().vec(), p), x0.options());
        dxt.flatten(3).scatter_add_(3, flatIdx, g.tangent.flatten(3));
        return {dx, dxt};
      };
      return {y, yt};
    }
    at::Tensor yt = x.tangent.flatten(2).gather(2, idx.flatten(2)).view_as(y);
    backward = [this, &p, x0 = x.value, idx = idx](const Dual& g) -> Dual {
      at::Tensor dx = Primal(p, [&] { return Route(g.value, x0, idx); });
      return {dx, Route(g.tangent, x0, idx)};
    };
    return {y, yt};
  }
  // Average pooling is linear; max pooling routes every order through the argmax.
  Jet ForwardJet(const Jet& x, DualPass& p) const override {
    if (kind_ == PoolKind::Avg)
      return LinearMapJet(x, p, [this](const at::Tensor& t) {
        CheckImages(where(), t);
        return at::avg_pool2d(t, kernel_, stride_, padding_);
      });
    CheckImages(where(), x.value);
    auto [y, idx] = Primal2(p, [&] { return WithIndices(x.value); });
    at::Tensor flatIdx = idx.flatten(2);
    if (p.block) flatIdx = flatIdx.unsqueeze(0).expand({p.block, -1, -1, -1});
    const int64_t last = p.block ? 3 : 2;
    std::vector<int64_t> shape = TangentShape(y.sizes().vec(), p);
    return ScaledJet(y, x, [&](const at::Tensor& t) { return t.flatten(last).gather(last, flatIdx).view(shape); });
  }

 private:
  MaxPoolShape Shape() const { return {kernel_, stride_, padding_}; }
  // max pooling's (y, argmax) and its routing of a gradient back, by
  // pooling.h's kernels where they take x, else by ATen's (the same numbers)
  std::tuple<at::Tensor, at::Tensor> WithIndices(const at::Tensor& x) const {
    if (MaxPoolKernelTakes(x)) return MaxPoolWithIndices(x, Shape());
    return at::max_pool2d_with_indices(x, kernel_, stride_, padding_);
  }
  at::Tensor Route(const at::Tensor& g, const at::Tensor& x, const at::Tensor& idx) const {
    if (MaxPoolKernelTakes(x) && g.scalar_type() == x.scalar_type() && !g.requires_grad()) return MaxPoolBackward(g, idx, x.sizes());
    return at::max_pool2d_with_indices_backward(g, x, kernel_, stride_, padding_, {1, 1}, false, idx);
  }

  PoolKind kind_;
  Pair kernel_, stride_, padding_;
};

class AdaptiveAvgPool2d : public Layer {
 public:
  bool TakesReduced() const override { return true; }
  explicit AdaptiveAvgPool2d(const LayerSpec& spec) : Layer(spec.where), output_(spec.outputSize) {}
  at::Tensor Forward(const at::Tensor& x, Pass&) const override {
    CheckImages(where(), x);
    // Global pooling as a mean: the same numbers, and a kernel with cheap
    // double backward (needed by HVPs).
    if (output_[0] == 1 && output_[1] == 1) return x.mean({2, 3}, /*keepdim=*/true);
    return at::adaptive_avg_pool2d(x, output_);
  }
  Dual ForwardDual(const Dual& x, DualPass& p, DualBackward& backward) const override {
    // the tangent map is the forward itself (linear), global pooling as a mean included
    return LinearMapDual(x, p, [this, &p](const at::Tensor& t) { return Forward(t, p.pass); }, backward);
  }
  Jet ForwardJet(const Jet& x, DualPass& p) const override {
    return LinearMapJet(x, p, [this, &p](const at::Tensor& t) { return Forward(t, p.pass); });
  }

 private:
  Pair output_;
};

class Flatten : public Layer {
 public:
  bool TakesReduced() const override { return true; }
  using Layer::Layer;
  at::Tensor Forward(const at::Tensor& x, Pass&) const override { return x.flatten(1); }
  bool HasGradRule() const override { return true; }
  at::Tensor ForwardGrad(const at::Tensor& x, GradPass&, bool&, GradBackward& backward) const override {
    backward = [shape = x.sizes().vec()](const at::Tensor& g) { return g.reshape(shape); };
    return x.flatten(1);
  }
  Dual ForwardDual(const Dual& x, DualPass& p, DualBackward& backward) const override {
    if (!x.tangent.defined()) {
      backward = NothingUpstream;
      return {x.value.flatten(1), {}};
    }
    backward = [shape = x.value.sizes().vec(), tangentShape = TangentShape(x.value.sizes().vec(), p)](const Dual& g) -> Dual {
      return {g.value.reshape(shape), g.tangent.reshape(tangentShape)};
    };
    return {x.value.flatten(1), x.tangent.flatten(p.block ? 2 : 1)};
  }
  Jet ForwardJet(const Jet& x, DualPass& p) const override {
    return ScaledJet(x.value.flatten(1), x, [&](const at::Tensor& t) { return t.flatten(p.block ? 2 : 1); });
  }
};

// PyTorch's nn.Identity: a placeholder that passes its input on.
class Identity : public Layer {
 public:
  bool TakesReduced() const override { return true; }
  using Layer::Layer;
  at::Tensor Forward(const at::Tensor& x, Pass&) const override { return x; }
  bool HasGradRule() const override { return true; }
  at::Tensor ForwardGrad(const at::Tensor& x, GradPass&, bool&, GradBackward& backward) const override {
    backward = [](const at::Tensor& g) { return g; };
    return x;
  }
  Dual ForwardDual(const Dual& x, DualPass&, DualBackward& backward) const override {
    backward = IdentityBackward(x);
    return x;
  }
  Jet ForwardJet(const Jet& x, DualPass&) const override { return x; }
};

class Residual : public Layer {
 public:
  bool TakesReduced() const override { return true; }
  // an empty shortcut is the identity
  Residual(const LayerSpec& spec, const std::string& prefix, Slots& s)
      : Layer(spec.where), body_(MakeLayers(spec.body, prefix + "body.", s)),
        shortcut_(MakeLayers(spec.shortcut, prefix + "shortcut.", s)) {}
  at::Tensor Forward(const at::Tensor& x, Pass& p) const override {
    at::Tensor main = RunLayers(body_, x, p);
    at::Tensor skip = shortcut_.empty() ? x : RunLayers(shortcut_, x, p);
    CheckShapes(main, skip);
    return main + skip;
  }
  bool HasGradRule() const override { return HaveGradRules(body_) && HaveGradRules(shortcut_); }
  // y = body(x) + shortcut(x); reverse: ∂x = body's ∂x + shortcut's (either may be nothing)
  at::Tensor ForwardGrad(const at::Tensor& x, GradPass& p, bool& upstream, GradBackward& backward) const override {
    bool bodyUp = upstream, skipUp = upstream;
    GradBackward bodyBack, skipBack;
    at::Tensor main = RunLayersGrad(body_, x, p, bodyUp, bodyBack);
    at::Tensor skip = RunLayersGrad(shortcut_, x, p, skipUp, skipBack);  // an empty shortcut: the identity
    CheckShapes(main, skip);
    backward = [bodyBack, skipBack](const at::Tensor& g) { return Plus(bodyBack(g), skipBack(g)); };
    upstream = bodyUp || skipUp;
    return main + skip;
  }
  Dual ForwardDual(const Dual& x, DualPass& p, DualBackward& backward) const override {
    DualBackward bodyBack, skipBack;
    Dual main = RunLayersDual(body_, x, p, bodyBack);
    Dual skip = shortcut_.empty() ? x : RunLayersDual(shortcut_, x, p, skipBack);
    CheckShapes(main.value, skip.value);
    if (shortcut_.empty()) skipBack = IdentityBackward(x);
    backward = [&p, bodyBack, skipBack](const Dual& g) -> Dual {
      Dual a = bodyBack(g), b = skipBack(g);
      at::Tensor dx = Primal(p, [&] { return Plus(a.value, b.value); });
      return {dx, Plus(a.tangent, b.tangent)};
    };
    at::Tensor y = Primal(p, [&] { return main.value + skip.value; });
    return {y, Plus(main.tangent, skip.tangent)};
  }
  Jet ForwardJet(const Jet& x, DualPass& p) const override {
    Jet main = RunLayersJet(body_, x, p);
    Jet skip = shortcut_.empty() ? x : RunLayersJet(shortcut_, x, p);
    CheckShapes(main.value, skip.value);
    at::Tensor y = Primal(p, [&] { return main.value + skip.value; });
    return {y, Plus(main.d1, skip.d1), Plus(main.d2, skip.d2)};
  }

 private:
  void CheckShapes(const at::Tensor& main, const at::Tensor& skip) const {
    if (main.sizes() != skip.sizes())
      Fail(where() + ": body output " + c10::str(main.sizes()) + " and shortcut output " + c10::str(skip.sizes()) +
           " differ; give the block a shortcut that matches (e.g. a 1x1 conv with stride)");
  }

  LayerList body_, shortcut_;
};

std::unique_ptr<Layer> MakeLayer(const LayerSpec& s, const std::string& prefix, Slots& slots) {
  if (auto layer = MakeLinearLayer(s, prefix, slots)) return layer;
  if (auto layer = MakeNormLayer(s, prefix, slots)) return layer;
  if (auto layer = MakePointwiseLayer(s)) return layer;
  switch (s.kind) {
    case LayerKind::Identity: return std::make_unique<Identity>(s.where);
    case LayerKind::MaxPool2d: return std::make_unique<Pool2d>(PoolKind::Max, s);
    case LayerKind::AvgPool2d: return std::make_unique<Pool2d>(PoolKind::Avg, s);
    case LayerKind::AdaptiveAvgPool2d: return std::make_unique<AdaptiveAvgPool2d>(s);
    case LayerKind::Flatten: return std::make_unique<Flatten>(s.where);
    case LayerKind::Residual: return std::make_unique<Residual>(s, prefix, slots);
    default: break;
  }
  Fail(s.where + ": internal error: no layer for this kind");
}

}  // namespace

LayerList MakeLayers(const std::vector<LayerSpec>& specs, const std::string& prefix, Slots& slots) {
  LayerList out;
  for (size_t i = 0; i < specs.size(); ++i) out.push_back(MakeLayer(specs[i], prefix + std::to_string(i) + ".", slots));
  return out;
}

namespace {
// Runs one layer's step; a LibTorch error names the layer that raised it.
template <typename F>
auto Named(const Layer& layer, F&& step) -> decltype(step()) {
  try {
    return step();
  } catch (const c10::Error& e) {
    Fail(layer.where() + ": " + CleanTorchMessage(e.what_without_backtrace()));
  }
}
}  // namespace

at::Tensor RunLayers(const LayerList& layers, at::Tensor x, Pass& p) {
  for (const auto& layer : layers) {
    if (p.reduced != at::ScalarType::Undefined && x.scalar_type() == p.reduced && !layer->TakesReduced()) x = x.to(at::kFloat);
    x = Named(*layer, [&] { return layer->Forward(x, p); });
  }
  return x;
}

Dual RunLayersDual(const LayerList& layers, Dual x, DualPass& p, DualBackward& backward) {
  std::vector<DualBackward> steps(layers.size());
  for (size_t i = 0; i < layers.size(); ++i) x = Named(*layers[i], [&] { return layers[i]->ForwardDual(x, p, steps[i]); });
  backward = [&layers, steps = std::move(steps)](const Dual& grad) -> Dual {
    Dual g = grad;
    for (size_t i = steps.size(); i-- > 0;) {
      if (!g.value.defined()) return {};  // nothing upstream depends on the parameters
      g = Named(*layers[i], [&] { return steps[i](g); });
    }
    return g;
  };
  return x;
}

Jet RunLayersJet(const LayerList& layers, Jet x, DualPass& p) {
  for (const auto& layer : layers) x = Named(*layer, [&] { return layer->ForwardJet(x, p); });
  return x;
}

at::Tensor RunLayersGrad(const LayerList& layers, at::Tensor x, GradPass& p, bool& upstream, GradBackward& backward) {
  const bool input = upstream;  // whether x depends on the parameters
  std::vector<GradBackward> steps(layers.size());
  for (size_t i = 0; i < layers.size(); ++i)
    x = Named(*layers[i], [&] { return layers[i]->ForwardGrad(x, p, upstream, steps[i]); });
  backward = [&layers, input, steps = std::move(steps)](const at::Tensor& grad) -> at::Tensor {
    at::Tensor g = grad;
    for (size_t i = steps.size(); i-- > 0;) {
      if (!g.defined()) return {};  // nothing upstream depends on the parameters
      g = Named(*layers[i], [&] { return steps[i](g); });
    }
    // ∂L/∂x only where x depends on the parameters (a list of parameter-free layers passes it through otherwise)
    return input ? g : at::Tensor();
  };
  return x;
}

bool HaveGradRules(const LayerList& layers) {
  return std::all_of(layers.begin(), layers.end(), [](const auto& layer) { return layer->HasGradRule(); });
}

at::Tensor Layer::ForwardGrad(const at::Tensor&, GradPass&, bool&, GradBackward&) const {
  Fail(where() + ": internal error: this layer has no first-order reverse rule");
}

}  // namespace usam
