// Network (network.h): construction from a NetworkSpec or a TorchScript
// module, the flat storage, the forward pass, and BatchNorm statistics pooled
// over micro-batches and over ranks. The derivatives are in derivatives.cc.
#include "network.h"

#include <ATen/autocast_mode.h>

#include <optional>

namespace usam {

void Network::CheckDType(at::ScalarType dtype) {
  if (dtype != at::kFloat && dtype != at::kDouble) Fail("model dtype must be 'float32' or 'float64'");
}

// The spec's own checks were made when it was read (spec.cc); these need the
// layers built.
Network::Network(const NetworkSpec& spec, at::ScalarType dtype_, c10::Device device_, uint64_t initSeed,
                 uint64_t dropoutSeed)
    : dtype(dtype_), device(device_), inputShape_(spec.input), loss_(spec.loss) {
  CheckDType(dtype);
  layers_ = MakeLayers(spec.layers, "", slots);
  if (slots.paramCount == 0) Fail("spec.layers has no parameters; a model needs at least one linear or conv2d layer");
  for (size_t i = 0; i < layers_.size(); ++i)
    if (layers_[i]->TakesIndices() && i != 0)
      Fail(layers_[i]->where() + ": an embedding reads integer indices, so it must be the first layer");
  indexInput_ = !layers_.empty() && layers_[0]->TakesIndices();
  gradRules_ = HaveGradRules(layers_);
  // a model that begins with Flatten also takes its inputs already flat, [batch, C·H·W], as nn.Flatten does
  flatInput_ = !spec.layers.empty() && spec.layers[0].kind == LayerKind::Flatten;

  AllocateStorage(dropoutSeed);
  // The initial weights are drawn on the CPU whatever the device (as PyTorch
  // builds a module on the CPU and moves it), so a seed gives the same model
  // on every device; on the CPU this is the same draw as in place.
  at::Generator init = MakeGenerator(initSeed, at::kCPU);
  const bool onCpu = device.is_cpu();

  at::NoGradGuard ng;
  for (const auto& s : slots.params) {
    at::Tensor view = flatParams.narrow(0, s.offset, s.numel).view(s.shape);
    at::Tensor draw = onCpu ? view : at::empty(s.shape, view.options().device(at::kCPU));
    if (s.stddev > 0)
      draw.normal_(0, s.stddev, init);
    else if (s.bound > 0)
      draw.uniform_(-s.bound, s.bound, init);
    else
      draw.fill_(s.fill);
    if (!onCpu) view.copy_(draw);
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
  int64_t features = 1;
  for (int64_t s : inputShape_) features *= s;
  if (!ok && flatInput_) ok = x.dim() == 2 && x.size(1) == features;
  if (!ok || x.size(0) == 0)
    Fail("argument 'x' has shape " + c10::str(x.sizes()) + " but the model takes [batch, " +
         c10::Join(", ", inputShape_) + "]" + (flatInput_ && inputShape_.size() > 1 ? " (or [batch, " + std::to_string(features) + "], flat)" : "") +
         " with batch >= 1");
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
  // the whole shape of float targets (the output's) is checked by Loss, after the forward pass
  if (TakesLabels(loss_.kind)) {
    if (y.scalar_type() != at::kLong || y.dim() != 1 || y.size(0) != batch)
      Fail("argument 'y' must be int64 class labels of shape [" + std::to_string(batch) + "] for " +
           LossName(loss_.kind) + ", got " + DTypeName(y.scalar_type()) + " " + c10::str(y.sizes()));
  } else if (y.scalar_type() != dtype || y.dim() == 0 || y.size(0) != batch) {
    Fail("argument 'y' must be " + DTypeName(dtype) + " targets of the output's shape (batch " + std::to_string(batch) +
         ") for " + LossName(loss_.kind) + ", got " + DTypeName(y.scalar_type()) + " " + c10::str(y.sizes()) +
         (y.scalar_type() == at::kLong ? " (int64 class labels are for cross-entropy and nll)" : ""));
  }
}

namespace {
// Per-channel mean and M2 = Σ(x − mean)² of a contiguous [N, C, S] block, in
// float64, by two passes over x with no copy: the float64 copy of x and its
// temporaries cost 5 ms a CNN step (batch 64; 17% of its pass), this 1 ms.
// Eight partial sums keep the adds independent (a reduction the compiler may
// not reorder).
template <typename T>
void ChannelMoments(const T* x, int64_t N, int64_t C, int64_t S, double* mean, double* m2) {
  auto sum = [S](const T* p, double shift, bool squares) {
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= S; i += 8)
      for (int k = 0; k < 8; k++) {
        const double d = static_cast<double>(p[i + k]) - shift;
        acc[k] += squares ? d * d : d;
      }
    for (; i < S; i++) {
      const double d = static_cast<double>(p[i]) - shift;
      acc[0] += squares ? d * d : d;
    }
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  };
  const double count = static_cast<double>(N * S);
  for (int64_t c = 0; c < C; c++) {
    double total = 0;
    for (int64_t n = 0; n < N; n++) total += sum(x + (n * C + c) * S, 0.0, false);
    mean[c] = total / count;
    double squares = 0;
    for (int64_t n = 0; n < N; n++) squares += sum(x + (n * C + c) * S, mean[c], true);
    m2[c] = squares;
  }
}
}  // namespace

void StatsAccumulator::Add(size_t meanBuffer, size_t varBuffer, size_t counter, double momentum, const at::Tensor& x) {
  int64_t n = x.numel() / x.size(1);
  at::Tensor mean, m2;
  const auto type = x.scalar_type();
  if (x.device().is_cpu() && x.is_contiguous() && (type == at::kFloat || type == at::kDouble)) {
    const int64_t N = x.size(0), C = x.size(1), S = C == 0 || N == 0 ? 0 : x.numel() / (N * C);
    auto opts = at::TensorOptions().dtype(at::kDouble);
    mean = at::empty({C}, opts);
    m2 = at::empty({C}, opts);
    if (type == at::kFloat)
      ChannelMoments(x.data_ptr<float>(), N, C, S, mean.data_ptr<double>(), m2.data_ptr<double>());
    else
      ChannelMoments(x.data_ptr<double>(), N, C, S, mean.data_ptr<double>(), m2.data_ptr<double>());
  } else {
    std::vector<int64_t> dims{0};
    for (int64_t d = 2; d < x.dim(); ++d) dims.push_back(d);
    at::Tensor xd = x.to(at::kDouble);
    std::vector<int64_t> channel(static_cast<size_t>(x.dim()), 1);
    channel[1] = x.size(1);
    mean = xd.mean(dims);
    m2 = (xd - mean.view(channel)).pow(2).sum(dims);
  }
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

Network::Network(std::shared_ptr<ScriptModule> script, const LossSpec& loss, at::ScalarType dtype_,
                 c10::Device device_, uint64_t dropoutSeed)
    : dtype(dtype_), device(device_), script_(std::move(script)), loss_(loss) {
  CheckDType(dtype);
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
namespace {
// LibTorch's autocast for one forward of a TorchScript module (the model's
// precision): the module's ops dispatch through the Autocast keys, which
// cast to the reduced type where torch.autocast would (linear, conv, matmul
// ...) and keep the rest. Thread-local state, set and restored around the
// call (the async calls run it on a worker thread). The API changed in 2.4.
class AutocastScope {
 public:
  AutocastScope(c10::DeviceType device, at::ScalarType type) : device_(device) {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    wasEnabled_ = at::autocast::is_autocast_enabled(device);
    wasType_ = at::autocast::get_autocast_dtype(device);
    at::autocast::set_autocast_dtype(device, type);
    at::autocast::set_autocast_enabled(device, true);
#else
    if (device == c10::DeviceType::CPU) {
      wasEnabled_ = at::autocast::is_cpu_enabled();
      wasType_ = at::autocast::get_autocast_cpu_dtype();
      at::autocast::set_autocast_cpu_dtype(type);
      at::autocast::set_cpu_enabled(true);
    } else {
      wasEnabled_ = at::autocast::is_enabled();
      wasType_ = at::autocast::get_autocast_gpu_dtype();
      at::autocast::set_autocast_gpu_dtype(type);
      at::autocast::set_enabled(true);
    }
#endif
    at::autocast::increment_nesting();
  }
  ~AutocastScope() {
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    at::autocast::set_autocast_enabled(device_, wasEnabled_);
    at::autocast::set_autocast_dtype(device_, wasType_);
#else
    if (device_ == c10::DeviceType::CPU) {
      at::autocast::set_cpu_enabled(wasEnabled_);
      at::autocast::set_autocast_cpu_dtype(wasType_);
    } else {
      at::autocast::set_enabled(wasEnabled_);
      at::autocast::set_autocast_gpu_dtype(wasType_);
    }
#endif
  }

 private:
  c10::DeviceType device_;
  bool wasEnabled_ = false;
  at::ScalarType wasType_ = at::kFloat;
};
}  // namespace

at::Tensor Network::ScriptForward(const at::Tensor& x, bool updateStats, bool autocast) {
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
    std::optional<AutocastScope> scope;
    if (autocast) scope.emplace(device.type(), reduced);
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
  PassSignals held;
  // mixed precision in the passes differentiated once (the model's precision)
  const bool reduce = reduced != at::ScalarType::Undefined && !twiceDifferentiable;
  at::Tensor out;
  if (script_) {
    out = ScriptForward(x, updateStats, reduce);
  } else {
    Pass pass{params, buffers, counters, training, updateStats, twiceDifferentiable, gen, stats_.get()};
    if (reduce) pass.reduced = reduced;
    out = RunLayers(layers_, x, pass);
  }
  // the loss (and what forward() returns) in the model's dtype, as autocast's float32 losses
  return reduce && out.defined() && out.is_floating_point() ? out.to(dtype) : out;
}

}  // namespace usam
