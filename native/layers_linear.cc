// The layers that are linear in their parameters: Linear, Conv2d and
// Embedding (layer.h), with their tangent, reverse and jet rules.
#include "layer.h"

namespace usam {

namespace {

using Pair = std::vector<int64_t>;

// PyTorch's default init for Linear and Conv2d: kaiming_uniform(a = sqrt(5))
// for the weight and U(±1/sqrt(fan_in)) for the bias, both U(±1/sqrt(fan_in)).
double FanInBound(int64_t fanIn) { return 1.0 / std::sqrt(static_cast<double>(fanIn)); }

// y = x Wᵀ with ProductInto's products forward and backward, for passes
// differentiated once (the gradients of training steps): on Debian's
// LibTorch these reach oneDNN's sgemm where at::linear would reach its
// OpenBLAS. Its backward is not differentiable again, so passes that are
// (HVPs by double backward, third-order gradients) keep at::linear. No bias
// argument: the caller adds it (an undefined input breaks autograd::Function).
struct LinearOnce : public torch::autograd::Function<LinearOnce> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w) {
    ctx->save_for_backward({x, w});
    std::vector<int64_t> outShape = x.sizes().vec();
    outShape.back() = w.size(0);
    return Product(x.reshape({-1, w.size(1)}), w.t()).view(outShape);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &w = saved[1];
    at::Tensor g2 = grads[0].reshape({-1, w.size(0)});
    at::Tensor gx, gw;
    if (ctx->needs_input_grad(0)) gx = Product(g2, w).view(x.sizes());
    if (ctx->needs_input_grad(1)) gw = Product(g2.t(), x.reshape({-1, w.size(1)}));
    return {gx, gw};
  }
};

class Linear : public Layer {
 public:
  bool TakesReduced() const override { return true; }
  Linear(const LayerSpec& spec, const std::string& prefix, Slots& s) : Layer(spec.where) {
    double b = FanInBound(spec.in);
    weight_ = s.AddParam(prefix + "weight", {spec.out, spec.in}, b, 0);
    hasBias_ = spec.bias;
    if (hasBias_) bias_ = s.AddParam(prefix + "bias", {spec.out}, b, 0);
  }
  at::Tensor Forward(const at::Tensor& x, Pass& p) const override {
    if (p.reduced != at::ScalarType::Undefined)
      return InPassPrecision(p, [&](auto cast) { return at::linear(cast(x), cast(p.params[weight_]), cast(hasBias_ ? p.params[bias_] : at::Tensor())); });
    if (DnnlSgemm() && !p.twiceDifferentiable && x.scalar_type() == at::kFloat && x.device().is_cpu()) {
      at::Tensor y = LinearOnce::apply(x, p.params[weight_]);
      return hasBias_ ? y + p.params[bias_] : y;
    }
    return at::linear(x, p.params[weight_], hasBias_ ? p.params[bias_] : at::Tensor());
  }
  bool HasGradRule() const override { return true; }
  // y = x Wᵀ + b; reverse: ∂W = gᵀ x and ∂b = Σ g written straight into the
  // flat gradient, ∂x = g W only where x depends on the parameters
  at::Tensor ForwardGrad(const at::Tensor& x, GradPass& p, bool& upstream, GradBackward& backward) const override {
    const at::Tensor& w = p.pass.params[weight_];
    std::vector<int64_t> outShape = x.sizes().vec();
    outShape.back() = w.size(0);
    at::Tensor x2 = x.reshape({-1, w.size(1)});
    const at::Tensor bias = hasBias_ ? p.pass.params[bias_] : at::Tensor();
    // Forward's products (the loss bit for bit model.loss()'s and autograd's)
    at::Tensor y = DnnlSgemm() && x.scalar_type() == at::kFloat && x.device().is_cpu() ? Affine(x2, w, bias).view(outShape)
                                                                                      : at::linear(x, w, bias);
    backward = [this, &p, x2, needsInput = upstream, inShape = x.sizes().vec()](const at::Tensor& g) -> at::Tensor {
      const at::Tensor& w = p.pass.params[weight_];
      at::Tensor g2 = g.reshape({-1, w.size(0)});
      ProductInto(p.Gradient(weight_), g2.t(), x2, false);
      if (hasBias_) at::sum_out(p.Gradient(bias_), g2, {0});
      return needsInput ? Product(g2, w).view(inShape) : at::Tensor();
    };
    upstream = true;
    return y;
  }
  // y = x Wᵀ + b, R{y} = ẋ Wᵀ + x Vᵀ + v_b; reverse: ∂x = g W,
  // R{∂x} = ġ W + g V, (Hv)_W = ġᵀ x + gᵀ ẋ, (Hv)_b = Σ ġ.
  Dual ForwardDual(const Dual& x, DualPass& p, DualBackward& backward) const override {
    if (p.block) return ForwardBlock(x, p, backward);
    const at::Tensor& w = p.pass.params[weight_];
    const at::Tensor& vw = p.v[weight_];
    // leading dimensions fold into the batch, as in at::linear
    std::vector<int64_t> outShape = x.value.sizes().vec();
    outShape.back() = w.size(0);
    at::Tensor x2 = x.value.reshape({-1, w.size(1)});
    at::Tensor xt2 = x.tangent.defined() ? x.tangent.reshape({-1, w.size(1)}) : at::Tensor();
    at::Tensor y = Primal(p, [&] { return Affine(x2, w, hasBias_ ? p.pass.params[bias_] : at::Tensor()); });
    at::Tensor yt = Affine(x2, vw, hasBias_ ? p.v[bias_] : at::Tensor());
    if (xt2.defined()) AddProduct(yt, xt2, w.t());
    backward = [this, &p, x2, xt2, inShape = x.value.sizes().vec()](const Dual& g) -> Dual {
      const at::Tensor& w = p.pass.params[weight_];
      const at::Tensor& vw = p.v[weight_];
      at::Tensor g2 = g.value.reshape({-1, w.size(0)}), gt2 = g.tangent.reshape({-1, w.size(0)});
      at::Tensor hw = p.hv[weight_];
      ProductInto(hw, gt2.t(), x2, false);
      if (xt2.defined()) AddProduct(hw, g2.t(), xt2);
      if (hasBias_) at::sum_out(p.hv[bias_], gt2, {0});
      if (!xt2.defined()) return {};
      at::Tensor dx = Primal(p, [&] { return Product(g2, w).view(inShape); });
      at::Tensor dxt = Product(gt2, w);
      AddProduct(dxt, g2, vw);
      return {dx, dxt.view(inShape)};
    };
    return {y.view(outShape), yt.view(outShape)};
  }
  // ẏ = ẋ Wᵀ + x Vᵀ + v_b, ÿ = ẍ Wᵀ + 2 ẋ Vᵀ (the bias enters linearly);
  // Product takes V as [out, in] or a block's [K, out, in] alike.
  Jet ForwardJet(const Jet& x, DualPass& p) const override {
    const at::Tensor& w = p.pass.params[weight_];
    const at::Tensor vwt = p.v[weight_].transpose(-1, -2);
    const int64_t in = w.size(1);
    std::vector<int64_t> outShape = x.value.sizes().vec();
    outShape.back() = w.size(0);
    at::Tensor x2 = x.value.reshape({-1, in});
    auto rows = [&](const at::Tensor& t) {
      if (!t.defined()) return t;
      return p.block ? t.reshape({p.block, -1, in}) : t.reshape({-1, in});
    };
    at::Tensor xt = rows(x.d1), xtt = rows(x.d2);
    at::Tensor y = Primal(p, [&] { return Affine(x2, w, hasBias_ ? p.pass.params[bias_] : at::Tensor()); });
    at::Tensor d1 = Product(x2, vwt), d2;
    if (hasBias_) d1.add_(p.block ? p.v[bias_].unsqueeze(1) : p.v[bias_]);
    if (xt.defined()) {
      AddProduct(d1, xt, w.t());
      d2 = Product(xt, vwt).mul_(2);
    }
    if (xtt.defined()) {
      if (d2.defined())
        AddProduct(d2, xtt, w.t());
      else
        d2 = Product(xtt, w.t());
    }
    std::vector<int64_t> shape = TangentShape(outShape, p);
    return {y.view(outShape), d1.view(shape), d2.defined() ? d2.view(shape) : at::Tensor()};
  }

 private:
  // The same rules for a block of K directions: V is [K, out, in], tangents
  // [K, M, ·]; the products with the shared x, g, W are one product each
  // (folded, or per direction; Product).
  Dual ForwardBlock(const Dual& x, DualPass& p, DualBackward& backward) const {
    const at::Tensor& w = p.pass.params[weight_];
    const at::Tensor& vw = p.v[weight_];
    const int64_t K = p.block, in = w.size(1), out = w.size(0);
    std::vector<int64_t> outShape = x.value.sizes().vec();
    outShape.back() = out;
    at::Tensor x2 = x.value.reshape({-1, in});
    at::Tensor xt3 = x.tangent.defined() ? x.tangent.reshape({K, -1, in}) : at::Tensor();
    at::Tensor y = Primal(p, [&] { return Affine(x2, w, hasBias_ ? p.pass.params[bias_] : at::Tensor()); });
    at::Tensor yt = Product(x2, vw.transpose(1, 2));  // [K, M, out]
    if (hasBias_) yt.add_(p.v[bias_].unsqueeze(1));
    if (xt3.defined()) AddProduct(yt, xt3, w.t());
    backward = [this, &p, x2, xt3, inShape = x.value.sizes().vec(), K, in, out](const Dual& g) -> Dual {
      const at::Tensor& w = p.pass.params[weight_];
      const at::Tensor& vw = p.v[weight_];
      at::Tensor g2 = g.value.reshape({-1, out}), gt3 = g.tangent.reshape({K, -1, out});
      at::Tensor hw = Product(gt3.transpose(1, 2), x2);
      if (xt3.defined()) AddProduct(hw, g2.t(), xt3);
      p.hv[weight_].copy_(hw);
      if (hasBias_) p.hv[bias_].copy_(gt3.sum(1));
      if (!xt3.defined()) return {};
      at::Tensor dx = Primal(p, [&] { return Product(g2, w).view(inShape); });
      at::Tensor dxt = Product(gt3, w);
      AddProduct(dxt, g2, vw);
      return {dx, dxt.view(TangentShape(inShape, p))};
    };
    return {y.view(outShape), yt.view(TangentShape(outShape, p))};
  }

  size_t weight_ = 0, bias_ = 0;
  bool hasBias_ = true;
};

// A stride-1 convolution whose backward is written with forward convolutions,
// for passes that differentiate more than once. LibTorch 1.13's own
// double backward of conv2d goes through slow_conv_transpose2d on the CPU
// (a third of an HVP's time on the benchmark CNN); with this backward every
// derivative of every order is again a forward convolution (mkldnn).
struct Conv2dStride1 : public torch::autograd::Function<Conv2dStride1> {
  // No bias argument: an undefined tensor input breaks autograd::Function
  // ("tensor does not have a device"), so the caller adds the bias.
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w,
                            int64_t padH, int64_t padW) {
    ctx->save_for_backward({x, w});
    ctx->saved_data["padH"] = padH;
    ctx->saved_data["padW"] = padW;
    return at::conv2d(x, w, {}, {1, 1}, {padH, padW});
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &w = saved[1], &g = grads[0];
    int64_t padH = ctx->saved_data["padH"].toInt(), padW = ctx->saved_data["padW"].toInt();
    at::Tensor gx, gw;
    // ∂/∂x: correlation of g with the flipped kernel, channels swapped
    if (ctx->needs_input_grad(0))
      gx = at::conv2d(g, w.flip({2, 3}).transpose(0, 1), {}, {1, 1}, {w.size(2) - 1 - padH, w.size(3) - 1 - padW});
    // ∂/∂w[o,i,a,b] = Σ_{n,y,x} g[n,o,y,x]·x_pad[n,i,y+a,x+b]: a convolution
    // with the batch as channels
    if (ctx->needs_input_grad(1))
      gw = at::conv2d(x.transpose(0, 1), g.transpose(0, 1), {}, {1, 1}, {padH, padW}).transpose(0, 1);
    return {gx, gw, at::Tensor(), at::Tensor()};
  }
};

class Conv2d : public Layer {
 public:
  bool TakesReduced() const override { return true; }
  // spec.cc checked that groups divides both channel counts
  Conv2d(const LayerSpec& spec, const std::string& prefix, Slots& s)
      : Layer(spec.where), stride_(spec.stride), padding_(spec.padding), dilation_(spec.dilation), groups_(spec.groups) {
    const int64_t in = spec.in, out = spec.out;
    const auto& k = spec.kernelSize;
    double b = FanInBound(in / groups_ * k[0] * k[1]);
    weight_ = s.AddParam(prefix + "weight", {out, in / groups_, k[0], k[1]}, b, 0);
    hasBias_ = spec.bias;
    if (hasBias_) bias_ = s.AddParam(prefix + "bias", {out}, b, 0);
  }
  at::Tensor Forward(const at::Tensor& x, Pass& p) const override {
    at::Tensor bias = hasBias_ ? p.params[bias_] : at::Tensor();
    const at::Tensor& w = p.params[weight_];
    if (p.reduced != at::ScalarType::Undefined) return InPassPrecision(p, [&](auto cast) { return Conv(cast(x), cast(w), cast(bias)); });
    bool unitStride = stride_[0] == 1 && stride_[1] == 1;
    bool paddingFits = padding_[0] < w.size(2) && padding_[1] < w.size(3);
    bool plain = groups_ == 1 && dilation_[0] == 1 && dilation_[1] == 1;
    if (p.twiceDifferentiable && unitStride && paddingFits && plain) {
      at::Tensor y = Conv2dStride1::apply(x, w, padding_[0], padding_[1]);
      return bias.defined() ? y + bias.view({1, -1, 1, 1}) : y;
    }
    return Conv(x, w, bias);
  }
  // The Linear rule with convolutions: R{y} = conv(ẋ, W) + conv(x, V) + v_b;
  // reverse: ∂x = convᵀ(g, W), R{∂x} = convᵀ(ġ, W) + convᵀ(g, V),
  // (Hv)_W = ∂_W⟨ġ, conv(x, W)⟩ + ∂_W⟨g, conv(ẋ, W)⟩, (Hv)_b = Σ ġ.
  Dual ForwardDual(const Dual& x, DualPass& p, DualBackward& backward) const override {
    if (p.block) return ForwardBlock(x, p, backward);
    const at::Tensor& w = p.pass.params[weight_];
    const at::Tensor& vw = p.v[weight_];
    at::Tensor y = Primal(p, [&] { return Conv(x.value, w, hasBias_ ? p.pass.params[bias_] : at::Tensor()); });
    at::Tensor yt = Conv(x.value, vw, hasBias_ ? p.v[bias_] : at::Tensor());
    if (x.tangent.defined()) yt.add_(Conv(x.tangent, w, {}));
    backward = [this, &p, x](const Dual& g) -> Dual {
      const at::Tensor& w = p.pass.params[weight_];
      const at::Tensor& vw = p.v[weight_];
      bool upstream = x.tangent.defined();
      // Separate calls rather than one over stacked operands: stacking the
      // batches or kernels costs the copies and, measured on the CPU, made
      // the convolutions themselves slower.
      at::Tensor& hw = p.hv[weight_];
      hw.copy_(std::get<1>(ConvBackward(g.tangent, x.value, w, {false, true, false})));
      if (upstream) hw.add_(std::get<1>(ConvBackward(g.value, x.tangent, w, {false, true, false})));
      if (hasBias_) at::sum_out(p.hv[bias_], g.tangent, {0, 2, 3});
      if (!upstream) return {};
      at::Tensor dx = Primal(p, [&] { return std::get<0>(ConvBackward(g.value, x.value, w, {true, false, false})); });
      at::Tensor dxt = std::get<0>(ConvBackward(g.tangent, x.value, w, {true, false, false}));
      dxt.add_(std::get<0>(ConvBackward(g.value, x.value, vw, {true, false, false})));
      return {dx, dxt};
    };
    return {y, yt};
  }
  // ẏ = conv(ẋ, W) + conv(x, V) + v_b, ÿ = conv(ẍ, W) + 2 conv(ẋ, V).
  Jet ForwardJet(const Jet& x, DualPass& p) const override {
    const at::Tensor& w = p.pass.params[weight_];
    at::Tensor y = Primal(p, [&] { return Conv(x.value, w, hasBias_ ? p.pass.params[bias_] : at::Tensor()); });
    auto withW = [&](const at::Tensor& t) { return Unfold(Conv(Fold(t, p), w, {}), p); };
    at::Tensor d1 = KernelTangent(x.value, p), d2;
    if (x.d1.defined()) {
      d1.add_(withW(x.d1));
      d2 = PerDirection(x.d1, p, /*sharedInput=*/false).mul_(2);
    }
    if (x.d2.defined()) d2 = Plus(d2, withW(x.d2));
    return {y, d1, d2};
  }

 private:
  // The same rules for a block of K directions (V: [K, out, in, kh, kw]). The
  // forward tangents are two convolutions for the whole block: the K kernels
  // stacked as K·out output channels over the shared x, and the K tangents
  // folded into the batch over W. The reverse step runs per direction.
  Dual ForwardBlock(const Dual& x, DualPass& p, DualBackward& backward) const {
    const at::Tensor& w = p.pass.params[weight_];
    at::Tensor y = Primal(p, [&] { return Conv(x.value, w, hasBias_ ? p.pass.params[bias_] : at::Tensor()); });
    at::Tensor yt = KernelTangent(x.value, p);
    if (x.tangent.defined()) yt.add_(Unfold(Conv(Fold(x.tangent, p), w, {}), p));
    const int64_t K = p.block;
    backward = [this, &p, x, K](const Dual& g) -> Dual {
      const at::Tensor& w = p.pass.params[weight_];
      const at::Tensor& vw = p.v[weight_];
      bool upstream = x.tangent.defined();
      for (int64_t k = 0; k < K; ++k) {
        at::Tensor hw = p.hv[weight_].select(0, k);
        hw.copy_(std::get<1>(ConvBackward(g.tangent.select(0, k), x.value, w, {false, true, false})));
        if (upstream) hw.add_(std::get<1>(ConvBackward(g.value, x.tangent.select(0, k), w, {false, true, false})));
      }
      if (hasBias_) p.hv[bias_].copy_(g.tangent.sum({1, 3, 4}));
      if (!upstream) return {};
      at::Tensor dx = Primal(p, [&] { return std::get<0>(ConvBackward(g.value, x.value, w, {true, false, false})); });
      std::vector<at::Tensor> dxt;
      for (int64_t k = 0; k < K; ++k)
        dxt.push_back(std::get<0>(ConvBackward(g.tangent.select(0, k), x.value, w, {true, false, false}))
                          .add_(std::get<0>(ConvBackward(g.value, x.value, vw.select(0, k), {true, false, false}))));
      return {dx, at::stack(dxt)};
    };
    return {y, yt};
  }

  // conv(x, V) + v_b for a shared x: one convolution, or for a block the K
  // kernels stacked as K·out output channels ([K, N, out, H', W']).
  at::Tensor KernelTangent(const at::Tensor& x, const DualPass& p) const {
    const at::Tensor& vw = p.v[weight_];
    if (!p.block) return Conv(x, vw, hasBias_ ? p.v[bias_] : at::Tensor());
    const int64_t K = p.block, out = vw.size(1);
    at::Tensor yt;
    if (groups_ == 1) {
      at::Tensor stacked = Conv(x, vw.flatten(0, 1), {});  // [N, K·out, H', W']
      yt = stacked.view({x.size(0), K, out, stacked.size(2), stacked.size(3)}).transpose(0, 1).contiguous();
    } else {  // stacked kernels would mix the groups: one convolution per direction
      yt = PerDirection(x, p, /*sharedInput=*/true);
    }
    if (hasBias_) yt.add_(p.v[bias_].view({K, 1, out, 1, 1}));
    return yt;
  }
  // conv(t, V) with each direction's kernel: t shared, or a block's [K, N, ...] paired with V's rows.
  at::Tensor PerDirection(const at::Tensor& t, const DualPass& p, bool sharedInput) const {
    const at::Tensor& vw = p.v[weight_];
    if (!p.block) return Conv(t, vw, {});
    std::vector<at::Tensor> parts;
    for (int64_t k = 0; k < p.block; ++k) parts.push_back(Conv(sharedInput ? t : t.select(0, k), vw.select(0, k), {}));
    return at::stack(parts);
  }

  std::tuple<at::Tensor, at::Tensor, at::Tensor> ConvBackward(const at::Tensor& g, const at::Tensor& x,
                                                              const at::Tensor& w, std::array<bool, 3> mask) const {
    return at::convolution_backward(g, x, w, at::OptionalIntArrayRef(), stride_, padding_, dilation_, false, {0, 0}, groups_, mask);
  }
  at::Tensor Conv(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias) const {
    return at::conv2d(x, w, bias, stride_, padding_, dilation_, groups_);
  }

  size_t weight_ = 0, bias_ = 0;
  bool hasBias_ = true;
  Pair stride_, padding_, dilation_;
  int64_t groups_ = 1;
};

// PyTorch's nn.Embedding: rows of the weight picked by int64 indices, y = W[x].
// Linear in W, so R{y} = V[x] and (Hv)_W adds ġ's rows back at the indices
// (index_add); nothing upstream (the indices have no tangent).
class Embedding : public Layer {
 public:
  Embedding(const LayerSpec& spec, const std::string& prefix, Slots& s)
      : Layer(spec.where), num_(spec.numEmbeddings), dim_(spec.embeddingDim) {
    weight_ = s.AddNormalParam(prefix + "weight", {num_, dim_}, 1.0);  // PyTorch's N(0, 1)
  }
  bool TakesIndices() const override { return true; }
  at::Tensor Forward(const at::Tensor& x, Pass& p) const override {
    CheckIndices(x);
    return at::embedding(p.params[weight_], x);
  }
  Dual ForwardDual(const Dual& x, DualPass& p, DualBackward& backward) const override {
    at::Tensor y = Primal(p, [&] {
      CheckIndices(x.value);
      return at::embedding(p.pass.params[weight_], x.value);
    });
    at::Tensor flat = x.value.reshape(-1);
    std::vector<int64_t> shape = TangentShape(y.sizes().vec(), p);
    at::Tensor yt = p.v[weight_].index_select(p.block ? 1 : 0, flat).view(shape);
    backward = [this, &p, flat](const Dual& g) -> Dual {
      at::Tensor& hw = p.hv[weight_];
      hw.zero_();
      if (p.block)
        hw.index_add_(1, flat, g.tangent.reshape({p.block, -1, dim_}));
      else
        hw.index_add_(0, flat, g.tangent.reshape({-1, dim_}));
      return {};
    };
    return {y, yt};
  }
  // Linear in W: ẏ = V[x], ÿ = 0.
  Jet ForwardJet(const Jet& x, DualPass& p) const override {
    at::Tensor y = Primal(p, [&] {
      CheckIndices(x.value);
      return at::embedding(p.pass.params[weight_], x.value);
    });
    at::Tensor yt = p.v[weight_].index_select(p.block ? 1 : 0, x.value.reshape(-1));
    return {y, yt.view(TangentShape(y.sizes().vec(), p)), {}};
  }

 private:
  // Checked on the host: an index out of range is a device assert on CUDA.
  void CheckIndices(const at::Tensor& x) const {
    if (x.scalar_type() != at::kLong) Fail(where() + ": the input must be int64 indices, got " + DTypeName(x.scalar_type()));
    if (x.numel() == 0) return;
    auto range = at::aminmax(x);
    int64_t lo = std::get<0>(range).item<int64_t>(), hi = std::get<1>(range).item<int64_t>();
    if (lo < 0 || hi >= num_)
      Fail(where() + ": index " + std::to_string(lo < 0 ? lo : hi) + " is outside the " + std::to_string(num_) +
           " embeddings (0.." + std::to_string(num_ - 1) + ")");
  }

  int64_t num_ = 1, dim_ = 1;
  size_t weight_ = 0;
};

}  // namespace

std::unique_ptr<Layer> MakeLinearLayer(const LayerSpec& s, const std::string& prefix, Slots& slots) {
  switch (s.kind) {
    case LayerKind::Linear: return std::make_unique<Linear>(s, prefix, slots);
    case LayerKind::Conv2d: return std::make_unique<Conv2d>(s, prefix, slots);
    case LayerKind::Embedding: return std::make_unique<Embedding>(s, prefix, slots);
    default: return nullptr;
  }
}

}  // namespace usam
