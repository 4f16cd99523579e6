#include "layers.h"

#include "args.h"
#include "batchnorm.h"
#include "generator.h"

#include <unordered_set>

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

namespace {

using Pair = std::vector<int64_t>;

// PyTorch's default init for Linear and Conv2d: kaiming_uniform(a = sqrt(5))
// for the weight and U(±1/sqrt(fan_in)) for the bias, both U(±1/sqrt(fan_in)).
double FanInBound(int64_t fanIn) { return 1.0 / std::sqrt(static_cast<double>(fanIn)); }

void CheckImages(const std::string& where, const at::Tensor& x) {
  if (x.dim() != 4) Fail(where + ": expected a 4-D [N, C, H, W] input, got " + std::to_string(x.dim()) + "-D");
}

// a + b, where an undefined tensor stands for zero.
at::Tensor Plus(const at::Tensor& a, const at::Tensor& b) {
  if (!a.defined()) return b;
  if (!b.defined()) return a;
  return a + b;
}

// The reverse step of a layer whose input does not depend on the parameters
// and which has no parameters itself: nothing to propagate.
Dual NothingUpstream(const Dual&) { return {}; }

// A value that does not depend on v: computed by f, or recorded and
// replayed through the pass's cache (PrimalCache).
template <typename F>
at::Tensor Primal(DualPass& p, F&& f) {
  if (!p.cache) return f();
  return p.cache->Next([&] { return std::vector<at::Tensor>{f()}; })[0];
}
// The same for two values (a pair or a tuple).
template <typename F>
std::pair<at::Tensor, at::Tensor> Primal2(DualPass& p, F&& f) {
  if (!p.cache) {
    auto r = f();
    return {std::get<0>(r), std::get<1>(r)};
  }
  auto e = p.cache->Next([&] {
    auto r = f();
    return std::vector<at::Tensor>{std::get<0>(r), std::get<1>(r)};
  });
  return {e[0], e[1]};
}

// Block mode: a tangent [K, N, ...] folded to [K·N, ...] for per-sample
// maps (pooling, convolutions with the layer's own weight), and back.
at::Tensor Fold(const at::Tensor& t, const DualPass& p) { return p.block ? t.flatten(0, 1) : t; }
at::Tensor Unfold(const at::Tensor& t, const DualPass& p) {
  if (!p.block) return t;
  std::vector<int64_t> shape{p.block, t.size(0) / p.block};
  for (int64_t d = 1; d < t.dim(); ++d) shape.push_back(t.size(d));
  return t.view(shape);
}
// The shape of a tangent of a value of shape `shape`.
std::vector<int64_t> TangentShape(std::vector<int64_t> shape, const DualPass& p) {
  if (p.block) shape.insert(shape.begin(), p.block);
  return shape;
}

// The reverse step of an identity map of x.
DualBackward IdentityBackward(const Dual& x) {
  if (!x.tangent.defined()) return NothingUpstream;
  return [](const Dual& g) { return g; };
}

#ifdef USAM_DNNL_SGEMM
// oneDNN's row-major sgemm (dnnl.h; the library Debian's LibTorch links).
extern "C" int dnnl_sgemm(char transa, char transb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                          const float* B, int64_t ldb, float beta, float* C, int64_t ldc);
#endif

// The matrix products of the HVP and jet passes of Linear layers. Debian's
// LibTorch 1.13 gives float32 products to its BLAS (OpenBLAS, generic build):
// on this machine, one thread, 512×784 @ 784×256 took 8.6 ms there against
// 1.9 ms in oneDNN's sgemm, which the same LibTorch links (4.5×; the
// transposed product 8.9 against 1.5 ms). Builds against such a LibTorch
// (USAM_DNNL_SGEMM) take float32 CPU products there; everything else, and
// any layout sgemm cannot take, goes to at::mm.
// out = a·b, or out += a·b, for a [M, K] and b [K, N] (each row-major or the
// transpose of a row-major view) or a block of them [B, ·, ·] (a shared 2-D
// operand broadcast); out contiguous.
void ProductInto(at::Tensor& out, const at::Tensor& a, const at::Tensor& b, bool accumulate) {
  if (a.dim() == 3 || b.dim() == 3) {
    // a block times a shared right operand is one product over the folded rows
    if (b.dim() == 2 && a.is_contiguous()) {
      at::Tensor folded = out.view({-1, out.size(-1)});
      ProductInto(folded, a.view({-1, a.size(-1)}), b, accumulate);
      return;
    }
    for (int64_t k = 0; k < out.size(0); ++k) {
      at::Tensor o = out.select(0, k);
      ProductInto(o, a.dim() == 3 ? a.select(0, k) : a, b.dim() == 3 ? b.select(0, k) : b, accumulate);
    }
    return;
  }
#ifdef USAM_DNNL_SGEMM
  // each operand row-major ('N', its row stride) or a transposed row-major view ('T', its column stride)
  auto layout = [](const at::Tensor& t, char& trans, int64_t& ld) {
    if (t.stride(1) == 1 && t.stride(0) >= t.size(1)) {
      trans = 'N', ld = t.stride(0);
      return true;
    }
    if (t.stride(0) == 1 && t.stride(1) >= t.size(0)) {
      trans = 'T', ld = t.stride(1);
      return true;
    }
    return false;
  };
  char ta = 0, tb = 0;
  int64_t lda = 0, ldb = 0;
  const int64_t M = a.size(0), K = a.size(1), N = b.size(1);
  bool floats = a.scalar_type() == at::kFloat && b.scalar_type() == at::kFloat && out.scalar_type() == at::kFloat;
  bool cpu = a.device().is_cpu() && b.device().is_cpu() && out.device().is_cpu();
  if (floats && cpu && M > 0 && N > 0 && K > 0 && out.is_contiguous() && layout(a, ta, lda) && layout(b, tb, ldb) &&
      dnnl_sgemm(ta, tb, M, N, K, 1.0f, a.data_ptr<float>(), lda, b.data_ptr<float>(), ldb, accumulate ? 1.0f : 0.0f,
                 out.data_ptr<float>(), N) == 0) {
    NoteWrite(out);  // written through its pointer: autograd's and the caches' version checks must see it
    return;
  }
#endif
  if (accumulate)
    out.addmm_(a, b);
  else
    at::mm_out(out, a, b);
}
at::Tensor Product(const at::Tensor& a, const at::Tensor& b) {
  std::vector<int64_t> shape{a.size(-2), b.size(-1)};
  if (a.dim() == 3 || b.dim() == 3) shape.insert(shape.begin(), a.dim() == 3 ? a.size(0) : b.size(0));
  at::Tensor out = at::empty(shape, a.options());
  ProductInto(out, a, b, false);
  return out;
}
void AddProduct(at::Tensor& out, const at::Tensor& a, const at::Tensor& b) { ProductInto(out, a, b, true); }
// x Wᵀ + bias (the bias broadcast over the rows), as at::linear.
at::Tensor Affine(const at::Tensor& x2, const at::Tensor& w, const at::Tensor& bias) {
  at::Tensor y = Product(x2, w.t());
  if (bias.defined()) y.add_(bias);
  return y;
}

// Tangent and reverse step of a parameter-free linear map f: R{y} = f(ẋ),
// and the reverse step applies the vector-Jacobian product of f (taken from
// autograd on a one-op graph; f is linear, so it does not depend on x) to
// both the gradient and its tangent.
Dual LinearMapDual(const Dual& x, DualPass& p, const std::function<at::Tensor(const at::Tensor&)>& f,
                   DualBackward& backward) {
  at::Tensor y = Primal(p, [&] { return f(x.value); });
  if (!x.tangent.defined()) {
    backward = NothingUpstream;
    return {y, {}};
  }
  backward = [&p, x0 = x.value, f](const Dual& g) -> Dual {
    // f is linear, so its vector-Jacobian product does not depend on the
    // point: a block's folded tangents take one of their own shape
    auto vjp = [&](const at::Tensor& t, const at::Tensor& at) {
      at::AutoGradMode on(true);
      at::Tensor leaf = at.detach().requires_grad_(true);
      return torch::autograd::grad({f(leaf)}, {leaf}, {t})[0];
    };
    at::Tensor dx = Primal(p, [&] { return vjp(g.value, x0); });
    if (!p.block) return {dx, vjp(g.tangent, x0)};
    at::Tensor gt = Fold(g.tangent, p);
    std::vector<int64_t> folded = x0.sizes().vec();
    folded[0] *= p.block;
    return {dx, Unfold(vjp(gt, at::zeros(folded, x0.options())), p)};
  };
  return {y, Unfold(f(Fold(x.tangent, p)), p)};
}

// A jet through a parameter-free linear map f (pooling): every order is f of
// the same order.
Jet LinearMapJet(const Jet& x, DualPass& p, const std::function<at::Tensor(const at::Tensor&)>& f) {
  at::Tensor y = Primal(p, [&] { return f(x.value); });
  auto map = [&](const at::Tensor& t) { return t.defined() ? Unfold(f(Fold(t, p)), p) : at::Tensor(); };
  return {y, map(x.d1), map(x.d2)};
}

// A jet through an elementwise product with a constant (dropout's mask, ReLU's slope as a mask).
Jet ScaledJet(const at::Tensor& y, const Jet& x, const std::function<at::Tensor(const at::Tensor&)>& scale) {
  return {y, x.d1.defined() ? scale(x.d1) : at::Tensor(), x.d2.defined() ? scale(x.d2) : at::Tensor()};
}

// The jet of a normalisation x̂ = c·r, c = x − m(x), r = (m(c²) + ε)^(−1/2),
// from the primal x̂, c and r (cached: they do not depend on v); m(·) is the
// mean over `tdims` of a tangent (a value's dims, shifted past a block's
// leading K):
//   ċ = ẋ − m(ẋ), ṡ = 2 m(c ċ), ṙ = −½ r³ ṡ, x̂' = ċ r + c ṙ;
//   c̈ = ẍ − m(ẍ), s̈ = 2 m(ċ² + c c̈), r̈ = ¾ r⁵ ṡ² − ½ r³ s̈,
//   x̂'' = c̈ r + 2 ċ ṙ + c r̈.
Jet NormalizedJet(const at::Tensor& xh, const at::Tensor& c, const at::Tensor& r, const Jet& x, at::IntArrayRef tdims) {
  if (!x.d1.defined()) return {xh, {}, {}};
  auto m = [&](const at::Tensor& t) { return t.mean(tdims, /*keepdim=*/true); };
  at::Tensor r3 = r * r * r;
  at::Tensor ct = x.d1 - m(x.d1);
  at::Tensor st = 2 * m(c * ct);
  at::Tensor rt = -0.5 * r3 * st;
  at::Tensor d1 = ct * r + c * rt;
  at::Tensor stt = ct * ct, ctt;
  if (x.d2.defined()) {
    ctt = x.d2 - m(x.d2);
    stt.add_(c * ctt);
  }
  stt = 2 * m(stt);
  at::Tensor rtt = 0.75 * r3 * r * r * st * st - 0.5 * r3 * stt;
  at::Tensor d2 = 2 * ct * rt + c * rtt;
  if (ctt.defined()) d2.add_(ctt * r);
  return {xh, d1, d2};
}

// y = γ x̂ + β along v: ẏ = v_γ x̂ + γ x̂' + v_β, ÿ = 2 v_γ x̂' + γ x̂''; γ, β
// and their tangents shaped to broadcast against x̂ and its derivatives.
Jet AffineJet(const at::Tensor& y, const Jet& xh, const at::Tensor& gamma, const at::Tensor& vgamma, const at::Tensor& vbeta) {
  at::Tensor d1 = xh.value * vgamma + vbeta, d2;
  if (xh.d1.defined()) {
    d1 = d1 + xh.d1 * gamma;
    d2 = 2 * xh.d1 * vgamma;
  }
  if (xh.d2.defined()) d2 = Plus(d2, xh.d2 * gamma);
  return {y, d1, d2};
}

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
  Linear(const Napi::Object& o, const std::string& where, const std::string& prefix, Slots& s) : Layer(where) {
    int64_t in = IntField(o, "inFeatures", where, 1), out = IntField(o, "outFeatures", where, 1);
    double b = FanInBound(in);
    weight_ = s.AddParam(prefix + "weight", {out, in}, b, 0);
    hasBias_ = BoolField(o, "bias", where, true);
    if (hasBias_) bias_ = s.AddParam(prefix + "bias", {out}, b, 0);
  }
  at::Tensor Forward(const at::Tensor& x, Pass& p) const override {
#ifdef USAM_DNNL_SGEMM
    if (!p.twiceDifferentiable && x.scalar_type() == at::kFloat && x.device().is_cpu()) {
      at::Tensor y = LinearOnce::apply(x, p.params[weight_]);
      return hasBias_ ? y + p.params[bias_] : y;
    }
#endif
    return at::linear(x, p.params[weight_], hasBias_ ? p.params[bias_] : at::Tensor());
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
  Conv2d(const Napi::Object& o, const std::string& where, const std::string& prefix, Slots& s) : Layer(where) {
    int64_t in = IntField(o, "inChannels", where, 1), out = IntField(o, "outChannels", where, 1);
    auto k = IntListField(o, "kernelSize", where, 2, 1);
    stride_ = HasField(o, "stride") ? IntListField(o, "stride", where, 2, 1) : Pair{1, 1};
    padding_ = HasField(o, "padding") ? IntListField(o, "padding", where, 2, 0) : Pair{0, 0};
    dilation_ = HasField(o, "dilation") ? IntListField(o, "dilation", where, 2, 1) : Pair{1, 1};
    groups_ = HasField(o, "groups") ? IntField(o, "groups", where, 1) : 1;
    if (in % groups_ != 0 || out % groups_ != 0) Fail(where + ".groups must divide both inChannels and outChannels");
    double b = FanInBound(in / groups_ * k[0] * k[1]);
    weight_ = s.AddParam(prefix + "weight", {out, in / groups_, k[0], k[1]}, b, 0);
    hasBias_ = BoolField(o, "bias", where, true);
    if (hasBias_) bias_ = s.AddParam(prefix + "bias", {out}, b, 0);
  }
  at::Tensor Forward(const at::Tensor& x, Pass& p) const override {
    at::Tensor bias = hasBias_ ? p.params[bias_] : at::Tensor();
    const at::Tensor& w = p.params[weight_];
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

class BatchNorm : public Layer {
 public:
  BatchNorm(const Napi::Object& o, const std::string& where, const std::string& prefix, Slots& s, int64_t spatialDims)
      : Layer(where), spatialDims_(spatialDims) {
    int64_t n = IntField(o, "numFeatures", where, 1);
    eps_ = NumberField(o, "eps", where, 1e-5);
    momentum_ = NumberField(o, "momentum", where, 0.1);
    if (eps_ <= 0) Fail(where + ".eps must be > 0");
    if (momentum_ < 0 || momentum_ > 1) Fail(where + ".momentum must be in [0, 1]");
    affine_ = BoolField(o, "affine", where, true);
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
  LayerNorm(const Napi::Object& o, const std::string& where, const std::string& prefix, Slots& s) : Layer(where) {
    shape_ = IntListField(o, "normalizedShape", where, 0, 1);
    eps_ = NumberField(o, "eps", where, 1e-5);
    if (!(eps_ > 0)) Fail(where + ".eps must be > 0");
    affine_ = BoolField(o, "elementwiseAffine", where, true);
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

enum class Act { Relu, Gelu, GeluTanh, Tanh, Softplus, Silu, Sigmoid, LeakyRelu };

class Activation : public Layer {
 public:
  Activation(Act act, const Napi::Object& o, const std::string& where) : Layer(where), act_(act) {
    if (act == Act::Softplus) {
      beta_ = NumberField(o, "beta", where, 1.0);
      threshold_ = NumberField(o, "threshold", where, 20.0);
      if (beta_ <= 0) Fail(where + ".beta must be > 0");
    }
    if (act == Act::LeakyRelu) slope_ = NumberField(o, "negativeSlope", where, 0.01);
  }
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

enum class PoolKind { Max, Avg };

class Pool2d : public Layer {
 public:
  Pool2d(PoolKind kind, const Napi::Object& o, const std::string& where) : Layer(where), kind_(kind) {
    kernel_ = IntListField(o, "kernelSize", where, 2, 1);
    stride_ = HasField(o, "stride") ? IntListField(o, "stride", where, 2, 1) : kernel_;
    padding_ = HasField(o, "padding") ? IntListField(o, "padding", where, 2, 0) : Pair{0, 0};
    for (int i = 0; i < 2; ++i)
      if (padding_[i] * 2 > kernel_[i]) Fail(where + ".padding must be at most half of kernelSize");
  }
  at::Tensor Forward(const at::Tensor& x, Pass&) const override {
    CheckImages(where(), x);
    return kind_ == PoolKind::Max ? at::max_pool2d(x, kernel_, stride_, padding_)
                                  : at::avg_pool2d(x, kernel_, stride_, padding_);
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
    auto [y, idx] = Primal2(p, [&] { return at::max_pool2d_with_indices(x.value, kernel_, stride_, padding_); });
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
        at::Tensor dx = Primal(p, [&] {
          return at::max_pool2d_with_indices_backward(g.value, x0, kernel_, stride_, padding_, {1, 1}, false, idx);
        });
        at::Tensor dxt = at::zeros(TangentShape(x0.sizes().vec(), p), x0.options());
        dxt.flatten(3).scatter_add_(3, flatIdx, g.tangent.flatten(3));
        return {dx, dxt};
      };
      return {y, yt};
    }
    at::Tensor yt = x.tangent.flatten(2).gather(2, idx.flatten(2)).view_as(y);
    backward = [this, &p, x0 = x.value, idx = idx](const Dual& g) -> Dual {
      auto route = [&](const at::Tensor& t) {
        return at::max_pool2d_with_indices_backward(t, x0, kernel_, stride_, padding_, {1, 1}, false, idx);
      };
      at::Tensor dx = Primal(p, [&] { return route(g.value); });
      return {dx, route(g.tangent)};
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
    auto [y, idx] = Primal2(p, [&] { return at::max_pool2d_with_indices(x.value, kernel_, stride_, padding_); });
    at::Tensor flatIdx = idx.flatten(2);
    if (p.block) flatIdx = flatIdx.unsqueeze(0).expand({p.block, -1, -1, -1});
    const int64_t last = p.block ? 3 : 2;
    std::vector<int64_t> shape = TangentShape(y.sizes().vec(), p);
    return ScaledJet(y, x, [&](const at::Tensor& t) { return t.flatten(last).gather(last, flatIdx).view(shape); });
  }

 private:
  PoolKind kind_;
  Pair kernel_, stride_, padding_;
};

class AdaptiveAvgPool2d : public Layer {
 public:
  AdaptiveAvgPool2d(const Napi::Object& o, const std::string& where) : Layer(where) {
    output_ = IntListField(o, "outputSize", where, 2, 1);
  }
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
  using Layer::Layer;
  at::Tensor Forward(const at::Tensor& x, Pass&) const override { return x.flatten(1); }
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

// PyTorch's nn.Embedding: rows of the weight picked by int64 indices, y = W[x].
// Linear in W, so R{y} = V[x] and (Hv)_W adds ġ's rows back at the indices
// (index_add); nothing upstream (the indices have no tangent).
class Embedding : public Layer {
 public:
  Embedding(const Napi::Object& o, const std::string& where, const std::string& prefix, Slots& s) : Layer(where) {
    num_ = IntField(o, "numEmbeddings", where, 1);
    dim_ = IntField(o, "embeddingDim", where, 1);
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

// PyTorch's nn.Identity: a placeholder that passes its input on.
class Identity : public Layer {
 public:
  using Layer::Layer;
  at::Tensor Forward(const at::Tensor& x, Pass&) const override { return x; }
  Dual ForwardDual(const Dual& x, DualPass&, DualBackward& backward) const override {
    backward = IdentityBackward(x);
    return x;
  }
  Jet ForwardJet(const Jet& x, DualPass&) const override { return x; }
};

// Dropout, and with `channels` Dropout2d: one draw per (sample, channel) of
// [N, C, H, W], broadcast over the plane.
class Dropout : public Layer {
 public:
  Dropout(const Napi::Object& o, const std::string& where, bool channels = false) : Layer(where), channels_(channels) {
    p_ = NumberField(o, "p", where, 0.5);
    if (p_ < 0 || p_ >= 1) Fail(where + ".p must be in [0, 1)");
  }
  at::Tensor Forward(const at::Tensor& x, Pass& p) const override {
    if (!p.training || p_ == 0) return x;
    return x * Mask(x, p);
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

LayerList ParseList(const Napi::Value& v, const std::string& where, const std::string& prefix, Slots& s);

class Residual : public Layer {
 public:
  Residual(const Napi::Object& o, const std::string& where, const std::string& prefix, Slots& s) : Layer(where) {
    if (!HasField(o, "body")) Fail(where + ".body is required (an array of layers)");
    body_ = ParseList(o.Get("body"), where + ".body", prefix + "body.", s);
    if (HasField(o, "shortcut")) shortcut_ = ParseList(o.Get("shortcut"), where + ".shortcut", prefix + "shortcut.", s);
  }
  at::Tensor Forward(const at::Tensor& x, Pass& p) const override {
    at::Tensor main = RunLayers(body_, x, p);
    at::Tensor skip = shortcut_.empty() ? x : RunLayers(shortcut_, x, p);
    CheckShapes(main, skip);
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

std::unique_ptr<Layer> ParseLayer(const Napi::Value& v, const std::string& where, const std::string& prefix,
                                  Slots& s) {
  if (!v.IsObject() || v.IsArray()) Fail(where + " must be a layer object with a 'type' field");
  auto o = v.As<Napi::Object>();
  std::string type = StringField(o, "type", where);
  if (type == "linear") return std::make_unique<Linear>(o, where, prefix, s);
  if (type == "conv2d") return std::make_unique<Conv2d>(o, where, prefix, s);
  if (type == "batchnorm1d") return std::make_unique<BatchNorm>(o, where, prefix, s, 1);
  if (type == "batchnorm2d") return std::make_unique<BatchNorm>(o, where, prefix, s, 2);
  if (type == "layernorm") return std::make_unique<LayerNorm>(o, where, prefix, s);
  if (type == "embedding") return std::make_unique<Embedding>(o, where, prefix, s);
  if (type == "relu") return std::make_unique<Activation>(Act::Relu, o, where);
  if (type == "gelu") {
    std::string approx = HasField(o, "approximate") ? StringField(o, "approximate", where) : "none";
    if (approx != "none" && approx != "tanh") Fail(where + ".approximate must be 'none' or 'tanh'");
    return std::make_unique<Activation>(approx == "tanh" ? Act::GeluTanh : Act::Gelu, o, where);
  }
  if (type == "tanh") return std::make_unique<Activation>(Act::Tanh, o, where);
  if (type == "softplus") return std::make_unique<Activation>(Act::Softplus, o, where);
  if (type == "silu") return std::make_unique<Activation>(Act::Silu, o, where);
  if (type == "sigmoid") return std::make_unique<Activation>(Act::Sigmoid, o, where);
  if (type == "leakyrelu") return std::make_unique<Activation>(Act::LeakyRelu, o, where);
  if (type == "identity") return std::make_unique<Identity>(where);
  if (type == "maxpool2d") return std::make_unique<Pool2d>(PoolKind::Max, o, where);
  if (type == "avgpool2d") return std::make_unique<Pool2d>(PoolKind::Avg, o, where);
  if (type == "adaptiveavgpool2d") return std::make_unique<AdaptiveAvgPool2d>(o, where);
  if (type == "flatten") return std::make_unique<Flatten>(where);
  if (type == "dropout") return std::make_unique<Dropout>(o, where);
  if (type == "dropout2d") return std::make_unique<Dropout>(o, where, /*channels=*/true);
  if (type == "residual") return std::make_unique<Residual>(o, where, prefix, s);
  Fail(where + ".type '" + type +
       "' is not a layer; use one of linear, conv2d, embedding, batchnorm1d, batchnorm2d, layernorm, relu, gelu, tanh, softplus, silu, "
       "sigmoid, leakyrelu, identity, maxpool2d, avgpool2d, adaptiveavgpool2d, flatten, dropout, dropout2d, residual");
}

LayerList ParseList(const Napi::Value& v, const std::string& where, const std::string& prefix, Slots& s) {
  if (!v.IsArray()) Fail(where + " must be an array of layers");
  auto arr = v.As<Napi::Array>();
  LayerList out;
  for (uint32_t i = 0; i < arr.Length(); ++i)
    out.push_back(ParseLayer(arr.Get(i), where + "[" + std::to_string(i) + "]", prefix + std::to_string(i) + ".", s));
  return out;
}

}  // namespace

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
  for (const auto& layer : layers) x = Named(*layer, [&] { return layer->Forward(x, p); });
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

Network::Network(const Napi::Object& spec, at::ScalarType dtype_, c10::Device device_, uint64_t initSeed,
                 uint64_t dropoutSeed)
    : dtype(dtype_), device(device_) {
  if (dtype != at::kFloat && dtype != at::kDouble) Fail("model dtype must be 'float32' or 'float64'");
  inputShape_ = IntListField(spec, "input", "spec", 0, 1);
  if (inputShape_.empty()) Fail("spec.input must list the input shape without the batch dimension, e.g. [784]");
  if (!HasField(spec, "layers")) Fail("spec.layers is required (an array of layers)");
  layers_ = ParseList(spec.Get("layers"), "spec.layers", "", slots);
  if (HasField(spec, "loss")) ParseLoss(spec.Get("loss"), "spec.loss");
  if (slots.paramCount == 0) Fail("spec.layers has no parameters; a model needs at least one linear or conv2d layer");
  for (size_t i = 0; i < layers_.size(); ++i)
    if (layers_[i]->TakesIndices() && i != 0)
      Fail(layers_[i]->where() + ": an embedding reads integer indices, so it must be the first layer");
  indexInput_ = !layers_.empty() && layers_[0]->TakesIndices();

  AllocateStorage(dropoutSeed);
  at::Generator init = MakeGenerator(initSeed, device);

  at::NoGradGuard ng;
  for (const auto& s : slots.params) {
    at::Tensor view = flatParams.narrow(0, s.offset, s.numel).view(s.shape);
    if (s.stddev > 0)
      view.normal_(0, s.stddev, init);
    else if (s.bound > 0)
      view.uniform_(-s.bound, s.bound, init);
    else
      view.fill_(s.fill);
    // A leaf that aliases the flat buffer: autograd differentiates with
    // respect to it, updates of the flat buffer are seen by it.
    params.push_back(view.detach().requires_grad_(true));
  }
  for (const auto& s : slots.buffers) {
    at::Tensor view = flatBuffers.narrow(0, s.offset, s.numel).view(s.shape);
    view.fill_(s.fill);
    buffers.push_back(view);
  }
}

void Network::CheckInput(const at::Tensor& x) const {
  if (script_) {  // the module checks shapes itself; floats of the model's dtype, or int64 indices
    if (x.scalar_type() != dtype && x.scalar_type() != at::kLong)
      Fail("argument 'x' is " + DTypeName(x.scalar_type()) + " but the model is " + DTypeName(dtype) +
           "; create the inputs with the model's dtype");
    if (x.device() != device)
      Fail("argument 'x' is on " + DeviceName(x.device()) + " but the model is on " + DeviceName(device));
    return;
  }
  bool ok = x.dim() == static_cast<int64_t>(inputShape_.size()) + 1;
  for (size_t i = 0; ok && i < inputShape_.size(); ++i) ok = x.size(static_cast<int64_t>(i) + 1) == inputShape_[i];
  if (!ok || x.size(0) == 0)
    Fail("argument 'x' has shape " + c10::str(x.sizes()) + " but the model takes [batch, " +
         c10::Join(", ", inputShape_) + "] with batch >= 1");
  if (indexInput_) {
    if (x.scalar_type() != at::kLong)
      Fail("argument 'x' is " + DTypeName(x.scalar_type()) +
           " but the model starts with an embedding: give int64 indices (tensor(ints, shape, {dtype: 'int64'}))");
  } else if (x.scalar_type() != dtype) {
    Fail("argument 'x' is " + DTypeName(x.scalar_type()) + " but the model is " + DTypeName(dtype) +
         "; create the inputs with the model's dtype");
  }
  if (x.device() != device)
    Fail("argument 'x' is on " + DeviceName(x.device()) + " but the model is on " + DeviceName(device) +
         "; move it with .to('" + DeviceName(device) + "')");
}

void Network::CheckTarget(const at::Tensor& y, int64_t batch) const {
  if (y.device() != device)
    Fail("argument 'y' is on " + DeviceName(y.device()) + " but the model is on " + DeviceName(device));
  if (loss_ == LossKind::CrossEntropy) {
    if (y.scalar_type() != at::kLong || y.dim() != 1 || y.size(0) != batch)
      Fail("argument 'y' must be int64 class labels of shape [" + std::to_string(batch) + "] for cross-entropy, got " +
           DTypeName(y.scalar_type()) + " " + c10::str(y.sizes()));
  } else if (y.scalar_type() != dtype || y.dim() == 0 || y.size(0) != batch) {
    Fail("argument 'y' must be " + DTypeName(dtype) + " targets with batch " + std::to_string(batch) +
         " for mse, got " + DTypeName(y.scalar_type()) + " " + c10::str(y.sizes()));
  }
}

void StatsAccumulator::Add(size_t meanBuffer, size_t varBuffer, size_t counter, double momentum, const at::Tensor& x) {
  std::vector<int64_t> dims{0};
  for (int64_t d = 2; d < x.dim(); ++d) dims.push_back(d);
  at::Tensor xd = x.to(at::kDouble);
  int64_t n = x.numel() / x.size(1);
  std::vector<int64_t> channel(static_cast<size_t>(x.dim()), 1);
  channel[1] = x.size(1);
  at::Tensor mean = xd.mean(dims);
  at::Tensor m2 = (xd - mean.view(channel)).pow(2).sum(dims);
  for (auto& e : entries) {
    if (e.meanBuffer != meanBuffer) continue;
    // Chan et al.: pool (count, mean, M2) of two parts
    int64_t total = e.stats.count + n;
    at::Tensor delta = mean - e.stats.mean;
    e.stats.m2 = e.stats.m2 + m2 + delta.pow(2) * (static_cast<double>(e.stats.count) * n / total);
    e.stats.mean = e.stats.mean + delta * (static_cast<double>(n) / total);
    e.stats.count = total;
    return;
  }
  entries.push_back({meanBuffer, varBuffer, counter, momentum, {n, mean, m2}});
}

void Network::BeginStats() { stats_ = std::make_unique<StatsAccumulator>(); }

at::Tensor Network::StatsSums() const {
  if (!stats_) Fail("statsSums() without beginStats()");
  std::vector<at::Tensor> parts;
  for (const auto& e : stats_->entries) {
    const auto& s = e.stats;
    double n = static_cast<double>(s.count);
    parts.push_back(at::full({1}, n, s.mean.options()));
    parts.push_back(s.mean * n);
    parts.push_back(s.m2 + s.mean * s.mean * n);
  }
  if (parts.empty()) return at::empty({0}, at::TensorOptions().dtype(at::kDouble).device(device));
  return at::cat(parts);
}

void Network::PoolStats(const at::Tensor& sums) {
  if (!stats_) Fail("poolStats() without beginStats()");
  int64_t expected = 0;
  for (const auto& e : stats_->entries) expected += 1 + 2 * e.stats.mean.numel();
  if (sums.scalar_type() != at::kDouble || sums.dim() != 1 || sums.numel() != expected || sums.device() != device)
    Fail("poolStats: expected the float64 sums of statsSums() (" + std::to_string(expected) + " values on " +
         DeviceName(device) + ") summed over the ranks, got " + DTypeName(sums.scalar_type()) + " " + c10::str(sums.sizes()));
  int64_t at = 0;
  for (auto& e : stats_->entries) {
    int64_t C = e.stats.mean.numel();
    double n = sums[at].item<double>();
    at::Tensor s1 = sums.narrow(0, at + 1, C), s2 = sums.narrow(0, at + 1 + C, C);
    e.stats.count = static_cast<int64_t>(std::llround(n));
    e.stats.mean = s1 / n;
    e.stats.m2 = (s2 - s1 * e.stats.mean).clamp_min(0);  // Σx² − n·mean², never below 0 by rounding
    at += 1 + 2 * C;
  }
}

void Network::DiscardStats() { stats_.reset(); }

void Network::CommitStats() {
  if (!stats_) Fail("commitStats() without beginStats()");
  at::NoGradGuard ng;
  for (const auto& e : stats_->entries) {
    const auto& s = e.stats;
    // the unbiased variance of the pooled data, as batch_norm's running update uses
    at::Tensor var = s.count > 1 ? s.m2 / static_cast<double>(s.count - 1) : s.m2;
    at::Tensor& rm = buffers[e.meanBuffer];
    at::Tensor& rv = buffers[e.varBuffer];
    rm.mul_(1 - e.momentum).add_(s.mean.to(rm.scalar_type()), e.momentum);
    rv.mul_(1 - e.momentum).add_(var.to(rv.scalar_type()), e.momentum);
    counters[static_cast<int64_t>(e.counter)].add_(1);
  }
  stats_.reset();
}

void Network::AllocateStorage(uint64_t dropoutSeed) {
  auto opts = at::TensorOptions().dtype(dtype).device(device);
  flatParams = at::empty({slots.paramCount}, opts);
  flatBuffers = at::empty({slots.bufferCount}, opts);
  counters = at::zeros({static_cast<int64_t>(slots.counters.size())}, opts.dtype(at::kLong));
  gen = MakeGenerator(dropoutSeed, device);
}

void Network::ParseLoss(const Napi::Value& loss, const std::string& where) {
  if (!loss.IsObject()) Fail(where + " must be an object like {type: 'cross-entropy'}");
  auto lo = loss.As<Napi::Object>();
  std::string kind = StringField(lo, "type", where);
  if (kind == "cross-entropy") {
    loss_ = LossKind::CrossEntropy;
    labelSmoothing_ = NumberField(lo, "labelSmoothing", where, 0.0);
    if (labelSmoothing_ < 0 || labelSmoothing_ > 1) Fail(where + ".labelSmoothing must be in [0, 1]");
  } else if (kind == "mse") {
    loss_ = LossKind::Mse;
  } else {
    Fail(where + ".type '" + kind + "' is unknown; use 'cross-entropy' or 'mse'");
  }
}

Network::Network(std::shared_ptr<ScriptModule> script, const Napi::Value& loss, at::ScalarType dtype_,
                 c10::Device device_, uint64_t dropoutSeed)
    : dtype(dtype_), device(device_), script_(std::move(script)) {
  if (dtype != at::kFloat && dtype != at::kDouble) Fail("model dtype must be 'float32' or 'float64'");
  if (!loss.IsUndefined() && !loss.IsNull()) ParseLoss(loss, "options.loss");
  auto moduleParams = script_->Parameters();
  for (const auto& [name, t] : moduleParams) {
    if (!at::isFloatingType(t.scalar_type()))
      Fail("the TorchScript module's parameter '" + name + "' is " + DTypeName(t.scalar_type()) +
           "; only floating-point parameters can be trained");
    slots.AddParam(name, t.sizes().vec(), 0, 0);
  }
  if (slots.paramCount == 0) Fail("the TorchScript module has no parameters; there is nothing to train or probe");
  auto moduleBuffers = script_->Buffers();
  std::vector<bool> isCounter;
  for (const auto& [name, t] : moduleBuffers) {
    bool counter = t.scalar_type() == at::kLong && t.numel() == 1;
    if (!counter && !at::isFloatingType(t.scalar_type()))
      Fail("the TorchScript module's buffer '" + name + "' is " + DTypeName(t.scalar_type()) +
           "; buffers must be floating-point (or an int64 count such as num_batches_tracked)");
    if (counter)
      slots.AddCounter(name);
    else
      slots.AddBuffer(name, t.sizes().vec(), 0);
    isCounter.push_back(counter);
  }
  AllocateStorage(dropoutSeed);
  at::NoGradGuard ng;
  // Each of the module's tensors is re-pointed (set_data) at a view of the
  // flat storage: the module computes with, and autograd differentiates
  // with respect to, the flat parameters.
  for (size_t i = 0; i < moduleParams.size(); ++i) {
    const auto& s = slots.params[i];
    at::Tensor t = moduleParams[i].second;
    at::Tensor view = flatParams.narrow(0, s.offset, s.numel).view(s.shape);
    view.copy_(t.detach());
    t.set_data(view);
    t.requires_grad_(true);
    params.push_back(t);
  }
  size_t b = 0, c = 0;
  for (size_t i = 0; i < moduleBuffers.size(); ++i) {
    at::Tensor t = moduleBuffers[i].second;
    at::Tensor view;
    if (isCounter[i]) {
      view = counters.narrow(0, static_cast<int64_t>(c++), 1).view(t.sizes());
    } else {
      const auto& s = slots.buffers[b++];
      view = flatBuffers.narrow(0, s.offset, s.numel).view(s.shape);
      buffers.push_back(view);
    }
    view.copy_(t.detach());
    t.set_data(view);
    scriptBuffers_.push_back(t);
    scriptBufferViews_.push_back(view);
  }
}

// The module computes; a pass that must not move the running statistics
// (a perturbed pass in training mode) runs with the module's buffers
// re-pointed at copies, and re-points them back afterwards. set_data changes
// no version counter, so autograd's saved tensors stay valid.
at::Tensor Network::ScriptForward(const at::Tensor& x, bool updateStats) {
  if (stats_ && !scriptBuffers_.empty())
    Fail("micro-batches pooling BatchNorm statistics are not supported for TorchScript models; give one batch per step");
  script_->Train(training);
  bool shield = training && !updateStats && !scriptBuffers_.empty();
  if (shield)
    for (auto& t : scriptBuffers_) t.set_data(t.detach().clone());
  auto unshield = [&] {
    if (shield)
      for (size_t i = 0; i < scriptBuffers_.size(); ++i) scriptBuffers_[i].set_data(scriptBufferViews_[i]);
  };
  at::Tensor out;
  try {
    out = script_->Forward(x);
  } catch (const c10::Error& e) {
    unshield();
    Fail("the TorchScript module's forward failed: " + CleanTorchMessage(e.what_without_backtrace()));
  } catch (...) {  // e.g. a forward that returns no tensor: the buffers go back all the same
    unshield();
    throw;
  }
  unshield();
  if (training && updateStats && !scriptBuffers_.empty())
    NoteWrite(counters);  // BatchNorm's kernel moved the statistics in place (see PrimalCache)
  return out;
}

at::Tensor Network::Forward(const at::Tensor& x, bool updateStats, bool twiceDifferentiable) {
  if (script_) return ScriptForward(x, updateStats);
  Pass pass{params, buffers, counters, training, updateStats, twiceDifferentiable, gen, stats_.get()};
  return RunLayers(layers_, x, pass);
}

std::vector<at::Tensor> PrimalCache::Next(const std::function<std::vector<at::Tensor>()>& compute) {
  if (!replaying) {
    entries.push_back(compute());
    return entries.back();
  }
  if (cursor >= entries.size()) Fail("internal error: an HVP replayed more of its cache than it recorded");
  return entries[cursor++];
}

void PrimalCache::Clear() {
  key = Key{};
  replaying = false;
  cursor = 0;
  entries.clear();
  graph.clear();
  loss = at::Tensor();
}

int64_t PrimalCache::Bytes() const {
  std::unordered_set<const void*> seen;
  int64_t total = 0;
  auto count = [&](const at::Tensor& t) {
    if (!t.defined()) return;
    const auto& storage = t.storage();
    if (seen.insert(storage.unsafeGetStorageImpl()).second) total += static_cast<int64_t>(storage.nbytes());
  };
  for (const auto& e : entries)
    for (const auto& t : e) count(t);
  for (const auto& t : graph) count(t);
  return total;
}

PrimalCache::Key Network::CacheKey(const at::Tensor& x, const at::Tensor& y, const std::string& method) const {
  PrimalCache::Key k;
  k.network = this;
  k.x = x.unsafeGetTensorImpl(), k.y = y.unsafeGetTensorImpl();
  k.xVersion = static_cast<int64_t>(x._version()), k.yVersion = static_cast<int64_t>(y._version());
  k.paramsVersion = static_cast<int64_t>(flatParams._version());
  k.buffersVersion = static_cast<int64_t>(flatBuffers._version());
  k.countersVersion = static_cast<int64_t>(counters._version());
  k.training = training;
  k.method = method;
  return k;
}

std::vector<at::Tensor> Network::SplitLikeParams(const at::Tensor& flat, int64_t block) const {
  // a block [K, P]: each part a [K, ...shape] view (the rows are strided by P)
  std::vector<at::Tensor> parts;
  for (const auto& s : slots.params) {
    std::vector<int64_t> shape = s.shape;
    if (block) shape.insert(shape.begin(), block);
    parts.push_back(flat.narrow(flat.dim() - 1, s.offset, s.numel).view(shape));
  }
  return parts;
}

double Network::TangentPass(const at::Tensor& x, const at::Tensor& y, const at::Tensor& v, PrimalCache* cache,
                            const std::string& method, const std::function<double(DualPass&)>& body) {
  if (script_)
    Fail("a TorchScript model has no " + method + " rules (its layers are not this library's); use method 'double-backward'");
  at::NoGradGuard ng;
  if (cache) {
    PrimalCache::Key key = CacheKey(x, y, method);
    if (!(cache->key == key)) {
      cache->Clear();
      cache->key = key;
    }
    cache->cursor = 0;
  }
  Pass pass{params, buffers, counters, training, /*updateStats=*/false, /*twiceDifferentiable=*/false, gen};
  const int64_t block = v.dim() == 2 ? v.size(0) : 0;
  std::vector<at::Tensor> vParts = SplitLikeParams(v, block), hvParts;
  DualPass state{pass, vParts, hvParts, cache, block};
  try {
    double loss = body(state);
    if (cache) {
      if (cache->replaying && cache->cursor != cache->entries.size())
        Fail("internal error: a pass replayed less of its cache than it recorded");
      ++(cache->replaying ? cache->replays : cache->records);
      cache->replaying = true;
    }
    return loss;
  } catch (...) {
    if (cache) cache->Clear();
    throw;
  }
}

double Network::Hvp(const at::Tensor& x, const at::Tensor& y, const at::Tensor& v, at::Tensor& out, PrimalCache* cache) {
  return TangentPass(x, y, v, cache, "forward-over-reverse", [&](DualPass& dual) {
    dual.hv = SplitLikeParams(out, dual.block);
    DualBackward backward;
    Dual z = RunLayersDual(layers_, {x, {}}, dual, backward);
    Dual g;
    double loss = LossDual(z, y, g, cache, dual.block);
    backward(g);
    return loss;
  });
}

double Network::Curvature(const at::Tensor& x, const at::Tensor& y, const at::Tensor& v, at::Tensor& out,
                          PrimalCache* cache) {
  return TangentPass(x, y, v, cache, "forward-over-forward", [&](DualPass& jets) {
    Jet z = RunLayersJet(layers_, {x, {}, {}}, jets);
    double loss = 0;
    out.copy_(LossJet(z, y, cache, jets.block, loss).reshape(out.sizes()));
    return loss;
  });
}

// Cross-entropy with label smoothing ε over C classes, mean over N samples:
// ∂L/∂z = (softmax(z) − q)/N with q = (1−ε)·onehot + ε/C, and
// R{∂L/∂z} = p ⊙ (ż − ⟨p, ż⟩)/N. Mean squared error over n elements:
// ∂L/∂z = 2 (z − t)/n, R{∂L/∂z} = 2 ż/n.
std::vector<at::Tensor> Network::LossPrimal(const at::Tensor& z, const at::Tensor& y, PrimalCache* cache) const {
  // through the cache, as the layers' v-independent parts (Primal)
  auto primal = [&](const std::function<std::vector<at::Tensor>()>& f) { return cache ? cache->Next(f) : f(); };
  if (loss_ == LossKind::Mse) {
    double scale = 2.0 / static_cast<double>(z.numel());
    return primal([&] { return std::vector<at::Tensor>{Loss(z, y), (z - y) * scale}; });
  }
  int64_t n = z.size(0), classes = z.size(1);
  return primal([&] {
    at::Tensor loss = Loss(z, y);  // also checks shapes and labels
    at::Tensor p = at::softmax(z, 1);
    at::Tensor g = labelSmoothing_ > 0 ? p - labelSmoothing_ / static_cast<double>(classes) : p.clone();
    g.scatter_add_(1, y.view({-1, 1}), at::full({n, 1}, -(1.0 - labelSmoothing_), g.options()));
    return std::vector<at::Tensor>{loss, g.div_(static_cast<double>(n)), p};
  });
}

double Network::LossDual(const Dual& z, const at::Tensor& y, Dual& grad, PrimalCache* cache, int64_t block) const {
  at::Tensor zt = z.tangent;
  if (!zt.defined()) {
    std::vector<int64_t> shape = z.value.sizes().vec();
    if (block) shape.insert(shape.begin(), block);
    zt = at::zeros(shape, z.value.options());
  }
  auto lg = LossPrimal(z.value, y, cache);
  if (loss_ == LossKind::Mse) {
    grad = {lg[1], zt * (2.0 / static_cast<double>(z.value.numel()))};
    return lg[0].item<double>();
  }
  const at::Tensor& p = lg[2];
  at::Tensor gt = p * (zt - (p * zt).sum(-1, /*keepdim=*/true));  // classes last, with or without a block
  grad = {lg[1], gt.div_(static_cast<double>(z.value.size(0)))};
  return lg[0].item<double>();
}

// d²L/dt² = Σ ż ∂²L/∂z² ż + ⟨∂L/∂z, z̈⟩: for cross-entropy, per sample
// żᵀ(diag p − ppᵀ)ż / N (label smoothing changes only ∂L/∂z); for mean
// squared error 2 Σ ż² / n.
at::Tensor Network::LossJet(const Jet& z, const at::Tensor& y, PrimalCache* cache, int64_t block, double& loss) const {
  auto lg = LossPrimal(z.value, y, cache);
  loss = lg[0].item<double>();
  // a sum over everything but a block's leading dim
  auto total = [block](const at::Tensor& t) { return block ? t.flatten(1).sum(1) : t.sum(); };
  at::Tensor q = block ? at::zeros({block}, z.value.options()) : at::zeros({}, z.value.options());
  if (z.d1.defined()) {
    const at::Tensor& zt = z.d1;
    if (loss_ == LossKind::Mse) {
      q = total(zt * zt).mul_(2.0 / static_cast<double>(z.value.numel()));
    } else {
      at::Tensor pz = lg[2] * zt;
      at::Tensor mean = pz.sum(-1);  // ⟨p, ż⟩ per sample
      q = total((pz * zt).sum(-1) - mean * mean).div_(static_cast<double>(z.value.size(0)));
    }
  }
  if (z.d2.defined()) q.add_(total(lg[1] * z.d2));
  return q;
}

at::Tensor Network::Loss(const at::Tensor& out, const at::Tensor& y) const {
  if (loss_ == LossKind::Mse) {
    if (out.sizes() != y.sizes())
      Fail("argument 'y' has shape " + c10::str(y.sizes()) + " but the model outputs " + c10::str(out.sizes()));
    return at::mse_loss(out, y);
  }
  if (out.dim() != 2) Fail("cross-entropy needs [batch, classes] outputs, the model gives " + c10::str(out.sizes()));
  int64_t classes = out.size(1);
  // Labels are checked on the host: an out-of-range label would be a device
  // assert on CUDA, which kills the CUDA context.
  auto range = at::aminmax(y);
  int64_t lo = std::get<0>(range).item<int64_t>(), hi = std::get<1>(range).item<int64_t>();
  if (lo < 0 || hi >= classes)
    Fail("argument 'y' holds label " + std::to_string(lo < 0 ? lo : hi) + " but the model has " +
         std::to_string(classes) + " classes (labels 0.." + std::to_string(classes - 1) + ")");
  at::Tensor logp = at::log_softmax(out, 1);
  at::Tensor nll = at::nll_loss(logp, y);
  if (labelSmoothing_ == 0) return nll;
  // PyTorch's label smoothing: (1-ε)·NLL + ε·mean over classes of −log p.
  return nll * (1.0 - labelSmoothing_) - logp.mean(1).mean() * labelSmoothing_;
}

}  // namespace usam
