#include "layers.h"

#include "args.h"
#include "generator.h"

namespace usam {

size_t Slots::AddParam(std::string name, std::vector<int64_t> shape, double bound, double fill) {
  ParamSlot s{std::move(name), std::move(shape), paramCount, 1, bound, fill};
  for (auto d : s.shape) s.numel *= d;
  paramCount += s.numel;
  params.push_back(std::move(s));
  return params.size() - 1;
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
    return at::linear(x, p.params[weight_], hasBias_ ? p.params[bias_] : at::Tensor());
  }

 private:
  size_t weight_ = 0, bias_ = 0;
  bool hasBias_ = true;
};

// A stride-1 convolution whose backward is written with forward convolutions,
// for passes that differentiate more than once. LibTorch 1.13's own
// double backward of conv2d goes through slow_conv_transpose2d on the CPU
// (a third of an HVP's time on the benchmark CNN); with this backward every
// derivative of every order is again a forward convolution (mkldnn).
struct Conv2dStride1 : public torch::autograd::Function<Conv2dStride1> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w,
                            const at::Tensor& b, int64_t padH, int64_t padW) {
    ctx->save_for_backward({x, w});
    ctx->saved_data["padH"] = padH;
    ctx->saved_data["padW"] = padW;
    ctx->saved_data["bias"] = b.defined();
    return at::conv2d(x, w, b, {1, 1}, {padH, padW});
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &w = saved[1], &g = grads[0];
    int64_t padH = ctx->saved_data["padH"].toInt(), padW = ctx->saved_data["padW"].toInt();
    at::Tensor gx, gw, gb;
    // ∂/∂x: correlation of g with the flipped kernel, channels swapped
    if (ctx->needs_input_grad(0))
      gx = at::conv2d(g, w.flip({2, 3}).transpose(0, 1), {}, {1, 1}, {w.size(2) - 1 - padH, w.size(3) - 1 - padW});
    // ∂/∂w[o,i,a,b] = Σ_{n,y,x} g[n,o,y,x]·x_pad[n,i,y+a,x+b]: a convolution
    // with the batch as channels
    if (ctx->needs_input_grad(1))
      gw = at::conv2d(x.transpose(0, 1), g.transpose(0, 1), {}, {1, 1}, {padH, padW}).transpose(0, 1);
    if (ctx->saved_data["bias"].toBool() && ctx->needs_input_grad(2)) gb = g.sum({0, 2, 3});
    return {gx, gw, gb, at::Tensor(), at::Tensor()};
  }
};

class Conv2d : public Layer {
 public:
  Conv2d(const Napi::Object& o, const std::string& where, const std::string& prefix, Slots& s) : Layer(where) {
    int64_t in = IntField(o, "inChannels", where, 1), out = IntField(o, "outChannels", where, 1);
    auto k = IntListField(o, "kernelSize", where, 2, 1);
    stride_ = HasField(o, "stride") ? IntListField(o, "stride", where, 2, 1) : Pair{1, 1};
    padding_ = HasField(o, "padding") ? IntListField(o, "padding", where, 2, 0) : Pair{0, 0};
    double b = FanInBound(in * k[0] * k[1]);
    weight_ = s.AddParam(prefix + "weight", {out, in, k[0], k[1]}, b, 0);
    hasBias_ = BoolField(o, "bias", where, true);
    if (hasBias_) bias_ = s.AddParam(prefix + "bias", {out}, b, 0);
  }
  at::Tensor Forward(const at::Tensor& x, Pass& p) const override {
    at::Tensor bias = hasBias_ ? p.params[bias_] : at::Tensor();
    const at::Tensor& w = p.params[weight_];
    bool unitStride = stride_[0] == 1 && stride_[1] == 1;
    bool paddingFits = padding_[0] < w.size(2) && padding_[1] < w.size(3);
    if (p.twiceDifferentiable && unitStride && paddingFits)
      return Conv2dStride1::apply(x, w, bias, padding_[0], padding_[1]);
    return at::conv2d(x, w, bias, stride_, padding_);
  }

 private:
  size_t weight_ = 0, bias_ = 0;
  bool hasBias_ = true;
  Pair stride_, padding_;
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
    int64_t want = spatialDims_ == 2 ? 4 : 2;
    if (!(x.dim() == want || (spatialDims_ == 1 && x.dim() == 3)))
      Fail(where() + ": expected a " + (spatialDims_ == 2 ? "4-D [N, C, H, W]" : "2-D [N, C] or 3-D [N, C, L]") +
           " input, got " + std::to_string(x.dim()) + "-D");
    // Batch statistics in training mode; running statistics are read in eval
    // mode and written only when the pass asks for it.
    bool useRunning = !p.training || p.updateStats;
    at::Tensor rm = useRunning ? p.buffers[mean_] : at::Tensor();
    at::Tensor rv = useRunning ? p.buffers[var_] : at::Tensor();
    if (p.twiceDifferentiable) return Composite(x, p);
    bool cudnn = at::globalContext().userEnabledCuDNN();
    if (p.training && p.updateStats) p.counters[counter_].add_(1);
    return at::batch_norm(x, affine_ ? p.params[weight_] : at::Tensor(), affine_ ? p.params[bias_] : at::Tensor(), rm,
                          rv, p.training, momentum_, eps_, cudnn);
  }

 private:
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

enum class Act { Relu, Gelu, GeluTanh, Tanh, Softplus };

class Activation : public Layer {
 public:
  Activation(Act act, const Napi::Object& o, const std::string& where) : Layer(where), act_(act) {
    if (act == Act::Softplus) {
      beta_ = NumberField(o, "beta", where, 1.0);
      threshold_ = NumberField(o, "threshold", where, 20.0);
      if (beta_ <= 0) Fail(where + ".beta must be > 0");
    }
  }
  at::Tensor Forward(const at::Tensor& x, Pass&) const override {
    switch (act_) {
      case Act::Relu: return at::relu(x);
      case Act::Gelu: return at::gelu(x);
      case Act::GeluTanh: return at::gelu(x, "tanh");
      case Act::Tanh: return at::tanh(x);
      case Act::Softplus: return at::softplus(x, beta_, threshold_);
    }
    return x;
  }

 private:
  Act act_;
  double beta_ = 1, threshold_ = 20;
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
    if (x.dim() != 4) Fail(where() + ": expected a 4-D [N, C, H, W] input, got " + std::to_string(x.dim()) + "-D");
    return kind_ == PoolKind::Max ? at::max_pool2d(x, kernel_, stride_, padding_)
                                  : at::avg_pool2d(x, kernel_, stride_, padding_);
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
    if (x.dim() != 4) Fail(where() + ": expected a 4-D [N, C, H, W] input, got " + std::to_string(x.dim()) + "-D");
    // Global pooling as a mean: the same numbers, and a kernel with cheap
    // double backward (needed by HVPs).
    if (output_[0] == 1 && output_[1] == 1) return x.mean({2, 3}, /*keepdim=*/true);
    return at::adaptive_avg_pool2d(x, output_);
  }

 private:
  Pair output_;
};

class Flatten : public Layer {
 public:
  using Layer::Layer;
  at::Tensor Forward(const at::Tensor& x, Pass&) const override { return x.flatten(1); }
};

class Dropout : public Layer {
 public:
  Dropout(const Napi::Object& o, const std::string& where) : Layer(where) {
    p_ = NumberField(o, "p", where, 0.5);
    if (p_ < 0 || p_ >= 1) Fail(where + ".p must be in [0, 1)");
  }
  at::Tensor Forward(const at::Tensor& x, Pass& p) const override {
    if (!p.training || p_ == 0) return x;
    // The mask comes from the model's own generator, so a seeded model and
    // a restored RNG state reproduce it exactly.
    at::Tensor keep = at::empty_like(x).bernoulli_(1.0 - p_, p.gen);
    return x * keep.div_(1.0 - p_);
  }

 private:
  double p_ = 0.5;
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
    if (main.sizes() != skip.sizes())
      Fail(where() + ": body output " + c10::str(main.sizes()) + " and shortcut output " + c10::str(skip.sizes()) +
           " differ; give the block a shortcut that matches (e.g. a 1x1 conv with stride)");
    return main + skip;
  }

 private:
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
  if (type == "relu") return std::make_unique<Activation>(Act::Relu, o, where);
  if (type == "gelu") {
    std::string approx = HasField(o, "approximate") ? StringField(o, "approximate", where) : "none";
    if (approx != "none" && approx != "tanh") Fail(where + ".approximate must be 'none' or 'tanh'");
    return std::make_unique<Activation>(approx == "tanh" ? Act::GeluTanh : Act::Gelu, o, where);
  }
  if (type == "tanh") return std::make_unique<Activation>(Act::Tanh, o, where);
  if (type == "softplus") return std::make_unique<Activation>(Act::Softplus, o, where);
  if (type == "maxpool2d") return std::make_unique<Pool2d>(PoolKind::Max, o, where);
  if (type == "avgpool2d") return std::make_unique<Pool2d>(PoolKind::Avg, o, where);
  if (type == "adaptiveavgpool2d") return std::make_unique<AdaptiveAvgPool2d>(o, where);
  if (type == "flatten") return std::make_unique<Flatten>(where);
  if (type == "dropout") return std::make_unique<Dropout>(o, where);
  if (type == "residual") return std::make_unique<Residual>(o, where, prefix, s);
  Fail(where + ".type '" + type +
       "' is not a layer; use one of linear, conv2d, batchnorm1d, batchnorm2d, relu, gelu, tanh, softplus, "
       "maxpool2d, avgpool2d, adaptiveavgpool2d, flatten, dropout, residual");
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

at::Tensor RunLayers(const LayerList& layers, at::Tensor x, Pass& p) {
  for (const auto& layer : layers) {
    try {
      x = layer->Forward(x, p);
    } catch (const c10::Error& e) {
      Fail(layer->where() + ": " + CleanTorchMessage(e.what_without_backtrace()));
    }
  }
  return x;
}

Network::Network(const Napi::Object& spec, at::ScalarType dtype_, c10::Device device_, uint64_t seed)
    : dtype(dtype_), device(device_) {
  if (dtype != at::kFloat && dtype != at::kDouble) Fail("model dtype must be 'float32' or 'float64'");
  inputShape_ = IntListField(spec, "input", "spec", 0, 1);
  if (inputShape_.empty()) Fail("spec.input must list the input shape without the batch dimension, e.g. [784]");
  if (!HasField(spec, "layers")) Fail("spec.layers is required (an array of layers)");
  layers_ = ParseList(spec.Get("layers"), "spec.layers", "", slots);
  if (HasField(spec, "loss")) {
    if (!spec.Get("loss").IsObject()) Fail("spec.loss must be an object like {type: 'cross-entropy'}");
    auto lo = spec.Get("loss").As<Napi::Object>();
    std::string kind = StringField(lo, "type", "spec.loss");
    if (kind == "cross-entropy") {
      loss_ = LossKind::CrossEntropy;
      labelSmoothing_ = NumberField(lo, "labelSmoothing", "spec.loss", 0.0);
      if (labelSmoothing_ < 0 || labelSmoothing_ > 1) Fail("spec.loss.labelSmoothing must be in [0, 1]");
    } else if (kind == "mse") {
      loss_ = LossKind::Mse;
    } else {
      Fail("spec.loss.type '" + kind + "' is unknown; use 'cross-entropy' or 'mse'");
    }
  }
  if (slots.paramCount == 0) Fail("spec.layers has no parameters; a model needs at least one linear or conv2d layer");

  auto opts = at::TensorOptions().dtype(dtype).device(device);
  flatParams = at::empty({slots.paramCount}, opts);
  flatBuffers = at::empty({slots.bufferCount}, opts);
  counters = at::zeros({static_cast<int64_t>(slots.counters.size())}, opts.dtype(at::kLong));
  gen = MakeGenerator(seed, device);

  at::NoGradGuard ng;
  for (const auto& s : slots.params) {
    at::Tensor view = flatParams.narrow(0, s.offset, s.numel).view(s.shape);
    if (s.bound > 0)
      view.uniform_(-s.bound, s.bound, gen);
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
  bool ok = x.dim() == static_cast<int64_t>(inputShape_.size()) + 1;
  for (size_t i = 0; ok && i < inputShape_.size(); ++i) ok = x.size(static_cast<int64_t>(i) + 1) == inputShape_[i];
  if (!ok || x.size(0) == 0)
    Fail("argument 'x' has shape " + c10::str(x.sizes()) + " but the model takes [batch, " +
         c10::Join(", ", inputShape_) + "] with batch >= 1");
  if (x.scalar_type() != dtype)
    Fail("argument 'x' is " + DTypeName(x.scalar_type()) + " but the model is " + DTypeName(dtype) +
         "; create the inputs with the model's dtype");
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

at::Tensor Network::Forward(const at::Tensor& x, bool updateStats, bool twiceDifferentiable) {
  Pass pass{params, buffers, counters, training, updateStats, twiceDifferentiable, gen};
  return RunLayers(layers_, x, pass);
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
